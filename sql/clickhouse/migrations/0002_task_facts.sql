-- One row per task attempt that ended (finished, failed, or orphaned when its lifecycle timed out), joined
-- from the lifecycle events and enriched with the node's resource use over [started_at, finished_at].
-- The sort key is the attempt's identity, so a replay or a later enrichment of the same attempt replaces the
-- row (highest version wins) instead of adding one; read with FINAL or argMax(..., version) for exact answers.
-- finished_at is the partition key because every row has it and a replay computes the same value from the
-- same events: a key that moved between versions would leave both versions alive in different partitions.
CREATE TABLE IF NOT EXISTS {{database}}.task_facts
(
    task_id             String,
    attempt             UInt16,
    status              LowCardinality(String) COMMENT 'finished | failed | orphaned',
    tenant_id           LowCardinality(String),
    department_id       LowCardinality(String),
    project_id          LowCardinality(String),
    user_id             LowCardinality(String),
    base_model          LowCardinality(String),
    model_version       LowCardinality(String),
    checkpoint_id       LowCardinality(String),
    checkpoint_version  LowCardinality(String),
    node_id             LowCardinality(String),
    host_name           LowCardinality(String),
    vm_type             LowCardinality(String),
    queued_at           Nullable(DateTime64(3, 'UTC')) CODEC(Delta, ZSTD(1)),
    started_at          Nullable(DateTime64(3, 'UTC')) CODEC(Delta, ZSTD(1)),
    finished_at         DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    -- phase durations; NULL when the events that bound a phase never arrived
    queue_ms            Nullable(UInt32) CODEC(T64, ZSTD(1)),
    checkpoint_load_ms  Nullable(UInt32) CODEC(T64, ZSTD(1)),
    init_ms             Nullable(UInt32) CODEC(T64, ZSTD(1)),
    inference_ms        Nullable(UInt32) CODEC(T64, ZSTD(1)),
    total_ms            Nullable(UInt32) CODEC(T64, ZSTD(1)),
    input_bytes         UInt64 CODEC(T64, ZSTD(1)),
    output_bytes        UInt64 CODEC(T64, ZSTD(1)),
    error_type          LowCardinality(String),
    error_message       String CODEC(ZSTD(3)),
    enrichment_status   LowCardinality(String) COMMENT 'ok | partial | unavailable | skipped',
    -- node resource use from Prometheus over the attempt; NULL when enrichment could not get the series
    gpu_util_avg        Nullable(Float32) CODEC(ZSTD(1)) COMMENT 'percent',
    gpu_util_max        Nullable(Float32) CODEC(ZSTD(1)) COMMENT 'percent',
    gpu_mem_avg         Nullable(Float64) CODEC(ZSTD(1)) COMMENT 'bytes',
    gpu_mem_max         Nullable(Float64) CODEC(ZSTD(1)) COMMENT 'bytes',
    cpu_util_avg        Nullable(Float32) CODEC(ZSTD(1)) COMMENT 'percent of the node''s cores',
    cpu_util_max        Nullable(Float32) CODEC(ZSTD(1)) COMMENT 'percent of the node''s cores',
    ram_avg             Nullable(Float64) CODEC(ZSTD(1)) COMMENT 'bytes',
    ram_max             Nullable(Float64) CODEC(ZSTD(1)) COMMENT 'bytes',
    net_avg             Nullable(Float64) CODEC(ZSTD(1)) COMMENT 'bytes/s, receive + transmit',
    net_max             Nullable(Float64) CODEC(ZSTD(1)) COMMENT 'bytes/s, receive + transmit',
    disk_avg            Nullable(Float64) CODEC(ZSTD(1)) COMMENT 'bytes/s, read + write',
    disk_max            Nullable(Float64) CODEC(ZSTD(1)) COMMENT 'bytes/s, read + write',
    cpu_seconds         Float64 CODEC(ZSTD(1)),
    gpu_seconds         Float64 CODEC(ZSTD(1)),
    credits             Float64 CODEC(ZSTD(1)),
    job_version         LowCardinality(String),
    version             UInt64,
    ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    INDEX idx_tenant tenant_id TYPE set(256) GRANULARITY 4,
    INDEX idx_user user_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(finished_at)
ORDER BY (task_id, attempt)
TTL toDateTime(finished_at) + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;
