"""Ray Tune plumbing of GRIDS: trial resources, the concurrency cap, best-by-held-out, and an
interrupted experiment that resumes without redoing its finished trials (stand-in trainables)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from ray import cloudpickle, tune

from dmr_ray.errors import EngineError
from dmr_ray.grids.tune import TrialResources, concurrent_trials, run_experiment

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # trial actors cannot import this test module


def held_out_trial(config: dict) -> None:
    """Training loss falls with ``a``, held-out loss is smallest at ``a = 2`` (over-fitting beyond)."""
    a = config["a"]
    for step in range(2):
        tune.report({"train_loss": -a - step, "eval_loss": (a - 2) ** 2 + 1.0 / (step + 1)})


def logged_trial(config: dict) -> None:
    """Appends its ``a`` to the file ``config['log']`` each time it runs, then works for a second."""
    with open(config["log"], "a") as handle:
        handle.write(f"{config['a']}\n")
    time.sleep(1.0)  # so that Tune handles a Ctrl-C before the next trial finishes
    tune.report({"train_loss": float(config["a"]), "eval_loss": float(config["a"])})


class InterruptAfter(tune.Callback):
    """Ctrl-C (SIGINT to this process) once ``n`` trials have completed, the first time only.

    Tune restores an experiment's callbacks with it, so ``once`` (a file) remembers that it fired.
    """

    def __init__(self, n: int, once: Path) -> None:
        self.n, self.once, self.done = n, once, 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.done += 1
        if self.done == self.n and not self.once.exists():
            self.once.touch()
            os.kill(os.getpid(), signal.SIGINT)


def test_a_trial_reserves_a_driver_bundle_and_one_bundle_per_shard() -> None:
    resources = TrialResources(shards=2, driver_cpus=0.5, shard_cpus=1.0)
    assert resources.bundles() == [{"CPU": 0.5}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert resources.cpus == 2.5
    assert concurrent_trials(resources, 8.0) == 3
    assert concurrent_trials(resources, 8.0, requested=2) == 2
    assert concurrent_trials(TrialResources(shards=1), 2.0) == 1
    with pytest.raises(EngineError, match="one trial reserves 2.5 CPUs .2 shard.s.., but the Ray cluster has 2"):
        concurrent_trials(resources, 2.0)


def test_the_best_configuration_is_the_best_held_out_not_the_best_training_loss(ray_local, tmp_path: Path) -> None:
    found = run_experiment(
        held_out_trial, {"a": [1, 2, 4]}, name="pick", storage_path=str(tmp_path), resources=TrialResources(0)
    )
    assert found.best_config == {"a": 2}
    assert found.best_metrics["eval_loss"] == pytest.approx(0.5)
    assert [t["a"] for t in found.trials] == [1, 2, 4]
    assert min(found.trials, key=lambda t: t["train_loss"])["a"] == 4


def test_an_interrupted_experiment_resumes_without_redoing_finished_trials(ray_local, tmp_path: Path) -> None:
    log = tmp_path / "runs.txt"
    grid = {"a": [2, 0, 1], "log": [str(log)]}
    options = dict(name="resume", storage_path=str(tmp_path / "tune"), resources=TrialResources(0),
                   max_concurrent_trials=1)  # fmt: skip
    with pytest.raises(KeyboardInterrupt, match=r"interrupted; [12] of 3 trials finished") as stopped:
        run_experiment(logged_trial, grid, callbacks=[InterruptAfter(1, tmp_path / "interrupted")], **options)
    finished = int(str(stopped.value).split("interrupted; ")[1][0])  # Tune may finish the next one too
    before = log.read_text().split()[:finished]
    assert before[0] == "2"
    found = run_experiment(logged_trial, grid, **options)
    runs = log.read_text().split()
    assert all(runs.count(a) == 1 for a in before) and sorted(set(runs)) == ["0", "1", "2"]  # finished: not rerun
    assert found.best_config["a"] == 0 and len(found.trials) == 3
    assert run_experiment(logged_trial, grid, **options).best_config["a"] == 0
    assert log.read_text().split() == runs  # a finished experiment is restored, not rerun
