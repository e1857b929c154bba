"""Makes this venv visible to the thread-mode Python of a local Flink JVM started from this process."""

from __future__ import annotations

import os

from telemetry.pythonpath import embedded_pythonpath


def expose_site_packages() -> None:
    """Set before the local JVM starts: it inherits PYTHONPATH (see telemetry.pythonpath)."""
    os.environ["PYTHONPATH"] = embedded_pythonpath(os.environ.get("PYTHONPATH", ""))
