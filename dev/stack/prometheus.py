"""Prometheus (Debian's package) on the port of PROMETHEUS_URL, scraping itself, the Flink metrics reporter of
the JobManager and the TaskManager, and the targets listed in <state>/prometheus/targets/*.json (job
simulated-nodes: the demo's node exporter while it runs); config and TSDB under <state>/prometheus/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from dev.stack.flink import reporter_ports
from dev.stack.process import Launch, Port, Service, StackError, http_ok, local_port
from telemetry.settings import Settings

SCRAPE_INTERVAL_S = 5  # short, so a job's metrics show up while a test or the demo still runs
SCRAPE_INTERVAL = f"{SCRAPE_INTERVAL_S}s"
SIMULATED_NODES_JOB = "simulated-nodes"
RETENTION = "15d"


class Prometheus(Service):
    name = "prometheus"
    processes = ("prometheus",)

    @property
    def port(self) -> int:
        return local_port(self.settings.prometheus_url, "PROMETHEUS_URL")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ports(self) -> list[Port]:
        return [Port(self.port, "Prometheus", "PROMETHEUS_URL")]

    @property
    def config_file(self) -> Path:
        return self.dir / "prometheus.yml"

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        jobmanager, taskmanager = reporter_ports(self.settings)
        node_targets(self.settings).parent.mkdir(exist_ok=True)
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]},
                {"job_name": "flink-jobmanager", "static_configs": [{"targets": [f"127.0.0.1:{jobmanager}"]}]},
                {"job_name": "flink-taskmanager", "static_configs": [{"targets": [f"127.0.0.1:{taskmanager}"]}]},
                # Watched files: the demo adds its exporter while it runs and takes it away after, so no target
                # is down between runs.
                {"job_name": SIMULATED_NODES_JOB,
                 "file_sd_configs": [{"files": [str(node_targets(self.settings).parent / "*.json")]}]},
            ],
        }
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def launches(self) -> list[Launch]:
        binary = shutil.which("prometheus")
        if not binary:
            raise StackError("no `prometheus` binary on PATH; run `make system-deps` (Debian package prometheus)")
        return [
            Launch(
                "prometheus",
                [
                    binary,
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--storage.tsdb.retention.time={RETENTION}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    # Debian's defaults point at /etc/prometheus, which the stack neither needs nor owns
                    f"--web.console.templates={self.dir / 'consoles'}",
                    f"--web.console.libraries={self.dir / 'console_libraries'}",
                ],
            )
        ]

    def healthy(self) -> bool:
        return http_ok(f"{self.url()}/-/ready")


def node_targets(settings: Settings) -> Path:
    """The file_sd file listing the simulated nodes' exporter (job simulated-nodes); absent when none runs."""
    return settings.state_dir / Prometheus.name / "targets" / f"{SIMULATED_NODES_JOB}.json"
