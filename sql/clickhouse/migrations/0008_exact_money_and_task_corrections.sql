-- Exact money and signed task corrections (issue 14).
--
-- Credits and allocated unit-seconds (units x seconds of the credit families) become Decimal(38, 6): the job reads
-- them from each event's JSON text and sums them as decimals (pipeline/money.py), so usage_10s, its rollups, the
-- cost views and the quota topic agree to the micro-unit; a sum is exact up to 10^32 - 10^-6. Float64 sums drifted
-- by cents around 10^14 and could not hold cents at all beyond 2^53 / 100. Existing rows convert with ClickHouse's
-- CAST (exact for every value the simulator wrote; a Float64 that held no exact decimal keeps six decimals of it).
--
-- Task sums become Int64: a fact corrected after its usage was written (a start delivered after the end, a
-- Workflow-only task whose XUMI events came later) is a delta of its own, negative where a phase got shorter or
-- the attempt moved to another window or key (pipeline/facts.py).
--
-- The rollups' materialized views get their own SELECT again, so the types they declare follow the new columns
-- (a view keeps the types of its creation: Float64 sums would still pass through a double).
--
-- task_facts: late = 1 marks an attempt whose end arrived past the allowed lateness: the fact shows how it ended,
-- usage_10s counts it in no window (the end event is in late_events). credits is dropped: the join never filled it
-- (per-attempt charges are in usage_10s, by the credit events' model labels).

ALTER TABLE {{database}}.usage_10s
    MODIFY COLUMN tasks SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_failures SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_retries SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_queue_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_load_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_init_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_inference_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_duration_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN wkf_cpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN wkf_gpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_cpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_gpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN wkf_credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1));

ALTER TABLE {{database}}.usage_1m
    MODIFY COLUMN tasks SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_failures SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_retries SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_queue_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_load_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_init_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_inference_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_duration_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN wkf_cpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN wkf_gpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_cpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_gpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN wkf_credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1));

ALTER TABLE {{database}}.usage_1h
    MODIFY COLUMN tasks SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_failures SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_retries SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_queue_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_load_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_init_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_inference_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_duration_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN wkf_cpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN wkf_gpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_cpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_gpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN wkf_credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1));

ALTER TABLE {{database}}.usage_1d
    MODIFY COLUMN tasks SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_failures SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_retries SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_queue_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_load_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_init_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_inference_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN task_duration_ms_sum SimpleAggregateFunction(sum, Int64) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN wkf_cpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN wkf_gpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_cpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_gpu_seconds SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN wkf_credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN kuber_credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1)),
    MODIFY COLUMN credits SimpleAggregateFunction(sum, Decimal(38, 6)) CODEC(ZSTD(1));

ALTER TABLE {{database}}.usage_1m_mv MODIFY QUERY
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

ALTER TABLE {{database}}.usage_1h_mv MODIFY QUERY
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

ALTER TABLE {{database}}.usage_1d_mv MODIFY QUERY
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

ALTER TABLE {{database}}.task_facts
    ADD COLUMN IF NOT EXISTS late UInt8 DEFAULT 0 COMMENT '1: its end arrived past the allowed lateness; counted in no usage window (see late_events)' AFTER version,
    DROP COLUMN IF EXISTS credits;
