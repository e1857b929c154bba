"""The one chdb session behind the dev server, used by one request at a time.

Per-request settings and the database are applied to the session before each statement and undone for the
next request, so nothing one client asks for leaks into another's queries.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from chdb import session as chdb_session

from dev.chdb_server.protocol import STD_EXCEPTION, ClickHouseError, QueryRequest, Statement


@dataclass(frozen=True)
class Outcome:
    body: bytes
    summary: dict[str, str]
    result_format: str | None  # None when the statement has no result set (DDL, INSERT)
    timezone: str


def _literal(value: str) -> str:
    # Quoted even when numeric: ClickHouse converts a string literal to any setting's type, while a bare
    # number would fail for String settings such as insert_deduplication_token.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Engine:
    """Owns the chdb session at `path`; `execute` is safe to call from many threads."""

    def __init__(self, path: Path, reader_profile: dict[str, str] | None = None) -> None:
        self._session: chdb_session.Session | None = chdb_session.Session(str(path))
        self._lock = threading.Lock()
        self._applied: dict[str, str] = {}  # settings currently SET on the session by a request
        self._database = "default"
        # chdb turns these on for notebook use; a ClickHouse server has them off, and SQL that only runs with
        # them (e.g. `1 + 1` without SELECT) would fail in production.
        self._session.query("SET implicit_select = 0, allow_introspection_functions = 0", "TabSeparated")
        row = self._session.query("SELECT version(), timezone()", "TabSeparated").bytes().decode()
        self.version, self.timezone = row.rstrip("\n").split("\t")
        self.reader_settings = self._expand(reader_profile or {})

    def _expand(self, profile: dict[str, str]) -> dict[str, str]:
        """The profile as explicit settings: `compatibility` becomes every setting whose default it changes, since
        setting it back to its default does not undo them, and requests of other users must not inherit them."""
        assert self._session is not None
        settings = {name: value for name, value in profile.items() if name != "compatibility"}
        if "compatibility" not in profile:
            return settings
        changed = "SELECT name, value FROM system.settings WHERE changed FORMAT JSONCompact"
        before = dict(json.loads(self._session.query(changed, "JSONCompact").bytes())["data"])
        self._session.query(f"SET compatibility = {_literal(profile['compatibility'])}", "TabSeparated")
        after = dict(json.loads(self._session.query(changed, "JSONCompact").bytes())["data"])
        implied = {name: value for name, value in after.items() if before.get(name) != value}
        self._session.query("SET " + ", ".join(f"{name} = DEFAULT" for name in implied), "TabSeparated")
        return {**implied, **settings}

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def execute(self, request: QueryRequest, statement: Statement, reader: bool = False) -> Outcome:
        """Run one statement; a reader's gets the reader profile's settings under the request's own."""
        with self._lock:
            session = self._session
            if session is None:
                raise ClickHouseError(STD_EXCEPTION, "The dev server is shutting down")
            self._use(session, request.database)
            self._apply_settings(session, {**self.reader_settings, **request.settings} if reader else request.settings)
            try:
                if statement.insert_format is not None:
                    with session.send_insert(statement.sql.decode(), statement.insert_format) as inserter:
                        if statement.insert_data:
                            inserter.append(statement.insert_data)
                        done = inserter.finish()
                    body = b""
                    summary = {
                        "written_rows": str(done.rows_written),
                        "written_bytes": str(done.bytes_written),
                        "elapsed_ns": str(int(done.elapsed * 1e9)),
                    }
                else:
                    result = session.query(statement.sql, request.default_format, params=request.params)
                    body = result.bytes() or b""
                    summary = {
                        "read_rows": str(result.rows_read()),
                        "read_bytes": str(result.bytes_read()),
                        "written_rows": str(result.rows_written()),
                        "written_bytes": str(result.bytes_written()),
                        "elapsed_ns": str(int(result.elapsed() * 1e9)),
                    }
            except ClickHouseError:
                raise
            except Exception as exc:
                raise ClickHouseError.from_engine(exc) from exc
        has_result = statement.has_result or bool(body)
        return Outcome(
            body=body,
            summary=summary,
            result_format=(statement.output_format or request.default_format) if has_result else None,
            timezone=request.settings.get("session_timezone") or self.timezone,
        )

    def _use(self, session: chdb_session.Session, database: str) -> None:
        if database == self._database:
            return
        try:
            session.query(f"USE {_identifier(database)}", "TabSeparated")
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc
        self._database = database

    def _apply_settings(self, session: chdb_session.Session, wanted: dict[str, str]) -> None:
        """Make the session's request-set settings exactly `wanted`: one SET of the difference, usually none,
        since a client sends the same settings with every request."""
        changes = [f"{name} = {_literal(value)}" for name, value in wanted.items() if self._applied.get(name) != value]
        changes += [f"{name} = DEFAULT" for name in self._applied if name not in wanted]
        if not changes:
            return
        try:
            session.query("SET " + ", ".join(changes), "TabSeparated")
        except Exception as exc:
            # A failed SET may have applied part of its list: return every touched setting to its default.
            for name in self._applied.keys() | wanted.keys():
                try:
                    session.query(f"SET {name} = DEFAULT", "TabSeparated")
                except Exception:  # an unknown setting name has no default to return to
                    pass
            self._applied = {}
            raise ClickHouseError.from_engine(exc) from exc
        self._applied = dict(wanted)
