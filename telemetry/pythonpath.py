"""PYTHONPATH for Python that Flink runs inside a JVM (thread mode, via pemja).

pemja starts from the base interpreter's paths, not this venv's, and then fails with "No module named 'pemja'";
a JVM started with this PYTHONPATH sees the repo and the venv's site-packages.
"""

from __future__ import annotations

import os
import site

from telemetry.settings import REPO_ROOT


def embedded_pythonpath(existing: str = "") -> str:
    """`existing` (a PYTHONPATH value) plus the repo and this interpreter's site-packages, without repeats."""
    paths = [p for p in existing.split(os.pathsep) if p]
    for path in (str(REPO_ROOT), *site.getsitepackages()):
        if path not in paths:
            paths.append(path)
    return os.pathsep.join(paths)
