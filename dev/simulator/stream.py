"""The deterministic record stream: a clock driven by the record index, activities started on it, and delivery.

Source time advances one step per source record at the target rate; events planned for later (task steps,
audit follow-ups) wait in a heap until the clock reaches them. Output is exactly `cfg.events` records.
"""

from __future__ import annotations

import heapq
from typing import Any, Iterator

from dev.simulator import audit, llm
from dev.simulator.config import SimConfig
from dev.simulator.encode import TsFormatter, codec
from dev.simulator.faults import Reorder, malformed
from dev.simulator.lifecycle import NodeUse, TaskPlanner
from dev.simulator.rand import Rand
from dev.simulator.truth import Truth
from dev.simulator.world import World, build_world
from telemetry.topics import METRICS_TOPIC, SOURCE_TOPICS

# Topics the simulator writes: every source topic except the SDK's own metrics topic (seed 004's producers).
SIMULATED_TOPICS: tuple[str, ...] = tuple(t for t in SOURCE_TOPICS if t != METRICS_TOPIC)

# A Kafka record: topic, key, value, timestamp (epoch ms; the event's ts, so Flink can take event time from it).
Record = tuple[str, "bytes | None", bytes, int]

# Rare audit flows per access flow: policy changes and PBAC service messages.
_POLICY_CHANGE_P = 0.01
_SERVICE_MSG_P = 0.01


class Simulation:
    """One run: world, clock, pending events, delivery effects and the ground truth, all from `cfg`."""

    def __init__(self, cfg: SimConfig, check: bool = False, node_uses: list[NodeUse] | None = None) -> None:
        self.cfg = cfg
        self.check = check  # build every event's model too and require identical bytes (tests, --check-events)
        self.fmt_ts = TsFormatter()
        # Separate streams for the world, the activities and the delivery faults: changing fault shares
        # leaves the platform the same.
        self.world: World = build_world(cfg, Rand(f"world:{cfg.seed}"))
        self.rng = Rand(f"events:{cfg.seed}")
        self.fault_rng = Rand(f"faults:{cfg.seed}")
        self.truth = Truth(cfg, SIMULATED_TOPICS)
        self.sessions: dict[str, str] = {}
        # Records planned per activity (tasks count rejected plans too), steering the mix to the target shares.
        self.planned_task_records = 0
        self.planned_llm_records = 0
        self.planned_audit_records = 0
        self.tasks = TaskPlanner(self)
        self.node_uses = node_uses  # when a list: every accepted attempt's NodeUse is appended
        # (ts, seq, topic, key, model, fields, held until): events wait here for their event time
        self._heap: list[tuple[int, int, str, bytes, type, dict[str, Any], int | None]] = []
        self._seq = 0
        self._reorder = Reorder()
        # Records promised so far: emitted, held for reordering, or scheduled. Never above cfg.events, so
        # every planned lifecycle completes within the run and the output has exactly cfg.events records.
        self._committed = 0
        self._last_valid: dict[str, tuple[bytes | None, bytes]] = {}  # topic -> (key, value): malformed seeds
        self._last_topic: str | None = None

    # --- API for the activity generators ------------------------------------------------------------------

    def fits(self, n_records: int, last_ts_ms: int) -> bool:
        """Whether an activity of n_records ending at last_ts_ms still fits the run (count and end time)."""
        return self._committed + n_records <= self.cfg.events and last_ts_ms <= self.cfg.end_ms

    def schedule_event(self, ts_ms: int, topic: str, key: bytes, model: type, fields: dict[str, Any],
                       deliver_at: int | None = None) -> None:
        """Emit the event at its ts; deliver_at: hold its record (and any redelivery) until the source reaches
        that time instead of the usual out-of-order delay."""
        heapq.heappush(self._heap, (ts_ms, self._seq, topic, key, model, fields, deliver_at))
        self._seq += 1
        self._committed += 1

    # --- the stream -------------------------------------------------------------------------------------------

    def records(self) -> Iterator[list[Record]]:
        """Yield batches of output records until exactly cfg.events have been produced."""
        cfg, frng = self.cfg, self.fault_rng
        step, start, total = cfg.step_ms, cfg.start_ms, cfg.events
        heap = self._heap
        out: list[Record] = []
        k = 0  # source records so far: drives the clock
        while True:
            clock = start + int(k * step)
            if heap and (heap[0][0] <= clock or self._committed >= total):
                # Due (or, once the budget is spent, the rest of the planned lifecycles, in time order).
                ts, _, topic, key, model, fields, deliver_at = heapq.heappop(heap)
                self._emit_valid(ts, topic, key, model, fields, out, deliver_at)
                k += 1
            elif self._committed < total:
                if self._last_topic is not None and frng.random() < cfg.malformed_share:
                    self._committed += 1
                    self._emit_malformed(clock, out)
                    k += 1
                else:
                    k += self._start_activity(clock, out)
            else:
                break
            if len(out) >= 512:
                yield out
                out = []
        self._reorder.drain(out)
        if out:
            yield out

    def _start_activity(self, clock: int, out: list[Record]) -> int:
        """Start a task, an audit flow or an LLM request at `clock`; returns the source records emitted now
        (an LLM request: 1; the others put their first event at `clock` into the heap, popped next round)."""
        cfg = self.cfg
        shares = cfg.share_llm + cfg.share_tasks + cfg.share_audit
        # Weighted by how far each activity is behind its share of the records planned so far
        # (a task plans ~10-30 records at once, an LLM request one).
        planned = self.planned_task_records + self.planned_llm_records + self.planned_audit_records + 1
        w_llm = max(0.0, cfg.share_llm / shares * planned - self.planned_llm_records)
        w_tasks = max(0.0, cfg.share_tasks / shares * planned - self.planned_task_records)
        w_audit = max(0.0, cfg.share_audit / shares * planned - self.planned_audit_records)
        r = self.rng.random() * (w_llm + w_tasks + w_audit)
        if w_llm <= r < w_llm + w_tasks:
            if self.tasks.start_task(clock):
                return 0
        elif r >= w_llm + w_tasks:
            before = self._committed
            r2 = self.rng.random()
            if r2 < _POLICY_CHANGE_P:
                started = audit.policy_change(self, clock)
            elif r2 < _POLICY_CHANGE_P + _SERVICE_MSG_P:
                started = audit.service_message(self, clock)
            else:
                started = audit.access_flow(self, clock)
            self.planned_audit_records += self._committed - before
            if started:
                return 0
        # An LLM request, also the fallback when a longer activity does not fit the rest of the run.
        self.planned_llm_records += 1
        topic, key, model, fields = llm.request(self, clock)
        self._committed += 1
        self._emit_valid(clock, topic, key, model, fields, out)
        return 1

    def _deliver(self, record: Record, out: list[Record], extra_delay: bool, held_until: int | None = None) -> None:
        cfg, frng = self.cfg, self.fault_rng
        ts = record[3]
        delay = 0
        if extra_delay or frng.random() < cfg.out_of_order_share:
            delay = frng.randrange(cfg.max_out_of_order_ms + 1) if cfg.max_out_of_order_ms else 0
        if held_until is not None:
            self._reorder.push(held_until + delay, record)
        elif delay == 0 and not len(self._reorder):
            out.append(record)  # the common case: nothing held back, nothing to wait for
        else:
            self._reorder.push(ts + delay, record)
        self._reorder.release(ts, out)

    def _emit_valid(self, ts: int, topic: str, key: bytes, model: type, fields: dict[str, Any],
                    out: list[Record], held_until: int | None = None) -> None:
        c = codec(model)
        value = c.encode(fields)
        if self.check:
            c.check(fields, value)
        truth = self.truth
        truth.valid[topic] += 1
        truth.produced[topic] += 1
        if ts > truth.max_ts:
            truth.max_ts = ts
        record = (topic, key, value, ts)
        self._deliver(record, out, False, held_until)
        self._last_valid[topic] = (key, value)
        self._last_topic = topic
        cfg = self.cfg
        if cfg.duplicate_share and self.fault_rng.random() < cfg.duplicate_share:
            if self._committed < cfg.events:
                self._committed += 1
                # A redelivery (producer retry without idempotence, replayed batch): same key and bytes, a bit later.
                truth.duplicates[topic] += 1
                truth.produced[topic] += 1
                self._deliver(record, out, True, held_until)

    def _emit_malformed(self, clock: int, out: list[Record]) -> None:
        topic = self._last_topic
        assert topic is not None
        key, value = self._last_valid[topic]
        raw, reason, _ = malformed(topic, value, self.fault_rng, self.cfg.malformed_kinds)
        self.truth.add_malformed(topic, reason.value)
        self.truth.produced[topic] += 1
        self._deliver((topic, key, raw, clock), out, False)


def generate(cfg: SimConfig, check: bool = False) -> tuple[Iterator[list[Record]], Truth]:
    """The record batches of a run and its truth (complete once the iterator is exhausted)."""
    sim = Simulation(cfg, check)
    return sim.records(), sim.truth
