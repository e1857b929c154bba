-- VM costs held in tables (issue 16): cost_tasks_span and vm_activity_span (0013) still run window functions over
-- every attempt in the range when they are read (4-16 s over 30 days, past the timeout over a year at 1/20 of the
-- volume). task_costs and vm_costs_1h hold their rows, computed once per UTC day by `python -m telemetry.costs
-- refresh` as costs_1h is (a day is one partition, recomputed into a side table and swapped in with REPLACE
-- PARTITION), with the catalogue version they were priced with. The spans stay the one definition of the
-- computation: the refresher inserts what they return for [day, day + 1 day).
--
-- Which days: an attempt changes the share of the attempts that overlapped it on its node (those ending up to a
-- day after it), the coverage of the hours it spans, and which VM type the days around it see for the node (the
-- spans read facts from a day before to a day after a range). task_facts inserts note the days from two before
-- their end to one after it (reason 'tasks', which re-prices the VM tables only); a catalogue version notes the
-- days with runs it covers too. Exact, as the spans are, for attempts shorter than a day.
--
-- task_costs_span(lo, hi) and vm_costs_span(lo, hi) read the tables with the spans' columns: the dashboards and the
-- API read those instead of the spans.

CREATE TABLE IF NOT EXISTS {{database}}.task_costs
(
    task_id            String,
    attempt            UInt16,
    status             LowCardinality(String) COMMENT 'finished | failed | orphaned',
    tenant_id          LowCardinality(String),
    department_id      LowCardinality(String),
    project_id         LowCardinality(String),
    user_id            LowCardinality(String),
    base_model         LowCardinality(String),
    model_version      LowCardinality(String),
    checkpoint_id      LowCardinality(String),
    checkpoint_version LowCardinality(String),
    vm_type            LowCardinality(String) COMMENT 'the attempt''s VM type, else the newest its node''s facts around it carry',
    node_id            LowCardinality(String),
    host_name          LowCardinality(String),
    started_at         Nullable(DateTime64(3, 'UTC')),
    finished_at        DateTime64(3, 'UTC'),
    duration_s         Float64 COMMENT 'finished_at - started_at (0 when it never started)',
    checkpoint_load_s  Float64,
    gpu_seconds        Float64,
    cpu_seconds        Float64,
    vm_cost            Decimal(38, 12) COMMENT 'the attempt''s share of its VM''s hours: each moment''s price split between the attempts running then',
    gpu_cost           Decimal(38, 12) COMMENT 'gpu_seconds / 3600 x gpu_hour, where the VM is unpriced',
    cpu_cost           Decimal(38, 12) COMMENT 'cpu_seconds / 3600 x cpu_hour, where the VM is unpriced',
    total_cost         Decimal(38, 12) COMMENT 'vm_cost + gpu_cost + cpu_cost',
    cost_basis         LowCardinality(String) COMMENT 'vm | resources | unpriced',
    unpriced           Array(String) COMMENT 'kind:item without a price in force, e.g. vm_hour:NV6',
    catalogue_version  UInt32 COMMENT 'highest price_catalogue version loaded when the row was priced',
    priced_at          DateTime64(3, 'UTC') COMMENT 'when telemetry.costs computed the row'
)
ENGINE = MergeTree
PARTITION BY toDate(finished_at)
ORDER BY (tenant_id, department_id, project_id, finished_at, task_id, attempt)
TTL toDateTime(finished_at) + INTERVAL {{retention_months}} MONTH
COMMENT 'cost_tasks_span per attempt, priced once per day of finished_at by telemetry.costs';

CREATE TABLE IF NOT EXISTS {{database}}.vm_costs_1h
(
    hour             DateTime('UTC') COMMENT 'start of the hour',
    node_id          LowCardinality(String),
    host_name        LowCardinality(String),
    vm_type          LowCardinality(String),
    active_seconds   Float64 COMMENT 'seconds of the hour with at least one attempt running',
    observed_seconds Float64 COMMENT 'seconds of the hour the node was seen alive',
    idle_seconds     Float64 COMMENT 'observed_seconds - active_seconds',
    vm_hour_price    Nullable(Decimal(38, 12)) COMMENT 'vm_hour in force (NULL: unpriced)',
    active_cost      Decimal(38, 12),
    idle_cost        Decimal(38, 12),
    unpriced         Array(String),
    catalogue_version UInt32 COMMENT 'highest price_catalogue version loaded when the row was priced',
    priced_at        DateTime64(3, 'UTC') COMMENT 'when telemetry.costs computed the row'
)
ENGINE = MergeTree
PARTITION BY toDate(hour)
ORDER BY (node_id, hour)
TTL hour + INTERVAL {{retention_months}} MONTH
COMMENT 'vm_activity_span per node and hour, computed once per day by telemetry.costs';

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.cost_dirty_days_tasks_mv TO {{database}}.cost_dirty_days AS
SELECT DISTINCT arrayJoin([d - 2, d - 1, d, d + 1]) AS day, 'tasks' AS reason
FROM (SELECT toDate(finished_at) AS d FROM {{database}}.task_facts);

ALTER TABLE {{database}}.cost_refreshes ADD COLUMN IF NOT EXISTS vm_days Array(Date) COMMENT 'days of task_costs / vm_costs_1h recomputed';
ALTER TABLE {{database}}.cost_refreshes ADD COLUMN IF NOT EXISTS vm_rows UInt64 COMMENT 'task_costs rows written';

-- The days with runs so far are all to be priced.
INSERT INTO {{database}}.cost_dirty_days (day, reason)
SELECT DISTINCT arrayJoin([d - 1, d]), 'tasks' FROM (SELECT toDate(finished_at) AS d FROM {{database}}.task_facts);

CREATE OR REPLACE VIEW {{database}}.task_costs_span AS
SELECT * EXCEPT (catalogue_version, priced_at) FROM {{database}}.task_costs
WHERE finished_at >= {lo:DateTime('UTC')} AND finished_at < {hi:DateTime('UTC')};

CREATE OR REPLACE VIEW {{database}}.vm_costs_span AS
SELECT * EXCEPT (catalogue_version, priced_at) FROM {{database}}.vm_costs_1h
WHERE hour >= {lo:DateTime('UTC')} AND hour < {hi:DateTime('UTC')};
