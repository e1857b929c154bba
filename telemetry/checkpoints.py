"""Find the newest completed Flink checkpoint under a checkpoint directory, for restarting a job from it.

Flink writes <dir>/<job id>/chk-<n>/_metadata, the metadata file last, so a chk-<n> without it is incomplete.
A restarted job gets a new job id: the newest complete checkpoint of any job under the directory is the one.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse


class NoCheckpointError(FileNotFoundError):
    """The directory holds no completed checkpoint."""


def local_path(uri: str) -> Path:
    """A file:// URI or a plain path as a Path; other schemes are refused with the way out."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    raise ValueError(f"{uri!r}: only local checkpoint directories (file://) can be searched for the latest "
                     "checkpoint; pass the checkpoint's own path to --restore-from instead")


def latest_checkpoint(checkpoint_dir: str) -> Path:
    """The newest chk-<n> directory with a _metadata file, by the metadata file's modification time."""
    root = local_path(checkpoint_dir)
    complete = [meta.parent for meta in root.glob("*/chk-*/_metadata")]
    if not complete:
        raise NoCheckpointError(f"no completed checkpoint (chk-*/_metadata) under {root}")
    return max(complete, key=lambda chk: ((chk / "_metadata").stat().st_mtime_ns, int(chk.name.split("-")[1])))
