"""Task lifecycles: xumi_task + xumi_load + wkf_task events sharing a task_id, and the credits they burn.

One task is planned whole when it is created (every attempt, load, failure, retry and credit record), then
its events are scheduled at their event times; its facts go into the ground truth at the same moment. Some
tasks are reported by the Workflow service alone (no XUMI event: one fact, attempt 1, from TaskStarted to its
end), and some attempts' xumi.task.started is delivered after their end (the fact is the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from schemas import (KuberCpuCreditEvent, KuberGpuCreditEvent, WkfCpuCreditEvent, WkfGpuCreditEvent, WkfTaskEvent,
                     XumiLoadEvent, XumiTaskEvent)
from dev.simulator.rand import Weighted
from dev.simulator.truth import COL, CREDITS, LOADS, TASKS
from dev.simulator.world import CACHE_READ, STORAGE_READ, Combo, Node, Project, User

if TYPE_CHECKING:
    from dev.simulator.stream import Simulation

# Where an attempt fails and with what (seed 003: "error types and frequencies by model AND checkpoint").
_FAIL_STAGE = Weighted(["load", "init", "inference"], [25, 20, 55])
_ERRORS = {
    "load": Weighted([("checkpoint_load_error", False), ("storage_timeout", True)], [60, 40]),
    "init": Weighted([("cuda_oom", True), ("init_error", False)], [70, 30]),
    "inference": Weighted([("cuda_oom", True), ("timeout", True), ("nan_output", False), ("model_error", False),
                           ("node_lost", True)], [25, 25, 15, 25, 10]),
}
_MESSAGES = {
    "checkpoint_load_error": "checkpoint shard 3/8 failed checksum verification",
    "storage_timeout": "read from storage timed out after 30 s",
    "cuda_oom": "CUDA out of memory: tried to allocate 2.00 GiB",
    "init_error": "model init failed: missing tokenizer config",
    "timeout": "inference exceeded the task deadline",
    "nan_output": "NaN detected in logits at step 17",
    "model_error": "RuntimeError in forward pass: shape mismatch",
    "node_lost": "node stopped reporting; pod evicted",
}
_C = {name: COL[name] for name in COL}
Step = tuple[int, str, Any, dict[str, Any]]  # event ts (ms), topic, family model, JSON-ready fields
MICRO_CREDIT = Decimal("0.000001")
MAX_CREDITS_MICROS = 10**18  # the credit families' bound, 1e12 credits
CACHE_SLOTS = 6  # artifacts a node keeps warm (local NVMe / page cache): what makes cache hits a matter of reuse


@dataclass
class _Load:
    kind: str  # "weights" or "checkpoint"
    start: int
    duration: int | None  # None: the load failed (a start, no finish)
    size: int
    cache_hit: bool
    checkpoint_id: str
    checkpoint_version: str


@dataclass
class _Attempt:
    n: int
    node: Node
    queued: int
    started: int
    loads: list[_Load] = field(default_factory=list)
    initialized: int | None = None
    end: int | None = None  # finished / failed time; None for an orphan
    stop: int = 0  # when the node stopped working on it (end, or the crash of an orphan)
    outcome: str = "finished"  # finished, failed, orphaned
    error: str | None = None
    gpus: int = 1
    cpus: int = 1
    late_start: int | None = None  # when its xumi.task.started is delivered, if after its end


@dataclass(frozen=True)
class NodeUse:
    """What one attempt did to its node, for the simulated node metrics (dev/simulator/nodes.py): it held `gpus`
    GPUs and `cpus` cores over [start_ms, stop_ms) with the model's memory on them, and read its artifacts."""

    host_name: str
    start_ms: int
    stop_ms: int  # its end, or the crash of an orphan
    gpus: int
    cpus: int
    mem_gb: float  # the model's memory, spread over its GPUs
    reads: tuple[tuple[int, int, float], ...]  # (start ms, stop ms, bytes/s) of each load not served from cache


class TaskPlanner:
    """Plans tasks against the world, keeping each node's checkpoint cache (cache hits are state, not dice)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.cache: dict[str, list[tuple[str, str, str]]] = {}  # node_id -> LRU of loaded artifacts

    def start_task(self, ts_ms: int) -> bool:
        """Plan a task queued at ts_ms and schedule its events; False if it does not fit the run."""
        sim = self.sim
        rng, world = sim.rng, sim.world
        user = world.user_pick.pick(rng)
        project = user.projects[rng.below(len(user.projects))]
        combo = world.combo_pick.pick(rng)
        task_id = f"task-{rng.hex_id(16)}"
        input_bytes = rng.lognormal_ms(250_000, 1.5, 200, 500_000_000)
        out_tokens = rng.lognormal_ms(300, 0.8, 8, 8_000)
        workflow_only = rng.random() < sim.cfg.workflow_only_share
        cache_updates: list[tuple[str, tuple[str, str, str]]] = []  # applied only if the task is accepted
        attempts = self._plan_attempts(combo, ts_ms, out_tokens, cache_updates)

        steps = self._steps(task_id, user, project, combo, input_bytes, attempts, workflow_only)
        n_events, last_ts = len(steps), max(step[0] for step in steps)
        sim.planned_task_records += n_events  # counted even when rejected: keeps the share control stable
        if not sim.fits(n_events, last_ts):
            return False
        for node_id, key in cache_updates:
            lru = self.cache.setdefault(node_id, [])
            if key in lru:
                lru.remove(key)
            lru.append(key)
            if len(lru) > CACHE_SLOTS:
                del lru[0]
        key_bytes = task_id.encode()
        late_starts = {(a.n, a.started): a.late_start for a in attempts if a.late_start is not None}
        for ts, topic, cls, fields in steps:
            held = late_starts.get((fields.get("attempt"), ts)) if fields.get("event_name") == "xumi.task.started" \
                else None
            sim.schedule_event(ts, topic, key_bytes, cls, fields, held)
        self._truth(task_id, user, project, combo, attempts, steps, workflow_only)
        if sim.node_uses is not None:
            sim.node_uses.extend(_node_use(a, combo.model.mem_gb) for a in attempts)
        return True

    def _plan_attempts(self, combo: Combo, t: int, out_tokens: int,
                       cache_updates: list[tuple[str, tuple[str, str, str]]]) -> list[_Attempt]:
        """Attempts until one finishes, is orphaned, fails for good, or max_attempts is reached."""
        rng, world, cfg = self.sim.rng, self.sim.world, self.sim.cfg
        fits = world.nodes_for_model[(combo.model.name, combo.model.version)]
        attempts: list[_Attempt] = []
        prev_node = None
        for n in range(1, cfg.max_attempts + 1):
            node = fits[rng.below(len(fits))]
            if node is prev_node and len(fits) > 1:  # a retry goes elsewhere if it can
                node = fits[(fits.index(node) + 1 + rng.below(len(fits) - 1)) % len(fits)]
            a, retryable = self._plan_attempt(n, node, t, combo, out_tokens, cache_updates)
            attempts.append(a)
            if a.outcome != "failed" or not retryable:
                break
            t = a.stop + int((1_000 * 2 ** (n - 1) + rng.below(500)) * cfg.time_scale)  # exponential backoff
            prev_node = node
        return attempts

    def _plan_attempt(self, n: int, node: Node, queued: int, combo: Combo, out_tokens: int,
                      cache_updates: list[tuple[str, tuple[str, str, str]]]) -> tuple[_Attempt, bool]:
        """One attempt's timeline: queue, loads (cache or storage), init, inference, and where it fails."""
        rng, cfg = self.sim.rng, self.sim.cfg
        scale = cfg.time_scale
        model = combo.model
        a = _Attempt(n, node, queued, 0)
        a.gpus = self.sim.world.gpus_for(model, node.vm)
        a.cpus = max(1, node.vm.vcpus * a.gpus // node.vm.gpus)
        busy = 1.6 if node.vm.gpus >= 4 else 1.0  # big boxes are contended
        a.started = queued + int(rng.lognormal_ms(1_200 * busy, 1.1, 20, 180_000) * scale)
        fail_stage = _FAIL_STAGE.pick(rng) if rng.random() < combo.task_failure_rate else None
        error, retryable = _ERRORS[fail_stage].pick(rng) if fail_stage else (None, False)
        orphan = fail_stage is None and rng.random() < cfg.orphan_share

        # Loads: base weights, then the checkpoint; each hits the node's cache or reads from storage.
        cursor = a.started + 5 + rng.below(35)
        artifacts = [("weights", model.name, model.version, model.size_bytes)]
        if combo.checkpoint is not None:
            c = combo.checkpoint
            artifacts.append(("checkpoint", c.checkpoint_id, c.version, c.size_bytes))
        failing_load = rng.below(len(artifacts)) if fail_stage == "load" else -1
        for i, (kind, cid, cver, size) in enumerate(artifacts):
            key = (kind, cid, cver)
            hit = key in self._cached(node, cache_updates)
            speed = CACHE_READ if hit else STORAGE_READ[node.storage_type]
            duration = int((30 + size / speed) * math.exp(0.3 * rng.normal()) * scale) + 1
            load = _Load(kind, cursor, duration, size, hit, cid, cver)
            a.loads.append(load)
            if i == failing_load:  # a start, never a finish
                load.duration = None
                a.end = cursor + 1 + int(rng.random() * duration)
                break
            cache_updates.append((node.node_id, key))
            cursor += duration + 2 + rng.below(20)

        if a.end is None:
            init_ms = int(rng.lognormal_ms(400 + model.mem_gb * 10, 0.35, 50, 120_000) * scale) + 1
            if fail_stage == "init":
                a.end = cursor + 1 + int(rng.random() * init_ms)
            else:
                a.initialized = cursor + init_ms
                infer_ms = (200 + model.ms_per_token * out_tokens) * combo.latency_factor
                infer_ms = int(rng.lognormal_ms(infer_ms, 0.6, 100, 900_000) * scale) + 1
                if fail_stage == "inference" or orphan:  # it dies part-way through
                    infer_ms = 1 + int(rng.random() * infer_ms)
                a.end = a.initialized + infer_ms
        assert a.end is not None
        a.stop = a.end
        if orphan:
            a.outcome, a.end = "orphaned", None
        elif fail_stage:
            a.outcome, a.error = "failed", error
        frng = self.sim.fault_rng  # a delivery fault: the platform stays the same whatever its share
        if a.end is not None and frng.random() < cfg.late_start_share:
            a.late_start = a.end + cfg.late_start_delay_ms + frng.randrange(1_000)
        return a, retryable

    def _cached(self, node: Node, pending: list[tuple[str, tuple[str, str, str]]]) -> list[tuple[str, str, str]]:
        return self.cache.get(node.node_id, []) + [k for nid, k in pending if nid == node.node_id]

    # --- events ------------------------------------------------------------------------------------------

    def _steps(self, task_id: str, user: User, project: Project, combo: Combo, input_bytes: int,
               attempts: list[_Attempt], workflow_only: bool) -> list[Step]:
        sim = self.sim
        rng, world = sim.rng, sim.world
        model, ckpt = combo.model, combo.checkpoint
        dept = user.department
        base = {"tenant_id": dept.tenant.tenant_id, "user_id": user.user_id, "project_id": project.project_id,
                "department_id": dept.department_id}
        task_fields = {"task_id": task_id, "model": model.name, "model_version": model.version,
                       "checkpoint_id": ckpt.checkpoint_id if ckpt else None,
                       "checkpoint_version": ckpt.version if ckpt else None, "input_bytes": input_bytes}
        credit_labels = {"model": model.name, "model_version": model.version}
        if ckpt:
            credit_labels.update(checkpoint_id=ckpt.checkpoint_id, checkpoint_version=ckpt.version)
        steps: list[Step] = []

        fmt = sim.fmt_ts

        def env(ts: int, node: Node) -> dict[str, Any]:
            return {"event_id": rng.uuid4_str(), "ts": fmt(ts), "node_id": node.node_id, "vm_type": node.vm.name,
                    "host_name": node.host_name, **base}

        for a in attempts:
            if workflow_only:  # the attempts ran and were billed; XUMI reported none of it
                self._credits(steps, a, env, credit_labels, task_id, project.project_id)
                continue
            node = a.node
            tf = {**task_fields, "attempt": a.n}
            for t, name in ((a.queued, "xumi.task.queued"), (a.started, "xumi.task.started")):
                steps.append((t, "xumi_task", XumiTaskEvent, dict(**env(t, node), event_name=name, **tf)))
            for ld in a.loads:
                lf = {"task_id": task_id, "base_model": model.name, "checkpoint_id": ld.checkpoint_id,
                      "checkpoint_version": ld.checkpoint_version, "storage_type": node.storage_type,
                      "bytes": ld.size, "labels": {"model_version": model.version, "attempt": str(a.n)}}
                steps.append((ld.start, "xumi_load", XumiLoadEvent,
                              dict(**env(ld.start, node), event_name=f"xumi.{ld.kind}.load.start", **lf)))
                if ld.duration is not None:
                    t_fin = ld.start + ld.duration
                    steps.append((t_fin, "xumi_load", XumiLoadEvent, dict(
                        **env(t_fin, node), event_name=f"xumi.{ld.kind}.load.finish", duration_ms=ld.duration,
                        cache_hit=ld.cache_hit, **lf)))
            if a.initialized is not None:
                steps.append((a.initialized, "xumi_task", XumiTaskEvent, dict(
                    **env(a.initialized, node), event_name="xumi.task.initialized", **tf)))
            if a.outcome == "finished":
                assert a.end is not None
                out = rng.lognormal_ms(input_bytes * 2, 1.0, 100, 2_000_000_000)
                steps.append((a.end, "xumi_task", XumiTaskEvent, dict(
                    **env(a.end, node), event_name="xumi.task.finished", output_bytes=out, **tf)))
            elif a.outcome == "failed":
                assert a.end is not None and a.error is not None
                steps.append((a.end, "xumi_task", XumiTaskEvent, dict(
                    **env(a.end, node), event_name="xumi.task.failed", error_type=a.error,
                    error_message=_MESSAGES[a.error], **tf)))
            self._credits(steps, a, env, credit_labels, task_id, project.project_id)

        # The Workflow service's view: one TaskStarted when the task first runs, one end when it is over.
        wkf_node = world.service_nodes[rng.below(len(world.service_nodes))]
        first, last = attempts[0], attempts[-1]
        t0 = first.started + 2 + rng.below(30)
        steps.append((t0, "wkf_task", WkfTaskEvent, dict(**env(t0, wkf_node), event_name="wkf.task.started",
                                                   event_type="TaskStarted", task_id=task_id,
                                                   k8s_node=first.node.host_name)))
        if last.end is not None:
            t1 = last.end + 20 + rng.below(280)
            done = last.outcome == "finished"
            steps.append((t1, "wkf_task", WkfTaskEvent, dict(
                **env(t1, wkf_node), event_name="wkf.task.completed" if done else "wkf.task.failed",
                event_type="TaskCompleted" if done else "TaskFailed", task_id=task_id)))
        return steps

    def _credits(self, steps: list[Step], a: _Attempt, env: Any, labels: dict[str, str],
                 task_id: str, project_id: str) -> None:
        """Credit records per interval of use: the Workflow bills [started, stop], Kubernetes the pod's life
        (until a short teardown after stop). An orphan's node dies: only intervals completed before it."""
        rng, cfg = self.sim.rng, self.sim.cfg
        interval = cfg.credit_interval_s * 1000
        vm = a.node.vm
        teardown = 0 if a.outcome == "orphaned" else 200 + rng.below(1_800)
        kuber_labels = {**labels, "namespace": f"xumi-{project_id}"}
        for system, stop, lab in (("wkf", a.stop, labels), ("kuber", a.stop + teardown, kuber_labels)):
            seg = a.started
            while seg < stop:
                seg_end = min(stop, seg + interval)
                if a.outcome == "orphaned" and seg_end == stop:
                    break  # the crash ends the interval: nobody reports it
                seconds = round((seg_end - seg) / 125) / 8  # billing granularity 1/8 s (exact floats)
                if seconds > 0:
                    for resource, units, price in (("cpu", a.cpus, vm.cpu_price), ("gpu", a.gpus, vm.gpu_price)):
                        cls = _CREDIT_CLASS[(system, resource)]
                        extra = {"gpu_type": vm.gpu_type} if resource == "gpu" else {}
                        steps.append((seg_end, f"{system}_{resource}", cls, dict(
                            **env(seg_end, a.node), event_name=f"{system}.{resource}.charged", resource=resource,
                            units=float(units), seconds=seconds, credits=self._charge(units, seconds, price),
                            task_id=task_id, labels=lab, **extra)))
                seg = seg_end

    def _charge(self, units: int, seconds: float, price: Decimal) -> Decimal:
        """Credits of one record, exact to the micro-credit (rounded half-even, as a biller would)."""
        if self.sim.cfg.credits_near_max:
            return Decimal(self.sim.rng.randrange(MAX_CREDITS_MICROS // 2, MAX_CREDITS_MICROS)) * MICRO_CREDIT
        return (units * Decimal(repr(seconds)) * price).quantize(MICRO_CREDIT, ROUND_HALF_EVEN)

    # --- ground truth --------------------------------------------------------------------------------------

    def _truth(self, task_id: str, user: User, project: Project, combo: Combo, attempts: list[_Attempt],
               steps: list[Step], workflow_only: bool) -> None:
        truth = self.sim.truth
        model, ckpt = combo.model, combo.checkpoint
        dept = user.department
        head = (dept.tenant.tenant_id, dept.department_id, project.project_id, user.user_id)
        dims = (*head, model.name, model.version, ckpt.checkpoint_id if ckpt else "", ckpt.version if ckpt else "")
        counts = truth.tasks
        counts["tasks"] += 1
        self._credit_truth(steps, dims)
        if workflow_only:
            self._workflow_truth(task_id, head, attempts[-1], steps)
            return
        counts["late_starts"] += sum(a.late_start is not None for a in attempts)
        for a in attempts:
            counts["attempts"] += 1
            counts["retried_attempts"] += a.n > 1
            load_ms = sum(ld.duration for ld in a.loads if ld.duration is not None)
            for ld in a.loads:
                if ld.duration is not None:
                    row = truth.row(LOADS, ld.start + ld.duration, (*head, model.name, model.version, ld.checkpoint_id,
                                                             ld.checkpoint_version))
                    row[_C["loads"]] += 1
                    row[_C["load_cache_hits"]] += ld.cache_hit
                    row[_C["load_bytes"]] += ld.size
                    row[_C["load_ms_sum"]] += ld.duration
            if a.end is None:
                counts["orphaned"] += 1
                last = max([a.started, a.initialized or 0, *(ld.start + (ld.duration or 0) for ld in a.loads)])
                truth.orphans.append([task_id, a.n, last])
                continue
            counts[a.outcome] += 1
            row = truth.row(TASKS, a.end, dims)
            row[_C["tasks_finished" if a.outcome == "finished" else "tasks_failed"]] += 1
            row[_C["task_retries"]] += a.n > 1
            row[_C["task_queue_ms_sum"]] += a.started - a.queued
            row[_C["task_load_ms_sum"]] += load_ms
            if a.initialized is not None:
                row[_C["task_init_ms_sum"]] += a.initialized - a.started - load_ms
                row[_C["task_inference_ms_sum"]] += a.end - a.initialized
            row[_C["task_total_ms_sum"]] += a.end - a.queued

    def _workflow_truth(self, task_id: str, head: tuple[str, ...], last: _Attempt, steps: list[Step]) -> None:
        """The one fact of a task only the Workflow service reported: attempt 1 from TaskStarted to its end,
        ended as the last attempt did; no model, no phases (it knows neither)."""
        truth, counts = self.sim.truth, self.sim.truth.tasks
        counts["attempts"] += 1
        counts["workflow_only"] += 1
        wkf = {fields["event_type"]: ts for ts, topic, _, fields in steps if topic == "wkf_task"}
        if last.end is None:
            counts["orphaned"] += 1
            truth.orphans.append([task_id, 1, wkf["TaskStarted"]])
            return
        counts[last.outcome] += 1
        end = wkf["TaskCompleted" if last.outcome == "finished" else "TaskFailed"]
        truth.row(TASKS, end, (*head, "", "", "", ""))[_C["tasks_finished" if last.outcome == "finished"
                                                          else "tasks_failed"]] += 1

    def _credit_truth(self, steps: list[Step], dims: tuple[str, ...]) -> None:
        truth = self.sim.truth
        for ts, topic, _, fields in steps:
            if topic in _CREDIT_COLS:
                s_col, c_col = _CREDIT_COLS[topic]
                row = truth.row(CREDITS, ts, dims)
                row[s_col] += Decimal(repr(fields["units"])) * Decimal(repr(fields["seconds"]))
                row[c_col] += fields["credits"]


def _node_use(a: _Attempt, mem_gb: float) -> NodeUse:
    """A failed load read at its storage's speed until the attempt stopped; a finished one its bytes over its
    duration (what its load.finish event says)."""
    storage = STORAGE_READ[a.node.storage_type] * 1000
    reads = tuple((ld.start, a.stop, storage) if ld.duration is None else
                  (ld.start, ld.start + ld.duration, ld.size * 1000 / ld.duration)
                  for ld in a.loads if not ld.cache_hit)
    return NodeUse(a.node.host_name, a.started, a.stop, a.gpus, a.cpus, mem_gb, reads)


_CREDIT_CLASS: dict[tuple[str, str], type] = {
    ("wkf", "cpu"): WkfCpuCreditEvent, ("wkf", "gpu"): WkfGpuCreditEvent,
    ("kuber", "cpu"): KuberCpuCreditEvent, ("kuber", "gpu"): KuberGpuCreditEvent,
}
_CREDIT_COLS = {
    "wkf_cpu": (COL["wkf_cpu_s"], COL["wkf_credits"]), "wkf_gpu": (COL["wkf_gpu_s"], COL["wkf_credits"]),
    "kuber_cpu": (COL["kuber_cpu_s"], COL["kuber_credits"]), "kuber_gpu": (COL["kuber_gpu_s"], COL["kuber_credits"]),
}
