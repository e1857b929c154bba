"""pipeline.facts.bill as a KeyedProcessFunction keyed by attempt (fact_key): each fact revision in (FACT_ROW_TYPE,
after enrichment), its task_facts row out (JSON text), and on DELTA_TAG the usage_10s rows (JSON text) that keep
usage equal to the attempt's counted revision. The ledger lives in a ValueState until an event-time timer at the
close of its window for billing.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from pipeline.facts import Ledger, bill, task_fact_row
from udfs.lifecycle import FACT_NAMES, to_fact

DELTA_TAG = OutputTag("task-usage", Types.STRING())
_TASK_ID, _ATTEMPT = FACT_NAMES.index("task_id"), FACT_NAMES.index("attempt")


def fact_key(row: Row) -> str:
    """The key of an attempt: task_id and attempt number (a task_id holds no NUL: it is validated text)."""
    return f"{row[_TASK_ID]}\0{row[_ATTEMPT]}"


def dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"))


class FactLedger(KeyedProcessFunction):
    """Key the facts by fact_key before this function."""

    def __init__(self, allowed_lateness_ms: int) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("ledger", Types.STRING()))

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        fact = to_fact(value)
        raw = self.state.value()
        before = Ledger.from_text(raw) if raw else None
        after, deltas = bill(before, fact, self.allowed_lateness_ms)
        if after is None:
            if before is not None:
                self.state.clear()
        elif after is not before:
            if before is None or after.until != before.until:
                ctx.timer_service().register_event_time_timer(after.until)
            self.state.update(after.to_text())
        yield dumps(task_fact_row(fact))
        for delta in deltas:
            yield DELTA_TAG, dumps(delta)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        raw = self.state.value()
        if raw and Ledger.from_text(raw).until <= timestamp:
            self.state.clear()  # its window is closed for billing: no revision can change it any more
        return []
