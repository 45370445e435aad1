"""Inputs of the report that are not Arrow tables: one region's instruments, calibration curves.

Arrays are converted to ``float64`` NumPy arrays and their shapes checked on construction, so
the figure code can rely on them. NaN is allowed everywhere: a figure shows what is finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmr_ray.errors import InputError


def _float_array(owner: object, name: str, ndim: int) -> np.ndarray:
    """Convert attribute ``name`` of a frozen dataclass to float64 in place and check its rank."""
    value = np.asarray(getattr(owner, name), dtype=np.float64)
    if value.ndim != ndim:
        raise InputError(f"{type(owner).__name__}.{name} must be {ndim}-D, got shape {value.shape}")
    object.__setattr__(owner, name, value)
    return value


@dataclass(frozen=True)
class ScatterData:
    """The instruments of one region and the MR fits drawn through them.

    Attributes
    ----------
    seq_id
        Sequence identifier of the region.
    exposure, outcome
        Task names.
    bx, bxse, by, byse
        ``[J]`` exposure and outcome effects (mutant − reference) of the region's instruments
        and their standard errors.
    ivw_slope
        IVW estimate (a line through the origin); NaN when not fitted.
    egger_intercept, egger_slope
        MR-Egger intercept and slope (fitted on instruments oriented to ``bx ≥ 0``); NaN when
        not fitted.
    region
        Optional label of the region within the sequence (e.g. ``"0:100"``).
    """

    seq_id: str
    exposure: str
    outcome: str
    bx: np.ndarray
    bxse: np.ndarray
    by: np.ndarray
    byse: np.ndarray
    ivw_slope: float = np.nan
    egger_intercept: float = np.nan
    egger_slope: float = np.nan
    region: str | None = None

    def __post_init__(self) -> None:
        arrays = [_float_array(self, name, 1) for name in ("bx", "bxse", "by", "byse")]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(
                f"ScatterData for {self.seq_id!r}: bx, bxse, by, byse differ in "
                f"length ({', '.join(str(a.size) for a in arrays)})"
            )
        for name in ("ivw_slope", "egger_intercept", "egger_slope"):
            object.__setattr__(self, name, float(getattr(self, name)))


@dataclass(frozen=True)
class CalibrationCurves:
    """Expected against observed proportions per task, before and after recalibration.

    Attributes
    ----------
    tasks
        ``T`` task names.
    expected
        ``[P]`` expected proportions (e.g. ``linspace(0, 1, 100)``).
    observed_before
        ``[T, P]`` observed proportions of the raw predictions. Note the layout: tasks first
        (:func:`dmr_ray.uncertainty.calibration.calibration_curve` returns ``[P, T]``).
    observed_after
        ``[T, P]`` observed proportions after recalibration, or None when not recalibrated.
    error_before
        ``[T]`` calibration error of the raw predictions.
    error_after
        ``[T]`` calibration error after recalibration, or None.
    method
        The recalibration method (e.g. ``"isotonic"``), or a note such as ``"none"``.
    """

    tasks: tuple[str, ...]
    expected: np.ndarray
    observed_before: np.ndarray
    observed_after: np.ndarray | None
    error_before: np.ndarray
    error_after: np.ndarray | None
    method: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(str(t) for t in self.tasks))
        n_tasks = len(self.tasks)
        n_points = _float_array(self, "expected", 1).size
        if (self.observed_after is None) != (self.error_after is None):
            raise InputError("CalibrationCurves: observed_after and error_after must both be given or both be None")
        for name, shape in (
            ("observed_before", (n_tasks, n_points)),
            ("error_before", (n_tasks,)),
            ("observed_after", (n_tasks, n_points)),
            ("error_after", (n_tasks,)),
        ):
            if getattr(self, name) is None:
                continue
            value = _float_array(self, name, len(shape))
            if value.shape != shape:
                raise InputError(f"CalibrationCurves.{name} must have shape {shape} (tasks, points), got {value.shape}")
