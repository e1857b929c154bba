"""How both jobs start Flink: the settings every run needs (thread-mode Python on this interpreter, UTC), and what
a local run (a mini-cluster in this process) must set up itself that a cluster has already: the S3 plugin.
"""

from __future__ import annotations

import os
import sys

import pyflink
from pyflink.common import Configuration
from pyflink.java_gateway import get_gateway

from telemetry import settings as cfg


def local_run() -> bool:
    """True when this process will start its own mini-cluster: `flink run` hands it its client's gateway instead."""
    return "PYFLINK_GATEWAY_PORT" not in os.environ


def base_configuration(jars: str = "") -> Configuration:
    """The Flink settings of every run of either job."""
    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    # Without it Python operators run on whatever `python` is on PATH, which lacks pyflink / pemja outside a venv.
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    if jars:
        conf.set_string("pipeline.jars", jars)
    return conf


def local_s3(*uris: str) -> None:
    """A local run with an s3:// lake or checkpoint directory among uris: the S3 plugin from lib/plugins, with the
    endpoint and keys from the settings. A cluster sets both up itself (config.yaml, plugins/), so a job submitted
    to one leaves them alone. Call it before anything else touches the JVM."""
    if not any(uri.startswith("s3://") for uri in uris):
        return
    s = cfg.load()
    access_key, secret_key = s.s3_credentials()
    # PyFlink points FLINK_PLUGINS_DIR at the wheel's own plugins/ unless FLINK_HOME is set: set both before the
    # JVM starts. A mini-cluster does not load file system plugins itself: initialise them here, in its JVM.
    os.environ.setdefault("FLINK_HOME", os.path.dirname(os.path.abspath(pyflink.__file__)))
    os.environ["FLINK_PLUGINS_DIR"] = str(cfg.REPO_ROOT / "lib" / "plugins")
    jvm = get_gateway().jvm
    conf = jvm.org.apache.flink.configuration.Configuration()
    for key, value in (("s3.endpoint", s.s3_endpoint), ("s3.path.style.access", "true"),
                       ("s3.access-key", access_key), ("s3.secret-key", secret_key)):
        conf.setString(key, value)
    plugins = jvm.org.apache.flink.core.plugin.PluginUtils.createPluginManagerFromRootFolder(conf)
    jvm.org.apache.flink.core.fs.FileSystem.initialize(conf, plugins)
