"""MR estimators over many regions at once: padded ``[regions, J]`` arrays with a mask.

Every estimator of :mod:`dmr_ray.stats.mr` is implemented here once, vectorised over
regions; the scalar functions run the same code on a single region, so batched and scalar
results agree to the last bit. Results come back as columnar arrays
(:class:`BatchedMRResult`) with a :class:`Reason` code per region instead of exceptions:
a region with too few instruments is NaN with ``Reason.TOO_FEW_INSTRUMENTS``.

Bootstraps (weighted median, MBE) run all draws of a block of regions together; blocks are
sized so that ``regions x draws x J`` stays near :data:`BOOTSTRAP_BUDGET` doubles. With an
``int`` seed every region gets R's ``set.seed(seed)`` stream, exactly as a per-region call
of MendelianRandomization would (common random numbers across regions); a Generator hands
out successive blocks of draws instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypedDict, TypeVar, Unpack, overload

import numpy as np
from scipy import special

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.stats import density as _density
from dmr_ray.stats._common import (
    MAD_CONSTANT,
    Padded,
    Seed,
    check_options,
    masked_mad,
    masked_median,
    masked_sd,
    r_rnorm,
    scratch,
    take_last,
    wald_inference,
)
from dmr_ray.stats.density import _density_modes, _prepare
from dmr_ray.stats.workers import Threads, Workers, run_all, workers_for

T = TypeVar("T")

__all__ = [
    "BOOTSTRAP_BUDGET",
    "MIN_INSTRUMENTS",
    "BatchedMRResult",
    "BatchedSteigerResult",
    "Reason",
    "egger",
    "ivw",
    "mbe",
    "ragged_to_padded",
    "steiger",
    "weighted_median",
]

BOOTSTRAP_BUDGET = 1 << 21
"""Doubles per bootstrap block (``regions x draws x width x J``), about 16 MiB an array."""

MIN_INSTRUMENTS = {"ivw": 1, "egger": 3, "weighted_median": 3, "mbe": 2, "steiger": 2}
"""Fewest instruments each estimator accepts (MendelianRandomization's limits; MBE needs two
for ``sd``, the Steiger-style test two for its degrees of freedom)."""


class Reason(IntEnum):
    """Why a region has no (or a qualified) result."""

    OK = 0
    TOO_FEW_INSTRUMENTS = 1
    """Fewer instruments than :data:`MIN_INSTRUMENTS`; every value is NaN."""
    DEGENERATE = 2
    """No spread to estimate from (identical |bx| in Egger, zero MBE bandwidth, an exact
    fit); the affected values are NaN."""
    NOT_CONVERGED = 3
    """The robust MM fit did not converge; values are reported as R reports them."""


@dataclass(frozen=True)
class BatchedMRResult:
    """Columnar MR results, one entry per region.

    Fields mirror :class:`dmr_ray.stats.mr.MRResult`; fields the method does not have are
    None. ``model`` holds "fixed"/"random" per region for IVW.
    """

    method: str
    estimate: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    n_instruments: np.ndarray
    reason: np.ndarray
    model: np.ndarray | None = None
    intercept: np.ndarray | None = None
    intercept_se: np.ndarray | None = None
    intercept_p: np.ndarray | None = None
    i2_gx: np.ndarray | None = None
    rse: np.ndarray | None = None
    q: np.ndarray | None = None
    q_p: np.ndarray | None = None


@dataclass(frozen=True)
class BatchedSteigerResult:
    """Columnar results of the Steiger-style directionality test (see ``mr.steiger``).

    ``direction`` is +1 (exposure -> outcome), -1 (outcome -> exposure) or 0 (no difference).
    """

    direction: np.ndarray
    statistic: np.ndarray
    df: np.ndarray
    p_value: np.ndarray
    mean_difference: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    strength_x: np.ndarray
    strength_y: np.ndarray
    n_instruments: np.ndarray
    reason: np.ndarray


# --------------------------------------------------------------------------- layout


def ragged_to_padded(offsets: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Turn ragged columns (CSR-style ``offsets``) into padded ``[regions, J_max]`` arrays.

    Parameters
    ----------
    offsets : array_like of int [R + 1]
        Region ``r`` holds elements ``offsets[r]:offsets[r + 1]`` of every column.
    *columns : array_like [N]
        Per-instrument values (e.g. ``bx, bxse, by, byse``).

    Returns
    -------
    tuple of ndarray
        The padded columns (NaN in padding), followed by the boolean mask.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size == 0 or offsets[0] < 0 or np.any(np.diff(offsets) < 0):
        raise InputError("offsets must be a non-empty, non-decreasing 1-D array starting at >= 0")
    counts = np.diff(offsets)
    width = int(counts.max()) if counts.size else 0
    region = np.repeat(np.arange(counts.size), counts)
    slot = np.arange(region.size) - np.repeat(offsets[:-1] - offsets[0], counts)
    mask = np.zeros((counts.size, width), dtype=bool)
    mask[region, slot] = True
    padded = []
    for i, column in enumerate(columns):
        column = np.asarray(column, dtype=np.float64)
        if column.ndim != 1 or column.size < offsets[-1]:
            raise InputError(f"column {i} has shape {column.shape}; offsets end at {offsets[-1]}")
        out = np.full(mask.shape, np.nan)
        out[region, slot] = column[offsets[0] : offsets[-1]]
        padded.append(out)
    return (*padded, mask)


# --------------------------------------------------------------------------- shared pieces


def _quiet(func: Callable[..., T]) -> Callable[..., T]:
    """Run ``func`` with 0/0 and x/0 silenced: regions without a result are NaN by design."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> T:
        with np.errstate(divide="ignore", invalid="ignore"):
            return func(*args, **kwargs)

    return wrapper


def _reason(rows: Padded, method: str) -> np.ndarray:
    return np.where(rows.n < MIN_INSTRUMENTS[method], Reason.TOO_FEW_INSTRUMENTS, Reason.OK).astype(np.int8)


@overload
def _blank(values: np.ndarray, reason: np.ndarray) -> np.ndarray: ...
@overload
def _blank(values: None, reason: np.ndarray) -> None: ...
def _blank(values: np.ndarray | None, reason: np.ndarray) -> np.ndarray | None:
    """NaN for regions without a usable result (not for NOT_CONVERGED ones)."""
    if values is None:
        return None
    bad = (reason == Reason.TOO_FEW_INSTRUMENTS) | (reason == Reason.DEGENERATE)
    return np.where(bad, np.nan, values)


def _result(
    method: str,
    rows: Padded,
    reason: np.ndarray,
    est: np.ndarray,
    se: np.ndarray,
    inference: tuple[np.ndarray, np.ndarray, np.ndarray],
    model: np.ndarray | None = None,
    **extra: np.ndarray | None,
) -> BatchedMRResult:
    """Assemble a result; ``inference`` is ``(ci_low, ci_high, p_value)``."""
    lo, hi, p = (_blank(v, reason) for v in inference)
    optional = {k: _blank(v, reason) for k, v in extra.items()}
    return BatchedMRResult(
        method, _blank(est, reason), _blank(se, reason), lo, hi, p, rows.n, reason, model, **optional
    )


def _msum(a: np.ndarray) -> np.ndarray:
    return a.sum(axis=-1)


@dataclass(frozen=True)
class _Fit:
    """A weighted regression: coefficients, their SEs per unit of residual scale, the scale.

    ``R``'s coefficient SEs are ``sd * sigma``; MendelianRandomization divides them by
    ``min(sigma, 1)`` (random effects) or ``sigma`` (fixed), i.e. reports ``sd * max(sigma, 1)``
    or ``sd``. Using ``sd`` directly keeps exact fits (``sigma = 0``) finite where R's
    arithmetic gives ``0 / 0``.
    """

    coef: np.ndarray  # [R, p]
    sd: np.ndarray  # [R, p]
    sigma: np.ndarray  # [R]
    converged: np.ndarray  # [R] bool

    def se(self, random: np.ndarray | bool = True) -> np.ndarray:
        """``[R, p]`` standard errors under multiplicative random (or fixed) effects."""
        scale = np.where(random, np.maximum(self.sigma, 1.0), 1.0)
        return self.sd * scale[:, None]


def _fit_wls(design: np.ndarray, y: np.ndarray, w: np.ndarray) -> _Fit:
    """R's ``lm(y ~ design - 1, weights = w)`` for one or two columns, row by row.

    Two columns are ``(1, x)``: solved centred (two-pass) for accuracy. Zero-weight rows do
    not count towards the residual degrees of freedom, as in ``lm``.
    """
    x = design[..., -1]
    if design.shape[-1] == 1:
        sxx = _msum(w * x * x)
        coef = (_msum(w * x * y) / sxx)[:, None]
        sd = (1.0 / np.sqrt(sxx))[:, None]
        fitted = coef[:, :1] * x
    else:
        sw = _msum(w)
        xm = _msum(w * x) / sw
        ym = _msum(w * y) / sw
        dx = x - xm[:, None]
        sxx = _msum(w * dx * dx)
        slope = _msum(w * dx * (y - ym[:, None])) / sxx
        coef = np.stack([ym - slope * xm, slope], axis=-1)
        sd = np.stack([np.sqrt(1.0 / sw + xm * xm / sxx), 1.0 / np.sqrt(sxx)], axis=-1)
        fitted = coef[:, :1] + coef[:, 1:] * x
    resid = y - fitted
    dof = _msum(w > 0) - design.shape[-1]
    sigma = np.sqrt(_msum(w * resid * resid) / dof)
    return _Fit(coef=coef, sd=sd, sigma=sigma, converged=np.ones(sigma.shape, dtype=bool))


def _fit_robust(design: np.ndarray, y: np.ndarray, w: np.ndarray, rows: Padded, seed: Seed) -> _Fit:
    """``lmrob(y ~ design - 1, weights = w, k.max = 500, maxit.scale = 500)`` per region."""
    from dmr_ray.stats.lmrob import lmrob_mm_batched

    fit = lmrob_mm_batched(design, y, w, rows.valid & (w > 0), seed=seed, k_max=500, maxit_scale=500)
    sigma = np.asarray(fit.scale, dtype=np.float64)
    coef_se = np.sqrt(np.diagonal(fit.cov, axis1=1, axis2=2))
    return _Fit(
        coef=np.asarray(fit.coef, dtype=np.float64),
        sd=coef_se / sigma[:, None],
        sigma=sigma,
        converged=np.asarray(fit.converged, dtype=bool),
    )


def _fit(design: np.ndarray, y: np.ndarray, w: np.ndarray, rows: Padded, robust: bool, seed: Seed) -> _Fit:
    return _fit_robust(design, y, w, rows, seed) if robust else _fit_wls(design, y, w)


def _penalty(stat: np.ndarray, factor: float) -> np.ndarray:
    """MendelianRandomization's down-weighting ``pmin(1, factor * pchisq(stat, 1, lower = F))``."""
    return np.minimum(1.0, factor * special.chdtrc(1.0, stat))


def _heterogeneity(q: np.ndarray, df: np.ndarray) -> np.ndarray:
    return special.chdtrc(df, q)


# --------------------------------------------------------------------------- IVW


def _ivw_weights(rows: Padded, weights: str, psi: float) -> np.ndarray:
    if weights == "simple":
        return rows.byse**-2
    bx, bxse, by, byse = rows.bx, rows.bxse, rows.by, rows.byse
    return 1.0 / (byse**2 + by**2 * bxse**2 / bx**2 - 2.0 * psi * by * bxse * byse / bx)


@_quiet
def _ivw(
    rows: Padded,
    *,
    model: str = "default",
    weights: str = "simple",
    psi: float = 0.0,
    penalized: bool = False,
    robust: bool = False,
    distribution: str = "normal",
    alpha: float = 0.05,
    seed: Seed = 0,
) -> BatchedMRResult:
    """IVW core (options as :func:`dmr_ray.stats.mr.ivw`)."""
    check_options(
        model=(model, ("default", "fixed", "random")),
        weights=(weights, ("simple", "delta")),
        distribution=(distribution, ("normal", "t-dist")),
    )
    n = rows.n
    theta = rows.by / rows.bx
    w0 = _ivw_weights(rows, weights, psi)
    w = w0
    if penalized:
        stat = w0 * rows.bx**2 * (theta - masked_median(theta, rows.valid)[:, None]) ** 2
        w = w0 * _penalty(stat, 100.0 if weights == "simple" else 20.0)
    w = np.where(rows.valid, w, 0.0)
    random = n >= 4 if model == "default" else np.full(n.shape, model == "random")
    fit = _fit(rows.bx[..., None], rows.by, w, rows, robust, seed)
    est, se, sigma = fit.coef[:, 0], fit.se(random)[:, 0], fit.sigma
    q = None if penalized else (n - 1) * sigma**2
    # A single instrument: the ratio estimate with its first-order or delta SE (R's J = 1 branch).
    single = n == 1
    est = np.where(single, _msum(np.where(rows.valid, theta, 0.0)), est)
    ratio_se = np.sqrt(1.0 / w0) / np.abs(rows.bx)
    se = np.where(single, _msum(np.where(rows.valid, ratio_se, 0.0)), se)
    sigma = np.where(single, 1.0, sigma)
    lo, hi, p = wald_inference(est, se, n - 1, distribution, alpha)
    p = np.where(single, wald_inference(est, se, 0, "normal", alpha)[2], p)
    reason = _reason(rows, "ivw")
    reason[(reason == Reason.OK) & ~fit.converged & ~single] = Reason.NOT_CONVERGED
    reason[(reason == Reason.OK) & ~np.isfinite(est)] = Reason.DEGENERATE
    return _result(
        "ivw",
        rows,
        reason,
        est,
        se,
        (lo, hi, p),
        model=np.where(random, "random", "fixed"),
        rse=sigma,
        q=None if q is None else np.where(single, np.nan, q),
        q_p=None if q is None else np.where(single, np.nan, _heterogeneity(q, n - 1)),
    )


# --------------------------------------------------------------------------- MR-Egger


def _egger_bounds(
    est: np.ndarray, se: np.ndarray, rse: np.ndarray, df: np.ndarray, distribution: str, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R's ``egger.bounds`` and p-values: with t and RSE < 1, the wider of normal and t * RSE."""
    lo, hi, p = wald_inference(est, se, df, "normal", alpha)
    if distribution == "normal":
        return lo, hi, p
    t_lo, t_hi, t_p = wald_inference(est, se, df, "t-dist", alpha)
    under = rse < 1.0
    s_lo, s_hi, s_p = wald_inference(est, se * rse, df, "t-dist", alpha)
    return (
        np.where(under, np.minimum(lo, s_lo), t_lo),
        np.where(under, np.maximum(hi, s_hi), t_hi),
        np.where(under, np.maximum(p, s_p), t_p),
    )


def _i2_gx(bx_abs: np.ndarray, rows: Padded) -> np.ndarray:
    """I^2_GX of the oriented exposure effects (Bowden et al. 2016)."""
    u = np.where(rows.valid, (rows.bxse / rows.byse) ** -2, 0.0)
    v = bx_abs / rows.byse
    mean = _msum(u * v) / _msum(u)
    q = _msum(u * (v - mean[:, None]) ** 2)
    return np.maximum(0.0, (q - (rows.n - 1)) / q)


@_quiet
def _egger(
    rows: Padded,
    *,
    robust: bool = False,
    penalized: bool = False,
    distribution: str = "normal",
    alpha: float = 0.05,
    seed: Seed = 0,
) -> BatchedMRResult:
    """MR-Egger core (options as :func:`dmr_ray.stats.mr.egger`)."""
    check_options(distribution=(distribution, ("normal", "t-dist")))
    n = rows.n
    bx = np.abs(rows.bx)
    by = np.sign(rows.bx) * rows.by
    w0 = np.where(rows.valid, rows.byse**-2, 0.0)
    design = np.stack([np.ones_like(bx), bx], axis=-1)
    w = w0
    if penalized:
        first = _fit_wls(design, by, w0)
        resid = by - first.coef[:, :1] - first.coef[:, 1:] * bx
        w = w0 * _penalty(w0 * resid * resid, 100.0)
    fit = _fit(design, by, w, rows, robust, seed)
    (intercept, slope), (int_se, se) = fit.coef.T, fit.se().T
    df = n - 2
    bounds = _egger_bounds(slope, se, fit.sigma, df, distribution, alpha)
    int_p = _egger_bounds(intercept, int_se, fit.sigma, df, distribution, alpha)[2]
    q = None
    if not penalized:
        resid = by - intercept[:, None] - slope[:, None] * bx
        q = _msum(w0 * resid * resid)
    reason = _reason(rows, "egger")
    reason[(reason == Reason.OK) & ~fit.converged] = Reason.NOT_CONVERGED
    reason[(reason == Reason.OK) & ~(np.isfinite(slope) & np.isfinite(se))] = Reason.DEGENERATE
    return _result(
        "egger",
        rows,
        reason,
        slope,
        se,
        bounds,
        intercept=intercept,
        intercept_se=int_se,
        intercept_p=int_p,
        i2_gx=_i2_gx(bx, rows),
        rse=fit.sigma,
        q=q,
        q_p=None if q is None else _heterogeneity(q, df),
    )


# --------------------------------------------------------------------------- bootstraps


class _Normals:
    """Standard normal bootstrap draws ``[regions, iterations, width, J_max]``, block by block.

    An ``int`` seed gives every region R's stream after ``set.seed(seed)``: iteration ``b``
    uses draws ``b * width * J + c * J + j`` of it (``rnorm`` calls in R's order), where ``j``
    counts a region's instruments only (its rank among the mask's True entries, so that a
    mask with gaps draws what R draws for the instruments alone).
    """

    def __init__(self, seed: Seed, iterations: int, width: int, n: np.ndarray):
        self.iterations, self.width = iterations, width
        self.source: np.ndarray | np.random.Generator  # R's stream, or a Generator's blocks
        if is_int(seed):
            longest = int(n.max()) if n.size else 0
            self.source = r_rnorm(int(seed), iterations * width * longest)
        else:
            self.source = seed if isinstance(seed, np.random.Generator) else np.random.default_rng()

    def region(self, n: int) -> np.ndarray:
        """The draws ``[iterations, width, n]`` of one region's ``n`` instruments (for an
        ``int`` seed a view of the stream: no copy)."""
        shape = (self.iterations, self.width, n)
        if isinstance(self.source, np.random.Generator):
            return self.source.standard_normal(shape)
        return self.source[: self.iterations * self.width * n].reshape(shape)

    def block(self, valid: np.ndarray) -> np.ndarray:
        """The draws of the regions whose instrument masks are ``valid [block, J_max]``."""
        n = valid.sum(axis=1)
        width_j = valid.shape[1]
        shape = (n.size, self.iterations, self.width, width_j)
        if isinstance(self.source, np.random.Generator):
            return self.source.standard_normal(shape)
        if n.size and (n == width_j).all():  # no padding: every region reads the same prefix
            size = self.iterations * self.width * width_j
            return np.broadcast_to(self.source[:size].reshape(shape[1:]), shape)
        b = np.arange(self.iterations)[None, :, None, None]
        c = np.arange(self.width)[None, None, :, None]
        j = (np.cumsum(valid, axis=1) - 1)[:, None, None, :]  # each instrument's rank
        nj = n[:, None, None, None]
        index = np.where(valid[:, None, None, :], (b * self.width + c) * nj + j, 0)
        return self.source[index]


def _bootstrap(
    rows: Padded,
    ok: np.ndarray,
    iterations: int,
    width: int,
    seed: Seed,
    replicate: Callable[[np.ndarray, np.ndarray], np.ndarray],
    summary: Callable[[np.ndarray], np.ndarray],
    *,
    per_region: bool = False,
) -> np.ndarray:
    """``summary`` over draws of ``replicate(regions, z)`` (``[block, iterations]``), per region.

    Regions not ``ok`` get NaN. Blocks keep ``regions x iterations x width x J`` near
    :data:`BOOTSTRAP_BUDGET`; ``per_region`` instead calls ``replicate`` once per region with
    that region's own draws, ``z [1, iterations, width, n]`` for its ``n`` instruments in mask
    order (no padding gathered).
    """
    if not is_int(iterations) or iterations < 2:
        raise InputError(f"iterations={iterations!r}; a bootstrap needs an integer of at least 2")
    out = np.full(rows.n.shape, np.nan)
    regions = np.flatnonzero(ok)
    normals = _Normals(seed, iterations, width, rows.n[regions])
    if per_region:
        for region in regions:
            one = np.array([region])
            out[region] = summary(replicate(one, normals.region(int(rows.n[region]))[None]))[0]
        return out
    width_j = rows.bx.shape[1]
    step = max(1, BOOTSTRAP_BUDGET // max(1, iterations * width * width_j))
    for start in range(0, regions.size, step):
        block = regions[start : start + step]
        out[block] = summary(replicate(block, normals.block(rows.valid[block])))
    return out


def _sd(draws: np.ndarray) -> np.ndarray:
    return np.std(draws, axis=1, ddof=1)


def _weighted_median_rows(theta: np.ndarray, w: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """MendelianRandomization's ``weighted.median`` along the last axis (padding ignored).

    A stable sort orders ties as R's ``order()`` does (the bootstrap draws, which tie with
    probability 0, go through :func:`_weighted_median_draws`).
    """
    key = np.where(valid, theta, np.inf)
    if key.shape[-1] == 0:
        return np.full(key.shape[:-1], np.nan)
    order = np.argsort(key, axis=-1, kind="stable")
    ts = take_last(key, order)
    ws = take_last(np.where(valid, w, 0.0), order)
    cs = (np.cumsum(ws, axis=-1) - 0.5 * ws) / ws.sum(axis=-1, keepdims=True)
    k = (cs < 0.5).sum(axis=-1, keepdims=True)
    lo = np.clip(k - 1, 0, key.shape[-1] - 1)
    hi = np.clip(k, 0, key.shape[-1] - 1)
    t0, t1, c0, c1 = (take_last(a, i)[..., 0] for a, i in ((ts, lo), (ts, hi), (cs, lo), (cs, hi)))
    return t0 + (t1 - t0) * (0.5 - c0) / (c1 - c0)


def _weighted_median_draws(theta: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`_weighted_median_rows` of bootstrap draws ``theta [draws, J]`` without padding.

    ``w [J]`` is fixed across draws. One quicksort ``argsort``, then, in a ``[J, draws]``
    layout where running sums are vector additions, one gather of the sorted weights, a
    ``cumsum`` and a count. The arithmetic is R's: ``(cumsum(w) - w / 2) / sum(w)`` in sorted
    order.
    """
    draws, width = theta.shape
    order = np.argsort(theta, axis=1)
    ws = np.take(w, order.T, out=scratch("wm_weights", (width, draws)))
    cs = scratch("wm_cumsum", (width, draws))
    cs[0] = ws[0]
    for j in range(1, width):  # cumsum along the short axis, one vector addition per instrument
        np.add(cs[j - 1], ws[j], out=cs[j])
    total = cs[-1].copy()  # sum(weights.order), accumulated in sorted order as R does
    ws *= 0.5
    cs -= ws
    cs /= total
    k = np.count_nonzero(cs < 0.5, axis=0)
    index = np.arange(draws)
    lo = np.clip(k - 1, 0, width - 1)
    hi = np.clip(k, 0, width - 1)
    t0, t1 = theta[index, order[index, lo]], theta[index, order[index, hi]]
    c0, c1 = cs[lo, index], cs[hi, index]
    return t0 + (t1 - t0) * (0.5 - c0) / (c1 - c0)


_DRAW_CHUNK = 2048
"""Bootstrap draws per pass of the weighted median: its arrays then stay in cache."""


class BootstrapOptions(TypedDict, total=False):
    """The bootstrap options of :func:`_bootstrapped` (defaults there)."""

    distribution: str
    alpha: float
    iterations: int
    seed: Seed


def _bootstrapped(
    method: str,
    rows: Padded,
    reason: np.ndarray,
    est: np.ndarray,
    width: int,
    replicate: Callable[[np.ndarray, np.ndarray], np.ndarray],
    summary: Callable[[np.ndarray], np.ndarray],
    *,
    per_region: bool = False,
    distribution: str = "normal",
    alpha: float = 0.05,
    iterations: int = 10000,
    seed: Seed = 314159265,
) -> BatchedMRResult:
    """Finish a bootstrap estimator: SE = ``summary`` of the replicates, Wald inference
    (``per_region`` as for :func:`_bootstrap`)."""
    check_options(distribution=(distribution, ("normal", "t-dist")))
    se = _bootstrap(rows, reason == Reason.OK, iterations, width, seed, replicate, summary, per_region=per_region)
    inference = wald_inference(est, se, rows.n - 1, distribution, alpha)
    return _result(method, rows, reason, est, se, inference)


@_quiet
def _weighted_median(
    rows: Padded, *, weighting: str = "weighted", **bootstrap: Unpack[BootstrapOptions]
) -> BatchedMRResult:
    """Weighted median core (options as :func:`dmr_ray.stats.mr.weighted_median`)."""
    check_options(weighting=(weighting, ("weighted", "simple", "penalized")))
    theta = rows.by / rows.bx
    if weighting == "simple":
        w = np.broadcast_to(1.0 / rows.n[:, None], theta.shape)
    else:
        w = (rows.bx / rows.byse) ** 2
    if weighting == "penalized":
        centre = _weighted_median_rows(theta, w, rows.valid)
        w = w * _penalty(w * (theta - centre[:, None]) ** 2, 20.0)
    w = np.where(rows.valid, w, 0.0)
    est = _weighted_median_rows(theta, w, rows.valid)
    reason = _reason(rows, "weighted_median")

    def replicate(block: np.ndarray, z: np.ndarray) -> np.ndarray:
        """One region (``block [1]``) on its own instruments, ``z [1, iterations, 2, n]``. One
        thread: the chunks take ~1 ms each, and on a shared machine a second thread that waits
        for a core costs more than it saves."""
        region = int(block[0])
        cols = np.flatnonzero(rows.valid[region])
        bx0, bxse, by0, byse, weights = (a[region, cols] for a in (rows.bx, rows.bxse, rows.by, rows.byse, w))
        out = np.empty(z.shape[:2])
        for start in range(0, z.shape[1], _DRAW_CHUNK):  # R: bx* ~ N(bx, bxse), by* ~ N(by, byse), by* / bx*
            zc = z[0, start : start + _DRAW_CHUNK]
            bx = np.multiply(bxse, zc[:, 0], out=scratch("wm_bx", (zc.shape[0], cols.size)))
            bx += bx0
            ratio = np.multiply(byse, zc[:, 1], out=scratch("wm_ratio", bx.shape))
            ratio += by0
            ratio /= bx
            out[0, start : start + _DRAW_CHUNK] = _weighted_median_draws(ratio, weights)
        return out

    return _bootstrapped("weighted_median", rows, reason, est, 2, replicate, _sd, per_region=True, **bootstrap)


def _bandwidth(theta: np.ndarray, valid: np.ndarray | None, phi: float) -> np.ndarray:
    """``phi * 0.9 * min(sd, mad) / J^(1/5)`` along the last axis (``mbe_est``).

    ``valid`` None means every entry is data: see :func:`_dense_bandwidth`.
    """
    if valid is None:
        return _dense_bandwidth(theta, phi)[0]
    n = valid.sum(axis=-1)
    spread = np.minimum(masked_sd(theta, valid), masked_mad(theta, valid))
    return 0.9 * spread / n ** (1.0 / 5.0) * phi


def _dense_bandwidth(theta: np.ndarray, phi: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """:func:`_bandwidth` of rows without padding, and the rows' ``(min, max)``.

    One sort per median, with the arithmetic of :func:`masked_sd` and :func:`masked_mad`.
    """
    n = theta.shape[-1]
    lo, hi = (n - 1) // 2, n // 2
    ordered = scratch("bandwidth", theta.shape)
    np.copyto(ordered, theta)
    ordered.sort(axis=-1)
    extremes = (ordered[..., 0].copy(), ordered[..., -1].copy())
    centre = (ordered[..., lo] + ordered[..., hi]) / 2.0
    dev = np.subtract(theta, centre[..., None], out=ordered)
    np.abs(dev, out=dev)
    dev.sort(axis=-1)
    mad = MAD_CONSTANT * ((dev[..., lo] + dev[..., hi]) / 2.0)
    mean = theta.sum(axis=-1) / n
    dev = np.subtract(theta, mean[..., None], out=dev)
    dev *= dev
    sd = np.sqrt(dev.sum(axis=-1) / (n - 1))
    root = np.full(sd.shape, float(n)) ** (1.0 / 5.0)  # numpy's power loop, as for an array of n
    return 0.9 * np.minimum(sd, mad) / root * phi, extremes


@_quiet
def _mbe(
    rows: Padded,
    *,
    weighting: str = "weighted",
    stderror: str = "delta",
    phi: float = 1.0,
    threads: Threads = None,
    **bootstrap: Unpack[BootstrapOptions],
) -> BatchedMRResult:
    """MBE core (options as :func:`dmr_ray.stats.mr.mbe`)."""
    check_options(weighting=(weighting, ("weighted", "unweighted")), stderror=(stderror, ("delta", "simple")))
    if not phi > 0:
        raise InputError(f"phi={phi}; the bandwidth factor must be > 0")
    with workers_for(threads) as workers:
        return _mbe_on(rows, weighting, stderror, phi, workers, bootstrap)


def _mbe_on(
    rows: Padded, weighting: str, stderror: str, phi: float, workers: Workers, bootstrap: BootstrapOptions
) -> BatchedMRResult:
    """:func:`_mbe` with its densities and bootstrap chunks run on ``workers``."""
    bx, by = rows.bx, rows.by
    theta = by / bx
    if stderror == "simple":
        se = rows.byse / np.abs(bx)
    else:
        se = np.sqrt(rows.byse**2 / np.abs(bx) ** 2 + by**2 * rows.bxse**2 / bx**4)
    w = se**-2 if weighting == "weighted" else np.ones_like(se)
    w = np.where(rows.valid, w, 0.0)
    w = w / _msum(w)[:, None]
    reason = _reason(rows, "mbe")
    h = _bandwidth(theta, rows.valid, phi)
    reason[(reason == Reason.OK) & ~(h > 0)] = Reason.DEGENERATE
    ok = reason == Reason.OK
    est = np.full(rows.n.shape, np.nan)
    est[ok] = _density_modes(*_prepare(theta[ok], h[ok], w[ok], rows.valid[ok]), workers=workers)
    reason[(reason == Reason.OK) & ~np.isfinite(est)] = Reason.DEGENERATE  # h below the data's resolution

    def replicate(block: np.ndarray, z: np.ndarray) -> np.ndarray:
        if not rows.valid[block].all():
            draws = se[block, None, :] * z[:, :, 0]
            draws += theta[block, None, :]
            flat = draws.reshape(-1, draws.shape[-1])
            valid = np.broadcast_to(rows.valid[block, None, :], draws.shape).reshape(flat.shape)
            weights = np.broadcast_to(w[block, None, :], draws.shape).reshape(flat.shape)
            prepared = _prepare(flat, _bandwidth(flat, valid, phi), weights, valid)
            return _density_modes(*prepared, workers=workers).reshape(draws.shape[:2])
        out = np.empty(z.shape[:2])
        size = _density._chunk_size(z.shape[1], z.shape[-1], workers)  # draws per task

        def run(task: tuple[int, int]) -> None:  # draws, bandwidths and modes of one chunk
            i, start = task
            region, zc = block[i], z[i, start : start + size, 0]
            with np.errstate(divide="ignore", invalid="ignore"):  # as _quiet, in a pool thread
                draws = np.multiply(se[region], zc, out=scratch("mbe_draws", zc.shape))
                draws += theta[region]
                bandwidth, extremes = _dense_bandwidth(draws, phi)
                weights = np.broadcast_to(w[region], draws.shape)
                out[i, start : start + size] = _density_modes(draws, bandwidth, weights, None, extremes)

        run_all(run, [(i, start) for i in range(block.size) for start in range(0, z.shape[1], size)], workers)
        return out

    return _bootstrapped("mbe", rows, reason, est, 1, replicate, masked_mad, **bootstrap)


# --------------------------------------------------------------------------- Steiger-style test


@_quiet
def _steiger(rows: Padded, *, alpha: float = 0.05) -> BatchedSteigerResult:
    """Directionality test core (see :func:`dmr_ray.stats.mr.steiger`)."""
    n = rows.n
    zx = np.abs(rows.bx / rows.bxse)
    zy = np.abs(rows.by / rows.byse)
    valid = rows.valid
    d = np.where(valid, zx - zy, 0.0)
    mean = _msum(d) / n
    se = masked_sd(d, valid) / np.sqrt(n)
    df = (n - 1).astype(np.float64)
    stat = np.where(se > 0, mean / se, np.sign(mean) * np.inf)
    p = np.where(se > 0, 2.0 * special.stdtr(df, -np.abs(stat)), (mean == 0).astype(float))
    lo, hi, _ = wald_inference(mean, se, df, "t-dist", alpha)
    strength_x = _msum(np.where(valid, zx, 0.0)) / n
    strength_y = _msum(np.where(valid, zy, 0.0)) / n
    reason = _reason(rows, "steiger")
    ok = reason == Reason.OK
    nan = lambda a: np.where(ok, a, np.nan)  # noqa: E731
    return BatchedSteigerResult(
        direction=np.where(ok, np.sign(mean), 0).astype(np.int8),
        statistic=nan(np.where(mean == 0, 0.0, stat)),
        df=nan(df),
        p_value=nan(p),
        mean_difference=nan(mean),
        se=nan(se),
        ci_low=nan(lo),
        ci_high=nan(hi),
        strength_x=nan(strength_x),
        strength_y=nan(strength_y),
        n_instruments=n,
        reason=reason,
    )


# --------------------------------------------------------------------------- public API


def ivw(bx, bxse, by, byse, mask=None, **options) -> BatchedMRResult:
    """Inverse-variance weighted estimates of many regions.

    Parameters
    ----------
    bx, bxse, by, byse : array_like [R, J]
        Padded summary statistics (see :func:`ragged_to_padded`).
    mask : array_like of bool [R, J], optional
        True for real instruments; default all.
    **options
        As :func:`dmr_ray.stats.mr.ivw`.

    Returns
    -------
    BatchedMRResult
    """
    return _ivw(Padded.build(bx, bxse, by, byse, mask), **options)


def egger(bx, bxse, by, byse, mask=None, **options) -> BatchedMRResult:
    """MR-Egger estimates of many regions (arguments as :func:`ivw`; options as
    :func:`dmr_ray.stats.mr.egger`). Robust fits use ``lmrob_mm_batched``."""
    return _egger(Padded.build(bx, bxse, by, byse, mask), **options)


def weighted_median(bx, bxse, by, byse, mask=None, **options) -> BatchedMRResult:
    """Weighted median estimates of many regions (arguments as :func:`ivw`; options as
    :func:`dmr_ray.stats.mr.weighted_median`). Bootstraps are vectorised across draws and
    regions."""
    return _weighted_median(Padded.build(bx, bxse, by, byse, mask), **options)


def mbe(bx, bxse, by, byse, mask=None, **options) -> BatchedMRResult:
    """Mode-based estimates of many regions (arguments as :func:`ivw`; options as
    :func:`dmr_ray.stats.mr.mbe`, ``threads`` included). All draws of a block of regions share
    one density pass."""
    return _mbe(Padded.build(bx, bxse, by, byse, mask), **options)


def steiger(bx, bxse, by, byse, mask=None, **options) -> BatchedSteigerResult:
    """Steiger-style directionality tests of many regions (arguments as :func:`ivw`; options
    as :func:`dmr_ray.stats.mr.steiger`)."""
    return _steiger(Padded.build(bx, bxse, by, byse, mask), **options)
