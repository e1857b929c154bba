"""The lifecycle join as a KeyedProcessFunction keyed by task_id: telemetry.lifecycle in a ValueState (its JSON
text) with its deadlines as event-time timers. Input: the canonical JSON (str) of a valid xumi_task, xumi_load
or wkf_task event, or a row (task_id, event_json, late). Output: FACT_ROW_TYPE, a ROW_NAMED with task_facts'
columns (timestamps as epoch ms, LONG), one row per report or revision of an attempt.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from telemetry.lifecycle import FACT_COLUMNS, JAVA_LONG_MAX, LifecycleConfig, Result, TaskState, expire, step

FACT_NAMES = [name for name, _ in FACT_COLUMNS]
_FLINK_TYPES = {str: Types.STRING(), int: Types.LONG(), float: Types.DOUBLE()}
FACT_ROW_TYPE = Types.ROW_NAMED(FACT_NAMES, [_FLINK_TYPES[kind] for _, kind in FACT_COLUMNS])


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

    def process_element(self, value: str | Row, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        # The job hands over rows (task_id, event_json, late) from validate and route; a plain JSON text works too.
        text, late = (value, False) if isinstance(value, str) else (value[1], bool(value[2]))
        timers = ctx.timer_service()
        yield from self._keep(step(self._load(), json.loads(text), timers.current_watermark(), self.cfg, late), timers)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Row]:
        state = self._load()
        if state is not None and state.armed is not None and state.armed <= timestamp:
            state.armed = None  # timers fire in time order: the armed one has now
        yield from self._keep(expire(state, timestamp, ctx.get_current_key(), self.cfg), ctx.timer_service())

    def _load(self) -> TaskState | None:
        raw = self.state.value()
        return TaskState.from_bytes(raw) if raw else None

    def _keep(self, result: Result, timers: Any) -> Iterable[Row]:
        state, facts, timer = result
        if state is None:
            self.state.clear()  # timers still pending find no state when they fire
        else:
            # One timer armed at a time: a later deadline waits for it, and expire() re-arms the next one when it
            # fires. Each open attempt's deadline moves with its every event; registering each one cost a timer
            # write per event, and as many firings later.
            if timer is not None and (state.armed is None or timer < state.armed):
                state.armed = min(timer, JAVA_LONG_MAX)
                timers.register_event_time_timer(state.armed)
            self.state.update(state.to_bytes().decode())
        return [to_row(f) for f in facts]
