"""Recalibration of replicate predictions (deep_mr.md §4, attribution.md §8).

A replicate predictor (ensemble members or MC-dropout passes) gives, per input and task, a
Gaussian forecast N(μ, σ²) with μ the replicate mean and σ the replicate SD (ddof 0). Two
recalibrators are fitted per task on a recalibration split ``(mu, sigma, y)`` and applied to
new replicate predictions ``[R, n, T]``; the effects and SEs of deep_mr.md §3 are then computed
from the recalibrated replicates.

* :func:`fit_isotonic_recalibration` – isotonic map of proportions.
  ``mode="quantile"`` is the textbook form (Kuleshov et al. 2018): the PITs
  ``p = Φ((y − μ)/σ)`` give observed proportions ``P̂(p_j) = #{p ≤ p_j}/n`` on a grid of
  expected proportions ``p_j``. ``mode="interval"`` reproduces the original Deep MR
  (uncertainty-toolbox ``prop_type="interval"``): observed coverage of the central intervals
  ``|z| ≤ Φ⁻¹(0.5 + p_j/2)``. Either way, isotonic regression of expected on observed
  proportions gives the map ``R`` (uncertainty-toolbox's ``iso_recal``: a desired proportion
  to the nominal level, i.e. Kuleshov's R⁻¹). Each replicate is moved as
  ``q = Φ((f − μ)/σ)``, ``q' = R(q)``, ``f' = μ + σ Φ⁻¹(q')`` (deep_mr.md §4 step 4).
  The faithful "interval" map is applied to one-sided levels, exactly as the original did
  (§13 #4). Fixes of §13 #5: σ is floored and q, q' are clipped to ``[eps, 1 − eps]``.
* :func:`fit_variance_scaling` – one factor λ per task, the Gaussian MLE
  ``λ = mean((y − μ)²/σ²)``; replicates move as ``f' = μ + √λ (f − μ)``.

Findings worth knowing (attribution.md §8.2): with the default 100-point grid the isotonic map
is coarse in the tails (an over-confident forecast is only partly widened; use ~1000 bins);
and when σ comes only from the spread of point predictors, some inputs can have σ = 0
(all replicates agree). Such an input's PIT is 0 or 1 whatever the map, and every replicate
has the same level q = 0.5, so the isotonic map cannot give it any spread; variance scaling
cannot either (√λ · 0 = 0), and its λ is inflated by the floored σ. Fix the predictor (or
the floor) rather than expecting recalibration to repair it.

Fit on a recalibration split that is neither the training nor the evaluation data (§13 #6).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal

import numpy as np
from scipy.optimize import isotonic_regression
from scipy.special import ndtr, ndtri

from dmr_ray._checks import is_int
from dmr_ray.errors import ConfigError, InputError

Mode = Literal["quantile", "interval"]
MODES: tuple[str, ...] = ("quantile", "interval")
DEFAULT_SIGMA_FLOOR = 1e-6
DEFAULT_EPS = 1e-6


@dataclass(frozen=True)
class IsotonicRecalibrator:
    """Per-task isotonic maps from observed to nominal proportions.

    Attributes
    ----------
    mode
        ``"quantile"`` (textbook PIT proportions) or ``"interval"`` (original Deep MR).
    observed
        Per task, the increasing knots of observed proportions (map inputs).
    nominal
        Per task, the non-decreasing fitted nominal levels at those knots (map outputs).
    sigma_floor
        Lower bound applied to σ before standardising.
    eps
        Levels are clipped to ``[eps, 1 − eps]`` before and after the map.
    """

    mode: str
    observed: tuple[np.ndarray, ...]
    nominal: tuple[np.ndarray, ...]
    sigma_floor: float = DEFAULT_SIGMA_FLOOR
    eps: float = DEFAULT_EPS

    @property
    def n_tasks(self) -> int:
        """Number of tasks T the maps were fitted for."""
        return len(self.observed)

    def level_map(self, q: np.ndarray) -> np.ndarray:
        """Apply the per-task map R to levels ``q`` ``[..., T]`` (linear between knots, clipped outside)."""
        q = np.asarray(q, dtype=np.float64)
        _check_last_axis(q, self.n_tasks, "levels")
        out = np.empty_like(q)
        for t in range(self.n_tasks):
            out[..., t] = np.interp(q[..., t], self.observed[t], self.nominal[t])
        return out

    def apply(self, replicate_preds: np.ndarray) -> np.ndarray:
        """Recalibrate replicate predictions.

        Parameters
        ----------
        replicate_preds
            ``[R, n, T]`` predictions of R replicates.

        Returns
        -------
        numpy.ndarray
            ``float64 [R, n, T]``: ``μ + σ Φ⁻¹(clip(R(clip(Φ((f − μ)/σ)))))`` with μ, σ the
            replicate mean and SD (σ floored) of each input.

        Raises
        ------
        InputError
            If the array is not ``[R, n, T]`` with this T or holds a non-finite value.
        """
        preds = _check_replicates(replicate_preds, self.n_tasks)
        mu, sigma = replicate_moments(preds)
        sigma = np.maximum(sigma, self.sigma_floor)
        q = np.clip(ndtr((preds - mu) / sigma), self.eps, 1.0 - self.eps)
        q_new = np.clip(self.level_map(q), self.eps, 1.0 - self.eps)
        return mu + sigma * ndtri(q_new)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description from which :meth:`from_dict` rebuilds this recalibrator."""
        return {
            "kind": "isotonic",
            "mode": self.mode,
            "observed": [k.tolist() for k in self.observed],
            "nominal": [k.tolist() for k in self.nominal],
            "sigma_floor": self.sigma_floor,
            "eps": self.eps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsotonicRecalibrator:
        """Rebuild from :meth:`to_dict` output; :class:`InputError` if it is malformed."""
        _check_kind(data, "isotonic", ("mode", "observed", "nominal", "sigma_floor", "eps"))
        observed = tuple(np.asarray(k, dtype=np.float64) for k in data["observed"])
        nominal = tuple(np.asarray(k, dtype=np.float64) for k in data["nominal"])
        if data["mode"] not in MODES or len(observed) != len(nominal) or not observed:
            raise InputError("isotonic recalibrator dict: bad 'mode' or 'observed'/'nominal' lists")
        for t, (x, y) in enumerate(zip(observed, nominal, strict=True)):
            if x.ndim != 1 or x.shape != y.shape or x.size == 0 or np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
                raise InputError(f"isotonic recalibrator dict: knots of task {t} are not a monotone map")
        return cls(data["mode"], observed, nominal, *_floor_and_eps(data["sigma_floor"], data["eps"]))


@dataclass(frozen=True)
class VarianceScaler:
    """Per-task variance scale λ (Gaussian MLE); replicates move as ``μ + √λ (f − μ)``.

    Attributes
    ----------
    scale
        ``float64 [T]`` the factors λ.
    sigma_floor
        Lower bound applied to σ when λ was fitted.
    """

    scale: np.ndarray
    sigma_floor: float = DEFAULT_SIGMA_FLOOR

    def apply(self, replicate_preds: np.ndarray) -> np.ndarray:
        """Scale each input's replicate deviations from their mean by √λ of its task.

        Takes and returns ``[R, n, T]`` replicate predictions (``float64`` out) and raises
        :class:`InputError` like :meth:`IsotonicRecalibrator.apply`.
        """
        preds = _check_replicates(replicate_preds, self.scale.size)
        mu = preds.mean(axis=0)
        return mu + np.sqrt(self.scale) * (preds - mu)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description from which :meth:`from_dict` rebuilds this scaler."""
        return {"kind": "variance_scaling", "scale": self.scale.tolist(), "sigma_floor": self.sigma_floor}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VarianceScaler:
        """Rebuild from :meth:`to_dict` output; :class:`InputError` if it is malformed."""
        _check_kind(data, "variance_scaling", ("scale", "sigma_floor"))
        scale = np.asarray(data["scale"], dtype=np.float64)
        if scale.ndim != 1 or scale.size == 0 or not np.all(np.isfinite(scale) & (scale > 0)):
            raise InputError("variance scaler dict: 'scale' must be a non-empty list of positive numbers")
        return cls(scale, _floor_and_eps(data["sigma_floor"], DEFAULT_EPS)[0])


def replicate_moments(replicate_preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replicate mean μ and SD σ (ddof 0) over axis 0 of ``[R, n, T]`` predictions."""
    preds = np.asarray(replicate_preds, dtype=np.float64)
    return preds.mean(axis=0), preds.std(axis=0)


def fit_isotonic_recalibration(
    mu: np.ndarray,
    sigma: np.ndarray,
    y: np.ndarray,
    *,
    mode: Mode = "quantile",
    n_bins: int = 100,
    sigma_floor: float = DEFAULT_SIGMA_FLOOR,
    eps: float = DEFAULT_EPS,
) -> IsotonicRecalibrator:
    """Fit one isotonic recalibration map per task.

    Parameters
    ----------
    mu, sigma, y
        ``[n, T]`` predictive means, SDs (≥ 0) and observed labels of the recalibration split.
    mode
        ``"quantile"`` (textbook Kuleshov PIT proportions) or ``"interval"`` (two-sided
        central-interval proportions, as the original Deep MR did).
    n_bins
        Number of expected proportions on ``linspace(0, 1, n_bins)`` (the original used 100;
        ~1000 resolves the tails of badly over-confident forecasts).
    sigma_floor
        Lower bound on σ (σ = 0 would give NaN levels).
    eps
        Levels are clipped to ``[eps, 1 − eps]`` when the map is applied.

    Returns
    -------
    IsotonicRecalibrator

    Raises
    ------
    InputError
        For mismatched shapes, fewer than 2 rows, non-finite values or negative σ.
    ConfigError
        For an unknown ``mode`` or a bad ``n_bins``, ``sigma_floor`` or ``eps``.
    """
    expected, observed = calibration_curve(mu, sigma, y, n_bins=n_bins, mode=mode, sigma_floor=sigma_floor)
    floor, eps = _floor_and_eps(sigma_floor, eps, error=ConfigError)
    knots = [_isotonic_knots(observed[:, t], expected) for t in range(observed.shape[1])]
    return IsotonicRecalibrator(
        mode, tuple(k[0] for k in knots), tuple(k[1] for k in knots), sigma_floor=floor, eps=eps
    )


def fit_variance_scaling(
    mu: np.ndarray, sigma: np.ndarray, y: np.ndarray, *, sigma_floor: float = DEFAULT_SIGMA_FLOOR
) -> VarianceScaler:
    """Fit λ per task by Gaussian maximum likelihood, ``λ = mean((y − μ)²/σ²)``.

    Parameters
    ----------
    mu, sigma, y
        ``[n, T]`` predictive means, SDs (≥ 0) and observed labels of the recalibration split.
    sigma_floor
        Lower bound on σ.

    Returns
    -------
    VarianceScaler

    Raises
    ------
    InputError
        For mismatched shapes, fewer than 2 rows, non-finite values, negative σ, or a task
        whose residuals are all exactly 0 (λ = 0).
    ConfigError
        For a bad ``sigma_floor``.
    """
    floor = _floor_and_eps(sigma_floor, DEFAULT_EPS, error=ConfigError)[0]
    z = _standardised(mu, sigma, y, floor)
    scale = np.mean(z**2, axis=0)
    if np.any(scale <= 0):
        raise InputError(f"variance scaling: task(s) {np.flatnonzero(scale <= 0).tolist()} have zero residuals")
    return VarianceScaler(scale, floor)


def calibration_curve(
    mu: np.ndarray,
    sigma: np.ndarray,
    y: np.ndarray,
    *,
    n_bins: int = 100,
    mode: Mode = "quantile",
    sigma_floor: float = DEFAULT_SIGMA_FLOOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected against observed proportions, per task, for plotting and fitting.

    Parameters
    ----------
    mu, sigma, y
        ``[n, T]`` predictive means, SDs (≥ 0) and labels.
    n_bins
        Number of expected proportions on ``linspace(0, 1, n_bins)``.
    mode
        ``"quantile"``: fraction with ``(y − μ)/σ ≤ Φ⁻¹(p)``; ``"interval"``: fraction with
        ``|y − μ|/σ ≤ Φ⁻¹(0.5 + p/2)``.
    sigma_floor
        Lower bound on σ.

    Returns
    -------
    tuple of numpy.ndarray
        ``expected [n_bins]`` and ``observed [n_bins, T]``.

    Raises
    ------
    InputError
        For mismatched shapes, fewer than 2 rows, non-finite values or negative σ.
    ConfigError
        For an unknown ``mode`` or a bad ``n_bins`` or ``sigma_floor``.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if not is_int(n_bins) or n_bins < 2:
        raise ConfigError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    floor = _floor_and_eps(sigma_floor, DEFAULT_EPS, error=ConfigError)[0]
    z = _standardised(mu, sigma, y, floor)
    expected = np.linspace(0.0, 1.0, n_bins)
    if mode == "quantile":
        bounds, scores = ndtri(expected), z
    else:
        bounds, scores = ndtri(0.5 + expected / 2.0), np.abs(z)
    scores = np.sort(scores, axis=0)
    observed = (
        np.stack([np.searchsorted(scores[:, t], bounds, side="right") for t in range(scores.shape[1])], axis=1)
        / scores.shape[0]
    )
    return expected, observed


def calibration_error(
    mu: np.ndarray,
    sigma: np.ndarray,
    y: np.ndarray,
    *,
    n_bins: int = 100,
    sigma_floor: float = DEFAULT_SIGMA_FLOOR,
) -> np.ndarray:
    """Per-task mean absolute calibration error, ``mean_j |observed_j − expected_j|`` (quantile type).

    Parameters
    ----------
    mu, sigma, y
        ``[n, T]`` predictive means, SDs (≥ 0) and labels.
    n_bins
        Number of expected proportions on ``linspace(0, 1, n_bins)``.
    sigma_floor
        Lower bound on σ.

    Returns
    -------
    numpy.ndarray
        ``float64 [T]``; 0 is perfect, 0.5 the worst possible.
    """
    expected, observed = calibration_curve(mu, sigma, y, n_bins=n_bins, mode="quantile", sigma_floor=sigma_floor)
    return np.mean(np.abs(observed - expected[:, None]), axis=0)


def load_recalibrator(data: dict[str, Any]) -> IsotonicRecalibrator | VarianceScaler:
    """Rebuild whichever recalibrator ``data`` (a ``to_dict`` output) describes.

    Raises
    ------
    InputError
        If ``data`` is not a dict with a known ``kind`` or is malformed.
    """
    kinds: dict[str, type[IsotonicRecalibrator] | type[VarianceScaler]] = {
        "isotonic": IsotonicRecalibrator,
        "variance_scaling": VarianceScaler,
    }
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in kinds:
        raise InputError(f"recalibrator dict: 'kind' must be one of {sorted(kinds)}, got {kind!r}")
    return kinds[kind].from_dict(data)


def _isotonic_knots(observed: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of ``expected`` on ``observed``; ties in ``observed`` are pooled (sklearn's rule)."""
    knots, inverse, counts = np.unique(observed, return_inverse=True, return_counts=True)
    pooled = np.bincount(inverse, weights=expected) / counts
    return knots, isotonic_regression(pooled, weights=counts).x


def _array(name: str, value: Any, ndim: int, layout: str) -> np.ndarray:
    """``value`` as a finite float64 array with ``ndim`` axes, else :class:`InputError`."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != ndim:
        raise InputError(f"{name} must be {layout}, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(f"{name} holds a non-finite value at index {tuple(int(v[0]) for v in np.nonzero(bad))}")
    return arr


def _standardised(mu: np.ndarray, sigma: np.ndarray, y: np.ndarray, floor: float) -> np.ndarray:
    """Validate ``[n, T]`` inputs and return ``(y − μ) / max(σ, floor)``."""
    layout = "a 2-D array [n, tasks]"
    mu, sigma, y = (_array(name, v, 2, layout) for name, v in (("mu", mu), ("sigma", sigma), ("y", y)))
    if not mu.shape == sigma.shape == y.shape:
        raise InputError(f"mu, sigma and y must have one shape, got {mu.shape}, {sigma.shape}, {y.shape}")
    if mu.shape[0] < 2:
        raise InputError(f"calibration needs at least 2 rows, got {mu.shape[0]}")
    if np.any(sigma < 0):
        raise InputError("sigma must be >= 0")
    return (y - mu) / np.maximum(sigma, floor)


def _check_last_axis(arr: np.ndarray, n_tasks: int, name: str) -> None:
    if arr.ndim == 0 or arr.shape[-1] != n_tasks:
        raise InputError(f"{name}: last axis must have the {n_tasks} fitted tasks, got shape {arr.shape}")


def _check_replicates(replicate_preds: np.ndarray, n_tasks: int) -> np.ndarray:
    preds = _array("replicate predictions", replicate_preds, 3, "[R, n, tasks]")
    _check_last_axis(preds, n_tasks, "replicate predictions")
    return preds


def _floor_and_eps(sigma_floor: Any, eps: Any, error: type[Exception] = InputError) -> tuple[float, float]:
    if not isinstance(sigma_floor, Real) or not 0 < float(sigma_floor) < np.inf:
        raise error(f"sigma_floor must be a positive finite number, got {sigma_floor!r}")
    if not isinstance(eps, Real) or not 0 < float(eps) < 0.5:
        raise error(f"eps must lie in (0, 0.5), got {eps!r}")
    return float(sigma_floor), float(eps)


def _check_kind(data: Any, kind: str, keys: tuple[str, ...]) -> None:
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise InputError(f"recalibrator dict must have kind {kind!r}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(f"{kind} recalibrator dict lacks {missing}")
