"""`python -m services.api.directory import FILE.json`: load tenants, departments, projects and users into
PostgreSQL (insert or update; nothing is deleted). The file:

    {"tenants": [{"tenant_id": "...", "name": "..."}],
     "departments": [{"tenant_id": "...", "department_id": "...", "name": "..."}],
     "projects": [{"tenant_id": "...", "project_id": "...", "department_id": "...", "name": "..."}],
     "users": [{"tenant_id": "...", "user_id": "...", "department_id": "...", "display_name": "...", "email": "..."}]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import psycopg

from telemetry import settings

_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # name -> (key columns, other columns)
    "tenants": (("tenant_id",), ("name",)),
    "departments": (("tenant_id", "department_id"), ("name",)),
    "projects": (("tenant_id", "project_id"), ("department_id", "name")),
    "users": (("tenant_id", "user_id"), ("department_id", "display_name", "email")),
}


def load(conn: psycopg.Connection, document: dict[str, Any]) -> dict[str, int]:
    """Upsert every entry of the document in one transaction; rows per table. An erased user keeps its cleared
    name and e-mail."""
    counts = {}
    with conn.transaction():
        for table, (keys, others) in _TABLES.items():
            entries = document.get(table, [])
            if not isinstance(entries, list):
                raise ValueError(f"{table} must be a list")
            columns = (*keys, *others)
            keep = " WHERE users.erased_at IS NULL" if table == "users" else ""
            sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
                   f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                   + ", ".join(f"{c} = excluded.{c}" for c in others) + keep)
            rows = []
            for n, entry in enumerate(entries):
                missing = [k for k in keys if not entry.get(k)]
                if missing:
                    raise ValueError(f"{table}[{n}] lacks {', '.join(missing)}")
                rows.append(tuple(str(entry.get(c, "")) for c in columns))
            with conn.cursor() as cur:
                cur.executemany(sql, rows)
            counts[table] = len(rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.api.directory", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    i = sub.add_parser("import", help="insert or update the entries of a JSON file (- for standard input)")
    i.add_argument("file")
    args = parser.parse_args(argv)
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        document = json.loads(text)
        with psycopg.connect(config.postgres_conninfo(), connect_timeout=10) as conn:
            counts = load(conn, document)
    except (OSError, ValueError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"error: PostgreSQL at {config.postgres_url}: {str(exc).strip()}", file=sys.stderr)
        return 1
    print("imported " + ", ".join(f"{n} {table}" for table, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
