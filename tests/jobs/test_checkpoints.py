"""Finding the checkpoint a crashed local run restarts from (telemetry.checkpoints), on directory trees laid out
as Flink writes them."""

from __future__ import annotations

import os

import pytest

from telemetry.checkpoints import NoCheckpointError, latest_checkpoint, local_path


def checkpoint(root, job: str, n: int, complete: bool = True, mtime: int | None = None):
    chk = root / job / f"chk-{n}"
    chk.mkdir(parents=True)
    if complete:
        meta = chk / "_metadata"
        meta.write_bytes(b"meta")
        if mtime is not None:
            os.utime(meta, (mtime, mtime))
    return chk


def test_the_newest_complete_checkpoint_of_any_job_wins(tmp_path):
    checkpoint(tmp_path, "job-a", 7, mtime=1_000)
    newest = checkpoint(tmp_path, "job-b", 2, mtime=2_000)  # the restarted job numbers from its restored one on
    checkpoint(tmp_path, "job-b", 3, complete=False)  # still being written: no _metadata yet
    assert latest_checkpoint(tmp_path.as_uri()) == newest
    assert latest_checkpoint(str(tmp_path)) == newest


def test_no_complete_checkpoint_says_where_it_looked(tmp_path):
    checkpoint(tmp_path, "job-a", 1, complete=False)
    with pytest.raises(NoCheckpointError, match=str(tmp_path)):
        latest_checkpoint(tmp_path.as_uri())


def test_remote_directories_are_refused_with_the_way_out():
    with pytest.raises(ValueError, match="--restore-from"):
        local_path("s3://bucket/checkpoints")
