"""`python -m dev.node_exporter`: the simulated nodes' DCGM and node_exporter series (dev/simulator/nodes.py) over
HTTP in Prometheus' text format, for the simulator run its options describe, so Prometheus enrichment of that run's
tasks finds series for their nodes. `make demo` runs one in-process (NodeExporter) for its run.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from dev.simulator.__main__ import build_parser, config_from_args
from dev.simulator.config import ConfigError, SimConfig
from dev.simulator.nodes import FAMILIES, NodeMetrics, node_uses, shift
from telemetry.promtext import Metric

DEFAULT_PORT = 9100  # node_exporter's


class NodeExporter:
    """Serves GET /metrics on 127.0.0.1 from a thread. Every sample carries the time its value is for, so what
    Prometheus stores is exactly what nodes.py gives for that time. Without a start the nodes are idle until
    start_at() places the run; the run's attempts are simulated once, here, whatever its start."""

    def __init__(self, cfg: SimConfig, start: bool = True, port: int = DEFAULT_PORT,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock
        self._uses = node_uses(cfg)  # at cfg.start_ms
        self.metrics = NodeMetrics(cfg, self._uses if start else [])
        self.started = start
        self.scrapes = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def start_at(self, start_ms: int) -> None:
        """Place the run's first record at start_ms; it must still be ahead, so no counter already served changes."""
        now_ms = self.clock() * 1000
        if self.started or start_ms < now_ms:
            raise ValueError(f"start_at({start_ms}): the run can be placed once, in the future (now {now_ms:.0f})")
        self.metrics = NodeMetrics(replace(self.cfg, start_ms=start_ms), shift(self._uses, start_ms - self.cfg.start_ms))
        self.started = True

    def render(self, t_ms: int) -> str:
        families = {name: Metric(name, kind, doc, labels) for name, (kind, doc, labels) in FAMILIES.items()}
        for name, labels, value in self.metrics.samples(t_ms):
            families[name].set(*labels, value=value)
        return "\n".join(line for f in families.values() for line in f.render(t_ms)) + "\n"

    def serve(self) -> "NodeExporter":
        self._thread = threading.Thread(target=self.server.serve_forever, name="node-exporter", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:  # shutdown() waits for a serve_forever() that never ran
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()


def _handler(exporter: NodeExporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?")[0] != "/metrics":
                self._reply(404, "text/plain; charset=utf-8", "not found: the metrics are at /metrics\n")
                return
            exporter.scrapes += 1
            self._reply(200, "text/plain; version=0.0.4; charset=utf-8", exporter.render(int(exporter.clock() * 1000)))

        def _reply(self, status: int, kind: str, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            pass  # a scrape every few seconds is not news

    return Handler


EPILOG = """\
Takes every option of `python -m dev.simulator` (its output options are ignored), so the simulator's command line
plus --port describes the same run: pass the --start it printed. Each node of the run's world gets DCGM_FI_DEV_GPU_UTIL
and DCGM_FI_DEV_FB_USED per GPU, node_cpu_seconds_total per core (idle, user), node_memory_MemTotal_bytes and
MemAvailable_bytes, and network (eth0) and disk (sda) byte counters, all labelled node=<host name>: what the
enrichment's default templates query (pipeline/enrichment/queries.py). While an attempt runs it holds its GPUs (at
85-98 % utilisation, averaged over the last 5 s as DCGM does), its cores and its model's memory, and its loads that
miss the node's cache read from disk (local_nvme, premium_ssd) or the network (nfs, blob); otherwise a node shows a
small idle load seeded per node. Samples carry their own timestamps. Scrape it at an interval no longer than the
enrichment's step (ENRICH_STEP_S, 15 s) and a quarter of its rate window (1 m).

exit status: 0 stopped by SIGINT / SIGTERM; 2 bad options or the port is taken"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.prog = "python -m dev.node_exporter"
    parser.description = "Serve a simulator run's node metrics (DCGM and node_exporter names) for Prometheus."
    parser.epilog = EPILOG
    parser.add_argument_group("exporter").add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"listen on 127.0.0.1:PORT (default {DEFAULT_PORT}; 0: any)")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ConfigError, ValueError) as exc:
        print(f"node_exporter: {exc}", file=sys.stderr)
        return 2
    print(f"[node_exporter] simulating seed {cfg.seed}, {cfg.events:,} records from {cfg.start_ms} ...",
          file=sys.stderr, flush=True)
    try:
        exporter = NodeExporter(cfg, port=args.port)
    except OSError as exc:
        print(f"node_exporter: cannot listen on 127.0.0.1:{args.port}: {exc}; choose another --port", file=sys.stderr)
        return 2
    print(f"[node_exporter] {len(exporter.metrics.series)} nodes, {len(exporter.metrics.uses):,} attempts; "
          f"serving {exporter.url}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    exporter.serve()
    stop.wait()
    exporter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
