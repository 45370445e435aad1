"""Typed configuration of the expression-model attribution benchmark (``kind: attribution``).

A benchmark simulates one hierarchical LDA data set (:mod:`dmr_ray.sim.lda`), then, for every
training seed, trains one classifier, attributes its correctly classified test samples with
each method and scores the attributions against the true genes (feature agreement) and by
masking (prediction gaps). Every option is validated up front; a bad value is a
:class:`~dmr_ray.errors.ConfigError` naming the field. The ``engine`` and ``ray`` sections are
the shared ones of :class:`~dmr_ray.config.PipelineConfig`; one chunk of engine work is one seed.

The defaults are the reference's (attribution.md §2–4): SGD recipe, 60/40 split with seed 43,
Integrated Gradients on the softmax with the training-mean baseline and a completeness
tolerance of 0.01, 10 features masked per prediction-gap point, 30 random orders for PGR.
Saliency and SmoothGrad default to signed gradients of the logit: gradients of a saturated
softmax are 0 or rounding noise (docs/experiments.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dmr_ray.attribution.train import TrainingOptions
from dmr_ray.config.base import Options, PipelineConfig
from dmr_ray.errors import ConfigError
from dmr_ray.sim.lda import PRESETS, LDAConfig

KIND: Literal["attribution"] = "attribution"

Method = Literal["ig", "saliency", "smoothgrad"]
METHODS: tuple[Method, ...] = ("ig", "saliency", "smoothgrad")
"""Attribution methods a benchmark can run, in report order."""

SimulationName = Literal["SIMU1", "SIMU2", "SimuA", "SimuB", "SimuC"]
Output = Literal["probability", "logit", "log_probability"]
_TRAINING = TrainingOptions()


class SimulationOptions(Options):
    """Which simulation, with optional size overrides (small runs for tests and CI).

    ``None`` keeps the preset's value. For disjoint pathways (all presets but SIMU2) an
    ``n_pathways`` override sets ``n_genes = genes_per_pathway · n_pathways`` unless
    ``n_genes`` is given too.
    """

    name: SimulationName = "SIMU1"
    seed: int = Field(default=1, ge=0)
    n_samples: int | None = Field(default=None, gt=0)
    n_genes: int | None = Field(default=None, gt=0)
    n_pathways: int | None = Field(default=None, gt=0)
    n_subclasses: int | None = Field(default=None, gt=0)
    pathways_per_class: int | None = Field(default=None, gt=0)
    n_reads: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _valid_design(self) -> SimulationOptions:
        try:
            self.lda_config()
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return self

    def lda_config(self) -> LDAConfig:
        """The :class:`~dmr_ray.sim.lda.LDAConfig` simulated: the preset with the overrides.

        Raises
        ------
        ConfigError
            When the overrides make an invalid design.
        """
        preset = PRESETS[self.name]
        sizes = ("n_samples", "n_genes", "n_pathways", "n_subclasses", "pathways_per_class", "n_reads")
        changes: dict[str, Any] = {k: getattr(self, k) for k in sizes if getattr(self, k) is not None}
        if "n_pathways" in changes and "n_genes" not in changes and not preset.overlapping:
            changes["n_genes"] = preset.genes_per_pathway * changes["n_pathways"]
        return dataclasses.replace(preset, **changes)


class TrainingSection(Options):
    """The SGD recipe and the split (defaults: :class:`~dmr_ray.attribution.train.TrainingOptions`)."""

    epochs: int = Field(default=_TRAINING.epochs, gt=0)
    batch_size: int = Field(default=_TRAINING.batch_size, ge=2)
    lr: float = Field(default=_TRAINING.lr, gt=0)
    momentum: float = Field(default=_TRAINING.momentum, ge=0, lt=1)
    weight_decay: float = Field(default=_TRAINING.weight_decay, ge=0)
    milestones: tuple[int, ...] = _TRAINING.milestones
    gamma: float = Field(default=_TRAINING.gamma, gt=0)
    threads: int = Field(default=_TRAINING.threads, gt=0)
    test_fraction: float = Field(default=0.4, gt=0, lt=1)
    split_seed: int = Field(default=43, ge=0)

    def options(self) -> TrainingOptions:
        """The recipe as :func:`~dmr_ray.attribution.train.fit_classifier` takes it."""
        return TrainingOptions(**self.model_dump(exclude={"test_fraction", "split_seed"}))


class IGOptions(Options):
    """Integrated Gradients: Gauss–Legendre steps doubled until ``|delta| <= tolerance``."""

    output: Output = "probability"
    tolerance: float = Field(default=0.01, gt=0)
    start_steps: int = Field(default=50, gt=0)
    max_steps: int = Field(default=3200, gt=0)
    batch_size: int = Field(default=64, gt=0)

    @model_validator(mode="after")
    def _steps(self) -> IGOptions:
        if self.start_steps > self.max_steps:
            raise ValueError(f"start_steps ({self.start_steps}) exceeds max_steps ({self.max_steps})")
        return self


class SaliencyOptions(Options):
    """Saliency: the input gradient; signed unless ``absolute``."""

    output: Output = "logit"
    absolute: bool = False
    batch_size: int = Field(default=64, gt=0)


class SmoothGradOptions(Options):
    """SmoothGrad: noise sd ``noise`` × the z-scored genes' unit scale, ``n_samples`` copies."""

    output: Output = "logit"
    absolute: bool = False
    noise: float = Field(default=0.15, ge=0)
    n_samples: int = Field(default=25, gt=0)
    batch_size: int = Field(default=64, gt=0)


class ExplainOptions(Options):
    """Which test samples are explained: the correctly classified ones, at most this many per class."""

    samples_per_class: int | None = Field(default=None, gt=0)


class GapOptions(Options):
    """Prediction gaps (PGI, PGU, PGR) and their curves."""

    enabled: bool = True
    step: int = Field(default=10, gt=0)
    """Features replaced by the baseline per point (the reference's 10)."""
    n_random: int = Field(default=30, gt=0)
    """Random orders averaged for PGR."""
    samples_per_class: int | None = Field(default=None, gt=0)
    """At most this many explained samples per class are masked (default: all)."""
    curve_points: int = Field(default=20, ge=2)
    """Points of the gap curves in the figure (log-spaced masked-feature counts)."""


class AttributionConfig(PipelineConfig):
    """A benchmark of attribution methods on a simulated expression classifier.

    Results go to ``out``: ``summary.json``, ``summary.md`` and the figures
    (:mod:`dmr_ray.attribution.benchmark`).
    """

    kind: Literal["attribution"] = KIND
    simulation: SimulationOptions = SimulationOptions()
    model: Literal["lr", "mlp"] = "lr"
    seeds: int = Field(default=10, gt=0)
    """Training seeds ``first_seed … first_seed + seeds − 1`` (initialisation, dropout, batches)."""
    first_seed: int = Field(default=0, ge=0)
    methods: tuple[Method, ...] = METHODS
    training: TrainingSection = TrainingSection()
    ig: IGOptions = IGOptions()
    saliency: SaliencyOptions = SaliencyOptions()
    smoothgrad: SmoothGradOptions = SmoothGradOptions()
    explain: ExplainOptions = ExplainOptions()
    gaps: GapOptions = GapOptions()

    path_fields: ClassVar[tuple[str, ...]] = ("out",)

    @field_validator("methods")
    @classmethod
    def _distinct_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        if not methods:
            raise ValueError("name at least one method")
        if len(set(methods)) < len(methods):
            raise ValueError(f"a method is named twice: {list(methods)}")
        return methods

    @property
    def seed_list(self) -> list[int]:
        """The training seeds, in order."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def method_options(self, method: str) -> IGOptions | SaliencyOptions | SmoothGradOptions:
        """The options section of ``method``."""
        sections: dict[str, IGOptions | SaliencyOptions | SmoothGradOptions] = {
            "ig": self.ig,
            "saliency": self.saliency,
            "smoothgrad": self.smoothgrad,
        }
        return sections[method]

    def run(self, *, overwrite: bool = False) -> str:
        """Run (or resume) the benchmark; returns where its summary is."""
        from dmr_ray.attribution.benchmark import run_benchmark

        result = run_benchmark(self, overwrite=overwrite)
        return f"attribution benchmark written to {result.out}\nsummary: {result.summary}"
