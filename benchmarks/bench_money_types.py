"""What carrying money exactly costs the job's Python hop: rows of 7 money columns out of a thread-mode Python
function, as DOUBLE, DECIMAL (Python Decimal <-> Java BigDecimal) or BIGINT micro-units, then summed per 1 s
window in Flink SQL (BIGINT micro-units summed as BIGINT, or as DECIMAL(38, 0) as the job does).

Prints figures only: `PYTHONPATH=. python benchmarks/bench_money_types.py [--records 1000000] [--kind KIND]`. A
local mini-cluster per representation, start-up included in the figure; the sequence source and the aggregate run
in the JVM, so the differences are the Python hop's hand-over and the sums. Run each kind on its own (--kind) for
figures that do not share a JVM.
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal

from pyflink.common import Configuration, Row, Types, WatermarkStrategy
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.number_seq import NumberSequenceSource
from pyflink.table import Schema, StreamTableEnvironment

from udfs.python_env import expose_site_packages

COLUMNS = [f"m{i}" for i in range(7)]
KINDS = {
    "double": (Types.DOUBLE(), lambda i: float(i % 1000) * 0.125, "DOUBLE"),
    "decimal": (Types.BIG_DEC(), lambda i: Decimal(i % 1000) * Decimal("0.125"), "DECIMAL(38, 6)"),
    "bigint micro-units": (Types.LONG(), lambda i: (i % 1000) * 125_000, "BIGINT"),
    # micro-units from Python, summed as decimals in SQL (a sum of BIGINTs could overflow): the JVM's share
    "bigint, decimal sums": (Types.LONG(), lambda i: (i % 1000) * 125_000, "DECIMAL(38, 0)"),
}


def run(kind: str, records: int) -> float:
    type_info, value, sql_type = KINDS[kind]
    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    conf.set_string("python.executable", sys.executable)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    row_type = Types.ROW_NAMED(["k", *COLUMNS], [Types.LONG(), *[type_info] * len(COLUMNS)])

    def money_row(i: int) -> Row:
        v = value(i)
        return Row(i % 97, v, v, v, v, v, v, v)

    rows = (env.from_source(NumberSequenceSource(1, records), WatermarkStrategy.no_watermarks(), "sequence")
            .map(money_row, output_type=row_type))
    t_env.create_temporary_view("money", t_env.from_data_stream(
        rows, Schema.new_builder().column_by_expression("pt", "PROCTIME()").build()))
    sums = ", ".join(f"SUM(CAST({c} AS {sql_type}))" for c in COLUMNS)
    t_env.execute_sql("CREATE TEMPORARY TABLE out_sink (k BIGINT, " + ", ".join(f"{c} {sql_type}" for c in COLUMNS)
                      + ") WITH ('connector' = 'blackhole')")
    began = time.monotonic()
    t_env.execute_sql("INSERT INTO out_sink SELECT k, " + sums + " FROM TABLE(TUMBLE(TABLE money, DESCRIPTOR(pt), "
                      "INTERVAL '1' SECOND)) GROUP BY window_start, window_end, k").wait()
    return records / (time.monotonic() - began)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--kind", choices=[*KINDS, "all"], default="all")
    args = ap.parse_args()
    expose_site_packages()
    for kind in (KINDS if args.kind == "all" else [args.kind]):
        rate = run(kind, args.records)
        print(f"{kind:20s} {rate:10,.0f} records/s  ({1e6 / rate:6.1f} µs per record, job start-up included)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
