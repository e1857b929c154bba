"""Commands that run once or as a service: a step repeated every N seconds, with a file touched after each success
for a container health check (telemetry.costs refresh, services.reports generate)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable


def repeat(step: Callable[[], object], every: float | None, alive_file: Path | None) -> None:
    """Run step once (every None), or every `every` seconds until it raises; touch alive_file after each run."""
    while True:
        step()
        if alive_file is not None:
            alive_file.touch()
        if every is None:
            return
        time.sleep(every)
