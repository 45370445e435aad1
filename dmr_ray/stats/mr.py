"""Mendelian randomization estimators, exact against R's MendelianRandomization 0.10.0.

Each estimator takes the per-variant summary statistics ``(bx, bxse, by, byse)`` of one
instrument set and keyword options named and defaulted as in MendelianRandomization; it
returns an :class:`MRResult`. The arithmetic lives in :mod:`dmr_ray.stats.batched` and is
shared with the batched estimators, so a region gives the same numbers either way.

Parity with R (see ``docs/stats.md``): point estimates agree to rounding. Bootstraps with an
``int`` seed replay R's ``set.seed(seed); rnorm(...)`` stream, so the weighted median and
MBE standard errors agree with R's to rounding as well. p-values are computed in the upper
tail (``2 * pnorm(-|z|)``) where R's Egger code computes ``2 * (1 - pnorm(|z|))``; the two
differ only below ~1e-8, where R's cancels.

Input rules (all raise): NaN or infinite effects, SEs that are not finite and > 0, and
variants with ``bx == 0`` are :class:`~dmr_ray.errors.InputError` naming the index; fewer
instruments than the method needs is :class:`~dmr_ray.errors.InsufficientInstrumentsError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import special

from dmr_ray.errors import InputError
from dmr_ray.stats import batched
from dmr_ray.stats._common import Padded, require_instruments
from dmr_ray.stats.batched import MIN_INSTRUMENTS, BatchedMRResult, Reason

__all__ = [
    "Heterogeneity",
    "MRResult",
    "SteigerResult",
    "cochran_q",
    "egger",
    "i_squared",
    "ivw",
    "mbe",
    "steiger",
    "weighted_median",
]

_LABELS = {
    "ivw": "IVW",
    "egger": "MR-Egger",
    "weighted_median": "the weighted median",
    "mbe": "the mode-based estimate",
    "steiger": "the Steiger-style test",
}


@dataclass(frozen=True)
class MRResult:
    """One MR estimate.

    Attributes
    ----------
    method : str
        "ivw", "egger", "weighted_median" or "mbe".
    estimate, se, ci_low, ci_high, p_value : float
        Causal estimate, its standard error, confidence bounds and two-sided p-value.
    n_instruments : int
        Number of variants used.
    model : str or None
        IVW only: "fixed" or "random" (multiplicative random effects).
    intercept, intercept_se, intercept_p : float or None
        MR-Egger only: pleiotropy intercept, its SE and p-value.
    i2_gx : float or None
        MR-Egger only: I^2_GX of the exposure effects (NOME violation when low).
    rse : float or None
        IVW and MR-Egger: residual standard error (robust scale for robust fits).
    q, q_p : float or None
        IVW and MR-Egger: Cochran's Q (Rucker's Q' for Egger) and its p-value; None for
        penalized fits, NaN for a single instrument.
    """

    method: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    n_instruments: int
    model: str | None = None
    intercept: float | None = None
    intercept_se: float | None = None
    intercept_p: float | None = None
    i2_gx: float | None = None
    rse: float | None = None
    q: float | None = None
    q_p: float | None = None


def _first(value: np.ndarray | str | None) -> Any:
    """Region 0's value of a batched result's field as a Python scalar (its type is the
    field's: ``float``, ``int`` or ``str``; None stays None)."""
    if value is None or isinstance(value, str):
        return value
    item = value[0].item()
    return item if isinstance(item, (int, str)) else float(item)


def _run(
    method: str,
    core: Callable[..., BatchedMRResult],
    arrays: tuple[np.ndarray, ...],
    options: dict[str, object],
) -> MRResult:
    rows = Padded.build(*arrays, scalar=True)
    require_instruments(int(rows.n[0]), MIN_INSTRUMENTS[method], _LABELS[method])
    res = core(rows, **options)
    reason = Reason(int(res.reason[0]))
    if reason == Reason.DEGENERATE:
        raise InputError(
            f"{_LABELS[method]} cannot be estimated from these data: the instruments have no "
            "spread (identical |bx| for MR-Egger, a bandwidth of zero or below the data's floating-point "
            "resolution for MBE, or an exact fit)"
        )
    if reason == Reason.NOT_CONVERGED:
        warnings.warn(f"{_LABELS[method]}: the robust MM fit did not converge", RuntimeWarning, stacklevel=3)
    return MRResult(**{f.name: _first(getattr(res, f.name)) for f in fields(MRResult)})


def ivw(bx, bxse, by, byse, **options) -> MRResult:
    """Inverse-variance weighted estimate (``MendelianRandomization::mr_ivw``).

    Parameters
    ----------
    bx, bxse, by, byse : array_like [J]
        Variant-exposure effects and SEs, variant-outcome effects and SEs.
    **options
        model : {"default", "fixed", "random"}
            "default" is fixed effects when J < 4, else multiplicative random effects, whose
            SE is the fixed-effect SE times ``max(1, RSE)`` (no under-dispersion).
        weights : {"simple", "delta"}
            First-order weights ``byse^-2`` or second-order (delta) weights using ``psi``.
        psi : float, default 0
            Correlation between the exposure and outcome estimates (delta weights only).
        penalized : bool, default False
            Down-weight outlying ratio estimates by ``min(1, 100 p_j)`` (20 with delta).
        robust : bool, default False
            MM-regression (``lmrob``, see :mod:`dmr_ray.stats.lmrob`) instead of least squares.
        distribution : {"normal", "t-dist"}
            Reference distribution (t with J - 1 degrees of freedom).
        alpha : float, default 0.05
            1 - confidence level.
        seed : int, Generator or None, default 0
            Seed of the robust fit's random subsamples.

    Returns
    -------
    MRResult
        With ``model``, ``rse`` and ``q``/``q_p`` (Cochran's Q on J - 1 df). A single
        instrument gives the ratio estimate (normal p, whatever ``distribution``; RSE 1).
    """
    return _run("ivw", batched._ivw, (bx, bxse, by, byse), options)


def egger(bx, bxse, by, byse, **options) -> MRResult:
    """MR-Egger regression (``MendelianRandomization::mr_egger``).

    Variants are oriented so that ``bx >= 0`` (``by`` takes the sign of ``bx``), then
    ``by ~ bx`` is fitted with weights ``byse^-2``. SEs are the regression SEs divided by
    ``min(1, RSE)``. Needs J >= 3.

    Parameters
    ----------
    bx, bxse, by, byse : array_like [J]
        Summary statistics as for :func:`ivw`.
    **options
        robust : bool, default False
            MM-regression (``lmrob(k.max = 500, maxit.scale = 500)``); SEs use its robust
            scale in place of the RSE.
        penalized : bool, default False
            Refit with weights ``byse^-2 min(1, 100 p_j)`` from a first fit's residuals.
        distribution : {"normal", "t-dist"}
            With "t-dist" (J - 2 df) and RSE < 1, the wider of the normal interval and the t
            interval scaled by the RSE is reported, and the larger p-value.
        alpha, seed
            As for :func:`ivw`.

    Returns
    -------
    MRResult
        With the intercept (SE, p), ``i2_gx``, ``rse`` and Rucker's Q (J - 2 df).
    """
    return _run("egger", batched._egger, (bx, bxse, by, byse), options)


def weighted_median(bx, bxse, by, byse, **options) -> MRResult:
    """Weighted median estimate (``MendelianRandomization::mr_median``). Needs J >= 3.

    Parameters
    ----------
    bx, bxse, by, byse : array_like [J]
        Summary statistics as for :func:`ivw`.
    **options
        weighting : {"weighted", "simple", "penalized"}
            Weights ``(bx / byse)^2``, ``1 / J``, or the first ones times
            ``min(1, 20 p_j)`` (heterogeneity p-value of each ratio estimate).
        distribution : {"normal", "t-dist"}
            Reference distribution (t with J - 1 df).
        alpha : float, default 0.05
            1 - confidence level.
        iterations : int, default 10000
            Parametric bootstrap draws (``bx* ~ N(bx, bxse)``, then ``by* ~ N(by, byse)``,
            the weights held fixed); the SE is their standard deviation.
        seed : int, Generator or None, default 314159265
            An int replays R's ``set.seed(seed)`` stream (the SE then equals R's); a
            Generator is drawn from; None uses fresh entropy.

    Returns
    -------
    MRResult
    """
    return _run("weighted_median", batched._weighted_median, (bx, bxse, by, byse), options)


def mbe(bx, bxse, by, byse, **options) -> MRResult:
    """Mode-based estimate of Hartwig et al. (``MendelianRandomization::mr_mbe``).

    The estimate is the grid point where R's ``density()`` of the ratio estimates peaks
    (weights ``se^-2``, bandwidth ``phi * 0.9 min(sd, mad) / J^(1/5)``; R <= 4.3 grid, see
    :mod:`dmr_ray.stats.density`). Needs J >= 2 (R has no explicit check; ``sd`` needs two).

    Parameters
    ----------
    bx, bxse, by, byse : array_like [J]
        Summary statistics as for :func:`ivw`.
    **options
        weighting : {"weighted", "unweighted"}
            Density weights proportional to ``se^-2`` of the ratio estimates, or equal.
        stderror : {"delta", "simple"}
            Ratio-estimate SEs: delta ``sqrt(byse^2/bx^2 + by^2 bxse^2/bx^4)`` or
            ``byse / |bx|`` (the method default is "delta").
        phi : float, default 1
            Bandwidth multiplier.
        distribution : {"normal", "t-dist"}
            Reference distribution (t with J - 1 df).
        alpha : float, default 0.05
            1 - confidence level.
        iterations : int, default 10000
            Bootstrap draws ``theta* ~ N(theta, se)`` (weights held fixed); the SE is the
            ``mad`` (constant 1.4826) of the bootstrap modes.
        seed : int, Generator or None, default 314159265
            As for :func:`weighted_median`.
        threads : int, Executor or None, default None
            Threads that share the density searches of the estimate and the bootstrap
            (:mod:`dmr_ray.stats.workers`: a count, an executor the caller owns, or None for
            up to 2, the CPUs this process may use). Results do not depend on it.

    Returns
    -------
    MRResult
        On ties of the density maximum the first grid point is taken (R returns all).
    """
    return _run("mbe", batched._mbe, (bx, bxse, by, byse), options)


# --------------------------------------------------------------------------- Steiger-style test


@dataclass(frozen=True)
class SteigerResult:
    """Outcome of :func:`steiger`.

    Attributes
    ----------
    direction : str
        "x_to_y" when the instruments move the exposure more strongly than the outcome,
        "y_to_x" for the reverse, "none" for an exact tie.
    statistic : float
        Paired t statistic of the strength differences.
    df : float
        Its degrees of freedom (J - 1).
    p_value : float
        Two-sided p-value against equal strength.
    mean_difference, se, ci_low, ci_high : float
        Mean of ``|bx/bxse| - |by/byse|``, its SE and confidence bounds.
    strength_x, strength_y : float
        Mean ``|bx/bxse|`` and mean ``|by/byse|``.
    n_instruments : int
        J.
    """

    direction: str
    statistic: float
    df: float
    p_value: float
    mean_difference: float
    se: float
    ci_low: float
    ci_high: float
    strength_x: float
    strength_y: float
    n_instruments: int


_DIRECTIONS = {1: "x_to_y", -1: "y_to_x", 0: "none"}


def steiger(bx, bxse, by, byse, **options) -> SteigerResult:
    """Steiger-style directionality test for in-silico effects (no sample size needed).

    MR Steiger asks whether the instruments explain more variance of the exposure than of
    the outcome, as they must when the exposure causes the outcome. With model-derived
    effects there is no sample size and no r^2, but each variant's standardized effect
    ``z = beta / se`` plays the same role: ``z^2`` estimates its non-centrality, and
    ``|z|`` is the variance-stabilized strength (``|z| ~ N(sqrt(lambda), 1)`` for strong
    effects). The test compares the two strengths variant by variant::

        d_j = |bx_j / bxse_j| - |by_j / byse_j|
        T   = mean(d) / (sd(d) / sqrt(J))   ~  t_{J-1}   under H0: E[d_j] = 0 on average

    H0 holds when the instruments move exposure and outcome equally strongly (for example
    when the two z-statistics of every variant are exchangeable); the alternative's sign is
    the direction. A positive mean favours exposure -> outcome. The paired t-test is exact
    for normal differences and close to calibrated otherwise because ``|z|`` differences
    have light tails (simulation in ``tests/stats/test_steiger.py``); heterogeneous strengths
    enter through ``sd(d)``, which makes the test conservative rather than anti-conservative.

    Like MR Steiger, it assumes comparable noise scales: a variant's outcome strength is
    ``|theta| bxse / byse`` times its exposure strength when the exposure causes the
    outcome, so the direction is identified when that factor is below 1.

    Parameters
    ----------
    bx, bxse, by, byse : array_like [J]
        Summary statistics as for :func:`ivw`; J >= 2.
    **options
        alpha : float, default 0.05
            1 - confidence level of the interval for the mean difference.

    Returns
    -------
    SteigerResult
    """
    rows = Padded.build(bx, bxse, by, byse, scalar=True)
    require_instruments(int(rows.n[0]), MIN_INSTRUMENTS["steiger"], _LABELS["steiger"])
    res = batched._steiger(rows, **options)
    values = {f.name: _first(getattr(res, f.name)) for f in fields(SteigerResult) if f.name != "direction"}
    return SteigerResult(direction=_DIRECTIONS[int(res.direction[0])], **values)


# --------------------------------------------------------------------------- heterogeneity


@dataclass(frozen=True)
class Heterogeneity:
    """Cochran's Q test of a set of estimates.

    Attributes
    ----------
    q : float
        ``sum(w (est - pooled)^2)`` with ``w = se^-2``.
    df : int
        Number of estimates - 1.
    p_value : float
        Upper chi-square tail of ``q`` on ``df``.
    i2 : float
        ``max(0, (q - df) / q)``.
    """

    q: float
    df: int
    p_value: float
    i2: float


def i_squared(q: float, df: float) -> float:
    """Higgins' I^2 = ``max(0, (Q - df) / Q)`` (0 when Q is 0)."""
    return max(0.0, (q - df) / q) if q > 0 else 0.0


def cochran_q(estimates, se) -> Heterogeneity:
    """Cochran's Q and I^2 of estimates with standard errors ``se``.

    With ratio estimates ``by / bx`` and first-order SEs ``byse / |bx|`` this is IVW's Q.

    Parameters
    ----------
    estimates, se : array_like [k]
        At least two estimates; SEs finite and > 0.

    Returns
    -------
    Heterogeneity
    """
    est = np.asarray(estimates, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    if est.ndim != 1 or est.shape != s.shape:
        raise InputError(f"estimates {est.shape} and se {s.shape} must be 1-D of equal length")
    for name, a, ok in (("estimates", est, np.isfinite(est)), ("se", s, np.isfinite(s) & (s > 0))):
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise InputError(f"{name}[{i}] = {float(a[i])!r}: must be finite" + (" and > 0" if name == "se" else ""))
    require_instruments(est.size, 2, "Cochran's Q")
    w = s**-2
    pooled = np.sum(w * est) / np.sum(w)
    q = float(np.sum(w * (est - pooled) ** 2))
    df = est.size - 1
    return Heterogeneity(q=q, df=df, p_value=float(special.chdtrc(df, q)), i2=i_squared(q, df))
