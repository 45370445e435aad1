"""Typed configuration of a GRIDS run (``kind: grids``): data, tasks, the Tune search space.

``dmr-ray run grids.yaml`` (or ``dmr-ray grids run grids.yaml``) validates the whole file up
front; a bad value is a :class:`~dmr_ray.errors.ConfigError` naming the file and the field::

    kind: grids
    data: multiome.h5mu          # or {rna: rna.h5ad, atac: atac.h5ad}
    cell_type_key: cell_type
    out: grids_out/
    surrogate: null              # a saved surrogate directory, or null: train one under out/surrogate/
    methods: [random, saliency, smoothgrad, integrated_gradients, fimap, grids]
    tasks:
      - {cell_type: VIP, gene: GAD1, L: 10}
      - {cell_type: Micro, gene: CX3CR1, L: 128, direction: down}
    search: {k: [16, 32], restarts: [1, 4], steps: 500}   # single values or lists (a grid)
    tune: {shards: 1, storage_path: null, max_concurrent_trials: null, max_failures: 2}
    truth: null                  # a simulation's truth.json: adds planted-group recovery

Relative paths resolve against the YAML file's directory. The ``engine:`` section (restarts of
lost shard actors, stall timeout, cluster address) is the platform's; the number of shard
actors of each trial is ``tune.shards``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from dmr_ray.config.base import Options, PipelineConfig

METHODS = ("random", "saliency", "smoothgrad", "integrated_gradients", "fimap", "sage", "grids")
"""Every method a run can compare: the baselines of :mod:`dmr_ray.grids.baselines` and GRIDS."""

DEFAULT_METHODS = ("random", "saliency", "smoothgrad", "integrated_gradients", "fimap", "grids")
"""SAGE is slow and optional (the ``sage-importance`` package); add it to ``methods`` to run it."""

SEARCH_KEYS = ("k", "steps", "restarts", "seed", "mode")
"""The search options a Tune trial varies (L is the task's)."""


class DataPair(Options):
    """RNA and ATAC as two ``.h5ad`` files with matching cells."""

    rna: Path
    atac: Path


class TaskSpec(Options):
    """One search: the peaks of ``cell_type``'s cells whose change moves ``gene`` ``direction``."""

    cell_type: str = Field(min_length=1)
    gene: str = Field(min_length=1)
    L: int = Field(gt=0)
    direction: Literal["down", "up"] = "down"

    @property
    def name(self) -> str:
        """The task's directory under ``out``: ``<cell_type>__<gene>``, unsafe characters as ``_``."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.cell_type}__{self.gene}")


class SearchSpace(Options):
    """The Tune parameter space: each option one value or a list of values (all combinations run).

    Attributes
    ----------
    k
        Candidate peaks proposed per row of the transition matrix.
    steps
        Optimizer steps per restart (``None``: until a sweep without improvement).
    restarts
        Random restarts of the improved optimizer.
    seed
        Seed of the initial subsets.
    mode
        ``improved`` (the default) or ``faithful`` (the original's update rule).
    """

    k: tuple[int, ...] = (32,)
    steps: tuple[int | None, ...] = (None,)
    restarts: tuple[int, ...] = (1,)
    seed: tuple[int, ...] = (0,)
    mode: tuple[Literal["improved", "faithful"], ...] = ("improved",)

    @field_validator(*SEARCH_KEYS, mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        values = list(value) if isinstance(value, list | tuple) else [value]
        if not values:
            raise ValueError("an empty list; give one value or a list of values")
        return values

    @field_validator("k", "steps", "restarts", "seed")
    @classmethod
    def _in_range(cls, value: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
        minimum = 0 if info.field_name == "seed" else 1
        bad = [v for v in value if v is not None and v < minimum]
        if bad:
            raise ValueError(f"must be >= {minimum}, got {bad[0]!r}")
        return value

    def grid(self) -> dict[str, list[Any]]:
        """Each option's values, in order (a single value in the YAML is a list of one)."""
        return {key: list(getattr(self, key)) for key in SEARCH_KEYS}

    @property
    def n_configs(self) -> int:
        """How many configurations (Tune trials per task) the grid holds."""
        count = 1
        for values in self.grid().values():
            count *= len(values)
        return count


class TuneOptions(Options):
    """How the search configurations run as Ray Tune trials.

    Attributes
    ----------
    shards
        Shard actors per trial, each holding a block of the training cells and a surrogate
        replica (0: the trial computes in its own process).
    storage_path
        Where Tune keeps its experiments (a shared path or an object-store URL on clusters;
        default ``out/tune``). An interrupted experiment resumes from there.
    max_concurrent_trials
        Trials running at once (default: as many as the cluster's CPUs hold, each a driver
        bundle plus one bundle per shard, so that shard actors are never starved).
    max_failures
        Retries of a failed trial (``-1``: unlimited).
    driver_cpus, shard_cpus
        Logical CPUs of a trial's driver bundle and of each shard's bundle.
    """

    shards: int = Field(default=1, ge=0)
    storage_path: str | None = None
    max_concurrent_trials: int | None = Field(default=None, gt=0)
    max_failures: int = Field(default=2, ge=-1)
    driver_cpus: float = Field(default=0.5, gt=0)
    shard_cpus: float = Field(default=1.0, gt=0)


class TrainingSection(Options):
    """Training of the surrogate when ``surrogate`` is null (:class:`~dmr_ray.grids.training.TrainingOptions`)."""

    steps: int = Field(default=3000, gt=0)
    batch_size: int = Field(default=128, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    seed: int = Field(default=0, ge=0)
    architecture: str | dict[str, int | float | tuple[int, ...]] = "original"
    """The surrogate's widths: a name of ``grids.search.ARCHITECTURES`` (``original``, ``small``) or
    overrides of :class:`~dmr_ray.grids.surrogate.SurrogateConfig` fields (``embed_dim``, ...)."""

    @field_validator("architecture")
    @classmethod
    def _known_widths(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        import dataclasses

        from dmr_ray.grids.search import ARCHITECTURES
        from dmr_ray.grids.surrogate import SurrogateConfig

        if isinstance(value, str):
            if value not in ARCHITECTURES:
                raise ValueError(f"unknown architecture {value!r}; choose from {sorted(ARCHITECTURES)} or give widths")
            return value
        derived = {"n_peaks", "n_genes", "chromosomes", "peak_digest", "gene_digest"}
        known = [f.name for f in dataclasses.fields(SurrogateConfig) if f.name not in derived]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown surrogate setting(s) {unknown}; choose from {known}")
        return value

    def widths(self) -> dict[str, Any]:
        """The :class:`~dmr_ray.grids.surrogate.SurrogateConfig` overrides of :attr:`architecture`."""
        from dmr_ray.grids.search import ARCHITECTURES

        return dict(ARCHITECTURES[self.architecture]) if isinstance(self.architecture, str) else dict(self.architecture)


class GridsConfig(PipelineConfig):
    """A GRIDS run: a surrogate, then per task a Tune-searched GRIDS and the baselines.

    Besides the sections above: ``split_seed`` seeds each task's 70/10/20 split of its cell
    type's cells into search, eval (selects the configuration) and test (the metrics) cells
    (2023, the original's); ``window`` restricts the selectable peaks to those within this many
    bp of the gene's TSS (null: all peaks, as the original); ``truth`` is a simulation's
    ``truth.json`` (adds the recovery of the planted groups to the metrics).
    """

    kind: Literal["grids"] = "grids"
    data: Path | DataPair
    cell_type_key: str = "cell_type"
    surrogate: Path | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    tasks: tuple[TaskSpec, ...]
    search: SearchSpace = SearchSpace()
    tune: TuneOptions = TuneOptions()
    training: TrainingSection = TrainingSection()
    split_seed: int = Field(default=2023, ge=0)
    window: int | None = Field(default=None, ge=0)
    truth: Path | None = None

    path_fields: ClassVar[tuple[str, ...]] = (
        "out", "data", "data.rna", "data.atac", "surrogate", "truth", "tune.storage_path",
    )  # fmt: skip

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in value if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
        if "grids" not in value:
            raise ValueError("must include 'grids' (the search is what a run tunes)")
        return tuple(dict.fromkeys(value))

    @field_validator("tasks")
    @classmethod
    def _distinct_tasks(cls, value: tuple[TaskSpec, ...]) -> tuple[TaskSpec, ...]:
        if not value:
            raise ValueError("no tasks; give at least one {cell_type, gene, L}")
        seen: dict[str, int] = {}
        for i, task in enumerate(value):
            if task.name in seen:
                raise ValueError(
                    f"[{i}] ({task.cell_type}, {task.gene}) repeats task [{seen[task.name]}]; "
                    "each (cell type, gene) writes one directory"
                )
            seen[task.name] = i
        return value

    @model_validator(mode="after")
    def _engine_actors(self) -> GridsConfig:
        if self.engine.actors is not None:
            raise ValueError("engine.actors: a GRIDS run sizes its shard pools by tune.shards; leave engine.actors out")
        return self

    @property
    def storage_path(self) -> str:
        """Where Tune keeps the experiments: ``tune.storage_path``, else ``out/tune``."""
        return self.tune.storage_path or str(Path(self.out) / "tune")

    def run(self, *, overwrite: bool = False) -> str:
        """Run (or resume) every task; returns where the summary is."""
        from dmr_ray.grids.pipeline import run_grids

        return f"GRIDS results written to {run_grids(self, overwrite=overwrite).out}"
