"""Typed configuration of a Deep MR audit (``kind: deep_mr``, the default), validated up front.

Every user-facing option of ``dmr-ray deep-mr run`` lives here, beside the shared sections of
:class:`~dmr_ray.config.PipelineConfig` (``engine``: every :class:`~dmr_ray.engine.EngineOptions`
field; ``ray``). The ISM section takes its defaults from :class:`~dmr_ray.engine.IsmJob`, and
the precision rule is :func:`~dmr_ray.ism.check_precision`'s. Relative paths are resolved
against the directory of the YAML file; any problem is a :class:`~dmr_ray.errors.ConfigError`
naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dmr_ray.attribution.sequences import METHODS, check_method_options
from dmr_ray.config.base import Options, PipelineConfig
from dmr_ray.engine import IsmJob
from dmr_ray.errors import ConfigError, InputError
from dmr_ray.ism import Precision, check_precision

_JOB_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(IsmJob)}
"""The ISM section's defaults: the engine job's."""

MR_METHODS = ("deepmr", "egger", "egger_robust", "ivw", "weighted_median", "mbe", "steiger")
"""Per-region estimators. ``deepmr`` reproduces the original: robust Egger above 10
instruments, plain Egger for 3-10, skipped for 2 or fewer."""
DEFAULT_ESTIMATOR = "weighted_median"
"""The estimator when none is named, and the report's primary method: of the methods whose local
95 % intervals cover the planted truths ≥ 0.90 of the time in all four scenarios of the
simulation study (over 50 rounds each), the one with the narrowest intervals
(docs/experiments.md). Robust Egger (``deepmr``) fits an intercept, and on a model that learned a
curved exposure-outcome relation its slope is another quantity than the local effect."""


class IsmOptions(Options):
    """Saturation mutagenesis on the engine; defaults are :class:`~dmr_ray.engine.IsmJob`'s."""

    chunk_size: int | None = Field(default=_JOB_DEFAULTS["chunk_size"], gt=0)
    batch_size: int | None = Field(default=_JOB_DEFAULTS["batch_size"], gt=0)
    ddof: int = Field(default=_JOB_DEFAULTS["ddof"], ge=0)
    fast: bool | Literal["auto"] = _JOB_DEFAULTS["fast"]
    precision: Precision = _JOB_DEFAULTS["precision"]
    device: str | None = _JOB_DEFAULTS["device"]
    keep_replicates: bool = True
    """Keep every replicate's effects for ``meta.inference: replicate`` (on here, unlike the
    engine's default: the audit's default inference needs them; docs/direction.md §7)."""

    def job(self, *, store: str, model: Path, out: Path, calibration: Path | None) -> IsmJob:
        """The engine job of these options."""
        return IsmJob(
            store=store,
            model=str(model),
            out=str(out),
            calibration=None if calibration is None else str(calibration),
            **self.model_dump(),
        )


class CalibrationOptions(Options):
    """Recalibration of replicate predictions, fitted on a labelled held-out set."""

    method: Literal["none", "isotonic", "variance"] = "none"
    mode: Literal["quantile", "interval"] = "quantile"
    store: Path | None = None
    labels: Path | None = None

    @model_validator(mode="after")
    def _needs_data(self) -> CalibrationOptions:
        if self.method != "none" and (self.store is None or self.labels is None):
            raise ValueError(
                f"method {self.method!r} needs both 'store' (labelled sequences) "
                "and 'labels' (observed task values, .npy [n, tasks])"
            )
        return self


class InstrumentOptions(Options):
    """Which substitutions are instruments for an exposure.

    ``zscore`` is the original filter: |x - mean(x)| / sd(x) >= threshold, with x the exposure
    effects pooled over all sequences, positions and alleles (sd with ddof 0). ``wald`` keeps
    variants with |beta / se| >= threshold.
    """

    filter: Literal["zscore", "wald"] = "zscore"
    threshold: float = Field(default=1.0, gt=0)
    direction_filter: bool = False
    """Steiger-style: keep only instruments that move the exposure more than the outcome, each
    on its own scale (``direction_scale``). Off reproduces the original."""
    direction_scale: Literal["region", "reference"] = "region"
    """The scale of each output in the direction filter: ``region``, the root mean square of
    its effects over every substitution of the region being fitted; ``reference``, its SD over
    the reference sequences (the first version, which truncates regions whose local slope
    exceeds the global ratio of SDs)."""
    direction_against: Literal["outcome", "all"] = "outcome"
    """What the direction filter compares an instrument's exposure effect with: ``outcome``
    (Steiger-style, the pair's outcome only) or ``all`` (every other task of the effects store
    as well, each on its own scale), so that a substitution that moves a third task more than
    the exposure, an instrument of that task, is not taken as the exposure's. A third task
    upstream of both (BPNet's Oct4-Sox2 composite moving Klf4 and Nanog through Oct4) is a
    common cause that violates the exclusion restriction; a task downstream of the exposure
    moves no more than the exposure on their own scales, so mediated instruments pass. Meant
    for a few distinct tasks: among many near-duplicate outputs (a task in several cell
    lines), ``all`` leaves few instruments."""

    @model_validator(mode="after")
    def _against_needs_filter(self) -> InstrumentOptions:
        if self.direction_against == "all" and not self.direction_filter:
            raise ValueError("instruments.direction_against: all needs instruments.direction_filter: true")
        return self


class RegionOptions(Options):
    """The unit of one MR fit: the whole input window (as the original) or tiles of ``width``."""

    kind: Literal["window", "tiles"] = "window"
    width: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _width_for_tiles(self) -> RegionOptions:
        if self.kind == "tiles" and self.width is None:
            raise ValueError("kind 'tiles' needs a 'width' in bp")
        return self

    def region_width(self, length: int) -> int:
        """The width in bp of one region of a sequence of ``length`` bp."""
        return self.width if self.kind == "tiles" and self.width is not None else length


class MethodOptions(Options):
    """Estimators to run per region, and their bootstrap settings."""

    estimators: tuple[str, ...] = (DEFAULT_ESTIMATOR,)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    iterations: int = Field(default=10_000, gt=0)
    seed: int = 314159265

    @field_validator("estimators")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in value if m not in MR_METHODS]
        if unknown:
            raise ValueError(f"unknown estimator(s) {unknown}; choose from {list(MR_METHODS)}")
        if not value:
            raise ValueError("at least one estimator is needed")
        return tuple(dict.fromkeys(value))


class MetaOptions(Options):
    """Random-effects pooling of the regions (DerSimonian-Laird as the original)."""

    method: Literal["FE", "DL", "REML", "PM", "HS", "ML", "HE"] = "DL"
    test: Literal["z", "knha"] = "z"
    inference: Literal["replicate", "pooled"] = "replicate"
    """``replicate``: local MR and pooling per replicate (ensemble member), the global estimate
    their mean with t on R - 1 df (:mod:`dmr_ray.deepmr.replicates`); ``pooled``: one pooling
    of the ensemble-mean effects (the original's, which counts a member's error shared by all
    instruments as independent evidence; docs/direction.md)."""


class ReportOptions(Options):
    """What the HTML report shows."""

    enabled: bool = True
    scatter_sequences: int = Field(default=4, ge=0)


class AttributionOptions(Options):
    """ "How far can this model's attributions be trusted": attributions of the first
    ``sequences`` audited sequences scored against known motif positions
    (:mod:`dmr_ray.attribution.sequences`). Without ``motifs`` the report says that the
    attributions cannot be checked."""

    methods: tuple[str, ...] = METHODS
    sequences: int = Field(default=32, gt=0)
    motifs: Path | None = None
    """Motif positions, lines ``seq_id start end [output]`` (0-based, end exclusive)."""
    ig_steps: int = Field(default=50, gt=0)
    baseline: Literal["uniform", "zeros"] = "uniform"

    @field_validator("methods")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return check_method_options(value, ig_steps=1, baseline="uniform")
        except InputError as exc:
            raise ValueError(str(exc).removeprefix("methods: ")) from None


class DeepMRConfig(PipelineConfig):
    """A whole Deep MR audit."""

    kind: Literal["deep_mr"] = "deep_mr"
    store: str
    model: Path
    pairs: Literal["all"] | tuple[tuple[str, str], ...] = "all"
    ism: IsmOptions = IsmOptions()
    calibration: CalibrationOptions = CalibrationOptions()
    instruments: InstrumentOptions = InstrumentOptions()
    regions: RegionOptions = RegionOptions()
    methods: MethodOptions = MethodOptions()
    meta: MetaOptions = MetaOptions()
    report: ReportOptions = ReportOptions()
    attribution: AttributionOptions | None = None

    path_fields: ClassVar[tuple[str, ...]] = (
        "store",
        "model",
        "out",
        "calibration.store",
        "calibration.labels",
        "attribution.motifs",
    )

    @model_validator(mode="after")
    def _precision(self) -> DeepMRConfig:
        try:
            check_precision(self.ism.precision, self.ism.fast, calibrated=self.calibration.method != "none")
        except InputError as exc:
            raise ValueError(f"ism.{exc}") from None
        if self.meta.inference == "replicate" and not self.ism.keep_replicates:
            raise ValueError("meta.inference 'replicate' needs ism.keep_replicates: true (or choose 'pooled')")
        if self.ism.keep_replicates and self.ism.precision != "float32":
            raise ValueError(
                f"ism.precision {self.ism.precision!r} cannot be combined with ism.keep_replicates "
                "(set keep_replicates: false and meta.inference: pooled)"
            )
        return self

    @field_validator("pairs")
    @classmethod
    def _distinct(cls, value: Any) -> Any:
        if value == "all":
            return value
        for exposure, outcome in value:
            if exposure == outcome:
                raise ValueError(f"pair ({exposure!r}, {outcome!r}) has the same task on both sides")
        return tuple(dict.fromkeys(value))

    def resolve_pairs(self, tasks: list[str]) -> list[tuple[str, str]]:
        """The ordered (exposure, outcome) pairs to audit, checked against the model's tasks."""
        if self.pairs == "all":
            return [(e, o) for e in tasks for o in tasks if e != o]
        for exposure, outcome in self.pairs:
            for name in (exposure, outcome):
                if name not in tasks:
                    raise ConfigError(f"pairs: task {name!r} is not an output of the model (outputs: {tasks})")
        return list(self.pairs)

    def run(self, *, overwrite: bool = False) -> str:
        """Run (or resume) the audit; returns where its outputs and report are."""
        from dmr_ray.deepmr.pipeline import run_audit

        summary = run_audit(self, overwrite=overwrite)
        return f"audit written to {summary.out}" + (f"\nreport: {summary.report}" if self.report.enabled else "")
