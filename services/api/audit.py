"""`python -m services.api.audit seal|verify`: seal the ingest audit log's settled hours (chained digests in ClickHouse
and PostgreSQL, and an anchor of the API access log's head in ClickHouse), and verify both logs, naming the first
record or hour that was changed, deleted or inserted.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import psycopg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from services.api import accesslog, digests
from services.api.accesslog import GENESIS
from services.api.digests import HOUR, HourDigest, utc_hour
from telemetry import clickhouse, settings

Say = Callable[[str], None]


def measure(ch: Client, database: str, since: datetime, until: datetime) -> dict[datetime, tuple[int, str]]:
    """hour -> (rows, rows_sha256) of audit_log's hours with rows in [since, until)."""
    if since >= until:
        return {}
    result = ch.query(digests.hours_sql(database), parameters={"since": since, "until": until})
    return {utc_hour(hour): (int(rows), sha) for hour, rows, sha in result.result_rows}


def sealed_in_postgres(pg: psycopg.Connection) -> list[HourDigest]:
    rows = pg.execute("SELECT hour, rows, rows_sha256, prev_digest, digest FROM audit_digests ORDER BY hour").fetchall()
    return [HourDigest(utc_hour(h), int(n), s, p, d) for h, n, s, p, d in rows]


def sealed_in_clickhouse(ch: Client, database: str) -> dict[datetime, str]:
    rows = ch.query(f"SELECT hour, digest FROM {database}.audit_digests ORDER BY hour").result_rows
    return {utc_hour(hour): digest for hour, digest in rows}


def seal(ch: Client, pg: psycopg.Connection, database: str, until: datetime, since: datetime | None = None,
         say: Say = print) -> list[HourDigest]:
    """Seal every hour from the one after the last sealed (or since, or the first with rows) up to until
    (exclusive, a whole hour); copy to ClickHouse what PostgreSQL has and ClickHouse lacks; anchor the access log."""
    until = utc_hour(until)
    done = sealed_in_postgres(pg)
    pg.commit()
    if done:
        first, prev = done[-1].hour + HOUR, done[-1].digest
    else:
        oldest = ch.query(f"SELECT min(ts), count() FROM {database}.audit_log").result_rows[0]
        start = since or (oldest[0] if oldest[1] else until)
        first, prev = utc_hour(start), GENESIS
    fresh = digests.chain(prev, first, until, measure(ch, database, first, until)) if first < until else []
    with pg.transaction():
        with pg.cursor() as cur:
            cur.executemany("INSERT INTO audit_digests (hour, rows, rows_sha256, prev_digest, digest) "
                            "VALUES (%s, %s, %s, %s, %s)",
                            [(d.hour, d.rows, d.rows_sha256, d.prev_digest, d.digest) for d in fresh])
    in_clickhouse = sealed_in_clickhouse(ch, database)
    missing = [d for d in [*done, *fresh] if d.hour not in in_clickhouse]
    if missing:
        ch.insert(f"{database}.audit_digests", [[d.hour, d.rows, d.rows_sha256, d.prev_digest, d.digest] for d in missing],
                  column_names=["hour", "rows", "rows_sha256", "prev_digest", "digest"])
    rows = sum(d.rows for d in fresh)
    say(f"sealed {len(fresh)} hour(s) of audit_log ({rows} rows)"
        + (f", {digests.hour_text(fresh[0].hour)} .. {digests.hour_text(fresh[-1].hour + HOUR)}" if fresh else
           f": nothing settled before {digests.hour_text(until)} is unsealed"))
    head = pg.execute("SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1").fetchone()
    pg.commit()
    if head:
        anchored = ch.query(f"SELECT max(seq) FROM {database}.access_log_anchors").result_rows[0][0] or 0
        if head[0] > anchored:
            ch.insert(f"{database}.access_log_anchors", [[head[0], head[1]]], column_names=["seq", "hash"])
            say(f"anchored the access log's record {head[0]} in ClickHouse")
    return fresh


def access_entries(pg: psycopg.Connection) -> Iterator[accesslog.Entry]:
    with pg.cursor(name="access_log_verify") as cur:
        cur.itersize = 5000
        cur.execute("SELECT seq, record, prev_hash, hash FROM access_log ORDER BY seq")
        for seq, record, prev_hash, hash_ in cur:
            yield accesslog.Entry(seq, record, prev_hash, hash_)


def verify(ch: Client, pg: psycopg.Connection, database: str, retention_months: int, say: Say = print,
           limit: int = 10) -> int:
    """Check both logs; print the findings (at most limit per log), first first; the number of findings."""
    anchors = {int(seq): h for seq, h in ch.query(f"SELECT seq, hash FROM {database}.access_log_anchors").result_rows}
    count = 0

    def counted() -> Iterator[accesslog.Entry]:
        nonlocal count
        for entry in access_entries(pg):
            count += 1
            yield entry

    findings = 0
    for finding in accesslog.verify(counted(), anchors):
        findings += 1
        if findings <= limit:
            say(f"access log: record {finding.seq} {finding.what}: {finding.detail}")
    pg.commit()
    if not findings:
        say(f"access log: {count} records, the chain is intact ({len(anchors)} anchors in ClickHouse agree)")
    sealed = sealed_in_postgres(pg)
    pg.commit()
    cutoff = utc_hour(datetime.now(timezone.utc) - timedelta(days=31 * retention_months - 31))
    other = sealed_in_clickhouse(ch, database)
    hour_findings = 0
    if sealed:
        measured = measure(ch, database, sealed[0].hour, sealed[-1].hour + HOUR)
        for finding in digests.verify(sealed, measured, other, "ClickHouse audit_digests"):
            if finding.hour < cutoff and finding.what in ("deleted", "changed") and "holds" in finding.detail:
                continue  # past the retention: ClickHouse's TTL dropped those rows
            hour_findings += 1
            if hour_findings <= limit:
                say(f"ingest audit log: hour {digests.hour_text(finding.hour)} {finding.what}: {finding.detail}")
        for hour in sorted(set(other) - {s.hour for s in sealed}):
            hour_findings += 1
            if hour_findings <= limit:
                say(f"ingest audit log: hour {digests.hour_text(hour)} missing: ClickHouse holds a digest PostgreSQL lacks")
    if not hour_findings:
        say(f"ingest audit log: {len(sealed)} sealed hours, every digest matches the rows and both stores agree")
    return findings + hour_findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.api.audit",
        description="Seal and verify the audit trail. seal: chain a digest per settled hour of ClickHouse's audit_log "
        "into PostgreSQL's and ClickHouse's audit_digests, and anchor the API access log's head in ClickHouse "
        "(run it every hour: cron, a Kubernetes CronJob). verify: recompute the access log's hash chain and every "
        "sealed hour and name the first record or hour changed, deleted or inserted. Logins: POSTGRES_USER (the "
        "schema owner) and CLICKHOUSE_USER (seal writes digests). Exit status: 0 intact / sealed, 1 tampering "
        "found or a store failed, 2 bad configuration.")
    sub = parser.add_subparsers(dest="command", required=True)
    seal_p = sub.add_parser("seal", help="seal the settled hours and anchor the access log")
    seal_p.add_argument("--settle-minutes", type=int, default=60,
                        help="an hour is sealed once it ended this long ago, so late audit rows are in (default 60)")
    seal_p.add_argument("--until", help="seal up to this time instead (ISO 8601; rounded down to the hour)")
    seal_p.add_argument("--since", help="first hour to seal when nothing is sealed yet (default: the oldest row's)")
    verify_p = sub.add_parser("verify", help="verify the access log and the sealed hours")
    verify_p.add_argument("--limit", type=int, default=10, help="findings to print per log (default 10)")
    args = parser.parse_args(argv)
    try:
        config = settings.load()
        until = since = None
        if args.command == "seal":
            from services.api.params import parse_time

            until = parse_time("--until", args.until) if args.until else (
                datetime.now(timezone.utc) - timedelta(minutes=args.settle_minutes))
            since = parse_time("--since", args.since) if args.since else None
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bad --until / --since is a Problem naming it
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        ch = clickhouse.connect(config)
        pg = psycopg.connect(config.postgres_conninfo(), connect_timeout=10)
    except (ClickHouseError, psycopg.Error, OSError) as exc:
        print(f"error: cannot reach a store: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "seal":
            assert until is not None
            seal(ch, pg, config.clickhouse_database, until, since)
            return 0
        return 1 if verify(ch, pg, config.clickhouse_database, config.retention_months, limit=args.limit) else 0
    except (ClickHouseError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        pg.close()
        ch.close()


if __name__ == "__main__":
    sys.exit(main())
