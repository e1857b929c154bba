"""Makes this venv visible to Python code that Flink runs inside the JVM (thread mode, via pemja).

pemja starts from the base interpreter's paths, not the venv's, and then fails with "No module named 'pemja'";
PYTHONPATH set before the local JVM starts is what it inherits.
"""

from __future__ import annotations

import os
import site

from telemetry.settings import REPO_ROOT


def expose_site_packages() -> None:
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for path in (str(REPO_ROOT), *site.getsitepackages()):
        if path not in paths:
            paths.append(path)
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
