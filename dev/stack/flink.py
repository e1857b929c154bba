"""Flink: a standalone session cluster (one JobManager, one TaskManager with 4 slots) run by the PyFlink
distribution's own scripts from a FLINK_HOME assembled under <state>/flink/home (the wheel's lib plus lib/flink,
the Prometheus reporter and S3 plugins, a generated conf/config.yaml); REST API and web UI on FLINK_REST_URL.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path

import requests
import yaml

from telemetry.pythonpath import embedded_pythonpath
from telemetry.settings import REPO_ROOT, Settings, SettingsError
from dev.stack.minio import ensure_credentials
from dev.stack.process import Launch, Port, Service, StackError, local_port

FLINK_JARS = REPO_ROOT / "lib" / "flink"
S3_PLUGIN_JARS = REPO_ROOT / "lib" / "plugins" / "s3-fs-hadoop"
DEFAULT_REST_PORT = 8081
TASK_SLOTS = 4
# Sized for a 2-core, 24 GiB box that also runs the rest of the stack and a simulator: the TaskManager is where
# jobs run (including their Python workers' managed memory); the JobManager only coordinates.
JOBMANAGER_MEMORY = "1024m"
TASKMANAGER_MEMORY = "4096m"
# Metrics Flink's Prometheus reporter leaves out (metrics.reporter.prom.filter.excludes, one pattern
# <scope>[:<names>[:<types>]] each). By default it exports every metric of every operator: with the job's ~60
# operators over 56 source partitions that was 2,670 series, 2 MB of text per TaskManager scrape. What stays covers
# the dashboards and alerts: task busy / back-pressure time, operator record counters, pendingRecords, watermarks,
# checkpoints and the job's own counters. docker-compose.yml and k8s/flink-operator set the same list.
REPORTER_EXCLUDES = (
    "*.KafkaSourceReader.*",  # current / committed offset of every topic partition
    "*.KafkaProducer",  # the Kafka client's own ~80 metrics per sink (Flink's numRecordsSend / -Errors stay)
    "*.split.*",  # the watermark gauges of every source split
    "*.operator:*PerSecond",  # per-operator meters: rate() over the counters gives the same
    "*.operator:numBytes*",  # bytes in and out of every chained operator
)
IDENT = "telemetry"  # names Flink's own log files: log/flink-telemetry-<daemon>-<n>-<host>.log


def distribution() -> Path:
    """The Flink distribution inside the installed apache-flink wheel (pyflink/: bin, lib, opt, plugins, conf)."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("apache-flink is not installed in this Python; run `make venv` and use its python")
    return Path(list(spec.submodule_search_locations)[0])


# Flink's other fixed ports keep their usual numbers shifted by (FLINK_REST_URL's port - 8081), so a second stack
# (the tests') moves all of them with one setting: JobManager RPC 6123, Prometheus reporter 9249 on the JobManager
# and 9250 on the TaskManager. Everything else Flink opens is an ephemeral port.
def _offset(settings: Settings) -> int:
    return local_port(settings.flink_rest_url, "FLINK_REST_URL") - DEFAULT_REST_PORT


def rpc_port(settings: Settings) -> int:
    port = 6123 + _offset(settings)
    if not 1024 <= port <= 65535:
        raise SettingsError(f"FLINK_REST_URL={settings.flink_rest_url!r}: its port puts the JobManager RPC port at {port}; use a port from 2982 up")
    return port


def reporter_ports(settings: Settings) -> tuple[int, int]:
    """The Prometheus reporter's port on the JobManager and on the TaskManager."""
    jobmanager = 9249 + _offset(settings)
    if not 1024 <= jobmanager <= 65534:
        raise SettingsError(f"FLINK_REST_URL={settings.flink_rest_url!r}: its port puts the metrics reporter at {jobmanager}; use a port up to 64366")
    return jobmanager, jobmanager + 1


def _link_all(sources: list[Path], target_dir: Path) -> None:
    """Make target_dir hold exactly a symlink to each source (jars are large; the wheel and lib/ own them)."""
    if target_dir.exists():
        shutil.rmtree(target_dir)
    target_dir.mkdir(parents=True)
    for source in sources:
        (target_dir / source.name).symlink_to(source)


class Flink(Service):
    name = "flink"
    processes = ("jobmanager", "taskmanager")
    start_timeout = 120.0  # two JVMs on two cores, then the TaskManager registers

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = self.dir / "home"

    @property
    def port(self) -> int:
        return local_port(self.settings.flink_rest_url, "FLINK_REST_URL")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ports(self) -> list[Port]:
        jobmanager, taskmanager = reporter_ports(self.settings)
        moved = "FLINK_REST_URL (Flink's other ports shift with its port)"
        return [
            Port(self.port, "Flink REST API and web UI", "FLINK_REST_URL"),
            Port(rpc_port(self.settings), "Flink JobManager RPC", moved),
            Port(jobmanager, "Flink JobManager Prometheus reporter", moved),
            Port(taskmanager, "Flink TaskManager Prometheus reporter", moved),
        ]

    def config(self) -> dict[str, object]:
        """conf/config.yaml: loopback everywhere, modest memory, the reporter, the venv's Python, S3 via MinIO."""
        access_key, secret_key = self._s3_keys()
        distribution_conf = yaml.safe_load((distribution() / "conf" / "config.yaml").read_text())
        jobmanager_metrics, _ = reporter_ports(self.settings)
        return {
            "env": {
                # the JVM flags the distribution needs on Java 17 (--add-opens ...)
                "java": {"opts": {"all": distribution_conf["env"]["java"]["opts"]["all"]}},
                # Flink writes log/*.log, .out and .err itself; the console copy would only duplicate them
                "stdout-err": {"redirect-to-file": True},
            },
            "jobmanager": {
                "bind-host": "127.0.0.1",
                "rpc": {"address": "127.0.0.1", "port": rpc_port(self.settings)},
                "memory": {"process": {"size": JOBMANAGER_MEMORY}},
                "execution": {"failover-strategy": "region"},
            },
            "taskmanager": {
                "bind-host": "127.0.0.1",
                "host": "127.0.0.1",
                "numberOfTaskSlots": TASK_SLOTS,
                "memory": {"process": {"size": TASKMANAGER_MEMORY}},
            },
            "rest": {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": self.port},
            # both processes start together; a TaskManager that finds no JobManager yet retries after this delay,
            # 10 s by default, which doubled the cluster's start time
            "cluster": {"registration": {"error-delay": "1 s"}},
            "parallelism": {"default": 1},
            "metrics": {
                "reporter": {
                    "prom": {
                        "factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
                        # each process gets its own port on its command line; this is the fallback
                        "port": str(jobmanager_metrics),
                        "filter.excludes": list(REPORTER_EXCLUDES),
                    }
                }
            },
            # lib/ carries hadoop-common for Parquet, which makes Flink try Hadoop's Kerberos security and delegation
            # tokens (errors at every start without hadoop-auth / hdfs); nothing here uses Kerberos
            "security": {
                "module.factory.classes": [
                    "org.apache.flink.runtime.security.modules.JaasModuleFactory",
                    "org.apache.flink.runtime.security.modules.ZookeeperModuleFactory",
                ],
                "context.factory.classes": ["org.apache.flink.runtime.security.contexts.NoOpSecurityContextFactory"],
                "delegation.tokens.enabled": False,
            },
            "python": {"executable": sys.executable, "client": {"executable": sys.executable}},
            "s3": {
                "endpoint": self.settings.s3_endpoint,
                "path.style.access": True,
                "access-key": access_key,
                "secret-key": secret_key,
            },
            "execution": {
                "checkpointing": {
                    "dir": f"file://{self.dir / 'checkpoints'}",
                    "savepoint-dir": f"file://{self.dir / 'savepoints'}",
                }
            },
            "io": {"tmp": {"dirs": str(self.dir / "tmp")}},
            "web": {"tmpdir": str(self.dir / "tmp" / "web"), "upload": {"dir": str(self.dir / "tmp" / "web-upload")}},
        }

    def _s3_keys(self) -> tuple[str, str]:
        """Explicit S3_ACCESS_KEY / S3_SECRET_KEY win (settings.s3_credentials); else the local MinIO's."""
        if self.settings.s3_access_key and self.settings.s3_secret_key:
            return self.settings.s3_credentials()
        creds = ensure_credentials(self.settings)
        return creds["MINIO_ROOT_USER"], creds["MINIO_ROOT_PASSWORD"]

    def prepare(self) -> None:
        """Assemble FLINK_HOME. bin/ holds copies: config.sh takes FLINK_HOME from the scripts' real directory,
        so symlinked scripts would run the wheel's own lib/ and conf/. Jars and plugins are symlinks."""
        dist = distribution()
        flink_jars = sorted(FLINK_JARS.glob("*.jar"))
        s3_jars = sorted(S3_PLUGIN_JARS.glob("*.jar"))
        if not flink_jars or not s3_jars:
            raise StackError(f"the Flink jars are missing from {FLINK_JARS} / {S3_PLUGIN_JARS}; run `make jars`")
        if (self.home / "bin").exists():
            shutil.rmtree(self.home / "bin")
        shutil.copytree(dist / "bin", self.home / "bin")
        # flink-python sits in lib/, loaded once by the parent class loader: thread mode's pemja loads libpython
        # once per JVM, and a second job loading it again through its own class loader fails on Java 17
        # (NoSuchFieldException: loadedLibraryNames).
        python_jars = sorted((dist / "opt").glob("flink-python*.jar"))
        _link_all(sorted((dist / "lib").glob("*.jar")) + flink_jars + python_jars, self.home / "lib")
        _link_all(sorted((dist / "opt").glob("*.jar")), self.home / "opt")
        _link_all(sorted((dist / "plugins" / "metrics-prometheus").glob("*.jar")), self.home / "plugins" / "metrics-prometheus")
        _link_all(s3_jars, self.home / "plugins" / "s3-fs-hadoop")
        conf = self.home / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        for pattern in ("log4j*.properties", "logback*.xml"):
            for source in (dist / "conf").glob(pattern):
                shutil.copyfile(source, conf / source.name)
        # 0600: the file carries the S3 secret key
        fd = os.open(conf / "config.yaml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# generated by `python -m dev.stack up`; edits are overwritten at the next start\n")
            yaml.safe_dump(self.config(), f, sort_keys=False)
        for sub in ("log", "run", "tmp", "checkpoints", "savepoints"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def environment(self) -> dict[str, str]:
        """What the distribution's scripts read; set in full so a caller's FLINK_* variables cannot leak in."""
        return {
            "FLINK_HOME": str(self.home),
            "FLINK_CONF_DIR": str(self.home / "conf"),
            "FLINK_LIB_DIR": str(self.home / "lib"),
            "FLINK_OPT_DIR": str(self.home / "opt"),
            "FLINK_PLUGINS_DIR": str(self.home / "plugins"),
            "FLINK_LOG_DIR": str(self.dir / "log"),
            "FLINK_PID_DIR": str(self.dir / "run"),
            "FLINK_IDENT_STRING": IDENT,
            # thread-mode Python runs inside the TaskManager's JVM and must see this venv
            "PYTHONPATH": embedded_pythonpath(),
        }

    def launches(self) -> list[Launch]:
        jobmanager, taskmanager = reporter_ports(self.settings)
        bin_dir = self.home / "bin"
        env = self.environment()
        return [
            Launch("jobmanager", [str(bin_dir / "jobmanager.sh"), "start-foreground", "-D", f"metrics.reporter.prom.port={jobmanager}"], env),
            Launch("taskmanager", [str(bin_dir / "taskmanager.sh"), "start-foreground", "-D", f"metrics.reporter.prom.port={taskmanager}"], env),
        ]

    def log_files(self) -> list[Path]:
        logs: list[Path] = []
        for process, daemon in (("jobmanager", "standalonesession"), ("taskmanager", "taskexecutor")):
            logs.append(self.dir / f"{process}.out")
            newest = sorted((self.dir / "log").glob(f"flink-{IDENT}-{daemon}-*-{socket.gethostname()}.log"), key=os.path.getmtime)
            logs.extend(newest[-1:])
        return logs

    def healthy(self) -> bool:
        """The REST API answers and at least one TaskManager has registered."""
        try:
            response = requests.get(f"{self.url()}/overview", timeout=2)
            taskmanagers = response.json().get("taskmanagers", 0) if response.status_code == 200 else 0
        except (requests.RequestException, ValueError):
            return False
        return isinstance(taskmanagers, int) and taskmanagers >= 1


def cli(settings: Settings) -> tuple[Path, dict[str, str]]:
    """The `flink` CLI of the local cluster and the environment to run it with, e.g. for `flink run -py job.py`;
    it reads the cluster's conf/config.yaml (REST address, python.executable). Needs a stack that was started."""
    service = Flink(settings)
    if not (service.home / "conf" / "config.yaml").exists():
        raise StackError(f"no Flink configuration under {service.home}; run `python -m dev.stack up flink` first")
    return service.home / "bin" / "flink", {**os.environ, **service.environment()}
