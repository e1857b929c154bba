-- Events that arrived after their window closed (past the job's allowed lateness): kept whole, so a backfill
-- can fold them into the windows they belong to, and counted per window in usage_10s.late_events.
CREATE TABLE IF NOT EXISTS {{database}}.late_events
(
    event_id      UUID,
    topic         LowCardinality(String),
    tenant_id     LowCardinality(String),
    ts            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)) COMMENT 'event time',
    window_start  DateTime('UTC') CODEC(Delta, ZSTD(1)) COMMENT 'the 10 s window the event belongs to',
    arrived_at    DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)) COMMENT 'watermark time when the job saw it',
    payload       String CODEC(ZSTD(3)) COMMENT 'the event as JSON'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (topic, window_start, event_id)
TTL toDateTime(ts) + INTERVAL {{retention_months}} MONTH
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- A queryable copy of the DLQ topic: every record the job could not process, with the reason code it was
-- rejected for and where it came from. (topic, kafka_partition, kafka_offset) identifies a source record, so
-- a replay that rejects it again replaces the row; ts is the source record's Kafka timestamp, not the time it
-- was rejected, for the same reason (a partition key that changed between replays would keep both rows).
CREATE TABLE IF NOT EXISTS {{database}}.dlq_events
(
    ts              DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    reason          LowCardinality(String) COMMENT 'machine-readable reason code from validation',
    message         String CODEC(ZSTD(3)),
    topic           LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64 CODEC(Delta, ZSTD(1)),
    payload         String CODEC(ZSTD(3)) COMMENT 'the original record value: as is when UTF-8, else base64',
    payload_encoding LowCardinality(String) COMMENT 'utf-8 or base64',
    job_version     LowCardinality(String),
    rejected_at     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree(rejected_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (topic, kafka_partition, kafka_offset)
TTL toDateTime(ts) + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;
