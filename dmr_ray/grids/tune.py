"""GRIDS search configurations as Ray Tune trials; the best one per task by held-out loss.

One trial is one search configuration (k, steps, restarts, seed, optimizer mode) of one task
(cell type, gene, L): :func:`grids_trial`, a function trainable that runs
:func:`~dmr_ray.grids.optimizer.grids_search` on the task's training cells (sharded over
actors, :func:`~dmr_ray.grids.sharded.sharded_population`) and reports with
``ray.tune.report`` after every step and once at the end: the training-split loss
(``train_loss``) and the held-out eval-split loss (``eval_loss``), means over cells.
:func:`run_experiment` runs the grid of configurations:

* each trial reserves ``tune.PlacementGroupFactory([driver bundle] + [one bundle per shard])``
  (:class:`TrialResources`); the engine sizes the shard pool from that group and the sharded
  population refuses more shards than bundles;
* at most as many trials run at once as the cluster's CPUs hold
  (:func:`concurrent_trials`), so a trial never waits for its own shard actors;
* the best configuration is the one with the lowest final ``eval_loss``
  (``ResultGrid.get_best_result``);
* an experiment lives at ``storage_path/name`` (a shared path or an object-store URL on
  clusters); a rerun of an interrupted experiment restores it (``Tuner.restore``) and runs
  only the trials that had not finished.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from dmr_ray.engine import EngineOptions
from dmr_ray.errors import EngineError
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.sharded import SurrogatePopulations, sharded_population

log = logging.getLogger(__name__)

METRIC = "eval_loss"
"""What picks a task's best configuration: the mean loss of the eval (held-out) split, lower is better."""


@dataclass(frozen=True)
class TrialResources:
    """What one trial reserves: a bundle for its driver and one per shard actor.

    Attributes
    ----------
    shards
        Shard actors of the trial (0: it computes in its own process).
    driver_cpus, shard_cpus
        Logical CPUs of the driver's bundle and of each shard's bundle.
    """

    shards: int
    driver_cpus: float = 0.5
    shard_cpus: float = 1.0

    def bundles(self) -> list[dict[str, float]]:
        """``[driver bundle] + [one bundle per shard]``."""
        return [{"CPU": self.driver_cpus}] + [{"CPU": self.shard_cpus} for _ in range(self.shards)]

    @property
    def cpus(self) -> float:
        """Logical CPUs of the whole trial."""
        return self.driver_cpus + self.shards * self.shard_cpus


def concurrent_trials(resources: TrialResources, cluster_cpus: float, requested: int | None = None) -> int:
    """How many trials may run at once: as many as ``cluster_cpus`` hold, at most ``requested``.

    Raises
    ------
    EngineError
        When not even one trial fits (it would wait forever).
    """
    fits = math.floor(cluster_cpus / resources.cpus + 1e-9)
    if fits < 1:
        raise EngineError(
            f"one trial reserves {resources.cpus:g} CPUs ({resources.shards} shard(s)), "
            f"but the Ray cluster has {cluster_cpus:g}; use fewer shards or smaller bundles"
        )
    return fits if requested is None else min(fits, requested)


@dataclass(frozen=True)
class Experiment:
    """What a finished experiment found.

    Attributes
    ----------
    best_config
        The configuration with the lowest final :data:`METRIC`.
    best_metrics
        Its last report.
    trials
        Per trial: its configuration and its last report's losses.
    path
        Where Tune keeps the experiment.
    """

    best_config: dict[str, Any]
    best_metrics: dict[str, Any]
    trials: tuple[dict[str, Any], ...]
    path: str


def run_experiment(
    trainable: Callable[[dict[str, Any]], None],
    grid: Mapping[str, Sequence[Any]],
    *,
    name: str,
    storage_path: str,
    resources: TrialResources,
    max_concurrent_trials: int | None = None,
    max_failures: int = 2,
    callbacks: Sequence[Any] = (),
) -> Experiment:
    """Run every configuration of ``grid`` as a Tune trial (or resume the experiment ``name``).

    Parameters
    ----------
    trainable
        A function trainable that reports :data:`METRIC` with ``ray.tune.report``.
    grid
        Each option's values; every combination is one trial.
    name, storage_path
        The experiment lives at ``storage_path/name``; when it exists there, it is restored
        and only its unfinished trials run.
    resources
        What each trial reserves.
    max_concurrent_trials
        At most this many trials at once (default, and cap: :func:`concurrent_trials`).
    max_failures
        Retries of a failed trial.
    callbacks
        ``ray.tune.Callback`` objects (progress, tests).

    Raises
    ------
    EngineError
        Not one trial fits the cluster, or every trial failed.
    KeyboardInterrupt
        Tune stopped on Ctrl-C before every trial finished (the experiment is saved: a rerun
        resumes it).
    """
    import ray
    from ray import tune

    path = f"{storage_path.rstrip('/')}/{name}"
    wrapped = tune.with_resources(trainable, tune.PlacementGroupFactory(resources.bundles()))
    if tune.Tuner.can_restore(path):
        log.info("resuming the Tune experiment %s", path)
        tuner = tune.Tuner.restore(path, wrapped, resume_errored=True)
    else:
        cap = concurrent_trials(resources, ray.cluster_resources().get("CPU", 0.0), max_concurrent_trials)
        tuner = tune.Tuner(
            wrapped,
            param_space={key: tune.grid_search(list(values)) for key, values in grid.items()},
            tune_config=tune.TuneConfig(metric=METRIC, mode="min", max_concurrent_trials=cap),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage_path,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=list(callbacks),
                verbose=0,
            ),
        )
    grid_results = tuner.fit()
    results = [grid_results[i] for i in range(len(grid_results))]
    expected = math.prod(len(values) for values in grid.values())
    if grid_results.num_terminated + grid_results.num_errors < expected:  # Tune caught a Ctrl-C and saved the state
        raise KeyboardInterrupt(
            f"Tune experiment {path}: interrupted; {grid_results.num_terminated} of {expected} trials finished"
        )
    finished = [r for r in results if r.error is None and r.metrics and METRIC in r.metrics]
    if not finished:
        first = next((r.error for r in results if r.error is not None), "no trial reported")
        raise EngineError(f"Tune experiment {path}: no trial finished; first error: {first}")
    if len(finished) < len(results):
        log.warning("Tune experiment %s: %d of %d trials failed", path, len(results) - len(finished), len(results))
    best = grid_results.get_best_result(metric=METRIC, mode="min", scope="last")
    trials = tuple(
        {**(r.config or {}), **{key: (r.metrics or {}).get(key) for key in ("train_loss", METRIC)}}
        for r in sorted(finished, key=lambda r: _config_key(r.config or {}))
    )
    return Experiment(dict(best.config or {}), dict(best.metrics or {}), trials, path)


def _config_key(config: Mapping[str, Any]) -> str:
    return repr(sorted(config.items()))


@dataclass(frozen=True)
class TrialProblem:
    """What every trial of one task shares (put once into Ray's object store).

    Attributes
    ----------
    surrogate
        Directory of the saved surrogate (each actor loads its own replica).
    objective
        Target gene and direction.
    L
        Peaks to select.
    x_train, x_eval
        ``[cells, n_peaks]`` sparse ATAC of the search split and the held-out eval split.
    shards
        Shard actors per trial (0: in the trial's process).
    engine
        Restarts of lost shard actors, stall timeout.
    candidates
        ``int64 [m]`` peaks the search may select (``None``: all).
    """

    surrogate: str
    objective: Objective
    L: int
    x_train: sp.csr_matrix
    x_eval: sp.csr_matrix
    shards: int
    engine: EngineOptions = field(default_factory=EngineOptions)
    candidates: np.ndarray | None = None


def grids_trial(config: dict[str, Any], problem: TrialProblem) -> None:
    """One Tune trial: GRIDS with ``config`` (k, steps, restarts, seed, mode) on ``problem``.

    Reports ``train_loss`` and the latest ``eval_loss`` after each step (NaN until the search
    first evaluates the eval cells), then a final report with the result's ``train_loss``,
    ``eval_loss`` and ``selected`` (peak indices).
    """
    import ray
    import torch
    from ray import tune

    from dmr_ray.grids.optimizer import StepInfo, grids_search

    own = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, math.floor(own)))
    build = SurrogatePopulations(problem.surrogate, problem.objective)
    evaluation = build(problem.x_eval)
    last_eval = [math.nan]  # until the search first evaluates the eval cells

    def report(info: StepInfo) -> None:
        if info.eval_loss is not None:
            last_eval[0] = info.eval_loss
        tune.report({"train_loss": info.train_loss, METRIC: last_eval[0], "restart": info.restart, "step": info.step})

    engine = EngineOptions(actors=0) if problem.shards == 0 else problem.engine
    with sharded_population(build, problem.x_train, max(1, problem.shards), engine) as population:
        result = grids_search(
            population,
            problem.L,
            k=int(config["k"]),
            steps=config["steps"],
            restarts=int(config["restarts"]),
            seed=int(config["seed"]),
            mode=config["mode"],
            eval_population=evaluation,
            candidates=problem.candidates,
            on_step=report,
        )
    tune.report({"train_loss": result.train_loss, METRIC: result.eval_loss, "selected": result.selected.tolist()})
