"""The lifecycle join as a KeyedProcessFunction keyed by task_id: pipeline.lifecycle in a ValueState (its JSON
text) with its deadlines as event-time timers. Input: the canonical JSON (str) of a valid xumi_task, xumi_load
or wkf_task event, or a row (task_id, event_json, late, topic, partition, offset, kafka_ts_ms). Output:
FACT_ROW_TYPE, a ROW_NAMED with task_facts' columns (timestamps as epoch ms, LONG), one row per report or revision
of an attempt; events the join fails on leave on JOIN_DLQ_TAG as DLQ rows (reason internal_error), the task's
state left as it was before them.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Iterable, Mapping

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from pipeline import routing
from pipeline.lifecycle import FACT_COLUMNS, JAVA_LONG_MAX, LifecycleConfig, Result, TaskState, expire, step
from udfs.route import DLQ_ROW_TYPE

FACT_NAMES = [name for name, _ in FACT_COLUMNS]
_FLINK_TYPES = {str: Types.STRING(), int: Types.LONG(), float: Types.DOUBLE()}
FACT_ROW_TYPE = Types.ROW_NAMED(FACT_NAMES, [_FLINK_TYPES[kind] for _, kind in FACT_COLUMNS])
# Not counted in the ingest counters: these events were counted valid when they came in.
JOIN_DLQ_TAG = OutputTag("lifecycle-dlq", DLQ_ROW_TYPE)
# A task state that failed at a timer is no Kafka record: its DLQ row names this topic and an offset derived from
# the task and the timer, so each gets a row of its own in dlq_events (keyed by topic, partition, offset) and a
# replay writes the same one.
STATE_TOPIC = "lifecycle_state"


def state_offset(task_id: str, timer_ms: int) -> int:
    digest = hashlib.blake2b(f"{task_id}\0{timer_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def to_row(fact: Mapping[str, Any]) -> Row:
    return Row(*(fact[name] for name in FACT_NAMES))


def to_fact(row: Row) -> dict[str, Any]:
    return dict(zip(FACT_NAMES, row))


class LifecycleJoin(KeyedProcessFunction):
    """Key the input by task_id before this function (events without one never reach it)."""

    def __init__(self, cfg: LifecycleConfig = LifecycleConfig()) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        # The JSON as a STRING: a BYTE array state reads back as a TypeError when empty in thread mode (PyFlink 2.2.1)
        self.state = runtime_context.get_state(ValueStateDescriptor("lifecycle", Types.STRING()))
        # named as validate and route names its DLQ reasons, so one alert covers both operators
        self.internal_errors = runtime_context.get_metrics_group().add_group("dlq_reason").counter("internal_error")

    def process_element(self, value: str | Row, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        # The job hands over rows (task_id, event_json, late, topic, partition, offset, kafka_ts_ms) from validate and
        # route; a plain JSON text works too.
        text, late = (value, False) if isinstance(value, str) else (value[1], bool(value[2]))
        timers = ctx.timer_service()
        try:
            state, armed = self._load(self.state.value())
            out = self._keep(step(state, json.loads(text), timers.current_watermark(), self.cfg, late), armed, timers)
        except Exception as exc:  # noqa: BLE001 - the event goes to the DLQ; the stored state is untouched
            position = ("", 0, 0, 0) if isinstance(value, str) else tuple(value[3:7])
            yield JOIN_DLQ_TAG, self._dlq_row(*position, text.encode(), exc)
            return
        yield from out

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        raw = self.state.value()
        try:
            state, armed = self._load(raw)
            if armed is not None and armed <= timestamp:
                armed = None  # timers fire in time order: the armed one has now
            out = self._keep(expire(state, timestamp, ctx.get_current_key(), self.cfg), armed, ctx.timer_service())
        except Exception as exc:  # noqa: BLE001 - keeping a state that fails would fail at every timer
            # Nothing is dropped silently: the task's state goes to the DLQ whole, for a fix and a replay.
            self.state.clear()
            task_id = ctx.get_current_key()
            yield JOIN_DLQ_TAG, self._dlq_row(STATE_TOPIC, 0, state_offset(task_id, timestamp), timestamp,
                                              (raw or "").encode(), exc)
            return
        yield from out

    def _dlq_row(self, topic: str, partition: int, offset: int, kafka_ts_ms: int, raw: bytes, exc: Exception) -> Row:
        self.internal_errors.inc()
        now_ms = int(time.time() * 1000)
        record = routing.dlq_record(topic, partition, offset, kafka_ts_ms, raw, routing.internal_error(exc),
                                    self.cfg.job_version, now_ms)
        return Row(topic, routing.window_start(min(kafka_ts_ms, now_ms)), json.dumps(record, separators=(",", ":")))

    @staticmethod
    def _load(raw: str | None) -> tuple[TaskState | None, int | None]:
        """The task's state and the event-time timer this operator has armed for it and that has not fired yet,
        stored as one text (the timer, a newline, the state's JSON) so one state read per event serves both."""
        if not raw:
            return None, None
        armed, _, state = raw.partition("\n")
        return TaskState.from_bytes(state), int(armed) if armed else None

    def _keep(self, result: Result, armed: int | None, timers: Any) -> list[Row]:
        """Store the new state and arm its timer; the rows come first, so a failure leaves state and timers as
        they were."""
        state, facts, timer = result
        rows = [to_row(f) for f in facts]
        if state is None:
            self.state.clear()  # timers still pending find no state when they fire
        else:
            # One timer armed at a time: a later deadline waits for it, and expire() re-arms the next one when it
            # fires. Each open attempt's deadline moves with its every event; registering each one cost a timer
            # write per event, and as many firings later.
            if timer is not None and (armed is None or timer < armed):
                armed = min(timer, JAVA_LONG_MAX)
                timers.register_event_time_timer(armed)
            self.state.update(f"{'' if armed is None else armed}\n{state.to_bytes().decode()}")
        return rows
