"""A GRIDS run end to end: surrogate → per task a Tune experiment and the baselines → summary.

Each step is a :class:`~dmr_ray.stage.Stage` of the output directory (``kind: grids``), so a
rerun of the same configuration reuses every finished stage and restores an interrupted Tune
experiment (only its unfinished trials run), and a changed option reruns only the stages whose
identity it enters (a changed search space: that task's experiment, result and the summary; a
new task: its own stages and the summary).

Output directory layout::

    .dmr_ray/                          stage records (identity, digest, outputs, timing)
    surrogate/                         the trained surrogate (when ``surrogate`` is null)
    tune/<task>-<digest>/              Tune experiments (default ``tune.storage_path``)
    <cell_type>__<gene>/tune.json      every trial's losses and the best configuration
    <cell_type>__<gene>/result.json    {"task", "best_config", "methods": {...}} (grids-search layout)
    <cell_type>__<gene>/expression.parquet   per method and test cell: the target before/after
    summary.md, summary.parquet, summary.html
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dmr_ray._atomic import write_parquet_atomic, write_text_atomic
from dmr_ray.errors import InputError
from dmr_ray.grids.config import GridsConfig, TaskSpec
from dmr_ray.grids.data import Multiome, read_multiome
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.search import (
    RESULT,
    SURROGATE_DIR,
    CellSplit,
    Selection,
    claim_output,
    evaluate_selection,
    method_record,
    read_result,
    select_peaks,
    split_cells,
)
from dmr_ray.grids.surrogate import WEIGHTS, Surrogate, load_surrogate
from dmr_ray.stage import AuditDirectory, Stage, identity_digest

log = logging.getLogger(__name__)

KIND = "grids"
TUNE_FILE = "tune.json"
EXPRESSION = "expression.parquet"


@dataclass
class RunSummary:
    """Where a run's outputs are and one line per stage."""

    out: Path
    lines: list[str]


@dataclass(frozen=True)
class Prepared:
    """A task checked against the data, before any output is written."""

    spec: TaskSpec
    objective: Objective
    cells: CellSplit
    candidates: np.ndarray | None
    groups: list[list[int]] | None


def run_grids(config: GridsConfig, *, overwrite: bool = False, echo: Callable[[str], None] = print) -> RunSummary:
    """Run (or resume) every task of ``config``; see the module docstring for what is written.

    Raises
    ------
    InputError
        Before any output: unreadable data, an absent gene or cell type, L above the peaks,
        a surrogate of other peaks or genes, a truth without a task's gene, an ``out`` with
        files dmr_ray did not write.
    """
    from dmr_ray.engine import connect
    from dmr_ray.grids.fit import check_matches
    from dmr_ray.grids.search import _file_digest, _train_here
    from dmr_ray.grids.training import TrainingOptions

    data = config.data if isinstance(config.data, Path) else (config.data.rna, config.data.atac)
    multiome = read_multiome(data, cell_type_key=config.cell_type_key)
    tasks = [_prepare(config, multiome, spec) for spec in config.tasks]
    given = None if config.surrogate is None else load_surrogate(config.surrogate)
    if given is not None:
        check_matches(given, multiome)
    directory = claim_output(Path(config.out), KIND, overwrite=overwrite)
    lines: list[str] = []

    def run(stage: Stage, func: Callable[[], str]) -> str:
        result = directory.run(stage, func)
        lines.append(f"[{stage.title}] {result.summary} ({result.seconds:.1f} s)")
        echo(lines[-1])
        return stage.digest

    if given is None or config.surrogate is None:
        t = config.training
        training = TrainingOptions(steps=t.steps, batch_size=t.batch_size, learning_rate=t.learning_rate, seed=t.seed)
        model, surrogate_info = _train_here(directory, multiome, data, config.cell_type_key, training, t.widths())
        surrogate_path = directory.root / SURROGATE_DIR
        record = directory.record("surrogate")
        echo(f"[surrogate] {record.summary if record else 'trained'}")
    else:
        model, surrogate_path = given, config.surrogate
        surrogate_info = {"path": str(surrogate_path), "trained_here": False}
    surrogate_digest = _file_digest(surrogate_path / WEIGHTS)
    connect(config.engine.address, num_cpus=config.ray.num_cpus)
    task_digests = {}
    for task in tasks:
        base = {
            "surrogate": surrogate_digest,
            "task": task.spec.model_dump(),
            "split_seed": config.split_seed,
            "window": config.window,
        }
        tune_identity = {**base, "search": config.search.model_dump(mode="json")}
        tune_name = f"{task.spec.name}-{identity_digest(tune_identity)[:12]}"
        inside = config.tune.storage_path is None
        tune_stage = Stage(
            f"tune_{task.spec.name}",
            tune_identity,
            (f"{task.spec.name}/{TUNE_FILE}", *((f"tune/{tune_name}",) if inside else ())),
            label=f"tune {task.spec.name}",
        )
        tune_digest = run(tune_stage, partial(_tune, config, multiome, task, surrogate_path, tune_name))
        result_identity = {
            "tune": tune_digest,
            "methods": list(config.methods),
            "truth": None if config.truth is None else _file_digest(config.truth),
        }
        outputs = tuple(f"{task.spec.name}/{name}" for name in (RESULT, EXPRESSION))
        task_digests[task.spec.name] = run(
            Stage(f"result_{task.spec.name}", result_identity, outputs, label=f"methods {task.spec.name}"),
            partial(_methods, config, multiome, model, task, directory, surrogate_info),
        )
    from dmr_ray.grids.summary import SUMMARY_FILES, write_summary

    names = [task.spec.name for task in tasks]
    run(
        Stage("summary", {"tasks": task_digests}, SUMMARY_FILES),
        lambda: write_summary(directory.root, names),
    )
    return RunSummary(directory.root, lines)


def _prepare(config: GridsConfig, multiome: Multiome, spec: TaskSpec) -> Prepared:
    """Check ``spec`` against the data and find its cells, candidate peaks and planted groups."""
    from dmr_ray.grids.perturb import peaks_near_tss

    where = f"tasks ({spec.cell_type}, {spec.gene})"
    try:
        gene = multiome.gene_index(spec.gene)
        cells = split_cells(multiome, spec.cell_type, seed=config.split_seed)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    if spec.L > len(multiome.peak_names):
        raise InputError(f"{where}: L = {spec.L} exceeds the {len(multiome.peak_names)} peaks")
    candidates = None
    if config.window is not None:
        candidates = peaks_near_tss(multiome.peaks, multiome.genes, multiome.gene_strand, gene, config.window)
        if len(candidates) < spec.L:
            raise InputError(f"{where}: only {len(candidates)} peaks lie within {config.window} bp of the TSS")
    groups = None
    if config.truth is not None:
        from dmr_ray.grids.simulate import read_truth

        groups = read_truth(config.truth).group_indices(spec.gene, multiome.peak_names)
    return Prepared(spec, Objective(gene, spec.direction), cells, candidates, groups)


def _tune(config: GridsConfig, multiome: Multiome, task: Prepared, surrogate: Path, name: str) -> str:
    """Tune GRIDS' search options for ``task`` on Ray; writes ``<task>/tune.json``."""
    from ray import tune

    from dmr_ray.grids.tune import TrialProblem, TrialResources, grids_trial, run_experiment

    problem = TrialProblem(
        surrogate=str(surrogate),
        objective=task.objective,
        L=task.spec.L,
        x_train=multiome.atac[task.cells.search],
        x_eval=multiome.atac[task.cells.eval],
        shards=config.tune.shards,
        engine=config.engine,
        candidates=task.candidates,
    )
    found = run_experiment(
        tune.with_parameters(grids_trial, problem=problem),
        config.search.grid(),
        name=name,
        storage_path=config.storage_path,
        resources=TrialResources(config.tune.shards, config.tune.driver_cpus, config.tune.shard_cpus),
        max_concurrent_trials=config.tune.max_concurrent_trials,
        max_failures=config.tune.max_failures,
    )
    document = {
        "best_config": found.best_config,
        "selected": [int(j) for j in found.best_metrics["selected"]],
        "train_loss": found.best_metrics["train_loss"],
        "eval_loss": found.best_metrics["eval_loss"],
        "trials": list(found.trials),
        "experiment": found.path,
    }
    path = Path(config.out) / task.spec.name / TUNE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
    return f"{len(found.trials)} configuration(s); best {found.best_config} (eval loss {document['eval_loss']:.4g})"


def _methods(
    config: GridsConfig,
    multiome: Multiome,
    model: Surrogate,
    task: Prepared,
    directory: AuditDirectory,
    surrogate_info: dict[str, Any],
) -> str:
    """GRIDS' best selection and each baseline's, scored on the test cells; writes result.json."""
    from dmr_ray.grids.metrics import expression_change

    folder = directory.root / task.spec.name
    tuned = json.loads((folder / TUNE_FILE).read_text(encoding="utf-8"))
    best = tuned["best_config"]
    x = multiome.atac
    x_test = x[task.cells.test]
    methods: dict[str, dict[str, Any]] = {}
    frames = []
    for method in config.methods:
        if method == "grids":
            details = {"search_loss": tuned["train_loss"], "eval_loss": tuned["eval_loss"]}
            selection = Selection(np.asarray(tuned["selected"], np.int64), 0.0, details)
        else:
            selection = select_peaks(
                method, model, x[task.cells.search], task.objective, task.spec.L,
                candidates=task.candidates, seed=int(best["seed"]),
            )  # fmt: skip
        metrics = evaluate_selection(model, x_test, task.objective, selection.selected, multiome, groups=task.groups)
        methods[method] = method_record(selection, metrics, multiome.peak_names)
        change = expression_change(model, x_test, task.objective, selection.selected)
        frames.append(pd.DataFrame({"method": method, "cell": multiome.cells[task.cells.test],
                                    "before": change.before, "after": change.after}))  # fmt: skip
    document = {
        "task": {
            **task.spec.model_dump(),
            "gene_index": task.objective.gene,
            "gene_interval": _interval(multiome, task.objective.gene),
            "cell_type_key": config.cell_type_key,
            "cells": task.cells.sizes(),
            "split_seed": config.split_seed,
            "window": config.window,
            "truth": None if config.truth is None else str(config.truth),
            "surrogate": surrogate_info,
        },
        "best_config": best,
        "methods": methods,
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(folder / EXPRESSION, pa.Table.from_pandas(pd.concat(frames, ignore_index=True)))
    write_text_atomic(folder / RESULT, json.dumps(document, indent=2, allow_nan=False) + "\n")
    grids = read_result(folder / RESULT)["methods"]["grids"]["metrics"]["expression_change"]
    return f"{len(methods)} method(s) on {x_test.shape[0]} test cells; GRIDS Avg Δ {grids['avg_delta']:.4g}"


def _interval(multiome: Multiome, gene: int) -> list[Any] | None:
    """``[chrom, start, end]`` of ``gene``, or None without coordinates."""
    genes = multiome.genes
    return [str(genes.chrom[gene]), int(genes.start[gene]), int(genes.end[gene])] if genes.known[gene] else None
