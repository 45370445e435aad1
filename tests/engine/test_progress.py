"""Progress: the rate and the ETA count from the end of start-up, in the task's own unit."""

from __future__ import annotations

import logging

import pytest

from dmr_ray.engine import progress as progress_module
from dmr_ray.engine.progress import Progress


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_eta_exclude_start_up(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    with caplog.at_level(logging.INFO, logger="dmr_ray.engine.progress"):
        progress = Progress(4, "ism", "mutants", interval_s=0.0)
        clock.now += 20.0  # Ray start, actor placement, model load
        progress.start()
        clock.now += 1.0
        progress.advance(100)
        clock.now += 1.0
        progress.start()  # a later actor: start-up is not moved
        progress.advance(100)
        progress.close()
    assert "ism: started in 20.0 s; 4 chunks to compute" in caplog.text
    assert "ism: 1/4 chunks, 100 mutants/s, ETA 3 s" in caplog.text
    assert "ism: 2/4 chunks, 100 mutants/s, ETA 2 s" in caplog.text
    assert (progress.startup_s, progress.compute_s, progress.units, progress.done) == (20.0, 2.0, 200, 2)


def test_a_run_that_never_started_is_all_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    progress = Progress(3, "local MR", "sequences")
    clock.now += 5.0
    progress.close()
    clock.now += 5.0
    assert (progress.startup_s, progress.compute_s) == (5.0, 0.0)
