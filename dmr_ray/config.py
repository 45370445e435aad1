"""Typed configuration of a Deep MR audit, loaded from YAML and validated up front.

Every user-facing option of ``dmr-ray deep-mr run`` lives here. Relative paths are resolved
against the directory of the YAML file. Any problem is a :class:`~dmr_ray.errors.ConfigError`
naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dmr_ray.errors import ConfigError

MR_METHODS = ("deepmr", "egger", "egger_robust", "ivw", "weighted_median", "mbe", "steiger")
"""Per-region estimators. ``deepmr`` reproduces the original: robust Egger above 10
instruments, plain Egger for 3-10, skipped for 2 or fewer."""


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IsmOptions(_Options):
    """Saturation mutagenesis on the Ray engine."""

    chunk_size: int | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    ddof: int = Field(default=0, ge=0)
    fast: bool | Literal["auto"] = "auto"
    precision: Literal["float32", "bfloat16", "float16"] = "float32"
    actors: int | None = Field(default=None, gt=0)
    device: str | None = None

    @model_validator(mode="after")
    def _precision_needs_fast(self) -> IsmOptions:
        if self.precision != "float32" and self.fast is False:
            raise ValueError(f"precision {self.precision!r} needs the fast path (fast: true or auto)")
        return self


class CalibrationOptions(_Options):
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


class InstrumentOptions(_Options):
    """Which substitutions are instruments for an exposure.

    ``zscore`` is the original filter: |x - mean(x)| / sd(x) >= threshold, with x the exposure
    effects pooled over all sequences, positions and alleles (sd with ddof 0). ``wald`` keeps
    variants with |beta / se| >= threshold.
    """

    filter: Literal["zscore", "wald"] = "zscore"
    threshold: float = Field(default=1.0, gt=0)
    direction_filter: bool = False
    """Steiger-style: keep only instruments that move the exposure more than the outcome
    (each scaled by its SD over the reference sequences). Off reproduces the original."""


class RegionOptions(_Options):
    """The unit of one MR fit: the whole input window (as the original) or tiles of ``width``."""

    kind: Literal["window", "tiles"] = "window"
    width: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _width_for_tiles(self) -> RegionOptions:
        if self.kind == "tiles" and self.width is None:
            raise ValueError("kind 'tiles' needs a 'width' in bp")
        return self


class MethodOptions(_Options):
    """Estimators to run per region, and their bootstrap settings."""

    estimators: tuple[str, ...] = ("deepmr",)
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


class MetaOptions(_Options):
    """Random-effects pooling of the regions (DerSimonian-Laird as the original)."""

    method: Literal["FE", "DL", "REML", "PM", "HS", "ML", "HE"] = "DL"
    test: Literal["z", "knha"] = "z"


class ReportOptions(_Options):
    """What the HTML report shows."""

    enabled: bool = True
    scatter_sequences: int = Field(default=4, ge=0)


class RayOptions(_Options):
    """Where to run: a local instance (``address: null``) or a cluster (``auto`` / an address)."""

    address: str | None = None
    num_cpus: int | None = Field(default=None, gt=0)


class DeepMRConfig(_Options):
    """A whole Deep MR audit."""

    store: str
    model: Path
    out: Path
    pairs: Literal["all"] | tuple[tuple[str, str], ...] = "all"
    ism: IsmOptions = IsmOptions()
    calibration: CalibrationOptions = CalibrationOptions()
    instruments: InstrumentOptions = InstrumentOptions()
    regions: RegionOptions = RegionOptions()
    methods: MethodOptions = MethodOptions()
    meta: MetaOptions = MetaOptions()
    report: ReportOptions = ReportOptions()
    ray: RayOptions = RayOptions()

    @model_validator(mode="after")
    def _precision_without_calibration(self) -> DeepMRConfig:
        if self.calibration.method != "none" and self.ism.precision != "float32":
            raise ValueError(
                f"ism.precision {self.ism.precision!r} cannot be combined with calibration: "
                "calibrated ISM runs the exact path in float32"
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


def _is_url(value: str) -> bool:
    return "://" in value


def _resolve(base: Path, value: Any) -> Any:
    if value is None or (isinstance(value, str) and _is_url(value)):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    data = dict(data)
    for key in ("store", "model", "out"):
        if key in data:
            data[key] = _resolve(base, data[key])
    calibration = data.get("calibration")
    if isinstance(calibration, dict):
        data["calibration"] = {
            k: (_resolve(base, v) if k in ("store", "labels") else v) for k, v in calibration.items()
        }
    return data


def _format_error(source: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return f"{source}: invalid configuration: " + "; ".join(problems)


def config_from_dict(data: dict[str, Any], *, base_dir: Path | None = None, source: str = "config") -> DeepMRConfig:
    """Validate a configuration mapping; relative paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return DeepMRConfig.model_validate(_resolve_paths(data, base_dir or Path.cwd()))
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None


def load_config(path: str | Path) -> DeepMRConfig:
    """Load and validate a Deep MR YAML configuration (safe loader).

    Raises
    ------
    ConfigError
        Naming the file and each invalid field.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return config_from_dict(data, base_dir=path.resolve().parent, source=str(path))
