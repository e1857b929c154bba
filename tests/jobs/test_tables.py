"""The SQL both jobs share (jobs/tables.py, jobs/runtime.py) run in a Flink batch environment: the DateTime64 text
Flink SQL writes equals what Python writes (pipeline/chtime.py) for generated event times, and money sums stay exact."""

from __future__ import annotations

import random
from decimal import Decimal

from pyflink.table import EnvironmentSettings, TableEnvironment

from jobs.runtime import base_configuration
from jobs.tables import summed
from pipeline.chtime import datetime_sql, datetime_text
from schemas.types import TS_MAX, TS_MIN


def batch_env() -> TableEnvironment:
    conf = base_configuration()
    conf.set_string("parallelism.default", "1")
    return TableEnvironment.create(EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build())


def test_flink_sql_and_python_write_the_same_datetime_text_and_exact_money_sums() -> None:
    lo, hi = (int(t.timestamp() * 1000) for t in (TS_MIN, TS_MAX))
    rng = random.Random(20261203)
    times = [lo, hi, 0, 1_767_225_599_999, *(rng.randrange(lo, hi) for _ in range(40))]
    t_env = batch_env()
    values = ", ".join(f"(CAST({ms} AS BIGINT))" for ms in times)
    with t_env.execute_sql(f"SELECT ms, {datetime_sql('ms')} FROM (VALUES {values}) AS t(ms)").collect() as result:
        got = {r[0]: r[1] for r in result}
    assert got == {ms: datetime_text(ms) for ms in times}

    micros = [10**18, 10**18, 1, 999_999]  # two records at the BIGINT edge: their sum overflows a BIGINT
    rows = ", ".join(f"(CAST({m} AS BIGINT))" for m in micros)
    with t_env.execute_sql(f"SELECT {summed('credits')} FROM (VALUES {rows}) AS t(credits)").collect() as result:
        (total,) = [r[0] for r in result]
    assert Decimal(total) == Decimal(sum(micros)) / 10**6
