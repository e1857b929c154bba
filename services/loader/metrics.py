"""The loader's counters, exposed in Prometheus' text format (on 127.0.0.1 by default) and summarised as a progress line.

The registry's types are telemetry/promtext.py's.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from telemetry.promtext import Histogram, Labels, Metric


class LoaderMetrics:
    """Every series the loader exports; updated by the loader's thread, read by the HTTP thread under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows = Metric("telemetry_loader_rows_inserted_total", "counter", "Rows inserted into ClickHouse", ("table",))
        self.batches = Metric("telemetry_loader_batches_total", "counter", "Batches loaded (inserted and recorded)", ("table",))
        self.replayed = Metric("telemetry_loader_batches_replayed_total", "counter",
                               "Interrupted batches inserted again after a restart (deduplicated if they had gone in)", ("table",))
        self.rejected = Metric("telemetry_loader_rows_rejected_total", "counter", "Rows ClickHouse refused", ("table",))
        self.errors = Metric("telemetry_loader_insert_errors_total", "counter", "Failed insert attempts", ("table",))
        self.latency = Histogram("telemetry_loader_insert_seconds", "Time of one batch insert", ("table",))
        self.lag = Metric("telemetry_loader_lag_records", "gauge",
                          "Records not loaded yet: unread (transaction markers included) plus buffered", ("topic", "partition"))
        self.buffered = Metric("telemetry_loader_rows_buffered", "gauge", "Records consumed and not inserted yet")
        self.stopped = Metric("telemetry_loader_partitions_stopped", "gauge", "Partitions stopped by a rejected row")
        self.clickhouse_errors = Metric("telemetry_loader_clickhouse_errors_total", "counter",
                                        "Failed ClickHouse calls (each retried with back-off)", ("operation",))
        self.clickhouse_unavailable = Metric("telemetry_loader_clickhouse_unavailable", "gauge",
                                             "1 while the loader waits for ClickHouse to answer again")
        self.clickhouse_unavailable.set(value=0)
        self._last_rows: dict[Labels, float] = {}

    def render(self) -> str:
        with self.lock:
            families = (self.rows, self.batches, self.replayed, self.rejected, self.errors, self.latency, self.lag, self.buffered,
                        self.stopped, self.clickhouse_errors, self.clickhouse_unavailable)
            return "\n".join(line for family in families for line in family.render()) + "\n"

    def progress_line(self, seconds: float) -> str:
        """Rows/s per table since the previous call, the totals, and the lag."""
        with self.lock:
            parts = []
            for (table,), total in sorted(self.rows.values.items()):
                rate = (total - self._last_rows.get((table,), 0)) / seconds if seconds > 0 else 0.0
                parts.append(f"{table} {rate:,.0f} rows/s ({total:,.0f})")
            self._last_rows = dict(self.rows.values)
            lag = sum(self.lag.values.values())
        return "loader: " + (", ".join(parts) or "no rows yet") + f" | lag {lag:,.0f} records"


def serve(metrics: LoaderMetrics, port: int, host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, int]:
    """Serve /metrics on host:port (0: any free port) from a daemon thread; returns the server and its port."""
    render: Callable[[], str] = metrics.render

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics is served")
                return
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes every few seconds are not news
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="loader-metrics", daemon=True).start()
    return server, server.server_address[1]
