-- Where services.loader stands in each Kafka partition it loads into ClickHouse; ClickHouse, not the consumer
-- group, is the source of truth for that position. Before inserting a batch the loader writes an 'intent' row
-- (the batch's first and last offset); once the batch is in, a 'loaded' row for it rides along with the next
-- write here (or is written on shutdown). On start the newest row per partition decides: 'loaded' -> resume
-- after last_offset; 'intent' -> re-read exactly [first_offset, last_offset] and insert it again with the same
-- insert_deduplication_token, which ClickHouse drops if the interrupted insert had gone through.
-- seq orders a partition's rows (a batch's 'loaded' after its 'intent', the next batch after both), so the
-- newest row is argMax(..., seq) and the table merges down to one row per partition.
-- Recreating a Kafka topic restarts its offsets: delete its rows here first.
CREATE TABLE IF NOT EXISTS {{database}}.loader_progress
(
    topic        LowCardinality(String),
    partition    UInt32,
    first_offset UInt64,
    last_offset  UInt64,
    rows         UInt32 COMMENT 'Kafka records in the batch',
    rejected     UInt32 COMMENT 'records ClickHouse refused, sent to the DLQ (reason clickhouse_rejected)',
    state        Enum8('intent' = 1, 'loaded' = 2),
    loaded_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    seq          UInt64 MATERIALIZED last_offset * 2 + (state = 'loaded')
)
ENGINE = ReplacingMergeTree(seq)
ORDER BY (topic, partition);

-- Ingest counters per 10 s event-time window and source topic, as delta rows like usage_10s (the job emits
-- what each processing-time slice saw; a window's counts are the sum of its rows). consumed = valid + dlq +
-- duplicates; late counts valid events that arrived past the allowed lateness.
CREATE TABLE IF NOT EXISTS {{database}}.ingest_stats_10s
(
    window_start DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    topic        LowCardinality(String),
    consumed     SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    valid        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    dlq          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    duplicates   SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    late         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (topic, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;
