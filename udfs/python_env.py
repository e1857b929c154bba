"""Where a job's Python runs: this venv made visible to the thread-mode Python of a local Flink JVM, and the
execution mode (thread or process) of the operators added within a block."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.util.java_utils import get_j_env_configuration

from telemetry.pythonpath import embedded_pythonpath

EXECUTION_MODE = "python.execution-mode"


def expose_site_packages() -> None:
    """Set before the local JVM starts: it inherits PYTHONPATH (see telemetry.pythonpath)."""
    os.environ["PYTHONPATH"] = embedded_pythonpath(os.environ.get("PYTHONPATH", ""))


@contextmanager
def execution_mode(env: StreamExecutionEnvironment, mode: str) -> Iterator[None]:
    """Python operators added inside the block run in `mode`, the rest keep the job's: PyFlink reads
    python.execution-mode from the environment's configuration as each operator is added."""
    conf = get_j_env_configuration(env._j_stream_execution_environment)
    previous = conf.toMap().get(EXECUTION_MODE)
    conf.setString(EXECUTION_MODE, mode)
    try:
        yield
    finally:
        if previous is None:
            conf.removeKey(EXECUTION_MODE)
        else:
            conf.setString(EXECUTION_MODE, previous)
