"""`python -m dev.stack up|down|status [SERVICE...]`: start, stop or inspect the local stack.
`--help` lists the services, their ports and files, and the exit statuses.
"""

from __future__ import annotations

import argparse
import sys

from telemetry import settings
from dev.stack.control import NAMES, down, exclusive, format_pids, status, up
from dev.stack.flink import reporter_ports, rpc_port
from dev.stack.process import StackError

EPILOG = f"""\
services, in start order: {', '.join(NAMES)}
  kafka       single-node KRaft broker from lib/kafka on KAFKA_DIRECT_URL's port, its controller on that port + 1;
              creates every topic of telemetry/topics.py (growing one with fewer partitions than listed)
  clickhouse  the dev server (python -m dev.chdb_server, chdb) on CLICKHOUSE_URL's port
  postgres    Debian's PostgreSQL 15 (/usr/lib/postgresql/15/bin) on POSTGRES_URL's port, run as the postgres user when
              root; cluster under <state>/postgres/data; the schema owner's and the API's passwords and the API's
              pseudonym key generated once into <state>/postgres/credentials.env (mode 600); creates the database
              and the API's login (`make migrate` creates the tables)
  minio       $MINIO_BIN (else `minio` on PATH; `make minio` builds it) on S3_ENDPOINT's port, console on that
              port + 1; root credentials generated once into <state>/minio/credentials.env (mode 600);
              creates the bucket LAKE_BUCKET
  prometheus  /usr/bin/prometheus on PROMETHEUS_URL's port, scraping itself, Flink's reporters and the targets
              listed in <state>/prometheus/targets/*.json (job simulated-nodes: `make demo`'s node exporter)
  flink       session cluster (1 JobManager, 1 TaskManager with 4 slots) from the PyFlink distribution's scripts,
              REST and web UI on FLINK_REST_URL's port; JobManager RPC on 6123 and Prometheus reporters on
              9249 (JobManager) / 9250 (TaskManager), all shifted by (FLINK_REST_URL's port - 8081)

Everything binds to 127.0.0.1 (except Flink's Prometheus reporters, which have no bind-address option).
Data, logs, pid files and generated configuration live under TELEMETRY_STATE_DIR/<service>/ (default <repo>/.local).
`up` leaves a running, healthy service alone and starts the others detached, then waits until they are healthy
(printing the end of a failing service's logs); a port taken by another process is an error naming the port and
the variable that moves it. `down` sends SIGTERM (SIGINT to PostgreSQL: its fast shutdown), then SIGKILL after a grace period. Restart a service
(`down NAME` then `up NAME`) to apply a changed setting.

exit status: 0 success (for status: every service named is running and healthy), 1 a service failed or is not
running, 2 a configuration error"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dev.stack",
        description="Start, stop or inspect the local stack: Kafka, ClickHouse (dev), PostgreSQL, MinIO, Prometheus and Flink.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("up", "down", "status"), help="up: start and wait until healthy; down: stop; status: show each service")
    parser.add_argument("services", nargs="*", metavar="SERVICE", help=f"limit to these services (default: all of {', '.join(NAMES)})")
    return parser


def _print_status(config: settings.Settings, names: list[str]) -> bool:
    rows = status(config, names)
    print(f"{'SERVICE':<11} {'STATE':<8} {'HEALTH':<9} {'PID':<36} URL")
    for row in rows:
        state = "running" if row.running else ("partial" if any(row.pids.values()) else "stopped")
        pids = format_pids(row.pids) or "-"
        print(f"{row.name:<11} {state:<8} {'healthy' if row.healthy else 'down':<9} {pids:<36} {row.url}")
    if any(row.name == "flink" for row in rows):
        jobmanager, taskmanager = reporter_ports(config)
        print(f"{'':<11} flink: JobManager RPC 127.0.0.1:{rpc_port(config)}, Prometheus reporters :{jobmanager} (JobManager), :{taskmanager} (TaskManager)")
    print(f"state directory: {config.state_dir}")
    return all(row.running and row.healthy for row in rows)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = settings.load()
        if args.command == "up":
            with exclusive(config):
                return 0 if up(config, args.services) else 1
        if args.command == "down":
            with exclusive(config):
                down(config, args.services)
            return 0
        return 0 if _print_status(config, args.services) else 1
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
