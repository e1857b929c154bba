-- Layouts for the questions the roles ask over a year of history (issue 16).
--
-- FINAL and partition pruning. ClickHouse 26.3+ (the dev engine) skips partition pruning under FINAL on a table whose
-- partition-key columns are not in its sorting key (setting defer_partition_pruning_after_final); 25.8 (production's
-- image) prunes. task_facts (partition toYYYYMM(finished_at), sort key task_id, attempt) and dlq_events (toYYYYMM(ts);
-- topic, partition, offset) read every part under FINAL on 26.x whatever the time range. Both now carry their partition
-- expression in the sort key, so pruning no longer depends on the version or on a setting, and FINAL merges per
-- partition (enable_automatic_decision_for_merging_across_partitions_for_final). What that changes for task_facts: two
-- revisions of one attempt whose finished_at falls in different UTC months (an orphan whose real end arrives after the
-- month turned) are two rows under FINAL, as they already were on 25.8 and as the background merge always kept them.
-- dlq_events: ts is the source record's Kafka timestamp, fixed by (topic, partition, offset), so its day is in the key
-- too and a range prunes to the day.
--
-- usage_1m / usage_1h: window_start was the last of nine key columns, so a range pruned only by month. The time bucket
-- now leads the key (hour for usage_1m, day for usage_1h), then the role filters; window_start stays last, so the
-- rows that aggregate together are the same. usage_10s (written once, read by the job's checks and short spans) and
-- usage_1d (a month is one partition, and small) keep theirs.
--
-- audit_log: sorted by (tenant_id, topic, ts), a department or project filter and a range within a month pruned nothing.
-- Now (day, tenant, department, project, topic, ts). asset_type is materialized from details (the storage-access panel
-- parsed the JSON of every row). audit_decisions_1h rolls access decisions up per hour.
--
-- Each table is rebuilt beside the old one, filled with INSERT ... SELECT, and swapped in with EXCHANGE TABLES, which
-- keeps the materialized views writing to the table of that name (checked on the dev engine). Rows inserted while this
-- file runs may miss the new table: apply it with the loader stopped (make migrate before make stack-up services).
-- Each step can run again after a failure: the side table is dropped first.

DROP TABLE IF EXISTS {{database}}.task_facts_0011;
CREATE TABLE {{database}}.task_facts_0011 AS {{database}}.task_facts
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(finished_at)
ORDER BY (toYYYYMM(finished_at), task_id, attempt)
TTL toDateTime(finished_at) + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;
INSERT INTO {{database}}.task_facts_0011 SELECT * FROM {{database}}.task_facts;
EXCHANGE TABLES {{database}}.task_facts AND {{database}}.task_facts_0011;
DROP TABLE {{database}}.task_facts_0011;

DROP TABLE IF EXISTS {{database}}.dlq_events_0011;
CREATE TABLE {{database}}.dlq_events_0011 AS {{database}}.dlq_events
ENGINE = ReplacingMergeTree(rejected_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (toDate(ts), topic, kafka_partition, kafka_offset)
TTL toDateTime(ts) + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;
INSERT INTO {{database}}.dlq_events_0011 SELECT * FROM {{database}}.dlq_events;
EXCHANGE TABLES {{database}}.dlq_events AND {{database}}.dlq_events_0011;
DROP TABLE {{database}}.dlq_events_0011;

DROP TABLE IF EXISTS {{database}}.usage_1m_0011;
CREATE TABLE {{database}}.usage_1m_0011 AS {{database}}.usage_1m
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (toStartOfHour(window_start), tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id,
          checkpoint_version, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;
INSERT INTO {{database}}.usage_1m_0011 SELECT * FROM {{database}}.usage_1m;
EXCHANGE TABLES {{database}}.usage_1m AND {{database}}.usage_1m_0011;
DROP TABLE {{database}}.usage_1m_0011;

DROP TABLE IF EXISTS {{database}}.usage_1h_0011;
CREATE TABLE {{database}}.usage_1h_0011 AS {{database}}.usage_1h
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (toStartOfDay(window_start), tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id,
          checkpoint_version, window_start)
TTL window_start + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;
INSERT INTO {{database}}.usage_1h_0011 SELECT * FROM {{database}}.usage_1h;
EXCHANGE TABLES {{database}}.usage_1h AND {{database}}.usage_1h_0011;
DROP TABLE {{database}}.usage_1h_0011;

DROP TABLE IF EXISTS {{database}}.audit_log_0011;
CREATE TABLE {{database}}.audit_log_0011 AS {{database}}.audit_log
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (toDate(ts), tenant_id, department_id, project_id, topic, ts)
TTL toDateTime(ts) + INTERVAL {{retention_months}} MONTH
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;
ALTER TABLE {{database}}.audit_log_0011
    ADD COLUMN IF NOT EXISTS asset_type LowCardinality(String) MATERIALIZED JSONExtractString(details, 'asset_type')
        COMMENT 'asset_access / asset_transfer: details.asset_type (checkpoint, dataset, ...); empty for the others';
INSERT INTO {{database}}.audit_log_0011 SELECT * FROM {{database}}.audit_log;
EXCHANGE TABLES {{database}}.audit_log AND {{database}}.audit_log_0011;
DROP TABLE {{database}}.audit_log_0011;

-- Access decisions per hour: the Admin's "who was allowed / denied what" over months without reading every event.
CREATE TABLE IF NOT EXISTS {{database}}.audit_decisions_1h
(
    hour          DateTime('UTC'),
    tenant_id     LowCardinality(String),
    department_id LowCardinality(String),
    project_id    LowCardinality(String),
    topic         LowCardinality(String),
    decision      LowCardinality(String),
    checks        SimpleAggregateFunction(sum, UInt64) COMMENT 'audit events; read with sum() and GROUP BY'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, tenant_id, department_id, project_id, topic, decision)
TTL hour + INTERVAL {{retention_months}} MONTH
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO {{database}}.audit_decisions_1h
SELECT toStartOfHour(ts) AS hour, tenant_id, department_id, project_id, topic, decision, count() AS checks
FROM {{database}}.audit_log
GROUP BY hour, tenant_id, department_id, project_id, topic, decision;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.audit_decisions_1h_mv TO {{database}}.audit_decisions_1h AS
SELECT toStartOfHour(ts) AS hour, tenant_id, department_id, project_id, topic, decision, count() AS checks
FROM {{database}}.audit_log
GROUP BY hour, tenant_id, department_id, project_id, topic, decision;

-- usage_span(lo, hi, step): usage rows covering [lo, hi) exactly, each instant from the coarsest rollup that fits:
-- whole days from usage_1d, the hours at the edges from usage_1h, then minutes, then 10 s windows (lo and hi are
-- rounded inward to 10 s). step is the widest bucket the caller groups rows into (seconds; a day for totals): a
-- rollup is used only where its windows divide it, so a timeseries of 5-minute buckets reads minutes, never hours.
-- Read like the tables: sum() / sumMap() and GROUP BY.
CREATE OR REPLACE VIEW {{database}}.usage_span AS
WITH {lo:DateTime('UTC')} AS lo, {hi:DateTime('UTC')} AS hi, {step:UInt32} AS step,
     if(step % 86400 = 0, toStartOfDay(lo + 86399), hi) AS d_lo, greatest(if(step % 86400 = 0, toStartOfDay(hi), hi), d_lo) AS d_hi
SELECT * FROM {{database}}.usage_1d
WHERE window_start >= d_lo AND window_start < d_hi
UNION ALL
WITH {lo:DateTime('UTC')} AS lo, {hi:DateTime('UTC')} AS hi, {step:UInt32} AS step,
     if(step % 86400 = 0, toStartOfDay(lo + 86399), hi) AS d_lo, greatest(if(step % 86400 = 0, toStartOfDay(hi), hi), d_lo) AS d_hi,
     if(step % 3600 = 0, toStartOfHour(lo + 3599), hi) AS h_lo, greatest(if(step % 3600 = 0, toStartOfHour(hi), hi), h_lo) AS h_hi
SELECT * FROM {{database}}.usage_1h
WHERE window_start >= h_lo AND window_start < h_hi AND NOT (window_start >= d_lo AND window_start < d_hi)
UNION ALL
WITH {lo:DateTime('UTC')} AS lo, {hi:DateTime('UTC')} AS hi, {step:UInt32} AS step,
     if(step % 3600 = 0, toStartOfHour(lo + 3599), hi) AS h_lo, greatest(if(step % 3600 = 0, toStartOfHour(hi), hi), h_lo) AS h_hi,
     if(step % 60 = 0, toStartOfMinute(lo + 59), hi) AS m_lo, greatest(if(step % 60 = 0, toStartOfMinute(hi), hi), m_lo) AS m_hi
SELECT * FROM {{database}}.usage_1m
WHERE window_start >= m_lo AND window_start < m_hi AND NOT (window_start >= h_lo AND window_start < h_hi)
UNION ALL
WITH {lo:DateTime('UTC')} AS lo, {hi:DateTime('UTC')} AS hi, {step:UInt32} AS step,
     if(step % 60 = 0, toStartOfMinute(lo + 59), hi) AS m_lo, greatest(if(step % 60 = 0, toStartOfMinute(hi), hi), m_lo) AS m_hi,
     toStartOfInterval(lo + 9, INTERVAL 10 SECOND) AS s_lo, greatest(toStartOfInterval(hi, INTERVAL 10 SECOND), s_lo) AS s_hi
SELECT * FROM {{database}}.usage_10s
WHERE window_start >= s_lo AND window_start < s_hi AND NOT (window_start >= m_lo AND window_start < m_hi);
