-- Usage aggregates: 10-second event-time windows per tenant / department / project / user / model /
-- model version / checkpoint / checkpoint version, rolled up by materialized views to minute, hour and day.
--
-- usage_10s holds delta rows, not finished windows. Per processing-time slice the job emits, for each
-- (window, key) it saw events for, the contribution of those events; a late event within the allowed lateness
-- is just one more delta for its window. Every column sums, so a window's value is the sum of its deltas:
-- read with sum() / sumMap() and GROUP BY (rows of a key also merge in the background).
--
-- Exactness. The job commits delta rows to Kafka (telemetry.ch.usage.v1) with its exactly-once transactional
-- sink; services.loader reads them read_committed and inserts each Kafka record exactly once: it records the
-- batch's offset range in loader_progress before inserting, and inserts with insert_deduplication_token =
-- topic:partition:first:last, so the re-insert of an interrupted batch after a restart is dropped by block
-- deduplication (hence non_replicated_deduplication_window on every table here). The same insert carries
-- deduplicate_blocks_in_dependent_materialized_views = 1, so each rollup table deduplicates the block its view
-- derived from a re-inserted one; measured with it off, a retried batch is dropped by usage_10s but summed into
-- the rollups a second time. With every delta inserted once, usage_1m / 1h / 1d are exact sums of usage_10s.
--
-- The columns hold every metric of the simulator's ground truth (dev/simulator/truth.py): llm requests,
-- errors, errors_by_type (err_<type>), tokens, latency; task facts (tasks = finished + failed attempts,
-- task_failures, task_retries, phase sums, task_duration_ms_sum = task_total_ms_sum); weight / checkpoint loads;
-- credits per family (wkf_cpu_seconds = wkf_cpu_s, ...); audit counts (dims beyond user_id are ''). latency_hist is
-- a mergeable log-bucket sketch (bucket index -> count; pipeline/sketch.py owns the bucket function), so a
-- quantile over any span is computed after sumMap-merging the buckets of its rows.

CREATE TABLE IF NOT EXISTS {{database}}.usage_10s
(
    window_start          DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant_id             LowCardinality(String),
    department_id         LowCardinality(String),
    project_id            LowCardinality(String),
    user_id               LowCardinality(String),
    model                 LowCardinality(String),
    model_version         LowCardinality(String),
    checkpoint_id         LowCardinality(String),
    checkpoint_version    LowCardinality(String),
    requests              SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors                SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)) COMMENT 'requests with status != ok',
    errors_by_type        SimpleAggregateFunction(sumMap, Map(String, UInt64)) CODEC(ZSTD(1)) COMMENT 'error_type -> requests',
    tokens_in             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    tokens_out            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    latency_ms_sum        SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    latency_hist          SimpleAggregateFunction(sumMap, Map(UInt16, UInt64)) CODEC(ZSTD(1)) COMMENT 'log-bucket sketch: bucket -> requests',
    tasks                 SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)) COMMENT 'ended attempts: finished + failed',
    task_failures         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_retries          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)) COMMENT 'ended attempts with attempt > 1',
    task_queue_ms_sum     SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_load_ms_sum      SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_init_ms_sum      SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_inference_ms_sum SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_duration_ms_sum  SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)) COMMENT 'queued to end',
    loads                 SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)) COMMENT 'finished weight / checkpoint loads',
    load_cache_hits       SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_bytes            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_ms_sum           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    cpu_seconds           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)) COMMENT 'of enriched task facts (Prometheus)',
    gpu_seconds           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)) COMMENT 'of enriched task facts (Prometheus)',
    wkf_cpu_seconds       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)) COMMENT 'units x seconds',
    wkf_gpu_seconds       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)) COMMENT 'units x seconds',
    kuber_cpu_seconds     SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)) COMMENT 'units x seconds',
    kuber_gpu_seconds     SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)) COMMENT 'units x seconds',
    wkf_credits           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_credits         SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    credits               SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)) COMMENT 'wkf_credits + kuber_credits',
    audit_events          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    access_denied         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    transfers             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    transfer_bytes        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    late_events           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)) COMMENT 'events past the allowed lateness (kept in late_events)'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

-- usage_1m: usage_10s summed per 1m; read with sum() / sumMap() and GROUP BY, like usage_10s.
CREATE TABLE IF NOT EXISTS {{database}}.usage_1m
(
    window_start          DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant_id             LowCardinality(String),
    department_id         LowCardinality(String),
    project_id            LowCardinality(String),
    user_id               LowCardinality(String),
    model                 LowCardinality(String),
    model_version         LowCardinality(String),
    checkpoint_id         LowCardinality(String),
    checkpoint_version    LowCardinality(String),
    requests              SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors                SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors_by_type        SimpleAggregateFunction(sumMap, Map(String, UInt64)) CODEC(ZSTD(1)),
    tokens_in             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    tokens_out            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    latency_ms_sum        SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    latency_hist          SimpleAggregateFunction(sumMap, Map(UInt16, UInt64)) CODEC(ZSTD(1)),
    tasks                 SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_failures         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_retries          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_queue_ms_sum     SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_load_ms_sum      SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_init_ms_sum      SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_inference_ms_sum SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_duration_ms_sum  SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    loads                 SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_cache_hits       SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_bytes            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_ms_sum           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    cpu_seconds           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    gpu_seconds           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_cpu_seconds       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_gpu_seconds       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_cpu_seconds     SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_gpu_seconds     SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_credits           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_credits         SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    credits               SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    audit_events          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    access_denied         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    transfers             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    transfer_bytes        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    late_events           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1m_mv TO {{database}}.usage_1m AS
SELECT
    toStartOfMinute(window_start) AS window_start,
    tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(tokens_in) AS tokens_in,
    sum(tokens_out) AS tokens_out,
    sum(latency_ms_sum) AS latency_ms_sum,
    sumMap(latency_hist) AS latency_hist,
    sum(tasks) AS tasks,
    sum(task_failures) AS task_failures,
    sum(task_retries) AS task_retries,
    sum(task_queue_ms_sum) AS task_queue_ms_sum,
    sum(task_load_ms_sum) AS task_load_ms_sum,
    sum(task_init_ms_sum) AS task_init_ms_sum,
    sum(task_inference_ms_sum) AS task_inference_ms_sum,
    sum(task_duration_ms_sum) AS task_duration_ms_sum,
    sum(loads) AS loads,
    sum(load_cache_hits) AS load_cache_hits,
    sum(load_bytes) AS load_bytes,
    sum(load_ms_sum) AS load_ms_sum,
    sum(cpu_seconds) AS cpu_seconds,
    sum(gpu_seconds) AS gpu_seconds,
    sum(wkf_cpu_seconds) AS wkf_cpu_seconds,
    sum(wkf_gpu_seconds) AS wkf_gpu_seconds,
    sum(kuber_cpu_seconds) AS kuber_cpu_seconds,
    sum(kuber_gpu_seconds) AS kuber_gpu_seconds,
    sum(wkf_credits) AS wkf_credits,
    sum(kuber_credits) AS kuber_credits,
    sum(credits) AS credits,
    sum(audit_events) AS audit_events,
    sum(access_denied) AS access_denied,
    sum(transfers) AS transfers,
    sum(transfer_bytes) AS transfer_bytes,
    sum(late_events) AS late_events
FROM {{database}}.usage_10s
GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version;

-- usage_1h: usage_10s summed per 1h; read with sum() / sumMap() and GROUP BY, like usage_10s.
CREATE TABLE IF NOT EXISTS {{database}}.usage_1h
(
    window_start          DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant_id             LowCardinality(String),
    department_id         LowCardinality(String),
    project_id            LowCardinality(String),
    user_id               LowCardinality(String),
    model                 LowCardinality(String),
    model_version         LowCardinality(String),
    checkpoint_id         LowCardinality(String),
    checkpoint_version    LowCardinality(String),
    requests              SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors                SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors_by_type        SimpleAggregateFunction(sumMap, Map(String, UInt64)) CODEC(ZSTD(1)),
    tokens_in             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    tokens_out            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    latency_ms_sum        SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    latency_hist          SimpleAggregateFunction(sumMap, Map(UInt16, UInt64)) CODEC(ZSTD(1)),
    tasks                 SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_failures         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_retries          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_queue_ms_sum     SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_load_ms_sum      SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_init_ms_sum      SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_inference_ms_sum SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_duration_ms_sum  SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    loads                 SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_cache_hits       SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_bytes            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_ms_sum           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    cpu_seconds           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    gpu_seconds           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_cpu_seconds       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_gpu_seconds       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_cpu_seconds     SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_gpu_seconds     SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_credits           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_credits         SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    credits               SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    audit_events          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    access_denied         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    transfers             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    transfer_bytes        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    late_events           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1h_mv TO {{database}}.usage_1h AS
SELECT
    toStartOfHour(window_start) AS window_start,
    tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(tokens_in) AS tokens_in,
    sum(tokens_out) AS tokens_out,
    sum(latency_ms_sum) AS latency_ms_sum,
    sumMap(latency_hist) AS latency_hist,
    sum(tasks) AS tasks,
    sum(task_failures) AS task_failures,
    sum(task_retries) AS task_retries,
    sum(task_queue_ms_sum) AS task_queue_ms_sum,
    sum(task_load_ms_sum) AS task_load_ms_sum,
    sum(task_init_ms_sum) AS task_init_ms_sum,
    sum(task_inference_ms_sum) AS task_inference_ms_sum,
    sum(task_duration_ms_sum) AS task_duration_ms_sum,
    sum(loads) AS loads,
    sum(load_cache_hits) AS load_cache_hits,
    sum(load_bytes) AS load_bytes,
    sum(load_ms_sum) AS load_ms_sum,
    sum(cpu_seconds) AS cpu_seconds,
    sum(gpu_seconds) AS gpu_seconds,
    sum(wkf_cpu_seconds) AS wkf_cpu_seconds,
    sum(wkf_gpu_seconds) AS wkf_gpu_seconds,
    sum(kuber_cpu_seconds) AS kuber_cpu_seconds,
    sum(kuber_gpu_seconds) AS kuber_gpu_seconds,
    sum(wkf_credits) AS wkf_credits,
    sum(kuber_credits) AS kuber_credits,
    sum(credits) AS credits,
    sum(audit_events) AS audit_events,
    sum(access_denied) AS access_denied,
    sum(transfers) AS transfers,
    sum(transfer_bytes) AS transfer_bytes,
    sum(late_events) AS late_events
FROM {{database}}.usage_10s
GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version;

-- usage_1d: usage_10s summed per 1d; read with sum() / sumMap() and GROUP BY, like usage_10s.
CREATE TABLE IF NOT EXISTS {{database}}.usage_1d
(
    window_start          DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant_id             LowCardinality(String),
    department_id         LowCardinality(String),
    project_id            LowCardinality(String),
    user_id               LowCardinality(String),
    model                 LowCardinality(String),
    model_version         LowCardinality(String),
    checkpoint_id         LowCardinality(String),
    checkpoint_version    LowCardinality(String),
    requests              SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors                SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors_by_type        SimpleAggregateFunction(sumMap, Map(String, UInt64)) CODEC(ZSTD(1)),
    tokens_in             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    tokens_out            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    latency_ms_sum        SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    latency_hist          SimpleAggregateFunction(sumMap, Map(UInt16, UInt64)) CODEC(ZSTD(1)),
    tasks                 SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_failures         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_retries          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_queue_ms_sum     SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_load_ms_sum      SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_init_ms_sum      SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_inference_ms_sum SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    task_duration_ms_sum  SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    loads                 SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_cache_hits       SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_bytes            SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    load_ms_sum           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    cpu_seconds           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    gpu_seconds           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_cpu_seconds       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_gpu_seconds       SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_cpu_seconds     SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_gpu_seconds     SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    wkf_credits           SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    kuber_credits         SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    credits               SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    audit_events          SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    access_denied         SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    transfers             SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    transfer_bytes        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    late_events           SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1d_mv TO {{database}}.usage_1d AS
SELECT
    toStartOfDay(window_start) AS window_start,
    tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(tokens_in) AS tokens_in,
    sum(tokens_out) AS tokens_out,
    sum(latency_ms_sum) AS latency_ms_sum,
    sumMap(latency_hist) AS latency_hist,
    sum(tasks) AS tasks,
    sum(task_failures) AS task_failures,
    sum(task_retries) AS task_retries,
    sum(task_queue_ms_sum) AS task_queue_ms_sum,
    sum(task_load_ms_sum) AS task_load_ms_sum,
    sum(task_init_ms_sum) AS task_init_ms_sum,
    sum(task_inference_ms_sum) AS task_inference_ms_sum,
    sum(task_duration_ms_sum) AS task_duration_ms_sum,
    sum(loads) AS loads,
    sum(load_cache_hits) AS load_cache_hits,
    sum(load_bytes) AS load_bytes,
    sum(load_ms_sum) AS load_ms_sum,
    sum(cpu_seconds) AS cpu_seconds,
    sum(gpu_seconds) AS gpu_seconds,
    sum(wkf_cpu_seconds) AS wkf_cpu_seconds,
    sum(wkf_gpu_seconds) AS wkf_gpu_seconds,
    sum(kuber_cpu_seconds) AS kuber_cpu_seconds,
    sum(kuber_gpu_seconds) AS kuber_gpu_seconds,
    sum(wkf_credits) AS wkf_credits,
    sum(kuber_credits) AS kuber_credits,
    sum(credits) AS credits,
    sum(audit_events) AS audit_events,
    sum(access_denied) AS access_denied,
    sum(transfers) AS transfers,
    sum(transfer_bytes) AS transfer_bytes,
    sum(late_events) AS late_events
FROM {{database}}.usage_10s
GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version;
