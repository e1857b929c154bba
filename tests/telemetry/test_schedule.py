"""telemetry.schedule.repeat: once without a period, else until the step raises, the alive file touched after each
run that succeeded and not after the one that failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.schedule import repeat


def test_once_without_a_period(tmp_path: Path) -> None:
    runs: list[int] = []
    repeat(lambda: runs.append(1), None, tmp_path / "alive")
    assert runs == [1] and (tmp_path / "alive").exists()


def test_repeats_until_the_step_fails_and_touches_only_after_successes(tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    seen: list[bool] = []

    def step() -> None:
        seen.append(alive.exists())
        if len(seen) == 3:
            alive.unlink()
            raise RuntimeError("third run fails")

    with pytest.raises(RuntimeError, match="third run fails"):
        repeat(step, 0.001, alive)
    assert seen == [False, True, True] and not alive.exists()
