-- Task sums per day (issue 16): the Pipeline TD's count and phase panels read task_facts FINAL, which reads every
-- part of every month in the range (3-7 s over a year at 1/20 of the volume). task_facts_1d holds, per UTC day of
-- finished_at and tenant / department / project / user / model x checkpoint / status, the attempts, the retries
-- and each phase's sum and count of known values (a mean is sum / count, as avg() skips NULLs). It is filled by
-- `python -m telemetry.costs refresh` with the VM cost tables, for the days task_facts inserts note (0014).
--
-- task_rows_span(lo, hi): the attempts that ended in [lo, hi), each at its highest version (what FINAL keeps: the
-- versions of an attempt share finished_at, the partition key, so the range holds them all), as summable rows.
-- task_span(lo, hi): the same sums over [lo, hi), whole UTC days from task_facts_1d and the partial days at the
-- edges from task_rows_span. Read with sum() and GROUP BY.

CREATE OR REPLACE VIEW {{database}}.task_rows_span AS
SELECT toDate(finished_at) AS day, tenant_id, department_id, project_id, user_id, base_model, model_version,
       checkpoint_id, checkpoint_version, status,
       toUInt64(1) AS attempt_count, toUInt64(attempt > 1) AS retry_count,
       toUInt64(ifNull(queue_ms, 0)) AS queue_ms_sum, toUInt64(queue_ms IS NOT NULL) AS queue_ms_count,
       toUInt64(ifNull(checkpoint_load_ms, 0)) AS checkpoint_load_ms_sum,
       toUInt64(checkpoint_load_ms IS NOT NULL) AS checkpoint_load_ms_count,
       toUInt64(ifNull(init_ms, 0)) AS init_ms_sum, toUInt64(init_ms IS NOT NULL) AS init_ms_count,
       toUInt64(ifNull(inference_ms, 0)) AS inference_ms_sum, toUInt64(inference_ms IS NOT NULL) AS inference_ms_count,
       toUInt64(ifNull(total_ms, 0)) AS total_ms_sum, toUInt64(total_ms IS NOT NULL) AS total_ms_count
FROM
(
    SELECT task_id, attempt, version, finished_at, tenant_id, department_id, project_id, user_id, base_model,
           model_version, checkpoint_id, checkpoint_version, status, queue_ms, checkpoint_load_ms, init_ms,
           inference_ms, total_ms
    FROM {{database}}.task_facts
    WHERE finished_at >= {lo:DateTime('UTC')} AND finished_at < {hi:DateTime('UTC')}
    ORDER BY task_id, attempt, version DESC
    LIMIT 1 BY task_id, attempt
);

CREATE TABLE IF NOT EXISTS {{database}}.task_facts_1d
(
    day                      Date COMMENT 'UTC day the attempts ended',
    tenant_id                LowCardinality(String),
    department_id            LowCardinality(String),
    project_id               LowCardinality(String),
    user_id                  LowCardinality(String),
    base_model               LowCardinality(String),
    model_version            LowCardinality(String),
    checkpoint_id            LowCardinality(String),
    checkpoint_version       LowCardinality(String),
    status                   LowCardinality(String) COMMENT 'finished | failed | orphaned',
    attempt_count            UInt64 COMMENT 'ended attempts',
    retry_count              UInt64 COMMENT 'of them, attempts after the first (attempt > 1)',
    queue_ms_sum             UInt64,
    queue_ms_count           UInt64 COMMENT 'attempts whose queue_ms is known',
    checkpoint_load_ms_sum   UInt64,
    checkpoint_load_ms_count UInt64,
    init_ms_sum              UInt64,
    init_ms_count            UInt64,
    inference_ms_sum         UInt64,
    inference_ms_count       UInt64,
    total_ms_sum             UInt64,
    total_ms_count           UInt64,
    refreshed_at             DateTime64(3, 'UTC') COMMENT 'when telemetry.costs computed the row'
)
ENGINE = MergeTree
PARTITION BY day
ORDER BY (tenant_id, department_id, project_id, base_model, checkpoint_id, user_id, day)
TTL day + INTERVAL {{retention_months}} MONTH
COMMENT 'task_rows_span summed per UTC day and key by telemetry.costs; read through task_span';

CREATE OR REPLACE VIEW {{database}}.task_span AS
WITH {lo:DateTime('UTC')} AS lo, {hi:DateTime('UTC')} AS hi, toStartOfDay(lo + 86399) AS d_lo,
     greatest(toStartOfDay(hi), d_lo) AS d_hi
SELECT * EXCEPT (refreshed_at) FROM {{database}}.task_facts_1d
WHERE day >= toDate(d_lo) AND day < toDate(d_hi)
UNION ALL
SELECT * FROM {{database}}.task_rows_span(lo = {lo:DateTime('UTC')}, hi = least(toStartOfDay({lo:DateTime('UTC')} + 86399), {hi:DateTime('UTC')}))
UNION ALL
SELECT * FROM {{database}}.task_rows_span(lo = greatest(toStartOfDay({hi:DateTime('UTC')}), toStartOfDay({lo:DateTime('UTC')} + 86399)), hi = {hi:DateTime('UTC')});

-- The days with runs so far are all to be summed (0014 noted them before this table existed).
INSERT INTO {{database}}.cost_dirty_days (day, reason)
SELECT DISTINCT toDate(finished_at), 'tasks' FROM {{database}}.task_facts;
