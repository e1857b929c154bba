"""`python -m services.quota`: validate the settings, check the stores answer, rebuild the ledger from
telemetry.usage.v1 while serving (answers follow the fail policy until it is rebuilt), and serve the quota API."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading

from telemetry import settings, topics

LOG = logging.getLogger("services.quota")


def build_parser(defaults: settings.Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.quota",
        description=(
            "Serve the quota service (uvicorn; POST /v1/check answered by a lean ASGI layer, the rest by FastAPI): "
            "POST /v1/check (may this user, department, project or tenant spend this amount of credits, gpu_seconds, "
            "cpu_seconds, tokens or cost now? allow or deny with the limit, used, remaining, period and where the "
            "answer came from) and GET /v1/state. Usage comes from "
            f"{topics.USAGE_TOPIC} (read from its beginning into memory at every start), cold scopes from ClickHouse's "
            "usage_1d (as CLICKHOUSE_READER_USER), limits, grants and tokens from PostgreSQL (as POSTGRES_API_USER). "
            f"Crossing a soft or hard limit publishes an event on {topics.QUOTA_EXCEEDED_TOPIC}. Callers need a bearer "
            "token of a role with the `quotas` metric (e.g. quota_client). Liveness and readiness: /health (503 while "
            "rebuilding); Prometheus: /metrics. Environment: KAFKA_DIRECT_URL, CLICKHOUSE_*, POSTGRES_*, QUOTA_* (see "
            "the README). Exit status: 0 stopped cleanly, 1 a store could not be reached at start-up, 2 bad configuration."
        ),
    )
    parser.add_argument("--host", default=defaults.quota_host, help=f"address to bind (default: QUOTA_HOST or {defaults.quota_host})")
    parser.add_argument("--port", type=int, default=defaults.quota_port,
                        help=f"port (default: QUOTA_PORT or {defaults.quota_port}; 0: any free port)")
    parser.add_argument("--no-wait", action="store_true",
                        help="start even when PostgreSQL or ClickHouse does not answer yet (answers are degraded until they do)")
    parser.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        config = settings.load()
        policy = settings.fail_policy(config.quota_fail_policy)
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    args = build_parser(config).parse_args(argv)
    if not 0 <= args.port <= 65535:
        print("configuration error: --port must be 0-65535", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")

    import uvicorn

    from services.quota.app import Directory, create_app
    from services.quota.consumer import UsageFeed
    from services.quota.ledger import Ledger
    from services.quota.prom import QuotaMetrics
    from services.quota.refresh import Refresher
    from services.quota.service import Cold, Quota
    from services.quota.stores import ClickHouseUsage

    usage = ClickHouseUsage(config)
    quota = Quota(Ledger(), Cold(usage.scope_month), policy, stale_after_s=config.quota_stale_after_s,
                  project_cache_s=config.quota_project_cache_s)
    metrics = QuotaMetrics()
    directory = Directory()
    refresher = Refresher(config, quota, usage, directory, metrics)
    problem = refresher.once()
    if problem and not args.no_wait:
        print(f"quota: cannot serve: {problem} (is the stack up and `make migrate` run? --no-wait starts anyway)",
              file=sys.stderr)
        return 1

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see services/api/__main__.py: 40 ms per answer without
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"quota: cannot bind {args.host}:{args.port}: {exc}; choose another with --port or QUOTA_PORT", file=sys.stderr)
        return 1
    sock.listen(2048)
    feed = UsageFeed(quota, config.kafka_direct_url, topics.USAGE_TOPIC, topics.QUOTA_EXCEEDED_TOPIC,
                     on_record=metrics.record, on_event=metrics.event, on_undelivered=metrics.undelivered)
    feed.start()
    stop = threading.Event()
    threading.Thread(target=refresher.loop, args=(stop,), name="quota-refresh", daemon=True).start()
    print(f"quota: serving on http://{args.host}:{sock.getsockname()[1]}, rebuilding from {topics.USAGE_TOPIC}", flush=True)
    try:
        uvicorn.Server(uvicorn.Config(create_app(config, quota, metrics, directory, config.quota_auth_cache_s),
                                      log_level=args.log_level, access_log=False,
                                      http="httptools")).run(sockets=[sock])  # "auto" would fall back to h11, slowly
    finally:
        stop.set()
        feed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
