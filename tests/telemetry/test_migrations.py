"""The schema migrations and the migrate command, applied through clickhouse-connect to the dev ClickHouse server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import clickhouse_connect
import psycopg
import pytest
from clickhouse_connect.driver.client import Client

from telemetry.sqltext import split_statements
from telemetry import settings
from telemetry.migrate import MIGRATIONS_DIR, POSTGRES_MIGRATIONS_DIR, MigrationError, discover, migrate, migrate_postgres
from telemetry.settings import REPO_ROOT

TABLES = {"audit_log", "task_facts", "usage_10s", "usage_1m", "usage_1h", "usage_1d", "late_events", "dlq_events",
          "ingest_stats_10s"}


@pytest.fixture
def client(clickhouse_server: str) -> Iterator[Client]:
    c = clickhouse_connect.get_client(dsn=clickhouse_server)
    yield c
    c.close()


@pytest.fixture
def database(client: Client) -> Iterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name} SYNC")


def test_every_migration_applies_once_and_is_recorded(client: Client, database: str) -> None:
    said: list[str] = []
    applied = migrate(client, database, retention_months=3, say=said.append)
    files = discover()
    assert [m.name for m in applied] == [m.name for m in files] and len(files) >= 4
    ledger = client.query(f"SELECT version, name, sha256, applied_at FROM {database}.schema_migrations ORDER BY version").result_rows
    assert [row[:3] for row in ledger] == [(m.version, m.name, m.sha256) for m in files]
    assert all(row[3] > datetime(2020, 1, 1) for row in ledger)
    tables = dict(client.query("SELECT name, create_table_query FROM system.tables WHERE database = {db:String}", parameters={"db": database}).result_rows)
    assert TABLES | {"loader_progress"} <= tables.keys()
    assert {"usage_1m_mv", "usage_1h_mv", "usage_1d_mv"} <= tables.keys()
    for table in TABLES:  # every fact table expires after RETENTION_MONTHS
        assert "toIntervalMonth(3)" in tables[table], table

    said.clear()
    assert migrate(client, database, retention_months=3, say=said.append) == []
    assert said == [f"database {database} is up to date: {len(files)} migrations applied, nothing to do"]
    assert client.command(f"SELECT count() FROM {database}.schema_migrations") == len(files)


def test_cli_dry_run_then_apply_then_noop(clickhouse_server: str, client: Client, database: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CLICKHOUSE_URL": clickhouse_server, "CLICKHOUSE_DATABASE": database}
        return subprocess.run([sys.executable, "-m", "telemetry.migrate", "--only", "clickhouse", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)

    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "-- would apply 0001_" in dry.stdout and f"CREATE TABLE IF NOT EXISTS {database}.usage_10s" in dry.stdout
    assert client.command(f"EXISTS DATABASE {database}") == 0  # a dry run changes nothing
    first = run()
    assert first.returncode == 0, first.stderr
    assert "applied 0001_" in first.stdout
    second = run()
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout and "applied 0001_" not in second.stdout


def test_tampered_migration_is_refused(client: Client, database: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    migrate(client, database, 12, directory=migrations, say=lambda _: None)
    victim = sorted(migrations.glob("0002_*.sql"))[0]
    victim.write_text(victim.read_text().replace("ZSTD(3)", "ZSTD(5)"))
    with pytest.raises(MigrationError, match=rf"{victim.name} was applied with sha256 .* must not be edited"):
        migrate(client, database, 12, directory=migrations, say=lambda _: None)
    # a new file is not applied past the refusal either
    (migrations / "0999_extra.sql").write_text("CREATE TABLE {{database}}.extra (x UInt8) ENGINE = Memory;")
    with pytest.raises(MigrationError):
        migrate(client, database, 12, directory=migrations, say=lambda _: None)
    assert client.command(f"EXISTS TABLE {database}.extra") == 0


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"0001_a.sql": "SELECT 1;", "1_b.sql": "SELECT 2;"}, "named NNNN_description.sql"),
        ({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"}, "both claim version 1"),
        ({"0001_a.sql": "CREATE TABLE {{database}}.t TTL {{retention}};"}, "unknown placeholder {{retention}}"),
    ],
)
def test_malformed_migrations_are_refused(client: Client, database: str, tmp_path: Path, files: dict[str, str], error: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(MigrationError, match=error.replace("{", r"\{").replace("}", r"\}")):
        migrate(client, database, 12, directory=tmp_path, say=lambda _: None)
    assert client.command(f"EXISTS DATABASE {database}") == 0


def test_statement_splitting_ignores_semicolons_in_strings_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (s String DEFAULT 'x;y', t String COMMENT 'it''s; fine') ENGINE = Memory;
    /* block; comment */ CREATE VIEW `b;c` AS SELECT ";" AS q;
    -- trailing comment only;
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0].endswith("COMMENT 'it''s; fine') ENGINE = Memory")
    assert statements[1].endswith('SELECT ";" AS q')


def usage_row(window: datetime, user: str, requests: int, hist: dict[int, int], errors: dict[str, int]) -> dict[str, object]:
    return {
        "window_start": window,
        "tenant_id": "t1",
        "department_id": "d1",
        "project_id": "p1",
        "user_id": user,
        "model": "llama",
        "model_version": "3",
        "checkpoint_id": "ck1",
        "requests": requests,
        "errors": sum(errors.values()),
        "errors_by_type": errors,
        "tokens_in": 10 * requests,
        "tokens_out": 20 * requests,
        "latency_ms_sum": 1.5 * requests,
        "latency_hist": hist,
        "tasks": 1,
        "task_failures": 0,
        "task_duration_ms_sum": 100,
        "cpu_seconds": 0.25,
        "gpu_seconds": 0.5,
        "credits": 0.125,
        "late_events": 0,
    }


def test_usage_windows_roll_up_to_minute_hour_and_day(client: Client, database: str) -> None:
    migrate(client, database, 12, say=lambda _: None)
    # Recent, or the 12-month TTL would drop the rows as they are written
    t0 = (datetime.now(timezone.utc) - timedelta(days=3)).replace(hour=23, minute=59, second=30, microsecond=0)
    # alice: six 10 s windows crossing a minute, an hour and a day boundary; bob: one window
    rows = [usage_row(t0 + timedelta(seconds=10 * i), "alice", i + 1, {i % 3: 1, 40: i}, {"timeout": i % 2}) for i in range(6)]
    rows.append(usage_row(t0, "bob", 7, {5: 7}, {}))
    columns = list(rows[0])
    data = [[r[c] for c in columns] for r in rows]
    # The sink's idempotent write: a retried batch carries the same token and must not count twice anywhere
    dedup = {"insert_deduplication_token": "batch-0001", "deduplicate_blocks_in_dependent_materialized_views": 1}
    for _ in range(2):
        client.insert(f"{database}.usage_10s", data, column_names=columns, settings=dedup)

    assert client.command(f"SELECT count() FROM {database}.usage_10s FINAL") == 7
    # Delta rows: a second delta of a window (a late correction) adds to it in usage_10s and in every rollup
    late = usage_row(t0, "bob", 3, {5: 3}, {"timeout": 1})
    client.insert(f"{database}.usage_10s", [[late[c] for c in columns]], column_names=columns, settings={**dedup, "insert_deduplication_token": "batch-0002"})
    rows.append(late)

    def rollup(table: str) -> list[tuple[object, ...]]:
        return client.query(
            # sumMap keeps a zero-count key when it merges raw rows of usage_10s; the rollups' merges drop it
            f"SELECT window_start, user_id, sum(requests), sum(tokens_out), mapFilter((k, v) -> v != 0, sumMap(latency_hist)), "
            f"mapFilter((k, v) -> v != 0, sumMap(errors_by_type)), sum(credits) "
            f"FROM {database}.{table} GROUP BY window_start, user_id ORDER BY user_id, window_start"
        ).result_rows

    def expected(bucket: timedelta, anchor: datetime) -> list[tuple[object, ...]]:
        groups: dict[tuple[str, datetime], list[dict[str, object]]] = {}
        for r in rows:
            start = anchor + ((r["window_start"] - anchor) // bucket) * bucket  # type: ignore[operator]
            groups.setdefault((str(r["user_id"]), start), []).append(r)
        out = []
        for (user, start), members in sorted(groups.items()):
            hist: dict[int, int] = {}
            errors: dict[str, int] = {}
            for m in members:
                for k, v in m["latency_hist"].items():  # type: ignore[attr-defined]
                    hist[k] = hist.get(k, 0) + v
                for k, v in m["errors_by_type"].items():  # type: ignore[attr-defined]
                    errors[k] = errors.get(k, 0) + v
            out.append(
                (
                    start.replace(tzinfo=None),
                    user,
                    sum(m["requests"] for m in members),  # type: ignore[misc]
                    sum(m["tokens_out"] for m in members),  # type: ignore[misc]
                    {k: v for k, v in sorted(hist.items()) if v},
                    {k: v for k, v in sorted(errors.items()) if v},
                    pytest.approx(sum(m["credits"] for m in members)),  # type: ignore[misc]
                )
            )
        return out

    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert rollup("usage_10s") == expected(timedelta(seconds=10), epoch)
    assert rollup("usage_1m") == expected(timedelta(minutes=1), epoch)
    assert rollup("usage_1h") == expected(timedelta(hours=1), epoch)
    assert rollup("usage_1d") == expected(timedelta(days=1), epoch)
    assert len(rollup("usage_1m")) == 3 and len(rollup("usage_1h")) == 3 and len(rollup("usage_1d")) == 3


# --- PostgreSQL: the same rules through the same code path ---------------------------------------------------------


@pytest.fixture
def pg_database(postgres_stack: settings.Settings) -> Iterator[psycopg.Connection]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_stack.postgres_conninfo(database="postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg.connect(postgres_stack.postgres_conninfo(database=name))
    yield conn
    conn.close()
    with psycopg.connect(postgres_stack.postgres_conninfo(database="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}"')


def test_postgres_migrations_apply_once_each_file_in_one_transaction(pg_database: psycopg.Connection,
                                                                     tmp_path: Path) -> None:
    said: list[str] = []
    applied = migrate_postgres(pg_database, "telemetry_api", say=said.append)
    assert [m.name for m in applied] == [m.name for m in discover(POSTGRES_MIGRATIONS_DIR)]
    tables = {r[0] for r in pg_database.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"tenants", "users", "grants", "api_tokens", "erasures", "quota_limits", "report_schedules", "access_log",
            "audit_digests", "quota_limit_changes", "schema_migrations"} <= tables
    pg_database.commit()
    assert migrate_postgres(pg_database, "telemetry_api", say=said.append) == []
    files = len(discover(POSTGRES_MIGRATIONS_DIR))
    assert said[-1].endswith(f"is up to date: {files} migrations applied, nothing to do")
    # a failing file leaves nothing behind, its ledger row included
    migrations = tmp_path / "pg"
    shutil.copytree(POSTGRES_MIGRATIONS_DIR, migrations)
    (migrations / "0999_broken.sql").write_text("CREATE TABLE half_done (x int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(MigrationError, match="0999_broken.sql failed and was rolled back"):
        migrate_postgres(pg_database, "telemetry_api", migrations, say=lambda _: None)
    assert pg_database.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
    assert pg_database.execute("SELECT max(version) FROM schema_migrations").fetchone() == (files,)
    pg_database.rollback()
    # an applied file that changed is refused, as for ClickHouse
    first = sorted(migrations.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an edit\n")
    (migrations / "0999_broken.sql").unlink()
    with pytest.raises(MigrationError, match="must not be edited"):
        migrate_postgres(pg_database, "telemetry_api", migrations, say=lambda _: None)
