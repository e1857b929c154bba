"""Priced cost tables, one whole UTC day at a time: costs_1h / costs_1d from cost_usage_span, the VM cost tables
task_costs / vm_costs_1h from cost_tasks_span / vm_activity_span, and with them the task sums task_facts_1d.

Days are recomputed into a side table (a run of consecutive days per query) and swapped in day by day with REPLACE
PARTITION, so readers see a day's old rows or its new ones; which days is what cost_dirty_days noted since the last
run (usage inserts: the usage tables; task_facts inserts: the VM tables; catalogue versions loaded: both).
`python -m telemetry.costs refresh` runs once, or every --every seconds; `--all` reprices every day with usage or runs.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from telemetry import clickhouse, schedule, settings

# Inserts that were in flight when a run read cost_dirty_days can become visible with an earlier noted_at: each run
# takes this much before its last mark again (a day computed twice costs time, never exactness).
OVERLAP = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# costs_1d from a day of costs_1h: every quantity and cost summed (Decimal sums stay exact), unpriced items united.
_DAY_SQL = """
    SELECT toStartOfDay(window_start) AS day_start, tenant_id, department_id, project_id, user_id, model, model_version,
           checkpoint_id, sum(requests), sum(tokens_in), sum(tokens_out), sum(gpu_seconds), sum(cpu_seconds), sum(loads),
           sum(load_bytes), sum(load_transfer_bytes), sum(token_cost), sum(gpu_cost), sum(cpu_cost), sum(load_cost),
           sum(total_cost), sum(wkf_credits), sum(kuber_credits), arraySort(groupUniqArrayArray(unpriced)),
           max(catalogue_version), max(priced_at)
    FROM {table}
    GROUP BY day_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id"""


# A run of days priced in one query: the VM spans hold a run's attempts in memory for their window functions.
LONGEST_USAGE_RUN = 31
LONGEST_VM_RUN = 7
# Reasons in cost_dirty_days that concern only one family of tables; any other (a catalogue version) concerns both.
USAGE_ONLY = frozenset({"usage", "backfill"})
VM_ONLY = frozenset({"tasks"})


# task_facts_1d from task_rows_span: every count and sum summed per day and key.
_TASK_DAY_SQL = """
    SELECT day, tenant_id, department_id, project_id, user_id, base_model, model_version, checkpoint_id,
           checkpoint_version, status, sum(attempt_count), sum(retry_count), sum(queue_ms_sum), sum(queue_ms_count),
           sum(checkpoint_load_ms_sum), sum(checkpoint_load_ms_count), sum(init_ms_sum), sum(init_ms_count),
           sum(inference_ms_sum), sum(inference_ms_count), sum(total_ms_sum), sum(total_ms_count), now64(3)
    FROM {source}
    GROUP BY day, tenant_id, department_id, project_id, user_id, base_model, model_version, checkpoint_id,
             checkpoint_version, status"""


@dataclass(frozen=True)
class RefreshResult:
    days: list[date]
    rows: int
    catalogue_version: int
    vm_days: list[date] = field(default_factory=list)
    vm_rows: int = 0


def catalogue_version(client: Client, database: str) -> int:
    """The highest catalogue version loaded (0: none): the prices every version up to it define."""
    return int(client.command(f"SELECT max(version) FROM {database}.price_catalogue") or 0)


def dirty_days(client: Client, database: str) -> tuple[list[date], list[date], datetime]:
    """Days noted since the last run (less OVERLAP) whose usage costs, and whose VM costs, are to be computed again;
    and the newest mark taken."""
    last = _utc(client.query(f"SELECT max(noted_until) FROM {database}.cost_refreshes").result_rows[0][0])
    since = max(last - OVERLAP, EPOCH) if last > EPOCH else EPOCH
    rows = client.query(
        f"SELECT day, groupUniqArray(reason), max(noted_at) FROM {database}.cost_dirty_days "
        "WHERE noted_at > {since:DateTime64(3, 'UTC')} GROUP BY day ORDER BY day", parameters={"since": since}).result_rows
    until = max((_utc(noted) for _, _, noted in rows), default=since)
    usage = [day for day, reasons, _ in rows if not set(reasons) <= VM_ONLY]
    vm = [day for day, reasons, _ in rows if not set(reasons) <= USAGE_ONLY]
    return usage, vm, until


def days_with_usage(client: Client, database: str, lo: datetime | None = None, hi: datetime | None = None) -> list[date]:
    where = "WHERE window_start >= {lo:DateTime('UTC')} AND window_start < {hi:DateTime('UTC')}" if lo and hi else ""
    params = {"lo": _clip(lo), "hi": _clip(hi)} if lo and hi else {}
    return [row[0] for row in client.query(
        f"SELECT DISTINCT toDate(window_start) AS day FROM {database}.usage_1d {where} ORDER BY day",
        parameters=params).result_rows]


def days_with_runs(client: Client, database: str, lo: datetime | None = None, hi: datetime | None = None) -> list[date]:
    """Days with VM costs to compute: those attempts ended on and the day before each (an attempt that crossed
    midnight kept its node busy on both)."""
    where = "WHERE finished_at >= {lo:DateTime('UTC')} AND finished_at < {hi:DateTime('UTC')}" if lo and hi else ""
    params = {"lo": _clip(lo), "hi": _clip(hi)} if lo and hi else {}
    return [row[0] for row in client.query(
        f"SELECT DISTINCT arrayJoin([d - 1, d]) AS day FROM (SELECT DISTINCT toDate(finished_at) AS d FROM "
        f"{database}.task_facts {where}) ORDER BY day", parameters=params).result_rows]


def note_days(client: Client, database: str, days: Iterable[date], reason: str) -> None:
    rows = [[day, reason] for day in days]
    if rows:
        client.insert(f"{database}.cost_dirty_days", rows, column_names=["day", "reason"])


def runs_of_days(days: Iterable[date], longest: int = LONGEST_USAGE_RUN) -> list[list[date]]:
    """Sorted days cut into runs of consecutive days, at most `longest` each: one pricing query per run."""
    runs: list[list[date]] = []
    for day in sorted(set(days)):
        if runs and day - runs[-1][-1] == timedelta(days=1) and len(runs[-1]) < longest:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def price_days(client: Client, database: str, days: list[date], version: int) -> int:
    """Recompute consecutive UTC days of costs_1h and costs_1d, each day's partition swapped in whole; returns the
    costs_1h rows written."""
    return _swap_days(client, database, days, version, [
        ("costs_1h", "window_start", f"SELECT *, {{version:UInt32}}, now64(3) FROM {database}.cost_usage_span(lo = "
                                     "{lo:DateTime('UTC')}, hi = {hi:DateTime('UTC')})"),
        ("costs_1d", "window_start", _DAY_SQL.format(table="{costs_1h}"))])


def price_vm_days(client: Client, database: str, days: list[date], version: int) -> int:
    """Recompute consecutive UTC days of task_costs (attempts that ended on them), vm_costs_1h (their hours) and the
    task sums task_facts_1d, each day's partition swapped in whole; returns the task_costs rows written."""
    span = "(lo = {lo:DateTime('UTC')}, hi = {hi:DateTime('UTC')})"
    return _swap_days(client, database, days, version, [
        ("task_costs", "finished_at", f"SELECT *, {{version:UInt32}}, now64(3) FROM {database}.cost_tasks_span{span}"),
        ("vm_costs_1h", "hour", f"SELECT *, {{version:UInt32}}, now64(3) FROM {database}.vm_activity_span{span}"),
        ("task_facts_1d", "day", _TASK_DAY_SQL.format(source=f"{database}.task_rows_span{span}"))])


def _swap_days(client: Client, database: str, days: list[date], version: int,
               tables: list[tuple[str, str, str]]) -> int:
    """Fill a side table per (table, time column, SELECT) for [first day, last day + 1) (a SELECT may read an earlier
    side table as {name}), then swap each day's partition in, or drop it when the day has no rows; returns the rows
    written to the first table."""
    lo = datetime(days[0].year, days[0].month, days[0].day, tzinfo=timezone.utc)
    hi = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=timezone.utc) + timedelta(days=1)
    suffix = uuid.uuid4().hex[:12]
    stages = {table: f"{database}.{table}_stage_{suffix}" for table, _, _ in tables}
    try:
        counts: dict[str, dict[date, int]] = {}
        for table, column, select in tables:
            client.command(f"CREATE TABLE {stages[table]} AS {database}.{table}")
            for name, stage in stages.items():
                select = select.replace(f"{{{name}}}", stage)
            client.command(f"INSERT INTO {stages[table]} {select}", parameters={"version": version, "lo": lo, "hi": hi})
            counts[table] = dict(client.query(
                f"SELECT toDate({column}) AS day, count() FROM {stages[table]} GROUP BY day").result_rows)
        for day in days:
            partition = f"'{day.isoformat()}'"
            for table, _, _ in tables:
                if counts[table].get(day):
                    client.command(f"ALTER TABLE {database}.{table} REPLACE PARTITION {partition} FROM {stages[table]}")
                else:  # a day without rows (REPLACE from an empty partition is refused by default on 26.x)
                    client.command(f"ALTER TABLE {database}.{table} DROP PARTITION {partition}")
        return sum(counts[tables[0][0]].values())
    finally:
        for stage in stages.values():
            client.command(f"DROP TABLE IF EXISTS {stage}")


def rebuild_price_periods(client: Client, database: str) -> None:
    """price_periods := price_in_force, swapped in whole."""
    stage = f"{database}.price_periods_stage_{uuid.uuid4().hex[:12]}"
    client.command(f"CREATE TABLE {stage} AS {database}.price_periods")
    try:
        client.command(f"INSERT INTO {stage} SELECT * FROM {database}.price_in_force")
        client.command(f"EXCHANGE TABLES {database}.price_periods AND {stage}")
    finally:
        client.command(f"DROP TABLE IF EXISTS {stage}")


def refresh(client: Client, database: str, days: list[date] | None = None, all_days: bool = False,
            say: Callable[[str], None] = print, vm_days: list[date] | None = None) -> RefreshResult:
    """Price the given days (the usage cost tables; the VM cost tables those of vm_days, by default the same), else
    every day with usage or runs (all_days), else the days noted since the last run."""
    rebuild_price_periods(client, database)
    version = catalogue_version(client, database)
    started = time.monotonic()
    until = None
    if days is not None:
        vm_days = days if vm_days is None else vm_days
    elif all_days:
        days, vm_days = days_with_usage(client, database), days_with_runs(client, database)
    else:
        days, vm_days, until = dirty_days(client, database)
    rows = vm_rows = done = 0
    for run in runs_of_days(days):
        rows += price_days(client, database, run, version)
        done += len(run)
        say(f"priced {done}/{len(set(days))} days ({rows} hour rows) with catalogue version {version}, "
            f"{time.monotonic() - started:.1f} s")
    done = 0
    for run in runs_of_days(vm_days, LONGEST_VM_RUN):
        vm_rows += price_vm_days(client, database, run, version)
        done += len(run)
        say(f"VM costs: priced {done}/{len(set(vm_days))} days ({vm_rows} runs) with catalogue version {version}, "
            f"{time.monotonic() - started:.1f} s")
    client.insert(f"{database}.cost_refreshes",
                  [[until or EPOCH, sorted(set(days)), rows, version, sorted(set(vm_days)), vm_rows]],
                  column_names=["noted_until", "days", "rows", "catalogue_version", "vm_days", "vm_rows"])
    if not days and not vm_days:
        say("costs are up to date: no day to price")
    return RefreshResult(sorted(set(days)), rows, version, sorted(set(vm_days)), vm_rows)


def reprice_version(client: Client, database: str, version: int, say: Callable[[str], None] = print) -> RefreshResult:
    """After catalogue `version` loaded: note and price again every day with usage or runs that its periods cover."""
    lo, hi = client.query(f"SELECT min(valid_from), max(valid_to) FROM {database}.price_catalogue WHERE version = "
                          "{v:UInt32}", parameters={"v": version}).result_rows[0]
    usage = days_with_usage(client, database, _utc(lo), _utc(hi))
    runs = days_with_runs(client, database, _utc(lo), _utc(hi))
    days = sorted(set(usage) | set(runs))
    note_days(client, database, days, f"catalogue v{version}")
    say(f"catalogue version {version} covers {len(usage)} day(s) with usage"
        + (f" and {len(runs)} with model runs" if runs else "") + ": pricing them again")
    return refresh(client, database, usage, vm_days=runs, say=say)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _clip(value: datetime | None) -> datetime | None:
    """DateTime holds up to 2106; the catalogue's open end (2299) means 'no end'."""
    limit = datetime(2106, 1, 1, tzinfo=timezone.utc)
    return None if value is None else min(_utc(value), limit)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m telemetry.costs",
        description="Fill the priced cost tables costs_1h / costs_1d (from usage_1h) and task_costs / vm_costs_1h "
        "(from task_facts) with the price catalogue, a whole UTC day at a time: the days usage or task facts were "
        "inserted for since the last run, or those a new catalogue version covers. ClickHouse from CLICKHOUSE_URL / CLICKHOUSE_DATABASE (the writer).")
    parser.add_argument("--url", help=f"ClickHouse HTTP URL (default: CLICKHOUSE_URL or {settings.Settings.clickhouse_url})")
    parser.add_argument("--database", help=f"database (default: CLICKHOUSE_DATABASE or {settings.Settings.clickhouse_database})")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("refresh", help="price the days noted since the last run (or every day: --all)")
    run.add_argument("--all", action="store_true", help="price every day that has usage or model runs again")
    run.add_argument("--day", action="append", type=date.fromisoformat, metavar="YYYY-MM-DD",
                     help="price this UTC day (repeatable) instead of the noted ones")
    run.add_argument("--every", type=float, metavar="SECONDS",
                     help="keep running, one refresh every SECONDS (a service); default: once")
    run.add_argument("--alive-file", type=Path, metavar="PATH",
                     help="touched after every run of days priced and every refresh that succeeded (a container "
                     "health check reads its age)")
    args = parser.parse_args(argv)
    if args.every is not None and args.every <= 0:
        parser.error(f"--every {args.every}: give a positive number of seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    url, database = args.url or config.clickhouse_url, args.database or config.clickhouse_database
    client = clickhouse.connect(config, url=url)

    def say(line: str) -> None:
        print(line, flush=True)
        if args.alive_file is not None:  # progress is a sign of life: a year of days takes longer than a probe waits
            args.alive_file.touch()

    try:
        schedule.repeat(lambda: refresh(client, database, args.day, args.all, say=say), args.every, args.alive_file)
        return 0
    except ClickHouseError as exc:
        print(f"error: ClickHouse at {url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
