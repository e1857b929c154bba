-- Priced cost tables (issue 16): chargeback read from tables, not computed over history at read time.
--
-- cost_usage_1h (0006, 0009) prices usage_1h when it is read: two GROUP BYs where every key-hour is its own group and
-- seven range joins to price_in_force, about 0.5M key-hours/s here, so a month of a large tenant took minutes. costs_1h
-- and costs_1d hold the same rows, priced once: `python -m telemetry.costs refresh` recomputes whole UTC days, each
-- into a side table swapped in with ALTER TABLE ... REPLACE PARTITION (a day is one partition of both tables), so a
-- reader sees a day's old rows or its new ones, never a mix, and a recomputed day is exact, not a sum of deltas.
-- Which days: cost_dirty_days gets a row per day that usage_10s inserts touch (materialized view below), and one per
-- day with usage that a newly loaded catalogue version's periods cover (telemetry.prices load, which then refreshes
-- those days itself); the refresher takes the rows noted since its last run (cost_refreshes), with a few minutes of
-- overlap for inserts still in flight. Every row records the catalogue version it was priced with: re-pricing still
-- needs no reprocessing, only the affected days computed again.
--
-- cost_usage_span(lo, hi) is the one definition of the pricing (prices from price_periods, below): cost_usage_1h restricted to [lo, hi) before it
-- groups or joins (the predicate does not reach usage_1h through the view's GROUP BYs otherwise). cost_usage_1h is
-- now that over all time, unchanged in its columns and values. cost_span(lo, hi, step) reads costs like usage_span
-- reads usage: whole days from costs_1d, the hours at the edges from costs_1h (hours only when step is not a
-- multiple of a day), with the window's start as `hour` too, the name cost_usage_1h readers use. Costs are the same
-- Decimal(38, 12) as the views': a day's row is the exact sum of its hours.

-- price_periods: price_in_force held as a table. The view resolves the catalogue's versions with window functions,
-- and the pricing views join it up to seven times per query (0.3 s each here, whatever the range); telemetry.costs
-- rebuilds the table at each refresh (telemetry.prices load runs one), swapping it in whole with EXCHANGE TABLES.
CREATE TABLE IF NOT EXISTS {{database}}.price_periods
(
    kind       LowCardinality(String),
    item       LowCardinality(String),
    valid_from DateTime64(3, 'UTC'),
    valid_to   DateTime64(3, 'UTC'),
    unit_price Decimal(38, 12),
    currency   LowCardinality(String),
    version    UInt32
)
ENGINE = MergeTree
ORDER BY (kind, item, valid_from)
COMMENT 'price_in_force as of the last telemetry.costs refresh or telemetry.prices load';

INSERT INTO {{database}}.price_periods SELECT * FROM {{database}}.price_in_force;

CREATE OR REPLACE VIEW {{database}}.cost_usage_span AS
WITH
    per_artifact AS
    (
        SELECT window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id,
               sum(requests) AS requests, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
               greatest(sum(wkf_gpu_seconds), sum(kuber_gpu_seconds)) AS gpu_seconds,
               greatest(sum(wkf_cpu_seconds), sum(kuber_cpu_seconds)) AS cpu_seconds,
               sum(loads) AS artifact_loads, sum(load_cache_hits) AS artifact_hits, sum(load_bytes) AS artifact_bytes,
               sum(wkf_credits) AS artifact_wkf_credits, sum(kuber_credits) AS artifact_kuber_credits
        FROM {{database}}.usage_1h
        WHERE window_start >= {lo:DateTime('UTC')} AND window_start < {hi:DateTime('UTC')}
        GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id,
                 checkpoint_version
    ),
    usage AS
    (
        SELECT toUnixTimestamp(window_start) * 1000 AS hour_ms, tenant_id, department_id, project_id, user_id, model,
               model_version, checkpoint_id, '*' AS any_item,
               sum(requests) AS requests, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
               sum(gpu_seconds) AS gpu_seconds, sum(cpu_seconds) AS cpu_seconds, sum(artifact_loads) AS loads,
               sum(artifact_bytes) AS load_bytes,
               sum(intDivOrZero(artifact_bytes * (artifact_loads - artifact_hits), artifact_loads)) AS load_transfer_bytes,
               sum(artifact_wkf_credits) AS wkf_credits, sum(artifact_kuber_credits) AS kuber_credits
        FROM per_artifact
        GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id
        HAVING tokens_in + tokens_out > 0 OR gpu_seconds > 0 OR cpu_seconds > 0 OR load_bytes > 0 OR wkf_credits > 0
            OR kuber_credits > 0
    ),
    prices AS
    (
        SELECT kind, item, toUnixTimestamp64Milli(valid_from) AS from_ms, toUnixTimestamp64Milli(valid_to) AS to_ms,
               unit_price
        FROM {{database}}.price_periods
        WHERE valid_to > {lo:DateTime('UTC')} AND valid_from < {hi:DateTime('UTC')}
    ),
    priced AS
    (
        SELECT u.*,
               multiIf(tin.item != '', tin.unit_price, tin_any.item != '', tin_any.unit_price, NULL) AS tokens_in_price,
               multiIf(tout.item != '', tout.unit_price, tout_any.item != '', tout_any.unit_price, NULL) AS tokens_out_price,
               if(gpu.item != '', gpu.unit_price, NULL) AS gpu_price,
               if(cpu.item != '', cpu.unit_price, NULL) AS cpu_price,
               if(transfer.item != '', transfer.unit_price, NULL) AS transfer_price
        FROM usage AS u
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'tokens_in_1k') AS tin
            ON tin.item = u.model AND tin.from_ms <= u.hour_ms AND u.hour_ms < tin.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'tokens_in_1k') AS tin_any
            ON tin_any.item = u.any_item AND tin_any.from_ms <= u.hour_ms AND u.hour_ms < tin_any.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'tokens_out_1k') AS tout
            ON tout.item = u.model AND tout.from_ms <= u.hour_ms AND u.hour_ms < tout.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'tokens_out_1k') AS tout_any
            ON tout_any.item = u.any_item AND tout_any.from_ms <= u.hour_ms AND u.hour_ms < tout_any.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'gpu_hour') AS gpu
            ON gpu.item = u.any_item AND gpu.from_ms <= u.hour_ms AND u.hour_ms < gpu.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'cpu_hour') AS cpu
            ON cpu.item = u.any_item AND cpu.from_ms <= u.hour_ms AND u.hour_ms < cpu.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'transfer_gb') AS transfer
            ON transfer.item = u.any_item AND transfer.from_ms <= u.hour_ms AND u.hour_ms < transfer.to_ms
    )
SELECT
    toDateTime(intDiv(hour_ms, 1000), 'UTC') AS hour,
    tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id,
    requests, tokens_in, tokens_out, gpu_seconds, cpu_seconds, loads, load_bytes, load_transfer_bytes,
    CAST((toDecimal256(tokens_in, 0) * ifNull(tokens_in_price, 0) + toDecimal256(tokens_out, 0) * ifNull(tokens_out_price, 0))
         / 1000 AS Decimal(38, 12)) AS token_cost,
    CAST(toDecimal256(gpu_seconds, 6) * ifNull(gpu_price, 0) / 3600 AS Decimal(38, 12)) AS gpu_cost,
    CAST(toDecimal256(cpu_seconds, 6) * ifNull(cpu_price, 0) / 3600 AS Decimal(38, 12)) AS cpu_cost,
    CAST(toDecimal256(load_transfer_bytes, 0) * ifNull(transfer_price, 0) / 1000000000 AS Decimal(38, 12)) AS load_cost,
    token_cost + gpu_cost + cpu_cost + load_cost AS total_cost,
    wkf_credits, kuber_credits,
    arrayFilter(x -> x != '', [
        if(tokens_in > 0 AND tokens_in_price IS NULL, concat('tokens_in_1k:', model), ''),
        if(tokens_out > 0 AND tokens_out_price IS NULL, concat('tokens_out_1k:', model), ''),
        if(gpu_seconds > 0 AND gpu_price IS NULL, 'gpu_hour:*', ''),
        if(cpu_seconds > 0 AND cpu_price IS NULL, 'cpu_hour:*', ''),
        if(load_transfer_bytes > 0 AND transfer_price IS NULL, 'transfer_gb:*', '')
    ]) AS unpriced
FROM priced;

CREATE OR REPLACE VIEW {{database}}.cost_usage_1h
(
    hour                DateTime('UTC') COMMENT 'start of the hour',
    tenant_id           LowCardinality(String),
    department_id       LowCardinality(String),
    project_id          LowCardinality(String),
    user_id             LowCardinality(String),
    model               LowCardinality(String) COMMENT 'base model',
    model_version       LowCardinality(String),
    checkpoint_id       LowCardinality(String) COMMENT 'applied checkpoint; for weight loads the base weights',
    requests            UInt64 COMMENT 'LLM requests',
    tokens_in           UInt64,
    tokens_out          UInt64,
    gpu_seconds         Decimal(38, 6) COMMENT 'allocated GPU-seconds (credit families, the larger of Workflow and Kubernetes)',
    cpu_seconds         Decimal(38, 6) COMMENT 'allocated core-seconds (credit families, the larger of Workflow and Kubernetes)',
    loads               UInt64 COMMENT 'finished weight / checkpoint loads',
    load_bytes          UInt64 COMMENT 'bytes loaded, cache hits included',
    load_transfer_bytes UInt64 COMMENT 'bytes read from storage (cache misses): what load_cost prices',
    token_cost          Decimal(38, 12) COMMENT 'tokens_in / 1000 x tokens_in_1k + tokens_out / 1000 x tokens_out_1k',
    gpu_cost            Decimal(38, 12) COMMENT 'gpu_seconds / 3600 x gpu_hour',
    cpu_cost            Decimal(38, 12) COMMENT 'cpu_seconds / 3600 x cpu_hour',
    load_cost           Decimal(38, 12) COMMENT 'load_transfer_bytes / 1e9 x transfer_gb',
    total_cost          Decimal(38, 12) COMMENT 'token_cost + gpu_cost + cpu_cost + load_cost',
    wkf_credits         Decimal(38, 6) COMMENT 'credits the Workflow service charged for the row''s usage',
    kuber_credits       Decimal(38, 6) COMMENT 'credits Kubernetes charged for it: a second report of the same allocation, never to be added to wkf_credits',
    unpriced            Array(String) COMMENT 'kind:item of usage in this row without a price in force, e.g. tokens_in_1k:xumi-base-7b'
)
AS SELECT * FROM {{database}}.cost_usage_span(lo = '1970-01-01 00:00:00', hi = '2106-01-01 00:00:00')
COMMENT 'chargeback per hour x tenant / department / project / user / model / model_version / checkpoint: usage x the unit prices in force';

CREATE TABLE IF NOT EXISTS {{database}}.costs_1h
(
    window_start        DateTime('UTC') COMMENT 'start of the hour',
    tenant_id           LowCardinality(String),
    department_id       LowCardinality(String),
    project_id          LowCardinality(String),
    user_id             LowCardinality(String),
    model               LowCardinality(String) COMMENT 'base model',
    model_version       LowCardinality(String),
    checkpoint_id       LowCardinality(String) COMMENT 'applied checkpoint; for weight loads the base weights',
    requests            UInt64 COMMENT 'LLM requests',
    tokens_in           UInt64,
    tokens_out          UInt64,
    gpu_seconds         Decimal(38, 6) COMMENT 'allocated GPU-seconds (credit families, the larger of Workflow and Kubernetes)',
    cpu_seconds         Decimal(38, 6) COMMENT 'allocated core-seconds (credit families, the larger of Workflow and Kubernetes)',
    loads               UInt64 COMMENT 'finished weight / checkpoint loads',
    load_bytes          UInt64 COMMENT 'bytes loaded, cache hits included',
    load_transfer_bytes UInt64 COMMENT 'bytes read from storage (cache misses): what load_cost prices',
    token_cost          Decimal(38, 12) COMMENT 'tokens_in / 1000 x tokens_in_1k + tokens_out / 1000 x tokens_out_1k',
    gpu_cost            Decimal(38, 12) COMMENT 'gpu_seconds / 3600 x gpu_hour',
    cpu_cost            Decimal(38, 12) COMMENT 'cpu_seconds / 3600 x cpu_hour',
    load_cost           Decimal(38, 12) COMMENT 'load_transfer_bytes / 1e9 x transfer_gb',
    total_cost          Decimal(38, 12) COMMENT 'token_cost + gpu_cost + cpu_cost + load_cost',
    wkf_credits         Decimal(38, 6) COMMENT 'credits the Workflow service charged for the row''s usage',
    kuber_credits       Decimal(38, 6) COMMENT 'credits Kubernetes charged for it: a second report of the same allocation, never to be added to wkf_credits',
    unpriced            Array(String) COMMENT 'kind:item of usage in this row without a price in force, e.g. tokens_in_1k:xumi-base-7b',
    catalogue_version   UInt32 COMMENT 'highest price_catalogue version loaded when the row was priced: the catalogue it used is every version up to it',
    priced_at           DateTime64(3, 'UTC') COMMENT 'when telemetry.costs computed the row'
)
ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id)
TTL window_start + INTERVAL {{retention_months}} MONTH
COMMENT 'cost_usage_1h priced once per day by telemetry.costs; read with sum() and GROUP BY';

CREATE TABLE IF NOT EXISTS {{database}}.costs_1d AS {{database}}.costs_1h
ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id)
TTL window_start + INTERVAL {{retention_months}} MONTH
COMMENT 'costs_1h summed per UTC day and key; read with sum() and GROUP BY';
ALTER TABLE {{database}}.costs_1d COMMENT COLUMN window_start 'start of the UTC day';

CREATE TABLE IF NOT EXISTS {{database}}.cost_dirty_days
(
    day      Date COMMENT 'UTC day whose costs must be computed again',
    reason   LowCardinality(String) COMMENT 'usage (rows inserted) or catalogue vN (a version covering the day loaded)',
    noted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY noted_at
TTL toDateTime(noted_at) + INTERVAL 30 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.cost_dirty_days_mv TO {{database}}.cost_dirty_days AS
SELECT DISTINCT toDate(window_start) AS day, 'usage' AS reason
FROM {{database}}.usage_10s;

CREATE TABLE IF NOT EXISTS {{database}}.cost_refreshes
(
    ran_at            DateTime64(3, 'UTC') DEFAULT now64(3),
    noted_until       DateTime64(3, 'UTC') COMMENT 'newest cost_dirty_days.noted_at this run took',
    days              Array(Date) COMMENT 'days recomputed',
    rows              UInt64 COMMENT 'costs_1h rows written',
    catalogue_version UInt32
)
ENGINE = MergeTree
ORDER BY ran_at;

-- The days with usage so far are all to be priced.
INSERT INTO {{database}}.cost_dirty_days (day, reason)
SELECT DISTINCT toDate(window_start), 'usage' FROM {{database}}.usage_1d;

CREATE OR REPLACE VIEW {{database}}.cost_span AS
WITH {lo:DateTime('UTC')} AS lo, {hi:DateTime('UTC')} AS hi, {step:UInt32} AS step,
     if(step % 86400 = 0, toStartOfDay(lo + 86399), hi) AS d_lo, greatest(if(step % 86400 = 0, toStartOfDay(hi), hi), d_lo) AS d_hi
SELECT *, window_start AS hour FROM {{database}}.costs_1d
WHERE window_start >= d_lo AND window_start < d_hi
UNION ALL
WITH {lo:DateTime('UTC')} AS lo, {hi:DateTime('UTC')} AS hi, {step:UInt32} AS step,
     if(step % 86400 = 0, toStartOfDay(lo + 86399), hi) AS d_lo, greatest(if(step % 86400 = 0, toStartOfDay(hi), hi), d_lo) AS d_hi,
     toStartOfHour(lo + 3599) AS h_lo, greatest(toStartOfHour(hi), h_lo) AS h_hi
SELECT *, window_start AS hour FROM {{database}}.costs_1h
WHERE window_start >= h_lo AND window_start < h_hi AND NOT (window_start >= d_lo AND window_start < d_hi);
