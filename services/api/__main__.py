"""`python -m services.api`: validate the settings, check both stores answer, and serve the API with uvicorn."""

from __future__ import annotations

import argparse
import os
import socket
import sys

import psycopg

from telemetry import settings


def build_parser(defaults: settings.Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.api",
        description=(
            "Serve the telemetry API (FastAPI on uvicorn): usage, costs, model performance, VMs, pipeline health, "
            "task drill-down and who-accessed-what over ClickHouse (read as CLICKHOUSE_READER_USER), with callers, "
            "grants, tokens and the hash-chained access log in PostgreSQL (as POSTGRES_API_USER). Every /v1 request "
            "needs a bearer token (`python -m services.api.tokens issue`, or a JWT of API_OIDC_ISSUER) and is "
            "written to the access log before its answer is sent. OpenAPI: /openapi.json and /docs; liveness and "
            "readiness: /health; Prometheus: /metrics. Environment: CLICKHOUSE_*, POSTGRES_*, API_* (see the "
            "README). Exit status: 0 stopped cleanly, 1 a store could not be reached at start-up, 2 bad configuration."
        ),
    )
    parser.add_argument("--host", default=defaults.api_host, help=f"address to bind (default: API_HOST or {defaults.api_host})")
    parser.add_argument("--port", type=int, default=defaults.api_port, help=f"port (default: API_PORT or {defaults.api_port}; 0: any free port)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument("--no-wait", action="store_true", help="start even when ClickHouse or PostgreSQL does not answer "
                        "yet (requests get 503 until they do)")
    parser.add_argument("--access-log", choices=("on", "off"), default="on",
                        help="off serves WITHOUT the audit trail: only to measure what it costs (benchmarks/bench_api.py); "
                        "never in production (default: on)")
    parser.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                        help="uvicorn's log level (default: warning)")
    return parser


def check_stores(config: settings.Settings) -> str | None:
    """Why the API cannot serve yet, or None when both stores answer as the API's logins."""
    from telemetry import clickhouse

    try:
        clickhouse.connect(config, reader=True, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - the message is what matters here
        return f"ClickHouse at {config.clickhouse_url} as {config.clickhouse_reader_user}: {exc}"
    try:
        with psycopg.connect(config.postgres_conninfo(api=True), connect_timeout=3) as conn:
            conn.execute("SELECT 1 FROM access_log LIMIT 0")
    except psycopg.Error as exc:
        return (f"PostgreSQL at {config.postgres_url} as {config.postgres_api_user}: {str(exc).strip()} "
                "(is the stack up and `make migrate` run?)")
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    args = build_parser(config).parse_args(argv)
    try:
        if not 0 <= args.port <= 65535 or not 1 <= args.workers <= 64:
            raise settings.SettingsError("--port must be 0-65535 and --workers 1-64")
        config.pseudonym_key()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if not args.no_wait:
        problem = check_stores(config)
        if problem:
            print(f"api: cannot serve: {problem}", file=sys.stderr)
            return 1
    audit = args.access_log == "on"
    if not audit:
        print("api: WARNING: serving with the access log OFF: requests are not audited (benchmark use only)",
              file=sys.stderr, flush=True)
    import uvicorn

    from services.api.app import create_app

    # Bind first, so the address printed is the one served (port 0 included) and a taken port fails here.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without it the body of every answer on a kept-alive connection waited for
    # the client's delayed ACK of the headers (Nagle), about 40 ms per request (measured: 45 ms -> 0.6 ms)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"api: cannot bind {args.host}:{args.port}: {exc}; choose another with --port or API_PORT", file=sys.stderr)
        return 1
    sock.listen(2048)
    print(f"api: serving on http://{args.host}:{sock.getsockname()[1]} with {args.workers} worker(s), access log "
          f"{args.access_log}", flush=True)
    if args.workers > 1:
        # uvicorn's worker processes build the app themselves, from the same environment
        os.environ["API_ACCESS_LOG"] = args.access_log
        uvicorn.run("services.api.app:app_from_environment", factory=True, fd=sock.fileno(), workers=args.workers,
                    log_level=args.log_level, access_log=False)
    else:
        uvicorn.Server(uvicorn.Config(create_app(config, audit), log_level=args.log_level, access_log=False)).run(
            sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
