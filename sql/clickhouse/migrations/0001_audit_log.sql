-- Append-only audit trail: one row per pbac_access / pbac_politics / pbac_service / asset_access event.
-- Rows are never updated. A replayed batch is dropped by block deduplication when the sink sends the same
-- insert_deduplication_token again, which a non-replicated MergeTree only does with a deduplication window.
CREATE TABLE IF NOT EXISTS {{database}}.audit_log
(
    event_id      UUID,
    ts            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    topic         LowCardinality(String),
    event_name    LowCardinality(String),
    tenant_id     LowCardinality(String),
    department_id LowCardinality(String),
    project_id    LowCardinality(String),
    user_id       String CODEC(ZSTD(1)),
    node_id       LowCardinality(String),
    host_name     LowCardinality(String),
    subject       String CODEC(ZSTD(1)),
    action        LowCardinality(String),
    resource      String CODEC(ZSTD(1)),
    decision      LowCardinality(String),
    policy_id     LowCardinality(String),
    details       String CODEC(ZSTD(3)) COMMENT 'the event''s family-specific fields as JSON',
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    -- "who touched this resource / what did this user do" must not scan a tenant's whole month
    INDEX idx_user user_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_resource resource TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, topic, ts)
TTL toDateTime(ts) + INTERVAL {{retention_months}} MONTH
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;
