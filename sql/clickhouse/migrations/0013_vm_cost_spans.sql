-- VM costs over a span (issue 16): cost_tasks and vm_activity_1h (0006, 0009) sweep every node's whole history
-- whatever range is asked (a time filter narrows the answer, not the work), and hit the memory cap over a year.
-- cost_tasks_span(lo, hi) and vm_activity_span(lo, hi) compute the same columns from the task facts near the span
-- only, which the task_facts layout of 0011 prunes by month, with prices from price_periods (0012):
--   * vm_activity_span: the hours in [lo, hi). A node's coverage within the span depends only on the attempts that
--     intersect it widened by the 15-minute silence an island bridges, so it is exact for attempts shorter than a day
--     (longer ones that end more than a day after hi are not seen).
--   * cost_tasks_span: the attempts that ended in [lo, hi). An attempt's share of its node needs the attempts that
--     overlapped it: those ending from a day before lo are read, exact for attempts shorter than a day.
--   * A node's VM type and host name are the newest its facts in that window carry (the views take the newest over
--     all history; they differ only for a node whose VM type changed).
-- The views stay as they were, for exports and checks; the dashboards and the API read the spans.

CREATE OR REPLACE VIEW {{database}}.cost_tasks_span AS
WITH
    facts AS
    (
        -- the attempts that can share a node with one that ended in the span: those ending a day around it
        SELECT *, toUnixTimestamp64Milli(assumeNotNull(started_at)) AS s_ms, toUnixTimestamp64Milli(finished_at) AS e_ms
        FROM {{database}}.task_facts FINAL
        WHERE finished_at >= {lo:DateTime('UTC')} - INTERVAL 1 DAY AND finished_at < {hi:DateTime('UTC')} + INTERVAL 1 DAY
    ),
    runs AS
    (
        SELECT node_id, toUnixTimestamp64Milli(assumeNotNull(started_at)) AS s, toUnixTimestamp64Milli(finished_at) AS e
        FROM facts
        WHERE node_id != '' AND started_at IS NOT NULL AND finished_at > started_at
    ),
    marks AS
    (
        SELECT node_id, t, sum(d) AS d
        FROM
        (
            SELECT node_id, s AS t, 1 AS d FROM runs
            UNION ALL
            SELECT node_id, e AS t, -1 AS d FROM runs
            UNION ALL
            SELECT node_id, arrayJoin(range(intDiv(lo, 3600000) * 3600000 + 3600000, hi, 3600000)) AS t, 0 AS d
            FROM (SELECT node_id, min(s) AS lo, max(e) AS hi FROM runs GROUP BY node_id)
        )
        GROUP BY node_id, t
    ),
    segments AS
    (
        SELECT node_id, t AS seg_from,
               leadInFrame(t, 1, t) OVER (PARTITION BY node_id ORDER BY t ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS seg_to,
               toUInt32(sum(d) OVER (PARTITION BY node_id ORDER BY t ROWS UNBOUNDED PRECEDING)) AS running
        FROM marks
    ),
    nodes AS
    (
        SELECT node_id, argMaxIf(host_name, finished_at, host_name != '') AS host_name,
               argMaxIf(vm_type, finished_at, vm_type != '') AS vm_type
        FROM facts
        WHERE node_id != ''
        GROUP BY node_id
    ),
    prices AS
    (
        SELECT kind, item, toUnixTimestamp64Milli(valid_from) AS from_ms, toUnixTimestamp64Milli(valid_to) AS to_ms,
               unit_price
        FROM {{database}}.price_periods
    ),
    shares AS
    (
        SELECT g.node_id AS node_id, g.seg_from AS t,
               if(g.running = 0, 0,
                  toDecimal256(g.seg_to - g.seg_from, 0)
                  * multiIf(p.item != '', p.unit_price, p_any.item != '', p_any.unit_price, 0) / 3600000 / g.running) AS share
        FROM
        (
            SELECT s.node_id AS node_id, seg_from, seg_to, running, intDiv(seg_from, 3600000) * 3600000 AS hour_ms,
                   n.vm_type AS vm_type, '*' AS any_item
            FROM segments AS s
            LEFT JOIN nodes AS n ON n.node_id = s.node_id
        ) AS g
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'vm_hour') AS p
            ON p.item = g.vm_type AND p.from_ms <= g.hour_ms AND g.hour_ms < p.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'vm_hour') AS p_any
            ON p_any.item = g.any_item AND p_any.from_ms <= g.hour_ms AND g.hour_ms < p_any.to_ms
    ),
    vm AS
    (
        -- the shares summed from the start on, read at each attempt's end minus at its start
        SELECT task_id, attempt, sum(sign * before) AS vm_cost
        FROM
        (
            SELECT task_id, attempt, sign,
                   sum(share) OVER (PARTITION BY node_id ORDER BY t RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
            FROM
            (
                SELECT node_id, t, share, '' AS task_id, toUInt16(0) AS attempt, toInt8(0) AS sign FROM shares
                UNION ALL
                SELECT node_id, s_ms AS t, 0 AS share, task_id, attempt, toInt8(-1) AS sign
                FROM facts WHERE node_id != '' AND started_at IS NOT NULL AND e_ms > s_ms
                UNION ALL
                SELECT node_id, e_ms AS t, 0 AS share, task_id, attempt, toInt8(1) AS sign
                FROM facts WHERE node_id != '' AND started_at IS NOT NULL AND e_ms > s_ms
            )
        )
        WHERE sign != 0
        GROUP BY task_id, attempt
    ),
    attempts AS
    (
        SELECT f.task_id AS task_id, f.attempt AS attempt, f.status AS status, f.tenant_id AS tenant_id,
               f.department_id AS department_id, f.project_id AS project_id, f.user_id AS user_id,
               f.base_model AS base_model, f.model_version AS model_version, f.checkpoint_id AS checkpoint_id,
               f.checkpoint_version AS checkpoint_version, f.node_id AS node_id, f.host_name AS host_name,
               f.started_at AS started_at, f.finished_at AS finished_at, f.s_ms AS s_ms, f.e_ms AS e_ms,
               f.checkpoint_load_ms AS checkpoint_load_ms, f.gpu_seconds AS gpu_seconds, f.cpu_seconds AS cpu_seconds,
               if(f.vm_type != '', f.vm_type, ifNull(n.vm_type, '')) AS vm_type_known, '*' AS any_item,
               intDiv(if(f.started_at IS NULL, f.e_ms, f.s_ms), 3600000) * 3600000 AS start_hour_ms,
               intDiv(f.e_ms, 3600000) * 3600000 AS end_hour_ms,
               ifNull(v.vm_cost, 0) AS vm_share
        FROM facts AS f
        LEFT JOIN nodes AS n ON n.node_id = f.node_id
        LEFT JOIN vm AS v ON v.task_id = f.task_id AND v.attempt = f.attempt
    ),
    priced AS
    (
        SELECT a.*,
               p.item != '' OR p_any.item != '' AS vm_priced,
               if(gpu.item != '', gpu.unit_price, NULL) AS gpu_price,
               if(cpu.item != '', cpu.unit_price, NULL) AS cpu_price
        FROM attempts AS a
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'vm_hour') AS p
            ON p.item = a.vm_type_known AND p.from_ms <= a.start_hour_ms AND a.start_hour_ms < p.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'vm_hour') AS p_any
            ON p_any.item = a.any_item AND p_any.from_ms <= a.start_hour_ms AND a.start_hour_ms < p_any.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'gpu_hour') AS gpu
            ON gpu.item = a.any_item AND gpu.from_ms <= a.end_hour_ms AND a.end_hour_ms < gpu.to_ms
        LEFT JOIN (SELECT * FROM prices WHERE kind = 'cpu_hour') AS cpu
            ON cpu.item = a.any_item AND cpu.from_ms <= a.end_hour_ms AND a.end_hour_ms < cpu.to_ms
    )
SELECT
    task_id, attempt, status, tenant_id, department_id, project_id, user_id, base_model, model_version,
    checkpoint_id, checkpoint_version, vm_type_known AS vm_type, node_id, host_name, started_at, finished_at,
    if(started_at IS NULL, 0, greatest(e_ms - s_ms, 0) / 1000) AS duration_s,
    ifNull(checkpoint_load_ms, 0) / 1000 AS checkpoint_load_s,
    gpu_seconds, cpu_seconds,
    CAST(if(vm_priced, vm_share, 0) AS Decimal(38, 12)) AS vm_cost,
    -- gpu_seconds / cpu_seconds are Prometheus measurements (Float64): priced, then held as exact decimals
    CAST(if(vm_priced, 0, gpu_seconds * ifNull(gpu_price, 0) / 3600) AS Decimal(38, 12)) AS gpu_cost,
    CAST(if(vm_priced, 0, cpu_seconds * ifNull(cpu_price, 0) / 3600) AS Decimal(38, 12)) AS cpu_cost,
    vm_cost + gpu_cost + cpu_cost AS total_cost,
    multiIf(vm_priced, 'vm', gpu_price IS NOT NULL OR cpu_price IS NOT NULL, 'resources', 'unpriced') AS cost_basis,
    if(vm_priced, [], arrayFilter(x -> x != '', [
        if(started_at IS NOT NULL, concat('vm_hour:', if(vm_type_known = '', '?', vm_type_known)), ''),
        if(gpu_seconds > 0 AND gpu_price IS NULL, 'gpu_hour:*', ''),
        if(cpu_seconds > 0 AND cpu_price IS NULL, 'cpu_hour:*', '')
    ])) AS unpriced
FROM priced
WHERE finished_at >= {lo:DateTime('UTC')} AND finished_at < {hi:DateTime('UTC')};

CREATE OR REPLACE VIEW {{database}}.vm_activity_span AS
WITH
    facts AS
    (
        -- every attempt that can show a node alive or busy within the span: ending at most 15 minutes before it
        -- (the silence an island bridges) and, for attempts of up to a day, starting before its end
        SELECT node_id, queued_at, started_at, finished_at, host_name, vm_type
        FROM {{database}}.task_facts FINAL
        WHERE node_id != '' AND finished_at >= {lo:DateTime('UTC')} - INTERVAL 15 MINUTE AND finished_at < {hi:DateTime('UTC')} + INTERVAL 1 DAY
    ),
    runs AS
    (
        SELECT node_id, toUnixTimestamp64Milli(assumeNotNull(started_at)) AS s, toUnixTimestamp64Milli(finished_at) AS e
        FROM facts
        WHERE node_id != '' AND started_at IS NOT NULL AND finished_at > started_at
    ),
    marks AS
    (
        SELECT node_id, t, sum(d) AS d
        FROM
        (
            SELECT node_id, s AS t, 1 AS d FROM runs
            UNION ALL
            SELECT node_id, e AS t, -1 AS d FROM runs
            UNION ALL
            SELECT node_id, arrayJoin(range(intDiv(lo, 3600000) * 3600000 + 3600000, hi, 3600000)) AS t, 0 AS d
            FROM (SELECT node_id, min(s) AS lo, max(e) AS hi FROM runs GROUP BY node_id)
        )
        GROUP BY node_id, t
    ),
    segments AS
    (
        SELECT node_id, t AS seg_from,
               leadInFrame(t, 1, t) OVER (PARTITION BY node_id ORDER BY t ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS seg_to,
               toUInt32(sum(d) OVER (PARTITION BY node_id ORDER BY t ROWS UNBOUNDED PRECEDING)) AS running
        FROM marks
    ),
    nodes AS
    (
        SELECT node_id, argMaxIf(host_name, finished_at, host_name != '') AS host_name,
               argMaxIf(vm_type, finished_at, vm_type != '') AS vm_type
        FROM facts
        WHERE node_id != ''
        GROUP BY node_id
    ),
    evidence AS
    (
        SELECT node_id, toUnixTimestamp64Milli(coalesce(queued_at, started_at, finished_at)) AS f,
               toUnixTimestamp64Milli(finished_at) AS t
        FROM facts
    ),
    islands AS
    (
        -- a new island where a sign of life starts more than 15 minutes after every earlier one has ended
        SELECT node_id, min(f) AS up_from, max(t) AS up_to
        FROM
        (
            SELECT node_id, f, t,
                   sum(toUInt8(f > reach + 900000)) OVER (PARTITION BY node_id ORDER BY f, t ROWS UNBOUNDED PRECEDING) AS island
            FROM
            (
                SELECT node_id, f, t,
                       max(t) OVER (PARTITION BY node_id ORDER BY f, t ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
                FROM evidence
            )
        )
        GROUP BY node_id, island
    ),
    observed AS
    (
        SELECT node_id, h AS hour_ms, sum(least(up_to, h + 3600000) - greatest(up_from, h)) AS observed_ms, '*' AS any_item
        FROM islands
        ARRAY JOIN range(intDiv(up_from, 3600000) * 3600000, up_to, 3600000) AS h
        GROUP BY node_id, h
    ),
    active AS
    (
        SELECT node_id, intDiv(seg_from, 3600000) * 3600000 AS hour_ms, sum(seg_to - seg_from) AS active_ms
        FROM segments
        WHERE running > 0
        GROUP BY node_id, hour_ms
    ),
    prices AS
    (
        SELECT item, toUnixTimestamp64Milli(valid_from) AS from_ms, toUnixTimestamp64Milli(valid_to) AS to_ms, unit_price
        FROM {{database}}.price_periods
        WHERE kind = 'vm_hour'
    ),
    joined AS
    (
        SELECT o.node_id AS node_id, o.hour_ms AS hour_ms, ifNull(n.host_name, '') AS host_name,
               ifNull(n.vm_type, '') AS vm_type, o.observed_ms AS observed_ms, ifNull(a.active_ms, 0) AS active_ms,
               o.any_item AS any_item
        FROM observed AS o
        LEFT JOIN active AS a ON a.node_id = o.node_id AND a.hour_ms = o.hour_ms
        LEFT JOIN nodes AS n ON n.node_id = o.node_id
    )
SELECT
    toDateTime(intDiv(j.hour_ms, 1000), 'UTC') AS hour,
    j.node_id AS node_id, j.host_name AS host_name, j.vm_type AS vm_type,
    j.active_ms / 1000 AS active_seconds,
    j.observed_ms / 1000 AS observed_seconds,
    (j.observed_ms - j.active_ms) / 1000 AS idle_seconds,
    multiIf(p.item != '', p.unit_price, p_any.item != '', p_any.unit_price, NULL) AS vm_hour_price,
    CAST(toDecimal256(j.active_ms, 0) * ifNull(vm_hour_price, 0) / 3600000 AS Decimal(38, 12)) AS active_cost,
    CAST(toDecimal256(j.observed_ms - j.active_ms, 0) * ifNull(vm_hour_price, 0) / 3600000 AS Decimal(38, 12)) AS idle_cost,
    if(vm_hour_price IS NULL, [concat('vm_hour:', if(j.vm_type = '', '?', j.vm_type))], []) AS unpriced
FROM joined AS j
LEFT JOIN prices AS p ON p.item = j.vm_type AND p.from_ms <= j.hour_ms AND j.hour_ms < p.to_ms
LEFT JOIN prices AS p_any ON p_any.item = j.any_item AND p_any.from_ms <= j.hour_ms AND j.hour_ms < p_any.to_ms
WHERE j.hour_ms >= toUnixTimestamp({lo:DateTime('UTC')}) * 1000 AND j.hour_ms < toUnixTimestamp({hi:DateTime('UTC')}) * 1000;
