"""One GRIDS task in process: a cell type, a target gene, L peaks; GRIDS and the baselines side by side.

:func:`run_search` reads the multiome, trains the surrogate (or loads one), splits the cell
type's cells 70/10/20 into search, eval and test cells (seed 2023, ``random_split`` as the
original; grids.md §3), runs GRIDS on the search cells (the eval cells pick the best restart)
and each baseline on the same cells, scores every selection on the test cells
(:mod:`~dmr_ray.grids.metrics`) and writes ``DIR/result.json``::

    {"task": {...}, "methods": {"<method>": {"selected_peaks": [names], "selected": [indices],
                                              "metrics": {...}, "seconds": s, "details": {...}}}}

The pieces a distributed run reuses per task are public: :func:`split_cells`,
:func:`select_peaks`, :func:`evaluate_selection`, :func:`method_record`, :func:`write_result`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from dmr_ray import __version__
from dmr_ray._atomic import write_text_atomic
from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.grids.data import Multiome, read_multiome
from dmr_ray.grids.objective import Direction, Objective
from dmr_ray.grids.surrogate import WEIGHTS, Surrogate, load_surrogate, save_surrogate
from dmr_ray.grids.training import TrainingOptions, torch_threads
from dmr_ray.stage import MARKER, AuditDirectory, Stage

log = logging.getLogger(__name__)

SPLIT_SEED = 2023
"""Seed of the 70/10/20 cell split (the original's)."""

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
"""Search, eval and test fractions of the cell type's cells."""

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "original": {},
    "small": {"rna_hidden": (64,), "embed_dim": 8, "block_dim": 16, "latent_dim": 8, "n_experts": 3, "gate_hidden": 32},
}
"""Surrogate sizes by name (:class:`~dmr_ray.grids.surrogate.SurrogateConfig` overrides): the original's
widths, or a small network that learns a simulated multiome in about a thousand steps."""

RESULT = "result.json"
SURROGATE_DIR = "surrogate"
ACCURACY = "accuracy.json"


def baseline_names() -> tuple[str, ...]:
    """The baselines available (``dmr_ray.grids.baselines.BASELINES``)."""
    from dmr_ray.grids.baselines import BASELINES

    return tuple(BASELINES)


def default_methods() -> tuple[str, ...]:
    """GRIDS and every baseline except SAGE (slow, and an optional extra)."""
    return ("grids", *(name for name in baseline_names() if name != "sage"))


def claim_output(out: Path, kind: str, *, overwrite: bool) -> AuditDirectory:
    """Claim ``out`` as a dmr_ray output directory of ``kind`` (created if absent).

    Raises
    ------
    InputError
        If ``out`` is a file, or a directory with files and no dmr_ray marker (never written into).
    """
    check_output(out)
    return AuditDirectory.claim(out, kind, overwrite=overwrite)


def check_output(out: Path) -> None:
    """:class:`InputError` unless ``out`` is absent, empty, or a dmr_ray output directory (creates nothing)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(f"{out}: holds files not written by dmr_ray (no {MARKER}); choose another output directory")


@dataclass(frozen=True)
class CellSplit:
    """Indices (into the multiome's cells) of one cell type's search, eval and test cells, each sorted."""

    search: np.ndarray
    eval: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Cells per part."""
        return {"search": len(self.search), "eval": len(self.eval), "test": len(self.test)}


def split_cells(data: Multiome, cell_type: str, *, seed: int = SPLIT_SEED) -> CellSplit:
    """Split the cells of ``cell_type`` 70/10/20 with ``torch.utils.data.random_split`` seeded ``seed``.

    Raises
    ------
    InputError
        If the cell type is absent or has fewer than 10 cells.
    """
    cells = np.flatnonzero(data.cell_types == cell_type)
    if len(cells) == 0:
        types = sorted(set(data.cell_types.tolist()))
        raise InputError(f"cell type {cell_type!r} is not in the data; it has {types}")
    if len(cells) < 10:
        raise InputError(f"cell type {cell_type!r} has {len(cells)} cells; a search needs at least 10")
    generator = torch.Generator().manual_seed(seed)
    positions: Any = range(len(cells))  # a Dataset of positions, as the original splits its dataset
    parts = torch.utils.data.random_split(positions, list(SPLIT_FRACTIONS), generator=generator)
    search, held, test = (np.sort(cells[np.asarray(part.indices, np.int64)]) for part in parts)
    return CellSplit(search=search, eval=held, test=test)


@dataclass(frozen=True)
class Selection:
    """The L peaks one method selected, and what the method reports about its run.

    Attributes
    ----------
    selected
        ``int64 [L]`` peak indices.
    seconds
        Wall time of the selection.
    details
        JSON-ready extras (GRIDS: search and eval loss; baselines: nothing).
    """

    selected: np.ndarray
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def select_peaks(
    method: str,
    model: Surrogate,
    x_search: sp.csr_matrix,
    objective: Objective,
    L: int,
    *,
    x_eval: sp.csr_matrix | None = None,
    candidates: np.ndarray | None = None,
    k: int = 32,
    steps: int | None = None,
    restarts: int = 1,
    seed: int = 0,
    threads: int = 1,
) -> Selection:
    """Run ``method`` (``"grids"`` or a baseline name) on the search cells ``x_search [cells, n_peaks]``.

    With ``candidates`` (``int64 [m]``, m >= L), only those peaks may be selected. The method
    runs on ``threads`` torch CPU threads (1 by default: its batches of ~100 cells gain nothing
    from more, and on a shared or busy machine torch's default of one thread per core made
    FIMAP about 40× slower).
    """
    with torch_threads(threads):
        return _select_peaks(method, model, x_search, objective, L, x_eval, candidates, k, steps, restarts, seed)


def _select_peaks(
    method: str,
    model: Surrogate,
    x_search: sp.csr_matrix,
    objective: Objective,
    L: int,
    x_eval: sp.csr_matrix | None,
    candidates: np.ndarray | None,
    k: int,
    steps: int | None,
    restarts: int,
    seed: int,
) -> Selection:
    started = time.perf_counter()
    if method == "grids":
        from dmr_ray.grids.optimizer import grids_search
        from dmr_ray.grids.population import LocalPopulation

        found = grids_search(
            LocalPopulation(model, x_search, objective),
            L,
            k=k,
            steps=steps,
            restarts=restarts,
            seed=seed,
            eval_population=None if x_eval is None else LocalPopulation(model, x_eval, objective),
            candidates=candidates,
        )
        details = {"search_loss": float(found.train_loss), "eval_loss": _float_or_none(found.eval_loss)}
        return Selection(np.asarray(found.selected, np.int64), time.perf_counter() - started, details)
    from dmr_ray.grids.baselines import BASELINES

    if method not in BASELINES:
        raise InputError(f"unknown method {method!r}; choose from {['grids', *BASELINES]}")
    result = BASELINES[method](model, x_search, objective, L, seed=seed, candidates=candidates)
    selected = np.asarray(result.selected, np.int64)
    return Selection(selected, time.perf_counter() - started)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def evaluate_selection(
    model: Surrogate,
    x_test: sp.csr_matrix,
    objective: Objective,
    selected: np.ndarray,
    data: Multiome,
    *,
    groups: list[list[int]] | None = None,
) -> dict[str, Any]:
    """Metrics of one selection on the test cells: ``expression_change``, ``locality`` and, with the
    planted ``groups`` (peak indices), ``recovery``; JSON-ready."""
    from dmr_ray.grids.metrics import expression_change, locality, recovery

    metrics = {
        "expression_change": expression_change(model, x_test, objective, selected).as_dict(),
        "locality": locality(data.peaks, data.genes, objective.gene, selected).as_dict(),
    }
    if groups is not None:
        metrics["recovery"] = recovery(selected, groups).as_dict()
    return metrics


def method_record(selection: Selection, metrics: dict[str, Any], peak_names: np.ndarray) -> dict[str, Any]:
    """One method's entry of ``result.json``."""
    return {
        "selected_peaks": [str(peak_names[j]) for j in selection.selected],
        "selected": [int(j) for j in selection.selected],
        "metrics": metrics,
        "seconds": selection.seconds,
        "details": selection.details,
    }


def write_result(path: Path, task: dict[str, Any], methods: dict[str, dict[str, Any]]) -> None:
    """Write ``{"task": task, "methods": methods}`` to ``path`` atomically (indented JSON)."""
    document = {"task": task, "methods": methods, "code_version": __version__}
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def read_result(path: str | Path) -> dict[str, Any]:
    """The document :func:`write_result` wrote."""
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class SearchOptions:
    """How one task is searched.

    Attributes
    ----------
    methods
        ``"grids"`` and baseline names (:func:`default_methods` when None).
    direction
        ``"down"`` removes peaks (p = 0) to lower the gene, ``"up"`` opens them.
    k, steps, restarts
        GRIDS candidates per step, steps (None: until a sweep without improvement) and restarts.
    seed
        Seeds GRIDS' starting sets and the stochastic baselines.
    window
        Only peaks on the gene's chromosome within this many bp of its TSS may be selected
        (None: all peaks, as the original).
    """

    methods: tuple[str, ...] | None = None
    direction: Direction = "down"
    k: int = 32
    steps: int | None = None
    restarts: int = 1
    seed: int = 0
    window: int | None = None

    def checked_methods(self) -> tuple[str, ...]:
        """The methods to run; :class:`InputError` for an unknown or repeated one."""
        methods = default_methods() if self.methods is None else tuple(self.methods)
        known = ("grids", *baseline_names())
        unknown = [m for m in methods if m not in known]
        if unknown or not methods or len(set(methods)) != len(methods):
            raise InputError(f"methods {list(methods)}: each must appear once, from {list(known)}")
        return methods

    def __post_init__(self) -> None:
        if self.direction not in ("down", "up"):
            raise InputError(f"direction must be 'down' or 'up', got {self.direction!r}")
        for name in ("k", "restarts"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise InputError(f"search {name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("steps", "window"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < (1 if name == "steps" else 0)):
                raise InputError(f"search {name} must be None or an integer >= {1 if name == 'steps' else 0}")
        if not is_int(self.seed):
            raise InputError(f"search seed must be an integer, got {self.seed!r}")


def _data_identity(data: str | Path | tuple[str | Path, str | Path]) -> dict[str, Any]:
    paths = [Path(p) for p in (data if isinstance(data, tuple) else (data,))]
    return {str(p.resolve()): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths if p.exists()}


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train_here(
    directory: AuditDirectory,
    multiome: Multiome,
    data: str | Path | tuple[str | Path, str | Path],
    cell_type_key: str,
    training: TrainingOptions,
    architecture: dict[str, Any],
) -> tuple[Surrogate, dict[str, Any]]:
    """Train the surrogate into ``directory/surrogate/`` (a stage: reused while data and options are unchanged)."""
    from dmr_ray.grids.fit import fit_surrogate

    where = directory.root / SURROGATE_DIR
    identity = {"data": _data_identity(data), "cell_type_key": cell_type_key, "training": asdict(training),
                "architecture": architecture}  # fmt: skip

    def train() -> str:
        started = time.perf_counter()
        fitted = fit_surrogate(multiome, training, **architecture)
        save_surrogate(fitted.model, where)
        accuracy = {
            "mean_gene_correlation": _float_or_none(fitted.accuracy.mean_gene_correlation),
            "gene_correlation": {
                str(name): _float_or_none(r)
                for name, r in zip(multiome.gene_names, fitted.accuracy.gene_correlation, strict=True)
            },
            "final_loss": float(fitted.history.loss[-1]),
            "seconds": time.perf_counter() - started,
        }
        write_text_atomic(where / ACCURACY, json.dumps(accuracy, indent=2, allow_nan=False) + "\n")
        return f"surrogate trained: held-out mean gene r = {accuracy['mean_gene_correlation']}"

    directory.run(Stage("surrogate", identity, (SURROGATE_DIR,), label="surrogate training"), train)
    accuracy = json.loads((where / ACCURACY).read_text(encoding="utf-8"))
    info = {"path": str(where), "trained_here": True, "training": asdict(training), "architecture": architecture,
            "heldout_accuracy": accuracy}  # fmt: skip
    return load_surrogate(where), info


def run_search(
    data: str | Path | tuple[str | Path, str | Path],
    cell_type: str,
    gene: str,
    L: int,
    *,
    out: str | Path,
    surrogate: str | Path | None = None,
    truth: str | Path | None = None,
    options: SearchOptions | None = None,
    training: TrainingOptions | None = None,
    architecture: dict[str, Any] | None = None,
    cell_type_key: str = "cell_type",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Search one task and write ``out/result.json``; returns its document.

    Parameters
    ----------
    data
        A ``.h5mu`` file, or a pair ``(rna.h5ad, atac.h5ad)``.
    cell_type, gene, L
        The population, the target gene and the number of peaks to select.
    out
        Output directory (``result.json``; ``surrogate/`` when trained here).
    surrogate
        A saved surrogate directory (its peaks and genes must be the data's); None trains one.
    truth
        A simulation's ``truth.json``: adds the recovery of the gene's planted groups.
    options
        Methods and search settings.
    training, architecture
        Training settings and :class:`~dmr_ray.grids.surrogate.SurrogateConfig` overrides when
        the surrogate is trained here.
    cell_type_key
        The ``obs`` column with cell types.
    overwrite
        Replace earlier outputs in ``out`` (only files dmr_ray wrote there). Without it, a
        rerun with the same inputs reuses them and a changed one recomputes what changed.

    Raises
    ------
    InputError
        Before any output: bad options, an unreadable multiome, an absent gene or cell type, a
        surrogate of other peaks or genes, a truth without this gene, or an ``out`` holding
        other files.
    """
    from dmr_ray.grids.fit import check_matches
    from dmr_ray.grids.perturb import peaks_near_tss
    from dmr_ray.grids.simulate import read_truth

    o = options or SearchOptions()
    training = training or TrainingOptions()
    methods = o.checked_methods()
    if not is_int(L) or L < 1:
        raise InputError(f"L must be an integer >= 1, got {L!r}")
    out = Path(out)
    check_output(out)
    multiome = read_multiome(data, cell_type_key=cell_type_key, target_gene=gene)
    gene_index = multiome.gene_index(gene)
    cells = split_cells(multiome, cell_type)
    if L > len(multiome.peak_names):
        raise InputError(f"L = {L} exceeds the {len(multiome.peak_names)} peaks")
    candidates = None
    if o.window is not None:
        strand = multiome.gene_strand
        candidates = peaks_near_tss(multiome.peaks, multiome.genes, strand, gene_index, o.window)
        if len(candidates) < L:
            raise InputError(f"only {len(candidates)} peaks lie within {o.window} bp of {gene}'s TSS; L is {L}")
    groups = None if truth is None else read_truth(truth).group_indices(gene, multiome.peak_names)
    surrogate_path = None if surrogate is None else Path(surrogate)
    given = None if surrogate_path is None else load_surrogate(surrogate_path)
    if given is not None:
        check_matches(given, multiome)

    directory = claim_output(out, "grids_search", overwrite=overwrite)
    if given is None or surrogate_path is None:
        model, surrogate_info = _train_here(directory, multiome, data, cell_type_key, training, architecture or {})
        surrogate_path = directory.root / SURROGATE_DIR
    else:
        model, surrogate_info = given, {"path": str(surrogate_path), "trained_here": False}

    objective = Objective(gene_index, o.direction)
    task: dict[str, Any] = {
        "data": [str(p) for p in data] if isinstance(data, tuple) else str(data),
        "cell_type": cell_type,
        "cell_type_key": cell_type_key,
        "gene": gene,
        "gene_index": gene_index,
        "L": L,
        "direction": o.direction,
        "methods": list(methods),
        "options": {"k": o.k, "steps": o.steps, "restarts": o.restarts, "window": o.window},
        "seeds": {"search": o.seed, "split": SPLIT_SEED},
        "cells": cells.sizes(),
        "truth": None if truth is None else str(truth),
        "surrogate": surrogate_info,
    }
    x = multiome.atac
    identity = {
        "task": {key: value for key, value in task.items() if key != "surrogate"},
        "data": _data_identity(data),
        "surrogate": _file_digest(surrogate_path / WEIGHTS),
        "truth": None if truth is None else _file_digest(Path(truth)),
    }

    def search() -> str:
        x_test = x[cells.test]
        methods_out = {}
        for method in methods:
            selection = select_peaks(
                method,
                model,
                x[cells.search],
                objective,
                L,
                x_eval=x[cells.eval],
                candidates=candidates,
                k=o.k,
                steps=o.steps,
                restarts=o.restarts,
                seed=o.seed,
            )
            metrics = evaluate_selection(model, x_test, objective, selection.selected, multiome, groups=groups)
            methods_out[method] = method_record(selection, metrics, multiome.peak_names)
            change = metrics["expression_change"]["avg_delta"]
            log.info("%s: %d peaks in %.1f s, test Avg delta %s", method, L, selection.seconds, change)
        write_result(directory.root / RESULT, task, methods_out)
        return f"{', '.join(methods)} for {gene} in {cell_type}"

    directory.run(Stage("search", identity, (RESULT,), label="GRIDS and baselines"), search)
    return read_result(directory.root / RESULT)
