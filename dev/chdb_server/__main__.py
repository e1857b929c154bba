"""`python -m dev.chdb_server`: run the dev ClickHouse server in the foreground until SIGTERM / Ctrl-C.

Prints one line on stdout once it answers (`... listening on http://HOST:PORT ...`); logs go to stderr.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
from importlib.metadata import version
from pathlib import Path
from types import FrameType

from telemetry import settings
from dev.chdb_server.engine import Engine
from dev.chdb_server.server import bind, log
from dev.chdb_server.users import load_users, reader_profile


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dev.chdb_server",
        description="Local stand-in for ClickHouse: one chdb session (the ClickHouse engine in-process) behind the "
        "part of ClickHouse's HTTP interface that clickhouse-connect uses. Every request authenticates as a user of "
        "--users (basic auth, X-ClickHouse-User/-Key or user=/password=); read-only users may only read; table "
        "functions and engines that reach files, URLs, other servers or programs are refused for everyone.",
    )
    parser.add_argument(
        "--path",
        type=Path,
        help="data directory of the chdb session, opened by one process at a time "
        "(default: $TELEMETRY_STATE_DIR/clickhouse/data)",
    )
    parser.add_argument(
        "--users",
        type=Path,
        help="users file, YAML: users: {NAME: {password_sha256_hex: HEX, readonly: BOOL}} (default: "
        "$TELEMETRY_STATE_DIR/clickhouse/users.yaml, which `python -m dev.stack up clickhouse` writes)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8123, help="HTTP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning"), help="debug logs one line per request (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        state_dir = settings.load().state_dir
        path: Path = args.path or state_dir / "clickhouse" / "data"
        users = load_users(args.users or state_dir / "clickhouse" / "users.yaml")
        profile = reader_profile()
    except (settings.SettingsError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        server = bind(args.host, args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"error: {args.host}:{args.port} is already in use; stop what listens there or pass --port", file=sys.stderr)
        else:
            print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    server.users = users
    path.mkdir(parents=True, exist_ok=True)
    try:
        server.engine = Engine(path.resolve(), profile)
    except Exception as exc:  # chdb refuses a directory another process has open, among others
        server.server_close()
        print(f"error: cannot open the chdb data directory {path}: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(
        f"clickhouse dev server: ClickHouse {server.engine.version} (chdb {version('chdb')}) listening on "
        f"http://{host}:{port}, data in {path.resolve()}, users {', '.join(sorted(users))}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.server_close()
        server.engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
