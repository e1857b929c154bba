-- Cost model: a versioned price catalogue, and views that price usage with the price in force at the time.
--
-- Prices. price_catalogue holds every catalogue version loaded by `python -m telemetry.prices load FILE`; a row
-- prices one item of one kind over [valid_from, valid_to). A loaded version is never edited (the loader refuses
-- to load different content under a version number it already holds): a price change or a correction is a new
-- version. Costs are computed when they are read, so loading a version re-prices all history at once, without
-- reprocessing an event. Where the periods of several versions cover the same instant for the same kind and
-- item, the highest version is in force: the newest catalogue overrides whatever it overlaps, retroactively
-- too, and leaves the rest of older versions in force. Within one version the loader refuses overlapping
-- periods for an item. price_in_force is that resolution: per kind and item, periods that do not overlap,
-- each with the one price in force. valid_to = 2299-12-31 00:00:00 means open-ended.
-- Periods start and end on whole UTC hours (the loader refuses others), so every hour of usage has one price.
-- One currency for the whole catalogue (the loader refuses a file in another): costs add up across kinds.
--
-- Kinds, their unit, and what the views match a row's item against (an item without a price of its own takes
-- the kind's '*' price when there is one):
--   vm_hour           one VM for an hour           task_facts.vm_type (NV6, ...)
--   gpu_hour          one GPU for an hour          '*' only: no table carries a GPU type yet (the credit events'
--                                                  gpu_type stays in the lake); per-type rows wait for one
--   cpu_hour          one core for an hour         '*'
--   tokens_in_1k      1000 input tokens            the usage row's model (base model name)
--   tokens_out_1k     1000 output tokens           the usage row's model
--   transfer_gb       1 GB (10^9 bytes) read       '*'
--   storage_gb_month  1 GB stored for a month      storage type; no view yet, see below
--
-- Two questions, two bases, never added together:
--   * what a consumer used, at unit rates (cost_usage_1h, chargeback per tenant / department / project / user /
--     model): tokens, allocated GPU- and CPU-hours, and checkpoint bytes read from storage;
--   * what the VMs cost (cost_tasks, vm_activity_1h): VM-hours, split into the attempts that ran on a VM (each
--     attempt's share) and the time it sat idle. A task attempt is priced by VM time; GPU/CPU rates price it
--     only when its VM type has no VM-hour price, so total_cost = vm_cost + gpu_cost + cpu_cost counts a
--     machine once.
--
-- VM activity. No topic reports VMs coming and going, and usage_10s carries no node, so the one record of what
-- a VM did is task_facts: a node is active while an attempt runs on it ([started_at, finished_at], overlaps
-- counted once), and observed (alive) from its first sign of life (the earliest of an attempt's queued_at /
-- started_at / finished_at) to its last, through silences of up to 15 minutes (the cluster autoscaler's default
-- scale-down delay is 10; a longer silence is taken as the VM gone). Limits: a VM's time before its first and
-- after its last attempt is not seen; LLM requests a GPU node serves count as idle time (the job keeps no node
-- per request in ClickHouse; the lake has it); an attempt's share of its VM is an even split among the
-- attempts running at the same time (facts carry no GPU count per attempt).
--
-- Storage. No cost_storage_1d: nothing reports stored bytes. STORAGE_SIZE / STORAGE_TYPE are producer settings
-- the envelope does not carry; xumi_load and asset_transfer report bytes moved, not bytes kept or for how long.
-- storage_gb_month prices load and show already, so a view can follow a stored-size source.
--
-- Costs are Float64 in the catalogue's currency, computed at query time over all of task_facts / usage_1h
-- (the VM views sweep each node's whole history: a time filter narrows the answer, not the work). Should that
-- outgrow dashboard latency, the same SELECTs can fill tables on a schedule. Reference data: no TTL on prices,
-- as they must outlive the facts they price.

CREATE TABLE IF NOT EXISTS {{database}}.price_catalogue
(
    version     UInt32 COMMENT 'catalogue version; where periods of versions overlap, the highest is in force',
    kind        LowCardinality(String) COMMENT 'vm_hour | gpu_hour | cpu_hour | tokens_in_1k | tokens_out_1k | storage_gb_month | transfer_gb',
    item        LowCardinality(String) COMMENT 'VM type, GPU type, model or storage type; * = every item without its own price',
    unit_price  Float64 COMMENT 'price of one unit of the kind, in currency',
    currency    LowCardinality(String) COMMENT 'ISO 4217 code, one for the whole catalogue',
    valid_from  DateTime64(3, 'UTC') COMMENT 'first instant the price applies (a whole UTC hour)',
    valid_to    DateTime64(3, 'UTC') COMMENT 'end of the period, exclusive (a whole UTC hour); 2299-12-31 = open-ended',
    source      String COMMENT 'file the version was loaded from',
    loaded_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(loaded_at)
-- an item's periods of one version are one row each: a version loaded twice collapses to one copy
ORDER BY (kind, item, valid_from, version)
SETTINGS non_replicated_deduplication_window = 1000;

-- The catalogue in force: per kind and item, periods that do not overlap, each with the price of the highest
-- version covering it. Built from the bounds of every period: each stretch between two consecutive bounds gets
-- the newest version covering it (stretches no version covers have no row: no price), then neighbouring
-- stretches with the same version and price merge back into one period.
CREATE VIEW IF NOT EXISTS {{database}}.price_in_force
(
    kind       LowCardinality(String) COMMENT 'see price_catalogue',
    item       LowCardinality(String) COMMENT 'see price_catalogue',
    valid_from DateTime64(3, 'UTC') COMMENT 'start of the period, inclusive',
    valid_to   DateTime64(3, 'UTC') COMMENT 'end of the period, exclusive; 2299-12-31 = open-ended',
    unit_price Float64 COMMENT 'price in force over the period',
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

-- Chargeback per hour and tenant / department / project / user / model / model version / checkpoint.
-- gpu_seconds and cpu_seconds are allocated units x seconds from the credit families: Workflow bills an
-- attempt's run and Kubernetes its pod's life, two reports of the same allocation, so the larger of the two
-- counts (adding them would count it twice). usage_1h's own gpu_seconds / cpu_seconds (Prometheus utilisation
-- of the whole node during an attempt) measure use, not allocation, and stay unpriced there.
-- Checkpoint loads are priced per GB read from storage: a usage row holds one artifact (checkpoint id and
-- version), so its loads are all the same size and load_bytes x (loads - cache hits) / loads are the bytes read.
-- An hour is priced with the prices in force at its start; unpriced lists what had usage but no price.
CREATE VIEW IF NOT EXISTS {{database}}.cost_usage_1h
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
    gpu_seconds         Float64 COMMENT 'allocated GPU-seconds (credit families, the larger of Workflow and Kubernetes)',
    cpu_seconds         Float64 COMMENT 'allocated core-seconds (credit families, the larger of Workflow and Kubernetes)',
    loads               UInt64 COMMENT 'finished weight / checkpoint loads',
    load_bytes          UInt64 COMMENT 'bytes loaded, cache hits included',
    load_transfer_bytes UInt64 COMMENT 'bytes read from storage (cache misses): what load_cost prices',
    token_cost          Float64 COMMENT 'tokens_in / 1000 x tokens_in_1k + tokens_out / 1000 x tokens_out_1k',
    gpu_cost            Float64 COMMENT 'gpu_seconds / 3600 x gpu_hour',
    cpu_cost            Float64 COMMENT 'cpu_seconds / 3600 x cpu_hour',
    load_cost           Float64 COMMENT 'load_transfer_bytes / 1e9 x transfer_gb',
    total_cost          Float64 COMMENT 'token_cost + gpu_cost + cpu_cost + load_cost',
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
               sum(loads) AS artifact_loads, sum(load_cache_hits) AS artifact_hits, sum(load_bytes) AS artifact_bytes
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
               sum(intDivOrZero(artifact_bytes * (artifact_loads - artifact_hits), artifact_loads)) AS load_transfer_bytes
        FROM per_artifact
        GROUP BY window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id
        HAVING tokens_in + tokens_out > 0 OR gpu_seconds > 0 OR cpu_seconds > 0 OR load_bytes > 0
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
    tokens_in / 1000 * ifNull(tokens_in_price, 0) + tokens_out / 1000 * ifNull(tokens_out_price, 0) AS token_cost,
    gpu_seconds / 3600 * ifNull(gpu_price, 0) AS gpu_cost,
    cpu_seconds / 3600 * ifNull(cpu_price, 0) AS cpu_cost,
    load_transfer_bytes / 1e9 * ifNull(transfer_price, 0) AS load_cost,
    token_cost + gpu_cost + cpu_cost + load_cost AS total_cost,
    arrayFilter(x -> x != '', [
        if(tokens_in > 0 AND tokens_in_price IS NULL, concat('tokens_in_1k:', model), ''),
        if(tokens_out > 0 AND tokens_out_price IS NULL, concat('tokens_out_1k:', model), ''),
        if(gpu_seconds > 0 AND gpu_price IS NULL, 'gpu_hour:*', ''),
        if(cpu_seconds > 0 AND cpu_price IS NULL, 'cpu_hour:*', ''),
        if(load_transfer_bytes > 0 AND transfer_price IS NULL, 'transfer_gb:*', '')
    ]) AS unpriced
FROM priced
COMMENT 'chargeback per hour x tenant / department / project / user / model / model_version / checkpoint: usage x the unit prices in force';

-- A node's VM type and host name: the newest non-empty values its task facts carry (internal to the views below).
CREATE VIEW IF NOT EXISTS {{database}}.vm_nodes AS
SELECT node_id,
       argMaxIf(host_name, finished_at, host_name != '') AS host_name,
       argMaxIf(vm_type, finished_at, vm_type != '') AS vm_type
FROM {{database}}.task_facts FINAL
WHERE node_id != ''
GROUP BY node_id;

-- A node's time cut at every start and end of an attempt on it and at every whole hour in between (internal):
-- [seg_from, seg_to) in epoch ms, each inside one hour, with the number of attempts running throughout.
-- A sweep over +1 / -1 marks, so overlapping attempts cost a sort, not a pairwise join. A node's last mark
-- has seg_to = seg_from.
CREATE VIEW IF NOT EXISTS {{database}}.vm_segments AS
WITH
    runs AS
    (
        SELECT node_id, toUnixTimestamp64Milli(assumeNotNull(started_at)) AS s, toUnixTimestamp64Milli(finished_at) AS e
        FROM {{database}}.task_facts FINAL
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
    )
SELECT node_id,
       t AS seg_from,
       leadInFrame(t, 1, t) OVER (PARTITION BY node_id ORDER BY t ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS seg_to,
       toUInt32(sum(d) OVER (PARTITION BY node_id ORDER BY t ROWS UNBOUNDED PRECEDING)) AS running
FROM marks;

-- One row per task attempt (task_facts FINAL: the newest version of each), with what it cost.
-- vm_cost: the VM-hour price of its node's VM type over [started_at, finished_at], each stretch of time split
-- evenly among the attempts running on the node then, so a VM's attempts add up to its active cost in
-- vm_activity_1h. Computed as the difference of a running sum of per-attempt shares taken at the attempt's
-- start and end. An attempt whose VM type has no VM-hour price (at its start) is priced by resources instead:
-- gpu_seconds / cpu_seconds (task_facts, from Prometheus) at the gpu_hour / cpu_hour prices in force at
-- finished_at. cost_basis says which: vm | resources | unpriced.
CREATE VIEW IF NOT EXISTS {{database}}.cost_tasks
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
    vm_cost            Float64 COMMENT 'the attempt''s share of its VM over its run at the vm_hour prices in force',
    gpu_cost           Float64 COMMENT 'gpu_seconds / 3600 x gpu_hour, only when the VM type has no vm_hour price',
    cpu_cost           Float64 COMMENT 'cpu_seconds / 3600 x cpu_hour, only when the VM type has no vm_hour price',
    total_cost         Float64 COMMENT 'vm_cost + gpu_cost + cpu_cost',
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
                  (g.seg_to - g.seg_from) / 3600000
                  * multiIf(p.item != '', p.unit_price, p_any.item != '', p_any.unit_price, 0) / g.running) AS share
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
    if(vm_priced, vm_share, 0) AS vm_cost,
    if(vm_priced, 0, gpu_seconds / 3600 * ifNull(gpu_price, 0)) AS gpu_cost,
    if(vm_priced, 0, cpu_seconds / 3600 * ifNull(cpu_price, 0)) AS cpu_cost,
    vm_cost + gpu_cost + cpu_cost AS total_cost,
    multiIf(vm_priced, 'vm', gpu_price IS NOT NULL OR cpu_price IS NOT NULL, 'resources', 'unpriced') AS cost_basis,
    if(vm_priced, [], arrayFilter(x -> x != '', [
        if(started_at IS NOT NULL, concat('vm_hour:', if(vm_type_known = '', '?', vm_type_known)), ''),
        if(gpu_seconds > 0 AND gpu_price IS NULL, 'gpu_hour:*', ''),
        if(cpu_seconds > 0 AND cpu_price IS NULL, 'cpu_hour:*', '')
    ])) AS unpriced
FROM priced
COMMENT 'one row per task attempt: its share of VM cost, or its GPU/CPU cost where its VM type has no price';

-- Per node and hour: how long it was seen alive (observed), how much of that an attempt ran on it (active,
-- overlapping attempts counted once), the rest idle, and their cost at the VM-hour price in force in the hour.
-- See the header for how aliveness is inferred and its limits. The 15-minute silence tolerance is below.
CREATE VIEW IF NOT EXISTS {{database}}.vm_activity_1h
(
    hour             DateTime('UTC') COMMENT 'start of the hour',
    node_id          LowCardinality(String),
    host_name        LowCardinality(String),
    vm_type          LowCardinality(String),
    active_seconds   Float64 COMMENT 'union of the attempts running on the node within the hour',
    observed_seconds Float64 COMMENT 'part of the hour the node was alive (inferred from its task facts)',
    idle_seconds     Float64 COMMENT 'observed_seconds - active_seconds',
    vm_hour_price    Nullable(Float64) COMMENT 'vm_hour price in force for the VM type; NULL: none',
    active_cost      Float64 COMMENT 'active_seconds / 3600 x vm_hour_price: what the attempts'' vm_cost adds up to',
    idle_cost        Float64 COMMENT 'idle_seconds / 3600 x vm_hour_price',
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
    active_seconds / 3600 * ifNull(vm_hour_price, 0) AS active_cost,
    idle_seconds / 3600 * ifNull(vm_hour_price, 0) AS idle_cost,
    if(vm_hour_price IS NULL, [concat('vm_hour:', if(j.vm_type = '', '?', j.vm_type))], []) AS unpriced
FROM joined AS j
LEFT JOIN prices AS p ON p.item = j.vm_type AND p.from_ms <= j.hour_ms AND j.hour_ms < p.to_ms
LEFT JOIN prices AS p_any ON p_any.item = j.any_item AND p_any.from_ms <= j.hour_ms AND j.hour_ms < p_any.to_ms
COMMENT 'per node and hour: observed, active (overlaps once) and idle seconds, and their cost at the VM-hour price in force';
