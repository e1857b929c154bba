"""Kafka: a single-node KRaft broker + controller from Apache Kafka's jars (lib/kafka), run with plain `java`:
broker on KAFKA_DIRECT_URL's port, controller on that port + 1; every topic of telemetry/topics.py is created
with its partition count and settings by telemetry/topic_admin.py.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from telemetry import topic_admin
from telemetry.settings import REPO_ROOT
from dev.stack.process import Launch, Port, Service, StackError, local_port, port_free

KAFKA_LIB = REPO_ROOT / "lib" / "kafka"
# The broker serves from the OS page cache, not its heap: with 512 MB it took 400k 400-byte records from one
# Python producer at ~330k records/s here, far above the simulator's 20k events/s.
HEAP_OPTS = ["-Xms512m", "-Xmx512m"]


def java() -> str:
    """$JAVA_HOME/bin/java, else `java` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not found or not Path(found).exists():
        raise StackError("no `java` found (set JAVA_HOME or run `make system-deps`)")
    return found


class Kafka(Service):
    name = "kafka"
    processes = ("kafka",)
    start_timeout = 90.0
    stop_grace = 30.0  # a controlled shutdown flushes and closes every partition log

    @property
    def port(self) -> int:
        return local_port(self.settings.kafka_direct_url, "KAFKA_DIRECT_URL")

    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ports(self) -> list[Port]:
        return [
            Port(self.port, "Kafka broker", "KAFKA_DIRECT_URL"),
            Port(self.port + 1, "Kafka KRaft controller (broker port + 1)", "KAFKA_DIRECT_URL"),
        ]

    @property
    def properties_file(self) -> Path:
        return self.dir / "server.properties"

    def _jvm(self) -> list[str]:
        if not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
            raise StackError(f"Kafka's jars are missing from {KAFKA_LIB}; run `make jars`")
        return [
            java(),
            *HEAP_OPTS,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            f"{KAFKA_LIB}/*",
        ]

    def prepare(self) -> None:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.port + 1}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.port + 1}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.port + 1}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={data}",
                    # one node: internal topics cannot have more replicas than brokers
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    # the topic catalogue is the only source of topics: a misspelt name fails instead of
                    # silently creating a one-partition topic nobody reads
                    "auto.create.topics.enable=false",
                    # Retention by size, not time: producers stamp records with the event's time, and the
                    # simulator and tests replay history months old, which the default 7-day retention deleted
                    # at the next check (the job then read nothing). 1 GiB per partition bounds the disk.
                    "log.retention.ms=-1",
                    "log.retention.bytes=1073741824",
                    # 2 cores: fewer threads than the defaults, which are sized for servers
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "",
                ]
            )
        )
        (self.dir / "log4j2.properties").write_text(
            "\n".join(
                [
                    "appender.file.type=RollingFile",
                    "appender.file.name=file",
                    f"appender.file.fileName={self.dir / 'logs' / 'server.log'}",
                    f"appender.file.filePattern={self.dir / 'logs' / 'server.log'}.%i",
                    "appender.file.layout.type=PatternLayout",
                    "appender.file.layout.pattern=[%d] %p %m (%c)%n",
                    "appender.file.policies.type=Policies",
                    "appender.file.policies.size.type=SizeBasedTriggeringPolicy",
                    "appender.file.policies.size.size=20MB",
                    "appender.file.strategy.type=DefaultRolloverStrategy",
                    "appender.file.strategy.max=5",
                    "rootLogger.level=INFO",
                    "rootLogger.appenderRef.file.ref=file",
                    "",
                ]
            )
        )
        if not (data / "meta.properties").exists():
            self._format(data)

    def _format(self, data: Path) -> None:
        """Format the KRaft storage once, as a standalone controller quorum of this one node."""
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the tool's parser takes a leading '-' for an option (1 in 64 ids)
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        cmd = [*self._jvm(), "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(self.properties_file)]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir)
        if result.returncode != 0:
            raise StackError(f"formatting Kafka's storage in {data} failed:\n{result.stdout}{result.stderr}")

    def launches(self) -> list[Launch]:
        return [Launch("kafka", [*self._jvm(), "kafka.Kafka", str(self.properties_file)])]

    def log_files(self) -> list[Path]:
        return [self.dir / "logs" / "server.log", self.dir / "kafka.out"]

    def admin(self) -> AdminClient:
        # librdkafka would log every refused connection while the broker starts; probes stay quiet.
        return topic_admin.admin_client(self.url(), **{"socket.connection.setup.timeout.ms": 2000})

    def healthy(self) -> bool:
        if port_free(self.port):  # not listening yet: skip the client, which would wait out its timeout
            return False
        try:
            return len(self.admin().list_topics(timeout=2).brokers) >= 1
        except KafkaException:
            return False

    def provision(self) -> str:
        """Create each catalogue topic that is missing; grow one that has fewer partitions than listed."""
        return topic_admin.provision(self.admin())
