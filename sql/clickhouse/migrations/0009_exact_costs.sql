-- Exact costs (issue 14): prices and costs as decimals, so chargeback adds up to the cent however large the totals.
--
-- price_catalogue.unit_price becomes Decimal(38, 12) (the loader refuses prices with more decimals), and every cost
-- column of the views Decimal(38, 12): quantity x price is multiplied first, in Decimal256 so no product overflows,
-- then divided by its unit (1000 tokens, 3600 s, 10^9 bytes, 3,600,000 ms) and held at 12 decimals (truncated,
-- at most 10^-12 per row). usage_1h's credit columns are Decimal(38, 6) since 0008; cost_usage_1h shows the
-- credits the Workflow service and Kubernetes charged beside the costs it computes. Each view is restated whole
-- (an applied migration never changes): apart from the types, the three costs per row above and the credit
-- columns, they are 0006's. The cost model's header (0006) still describes what each view computes.

ALTER TABLE {{database}}.price_catalogue
    MODIFY COLUMN unit_price Decimal(38, 12) COMMENT 'price of one unit of the kind, in currency (exact decimal)';

CREATE OR REPLACE VIEW {{database}}.price_in_force
(
    kind       LowCardinality(String) COMMENT 'see price_catalogue',
    item       LowCardinality(String) COMMENT 'see price_catalogue',
    valid_from DateTime64(3, 'UTC') COMMENT 'start of the period, inclusive',
    valid_to   DateTime64(3, 'UTC') COMMENT 'end of the period, exclusive; 2299-12-31 = open-ended',
    unit_price Decimal(38, 12) COMMENT 'price in force over the period',
    currency   LowCardinality(String),
    version    UInt32 COMMENT 'catalogue version the price comes from'
)
AS
WITH
    catalogue AS
    (
        SELECT version, kind, item, unit_price, currency, valid_from, valid_to
        FROM {{database}}.price_catalogue FINAL
    ),
    pieces AS
    (
        SELECT kind, item, piece.1 AS piece_from, piece.2 AS piece_to
        FROM
        (
            SELECT kind, item, arraySort(groupUniqArray(bound)) AS bounds
            FROM
            (
                SELECT kind, item, valid_from AS bound FROM catalogue
                UNION ALL
                SELECT kind, item, valid_to AS bound FROM catalogue
            )
            GROUP BY kind, item
        )
        ARRAY JOIN arrayZip(arrayPopBack(bounds), arrayPopFront(bounds)) AS piece
    ),
    winners AS
    (
        SELECT pieces.kind AS kind, pieces.item AS item, piece_from, piece_to,
               max(c.version) AS version, argMax(c.unit_price, c.version) AS unit_price,
               argMax(c.currency, c.version) AS currency
        FROM pieces
        INNER JOIN catalogue AS c ON c.kind = pieces.kind AND c.item = pieces.item
        WHERE c.valid_from <= piece_from AND piece_to <= c.valid_to
        GROUP BY kind, item, piece_from, piece_to
    ),
    periods AS
    (
        SELECT kind, item, piece_from, piece_to, version, unit_price, currency,
               sum(toUInt8(NOT (prev_to = piece_from AND prev_version = version AND prev_price = unit_price)))
                   OVER (PARTITION BY kind, item ORDER BY piece_from ROWS UNBOUNDED PRECEDING) AS period
        FROM
        (
            SELECT *,
                   lagInFrame(piece_to) OVER w AS prev_to,
                   lagInFrame(version) OVER w AS prev_version,
                   lagInFrame(unit_price) OVER w AS prev_price
            FROM winners
            WINDOW w AS (PARTITION BY kind, item ORDER BY piece_from ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
        )
    )
SELECT kind, item, min(piece_from) AS valid_from, max(piece_to) AS valid_to, any(unit_price) AS unit_price,
       any(currency) AS currency, any(version) AS version
FROM periods
GROUP BY kind, item, period
COMMENT 'the price catalogue in force: per kind and item, non-overlapping periods, the highest version winning';

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
AS
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
        FROM {{database}}.price_in_force
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
FROM priced
COMMENT 'chargeback per hour x tenant / department / project / user / model / model_version / checkpoint: usage x the unit prices in force';

CREATE OR REPLACE VIEW {{database}}.cost_tasks
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
    vm_type            LowCardinality(String) COMMENT 'the attempt''s, else its node''s newest known',
    node_id            LowCardinality(String),
    host_name          LowCardinality(String),
    started_at         Nullable(DateTime64(3, 'UTC')) COMMENT 'NULL: the attempt never started (no VM time)',
    finished_at        DateTime64(3, 'UTC') COMMENT 'end, or the last event of an orphan',
    duration_s         Float64 COMMENT 'finished_at - started_at; 0 when it never started',
    checkpoint_load_s  Float64 COMMENT 'time spent loading weights and checkpoint (part of duration_s)',
    gpu_seconds        Float64 COMMENT 'GPU-seconds of the node during the attempt (Prometheus)',
    cpu_seconds        Float64 COMMENT 'CPU core-seconds of the node during the attempt (Prometheus)',
    vm_cost            Decimal(38, 12) COMMENT 'the attempt''s share of its VM over its run at the vm_hour prices in force',
    gpu_cost           Decimal(38, 12) COMMENT 'gpu_seconds / 3600 x gpu_hour, only when the VM type has no vm_hour price',
    cpu_cost           Decimal(38, 12) COMMENT 'cpu_seconds / 3600 x cpu_hour, only when the VM type has no vm_hour price',
    total_cost         Decimal(38, 12) COMMENT 'vm_cost + gpu_cost + cpu_cost',
    cost_basis         LowCardinality(String) COMMENT 'vm | resources | unpriced',
    unpriced           Array(String) COMMENT 'kind:item the attempt needed and had no price for'
)
AS
WITH
    facts AS
    (
        SELECT *, toUnixTimestamp64Milli(assumeNotNull(started_at)) AS s_ms, toUnixTimestamp64Milli(finished_at) AS e_ms
        FROM {{database}}.task_facts FINAL
    ),
    prices AS
    (
        SELECT kind, item, toUnixTimestamp64Milli(valid_from) AS from_ms, toUnixTimestamp64Milli(valid_to) AS to_ms,
               unit_price
        FROM {{database}}.price_in_force
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
            FROM {{database}}.vm_segments AS s
            LEFT JOIN {{database}}.vm_nodes AS n ON n.node_id = s.node_id
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
        LEFT JOIN {{database}}.vm_nodes AS n ON n.node_id = f.node_id
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
COMMENT 'one row per task attempt: its share of VM cost, or its GPU/CPU cost where its VM type has no price';

CREATE OR REPLACE VIEW {{database}}.vm_activity_1h
(
    hour             DateTime('UTC') COMMENT 'start of the hour',
    node_id          LowCardinality(String),
    host_name        LowCardinality(String),
    vm_type          LowCardinality(String),
    active_seconds   Float64 COMMENT 'union of the attempts running on the node within the hour',
    observed_seconds Float64 COMMENT 'part of the hour the node was alive (inferred from its task facts)',
    idle_seconds     Float64 COMMENT 'observed_seconds - active_seconds',
    vm_hour_price    Nullable(Decimal(38, 12)) COMMENT 'vm_hour price in force for the VM type; NULL: none',
    active_cost      Decimal(38, 12) COMMENT 'active_seconds / 3600 x vm_hour_price: what the attempts'' vm_cost adds up to',
    idle_cost        Decimal(38, 12) COMMENT 'idle_seconds / 3600 x vm_hour_price',
    unpriced         Array(String) COMMENT '[vm_hour:<vm type>] when the VM type has no price in the hour'
)
AS
WITH
    evidence AS
    (
        SELECT node_id, toUnixTimestamp64Milli(coalesce(queued_at, started_at, finished_at)) AS f,
               toUnixTimestamp64Milli(finished_at) AS t
        FROM {{database}}.task_facts FINAL
        WHERE node_id != ''
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
        FROM {{database}}.vm_segments
        WHERE running > 0
        GROUP BY node_id, hour_ms
    ),
    prices AS
    (
        SELECT item, toUnixTimestamp64Milli(valid_from) AS from_ms, toUnixTimestamp64Milli(valid_to) AS to_ms, unit_price
        FROM {{database}}.price_in_force
        WHERE kind = 'vm_hour'
    ),
    joined AS
    (
        SELECT o.node_id AS node_id, o.hour_ms AS hour_ms, ifNull(n.host_name, '') AS host_name,
               ifNull(n.vm_type, '') AS vm_type, o.observed_ms AS observed_ms, ifNull(a.active_ms, 0) AS active_ms,
               o.any_item AS any_item
        FROM observed AS o
        LEFT JOIN active AS a ON a.node_id = o.node_id AND a.hour_ms = o.hour_ms
        LEFT JOIN {{database}}.vm_nodes AS n ON n.node_id = o.node_id
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
COMMENT 'per node and hour: observed, active (overlaps once) and idle seconds, and their cost at the VM-hour price in force';
