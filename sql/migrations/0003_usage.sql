-- Usage aggregates: the job's 10-second event-time windows per tenant / department / project / user / model /
-- model version / checkpoint, rolled up by materialized views to minute, hour and day.
--
-- latency_hist is a mergeable log-bucket sketch (bucket index -> count; the job's window accumulator owns the
-- bucket function), so a quantile over any span is computed after sumMap-merging the buckets of its rows.
--
-- Exactness of the rollups. A materialized view sees every block inserted into usage_10s; it never sees
-- ReplacingMergeTree replace a row. So the rollups are exact only if each window row is inserted once:
--   * the job writes deterministic window rows and sends each batch with insert_deduplication_token (the same
--     token on a retry or a replay from a checkpoint), and the tables keep a deduplication window;
--   * the same insert carries deduplicate_blocks_in_dependent_materialized_views = 1, so each rollup table also
--     deduplicates the block the view derived from it. ClickHouse turns it on by default from 26.2 (the
--     26.9 engine here has it on); measured with it off, a retried batch is dropped by usage_10s but summed
--     into the rollups a second time. The sink sets it explicitly so an older server or a profile that turns
--     it off cannot double-count.
-- A window rewritten with a new version (a backfill over a range already written) replaces its row in
-- usage_10s but adds to the rollups: the backfill rebuilds the rollups of the range it rewrote from
-- usage_10s FINAL (delete the range in usage_1m/1h/1d, then INSERT ... SELECT the same aggregation).
CREATE TABLE IF NOT EXISTS {{database}}.usage_10s
(
    window_start         DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant_id            LowCardinality(String),
    department_id        LowCardinality(String),
    project_id           LowCardinality(String),
    user_id              LowCardinality(String),
    model                LowCardinality(String),
    model_version        LowCardinality(String),
    checkpoint_id        LowCardinality(String),
    requests             UInt64 CODEC(T64, ZSTD(1)),
    errors               UInt64 CODEC(T64, ZSTD(1)),
    errors_by_type       Map(String, UInt64) CODEC(ZSTD(1)),
    tokens_in            UInt64 CODEC(T64, ZSTD(1)),
    tokens_out           UInt64 CODEC(T64, ZSTD(1)),
    latency_sum_ms       Float64 CODEC(ZSTD(1)),
    latency_hist         Map(UInt16, UInt64) CODEC(ZSTD(1)),
    tasks                UInt64 CODEC(T64, ZSTD(1)),
    task_failures        UInt64 CODEC(T64, ZSTD(1)),
    task_duration_ms_sum UInt64 CODEC(T64, ZSTD(1)),
    cpu_seconds          Float64 CODEC(ZSTD(1)),
    gpu_seconds          Float64 CODEC(ZSTD(1)),
    credits              Float64 CODEC(ZSTD(1)),
    late_events          UInt64 CODEC(T64, ZSTD(1)),
    version              UInt64 COMMENT 'the row with the highest version of a window wins'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

-- usage_1m: read with sum() / sumMap() and GROUP BY, since rows of a key merge in the background.
CREATE TABLE IF NOT EXISTS {{database}}.usage_1m
(
    window_start         DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant_id            LowCardinality(String),
    department_id        LowCardinality(String),
    project_id           LowCardinality(String),
    user_id              LowCardinality(String),
    model                LowCardinality(String),
    model_version        LowCardinality(String),
    checkpoint_id        LowCardinality(String),
    requests             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors               SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors_by_type       SimpleAggregateFunction(sumMap, Map(String, UInt64)) CODEC(ZSTD(1)),
    tokens_in            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    tokens_out           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    latency_sum_ms       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    latency_hist         SimpleAggregateFunction(sumMap, Map(UInt16, UInt64)) CODEC(ZSTD(1)),
    tasks                SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_failures        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_duration_ms_sum SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    cpu_seconds          SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    gpu_seconds          SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    credits              SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    late_events          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1m_mv TO {{database}}.usage_1m AS
SELECT
    toStartOfMinute(window_start) AS window_start,
    tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(tokens_in) AS tokens_in,
    sum(tokens_out) AS tokens_out,
    sum(latency_sum_ms) AS latency_sum_ms,
    sumMap(latency_hist) AS latency_hist,
    sum(tasks) AS tasks,
    sum(task_failures) AS task_failures,
    sum(task_duration_ms_sum) AS task_duration_ms_sum,
    sum(cpu_seconds) AS cpu_seconds,
    sum(gpu_seconds) AS gpu_seconds,
    sum(credits) AS credits,
    sum(late_events) AS late_events
FROM {{database}}.usage_10s
GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id;

-- usage_1h: read with sum() / sumMap() and GROUP BY, since rows of a key merge in the background.
CREATE TABLE IF NOT EXISTS {{database}}.usage_1h
(
    window_start         DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant_id            LowCardinality(String),
    department_id        LowCardinality(String),
    project_id           LowCardinality(String),
    user_id              LowCardinality(String),
    model                LowCardinality(String),
    model_version        LowCardinality(String),
    checkpoint_id        LowCardinality(String),
    requests             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors               SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors_by_type       SimpleAggregateFunction(sumMap, Map(String, UInt64)) CODEC(ZSTD(1)),
    tokens_in            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    tokens_out           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    latency_sum_ms       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    latency_hist         SimpleAggregateFunction(sumMap, Map(UInt16, UInt64)) CODEC(ZSTD(1)),
    tasks                SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_failures        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_duration_ms_sum SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    cpu_seconds          SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    gpu_seconds          SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    credits              SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    late_events          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1h_mv TO {{database}}.usage_1h AS
SELECT
    toStartOfHour(window_start) AS window_start,
    tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(tokens_in) AS tokens_in,
    sum(tokens_out) AS tokens_out,
    sum(latency_sum_ms) AS latency_sum_ms,
    sumMap(latency_hist) AS latency_hist,
    sum(tasks) AS tasks,
    sum(task_failures) AS task_failures,
    sum(task_duration_ms_sum) AS task_duration_ms_sum,
    sum(cpu_seconds) AS cpu_seconds,
    sum(gpu_seconds) AS gpu_seconds,
    sum(credits) AS credits,
    sum(late_events) AS late_events
FROM {{database}}.usage_10s
GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id;

-- usage_1d: read with sum() / sumMap() and GROUP BY, since rows of a key merge in the background.
CREATE TABLE IF NOT EXISTS {{database}}.usage_1d
(
    window_start         DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant_id            LowCardinality(String),
    department_id        LowCardinality(String),
    project_id           LowCardinality(String),
    user_id              LowCardinality(String),
    model                LowCardinality(String),
    model_version        LowCardinality(String),
    checkpoint_id        LowCardinality(String),
    requests             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors               SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors_by_type       SimpleAggregateFunction(sumMap, Map(String, UInt64)) CODEC(ZSTD(1)),
    tokens_in            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    tokens_out           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    latency_sum_ms       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    latency_hist         SimpleAggregateFunction(sumMap, Map(UInt16, UInt64)) CODEC(ZSTD(1)),
    tasks                SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_failures        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_duration_ms_sum SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    cpu_seconds          SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    gpu_seconds          SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    credits              SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    late_events          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1d_mv TO {{database}}.usage_1d AS
SELECT
    toStartOfDay(window_start) AS window_start,
    tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(tokens_in) AS tokens_in,
    sum(tokens_out) AS tokens_out,
    sum(latency_sum_ms) AS latency_sum_ms,
    sumMap(latency_hist) AS latency_hist,
    sum(tasks) AS tasks,
    sum(task_failures) AS task_failures,
    sum(task_duration_ms_sum) AS task_duration_ms_sum,
    sum(cpu_seconds) AS cpu_seconds,
    sum(gpu_seconds) AS gpu_seconds,
    sum(credits) AS credits,
    sum(late_events) AS late_events
FROM {{database}}.usage_10s
GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id;
