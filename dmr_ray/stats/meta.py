"""Inverse-variance meta-analysis with metafor ``rma.uni`` semantics (intercept-only model).

``meta_analysis`` takes estimates and their **standard errors** (not variances; metafor's
``vi`` is ``se**2``). Methods (``tau2`` clipped at 0 throughout):

* ``FE``: fixed effect, ``tau2 = 0``;
* ``DL``: ``(Q - (k - 1)) / (sum w - sum w^2 / sum w)``;
* ``HS``: ``(Q - k) / sum w``;
* ``HE``: ``(sum (y - mean y)^2 - (k - 1) / k * sum v) / (k - 1)``;
* ``REML`` / ``ML``: Fisher scoring from ``max(0, HE)``, steps halved while they would make
  ``tau2`` negative, stopping when ``|change| <= 1e-5`` (at most 100 iterations); then
  metafor's ``ll0check``: ``tau2 = 0`` if the log-likelihood at 0 is higher by more than
  ``eps^0.25`` (and ``tau2 > 1e-5``);
* ``PM``: root of ``sum w (y - mu)^2 = k - 1`` by R's ``uniroot`` (Brent's ``zeroin``,
  ``tol = eps^0.25``, ``maxiter = 100``) on ``[0, tau2.max]``,
  ``tau2.max = max(100, 10 * mad(y)^2)``; 0 when the equation is already below ``k - 1`` at 0.

Tests: ``"z"`` (normal) or ``"knha"`` (Knapp-Hartung: variance times
``s2w = sum w (y - mu)^2 / (k - 1)``, 0 when that sum is ``<= eps``; ``t_{k-1}`` quantiles).

``I2 = 100 tau2 / (tau2 + vt)``, ``H2 = (tau2 + vt) / vt`` with the typical within-study
variance ``vt = (k - 1) / (sum w - sum w^2 / sum w)``; for ``FE``, ``I2 = max(0, (Q - (k-1)) / Q)``
(percent) and ``H2 = Q / (k - 1)``, as metafor.

Prediction interval (metafor's ``predict.rma``): ``estimate +/- crit * sqrt(se^2 + tau2)``
with the same ``crit`` as the confidence interval (``z`` or ``t_{k-1}`` for ``knha``, where
``se`` already includes the Knapp-Hartung factor). For ``FE`` it equals the confidence
interval (metafor reports none).

Edge cases: ``k = 1`` gives the study itself (``tau2 = 0``, ``Q = 0``, ``Q p = 1``,
``I2 = 0``, ``H2 = 1``) with a note; ``knha`` falls back to ``z`` there (metafor does the
same). No study at all raises :class:`~dmr_ray.errors.InputError` in the scalar function
(it is a data problem, not a shortage of MR instruments); in the batched function an
all-masked group comes back NaN. REML/ML that fail to converge, or PM whose root lies
above ``tau2.max`` (metafor stops with an error in both cases), return
``converged = False`` with a note; PM then has NaN estimates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from dmr_ray.errors import InputError
from dmr_ray.stats._common import masked_mad

__all__ = [
    "METHODS",
    "TESTS",
    "MetaBatchResult",
    "MetaResult",
    "meta_analysis",
    "meta_analysis_batched",
]

METHODS = ("FE", "DL", "REML", "PM", "HS", "ML", "HE")
TESTS = ("z", "knha")
THRESHOLD = 1e-5  # metafor control$threshold
MAXITER = 100  # metafor control$maxiter
UNIROOT_TOL = np.finfo(float).eps ** 0.25  # metafor control$tol
_EPS = np.finfo(float).eps
_NUMERIC = (
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "p_value",
    "tau2",
    "tau",
    "q",
    "q_p",
    "i2",
    "h2",
    "k",
    "pi_low",
    "pi_high",
    "converged",
)


@dataclass(frozen=True)
class MetaResult:
    """A random- or fixed-effects meta-analysis of one set of studies.

    Attributes
    ----------
    estimate, se : float
        Pooled estimate and its standard error (Knapp-Hartung scaled for ``knha``).
    ci_low, ci_high : float
        Confidence interval at level ``1 - alpha``.
    p_value : float
        Two-sided p-value of ``estimate / se`` (normal or ``t_{k-1}``).
    tau2, tau : float
        Between-study variance and its square root.
    q, q_p : float
        Cochran's Q (fixed-effect weights) and its chi-square p-value on ``k - 1`` df.
    i2, h2 : float
        I^2 in percent and H^2, as metafor defines them.
    k : int
        Number of studies.
    pi_low, pi_high : float
        Prediction interval (metafor ``predict.rma``; see the module docstring).
    method, test : str
        The estimator and the test actually used (``knha`` becomes ``z`` when ``k = 1``).
    converged : bool
        False when an iterative estimator failed (see the notes).
    notes : tuple of str
        Human-readable remarks on edge cases.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    tau2: float
    tau: float
    q: float
    q_p: float
    i2: float
    h2: float
    k: int
    pi_low: float
    pi_high: float
    method: str
    test: str
    converged: bool
    notes: tuple[str, ...]


@dataclass(frozen=True)
class MetaBatchResult:
    """Meta-analyses of ``G`` groups; every numeric field of :class:`MetaResult` as a [G] array.

    ``test`` is a [G] array of the test used per group; ``method`` the common estimator.
    ``result(g)`` rebuilds group ``g``'s :class:`MetaResult` (notes included).
    """

    estimate: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    tau2: np.ndarray
    tau: np.ndarray
    q: np.ndarray
    q_p: np.ndarray
    i2: np.ndarray
    h2: np.ndarray
    k: np.ndarray
    pi_low: np.ndarray
    pi_high: np.ndarray
    converged: np.ndarray
    method: str
    test: np.ndarray

    def result(self, g: int) -> MetaResult:
        """The scalar :class:`MetaResult` of group ``g``."""
        values = {name: getattr(self, name)[g].item() for name in _NUMERIC}
        test = str(self.test[g])
        notes = _notes(self.method, values["k"], values["converged"])
        return MetaResult(method=self.method, test=test, notes=notes, **values)


def _notes(method: str, k: int, converged: bool) -> tuple[str, ...]:
    """Remarks for the edge cases of one group."""
    notes = []
    if k == 1:
        notes.append("k = 1: the estimate is the single study, tau2 = 0, inference is 'z'")
    if not converged:
        notes.append(
            f"{method}: Fisher scoring did not converge in {MAXITER} iterations"
            if method in ("REML", "ML")
            else "PM: the root lies above tau2.max; no estimate"
        )
    return tuple(notes)


# ------------------------------------------------------------------ weighted sums


@dataclass(frozen=True)
class _Studies:
    """Padded studies [G, k]: estimates, variances and a validity mask."""

    y: np.ndarray
    v: np.ndarray
    valid: np.ndarray

    @property
    def k(self) -> np.ndarray:
        return self.valid.sum(axis=1)

    def take(self, groups: np.ndarray) -> _Studies:
        """The studies of the selected groups."""
        return _Studies(self.y[groups], self.v[groups], self.valid[groups])

    def weights(self, tau2: np.ndarray) -> np.ndarray:
        """Inverse-variance weights ``1 / (v + tau2)`` (0 outside the mask)."""
        return np.where(self.valid, 1.0 / (self.v + tau2[:, None]), 0.0)

    def pooled(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean and ``sum w (y - mean)^2`` for weights [G, k]."""
        mu = (w * self.y).sum(axis=1) / w.sum(axis=1)
        return mu, (w * (self.y - mu[:, None]) ** 2).sum(axis=1)


def _trace_p(w: np.ndarray) -> np.ndarray:
    """``tr(P)`` for ``P = W - w w' / sum w``."""
    s1 = w.sum(axis=1)
    return s1 - (w**2).sum(axis=1) / s1


# ------------------------------------------------------------------ tau2 estimators


def _tau2_he(st: _Studies) -> np.ndarray:
    """Hedges' estimator (unclipped)."""
    k = st.k
    ybar = np.where(st.valid, st.y, 0.0).sum(axis=1) / k
    rss = np.where(st.valid, (st.y - ybar[:, None]) ** 2, 0.0).sum(axis=1)
    return (rss - np.where(st.valid, st.v, 0.0).sum(axis=1) * (k - 1) / k) / (k - 1)


def _tau2_fisher(st: _Studies, reml: bool) -> tuple[np.ndarray, np.ndarray]:
    """REML or ML by metafor's Fisher scoring; returns ``tau2`` and a converged flag.

    Only the groups still iterating are computed on (their rows are gathered each step).
    """
    tau2 = np.maximum(0.0, _tau2_he(st))
    active = np.flatnonzero(st.k > 1)
    converged = np.ones(tau2.shape, dtype=bool)
    for it in range(1, MAXITER + 2):
        if active.size == 0:
            break
        sub = st.take(active)
        old = tau2[active]
        new = old + _halve_into_range(old, _fisher_step(sub, old, reml))
        tau2[active] = new
        stuck = np.full(active.shape, it > MAXITER)
        converged[active[stuck]] = False
        active = active[~stuck & (np.abs(new - old) > THRESHOLD)]
    return _ll0_check(st, tau2, reml, converged), converged


def _fisher_step(st: _Studies, tau2: np.ndarray, reml: bool) -> np.ndarray:
    """Fisher-scoring update of ``tau2``: REML ``(y'PPy - tr P) / tr PP``, ML
    ``(y'PPy - sum w) / sum w^2``, with ``P = W - w w' / sum w``."""
    w = st.weights(tau2)
    mu, _ = st.pooled(w)
    ypp = (w**2 * (st.y - mu[:, None]) ** 2).sum(axis=1)
    s1, s2, s3 = w.sum(axis=1), (w**2).sum(axis=1), (w**3).sum(axis=1)
    if reml:
        return (ypp - _trace_p(w)) / (s2 - 2.0 * s3 / s1 + s2**2 / s1**2)
    return (ypp - s1) / s2


def _halve_into_range(tau2: np.ndarray, adj: np.ndarray) -> np.ndarray:
    """metafor's step halving: ``adj / 2^m``, least ``m >= 0`` with ``tau2 + adj / 2^m >= 0``.

    The count starts from a lower bound (capped so the jump never leaves the normal
    floats) and is topped up by halving; from ``tau2 = 0`` a negative step halves until it
    underflows, i.e. becomes 0.
    """
    short = tau2 + adj < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        floor_m = np.floor(np.log2(-adj) - np.log2(tau2)) - 1.0
        # Jumping is exact only while the step stays a normal float; halving a subnormal
        # rounds at every step, so the loop below takes over there, as metafor's does.
        normal_m = np.floor(np.log2(-adj) - np.log2(np.finfo(float).tiny)) - 1.0
    floor_m = np.minimum(floor_m, normal_m)
    m = np.where(short & (tau2 > 0), np.maximum(floor_m, 0.0), 0.0).astype(int)
    adj = np.where(short & (tau2 == 0), 0.0, np.ldexp(adj, -m))
    while (short := tau2 + adj < 0).any():
        adj = np.where(short, adj / 2.0, adj)
    return adj


def _log_lik(st: _Studies, tau2: np.ndarray, reml: bool) -> np.ndarray:
    """(Restricted) log-likelihood without the constant ``|X'X|`` term."""
    w = st.weights(tau2)
    _, rss = st.pooled(w)
    log_v = np.where(st.valid, np.log(st.v + tau2[:, None]), 0.0).sum(axis=1)
    n = st.k - 1 if reml else st.k
    ll = -0.5 * n * np.log(2.0 * np.pi) - 0.5 * log_v - 0.5 * rss
    return ll - 0.5 * np.log(w.sum(axis=1)) if reml else ll


def _ll0_check(st: _Studies, tau2: np.ndarray, reml: bool, converged: np.ndarray) -> np.ndarray:
    """metafor's ``ll0check``: fall back to ``tau2 = 0`` when that likelihood is higher."""
    gain = _log_lik(st, np.zeros_like(tau2), reml) - _log_lik(st, tau2, reml)
    reset = converged & (gain > UNIROOT_TOL) & (tau2 > THRESHOLD)
    return np.where(reset, 0.0, tau2)


def _tau2_pm(st: _Studies) -> tuple[np.ndarray, np.ndarray]:
    """Paule-Mandel by R's ``uniroot`` on ``[0, tau2.max]``; returns ``tau2``, found flag."""

    def excess(tau2: np.ndarray) -> np.ndarray:
        return st.pooled(st.weights(tau2))[1] - (st.k - 1)

    mad = masked_mad(st.y, st.valid)
    upper = np.maximum(100.0, 10.0 * mad**2)
    zero = np.zeros_like(upper)
    f_lo, f_hi = excess(zero), excess(upper)
    root = _zeroin(excess, zero, upper, f_lo, f_hi, UNIROOT_TOL, MAXITER)
    found = (f_lo < 0) | (f_hi <= 0)
    return np.where(f_lo < 0, 0.0, np.where(found, root, np.nan)), found


def _zeroin(
    func: Callable[[np.ndarray], np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
    fa: np.ndarray,
    fb: np.ndarray,
    tol: float,
    maxiter: int,
) -> np.ndarray:
    """R's ``R_zeroin2`` (Brent's root finder) run in lock step over independent problems.

    ``func`` maps an array of abscissae [G] to function values [G]; problems whose bracket
    has no sign change are simply iterated and their results are meaningless.
    """
    c, fc = a.copy(), fa.copy()
    root = np.where(fa == 0, a, b)
    active = (fa != 0) & (fb != 0)
    for _ in range(maxiter + 1):
        if not active.any():
            break
        prev_step = b - a
        swap = np.abs(fc) < np.abs(fb)
        a, b, c = np.where(swap, b, a), np.where(swap, c, b), np.where(swap, b, c)
        fa, fb, fc = np.where(swap, fb, fa), np.where(swap, fc, fb), np.where(swap, fb, fc)
        tol_act = 2.0 * _EPS * np.abs(b) + tol / 2.0
        new_step = (c - b) / 2.0
        done = active & ((np.abs(new_step) <= tol_act) | (fb == 0))
        root = np.where(done, b, root)
        active &= ~done
        new_step = np.where(
            (np.abs(prev_step) >= tol_act) & (np.abs(fa) > np.abs(fb)),
            _interpolation_step(a, b, c, fa, fb, fc, prev_step, tol_act, new_step),
            new_step,
        )
        new_step = np.where(np.abs(new_step) < tol_act, np.where(new_step > 0, tol_act, -tol_act), new_step)
        a, fa = np.where(active, b, a), np.where(active, fb, fa)
        b = np.where(active, b + new_step, b)
        fb = np.where(active, func(b), fb)
        flip = active & (((fb > 0) & (fc > 0)) | ((fb < 0) & (fc < 0)))
        c, fc = np.where(flip, a, c), np.where(flip, fa, fc)
    return np.where(active, b, root)


def _interpolation_step(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    fa: np.ndarray,
    fb: np.ndarray,
    fc: np.ndarray,
    prev_step: np.ndarray,
    tol_act: np.ndarray,
    bisect: np.ndarray,
) -> np.ndarray:
    """Brent's secant (two distinct points) or inverse-quadratic step where acceptable,
    else the bisection step ``bisect``. Callers silence the 0/0 of degenerate lanes."""
    cb = c - b
    t1_lin = fb / fa
    q_ab, t1, t2 = fa / fc, fb / fc, fb / fa
    linear = a == c
    p = np.where(linear, cb * t1_lin, t2 * (cb * q_ab * (q_ab - t1) - (b - a) * (t1 - 1.0)))
    q = np.where(linear, 1.0 - t1_lin, (q_ab - 1.0) * (t1 - 1.0) * (t2 - 1.0))
    q = np.where(p > 0, -q, q)
    p = np.abs(p)
    ok = (p < 0.75 * cb * q - np.abs(tol_act * q) / 2.0) & (p < np.abs(prev_step * q / 2.0))
    return np.where(ok, p / q, bisect)


def _tau2(st: _Studies, method: str) -> tuple[np.ndarray, np.ndarray]:
    """``tau2`` (clipped at 0, 0 for ``k = 1``) and a converged flag for ``method``."""
    converged = np.ones(st.y.shape[0], dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_fe = st.weights(np.zeros(st.y.shape[0]))
        _, q = st.pooled(w_fe)
        k = st.k
        if method == "FE":
            tau2 = np.zeros_like(q)
        elif method == "DL":
            tau2 = (q - (k - 1)) / _trace_p(w_fe)
        elif method == "HS":
            tau2 = (q - k) / w_fe.sum(axis=1)
        elif method == "HE":
            tau2 = _tau2_he(st)
        elif method in ("REML", "ML"):
            tau2, converged = _tau2_fisher(st, reml=method == "REML")
        else:
            tau2, converged = _tau2_pm(st)
    return np.where(k == 1, 0.0, np.maximum(0.0, tau2)), converged | (k == 1)


# ------------------------------------------------------------------------ driver


def _fit(st: _Studies, method: str, test: str, alpha: float) -> dict:
    """All result fields as [G] arrays."""
    k = st.k
    tau2, converged = _tau2(st, method)
    knha = (test == "knha") & (k > 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = st.weights(tau2)
        estimate, rss = st.pooled(w)
        var = 1.0 / w.sum(axis=1)
        s2w = np.where(rss <= _EPS, 0.0, rss / (k - 1))
        se = np.sqrt(np.where(knha, s2w * var, var))
        df = np.where(knha, k - 1, 1)
        crit = np.where(knha, stats.t.ppf(1.0 - alpha / 2.0, df), stats.norm.ppf(1.0 - alpha / 2.0))
        stat = np.abs(estimate / se)
        p_value = np.where(knha, 2.0 * stats.t.sf(stat, df), 2.0 * stats.norm.sf(stat))
        w_fe = st.weights(np.zeros_like(tau2))
        q = np.where(k > 1, np.maximum(0.0, st.pooled(w_fe)[1]), 0.0)
        q_p = np.where(k > 1, stats.chi2.sf(q, np.maximum(k - 1, 1)), 1.0)
        vt = (k - 1) / _trace_p(w_fe)
        if method == "FE":
            i2 = np.maximum(0.0, 100.0 * (q - (k - 1)) / q)
            h2 = q / (k - 1)
        else:
            i2 = 100.0 * tau2 / (vt + tau2)
            h2 = tau2 / vt + 1.0
        half_pi = crit * np.sqrt(se**2 + tau2)
    single = k == 1
    return {
        "estimate": estimate,
        "se": se,
        "ci_low": estimate - crit * se,
        "ci_high": estimate + crit * se,
        "p_value": p_value,
        "tau2": tau2,
        "tau": np.sqrt(tau2),
        "q": q,
        "q_p": q_p,
        "i2": np.where(single, 0.0, i2),
        "h2": np.where(single, 1.0, h2),
        "k": k,
        "pi_low": estimate - half_pi,
        "pi_high": estimate + half_pi,
        "converged": converged,
        "method": method,
        "test": np.where(knha, "knha", "z"),
    }


def _check_options(method: str, test: str, alpha: float) -> None:
    """Raise InputError for an unknown method or test, or alpha outside (0, 1)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}; got {method!r}")
    if test not in TESTS:
        raise InputError(f"test must be one of {TESTS}; got {test!r}")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must lie in (0, 1); got {alpha}")


def _check_studies(y: np.ndarray, se: np.ndarray, valid: np.ndarray) -> None:
    """Raise InputError naming the first bad estimate or standard error inside the mask."""
    for name, bad in (
        ("estimate", valid & ~np.isfinite(y)),
        ("standard error", valid & ~(np.isfinite(se) & (se > 0))),
    ):
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            where = index[0] if len(index) == 1 else index
            raise InputError(f"{name} at index {where} must be finite (and an SE > 0)")


def meta_analysis(
    y: np.ndarray,
    se: np.ndarray,
    method: str = "DL",
    test: str = "z",
    alpha: float = 0.05,
) -> MetaResult:
    """Meta-analyse estimates ``y`` with standard errors ``se`` (metafor ``rma.uni``).

    Parameters
    ----------
    y : array_like [k]
        Study estimates.
    se : array_like [k]
        Their standard errors (**not** variances).
    method : {"FE", "DL", "REML", "PM", "HS", "ML", "HE"}
        Between-study variance estimator.
    test : {"z", "knha"}
        Normal or Knapp-Hartung inference.
    alpha : float
        1 - confidence level of the confidence and prediction intervals.

    Returns
    -------
    MetaResult

    Raises
    ------
    InputError
        No studies, mismatched lengths, a non-finite estimate, or an SE that is not finite
        and positive (the message names the index); an unknown method or test.
    """
    _check_options(method, test, alpha)
    yv = np.asarray(y, dtype=float)
    sev = np.asarray(se, dtype=float)
    if yv.ndim != 1 or sev.shape != yv.shape:
        raise InputError(f"y and se must be 1-D of equal length; got {yv.shape} and {sev.shape}")
    if yv.size == 0:
        raise InputError("meta_analysis needs at least one study; got k = 0")
    valid = np.ones(yv.shape, dtype=bool)
    _check_studies(yv, sev, valid)
    batch = _batch(yv[None], sev[None], valid[None], method, test, alpha)
    return batch.result(0)


def meta_analysis_batched(
    y: np.ndarray,
    se: np.ndarray,
    mask: np.ndarray,
    method: str = "DL",
    test: str = "z",
    alpha: float = 0.05,
) -> MetaBatchResult:
    """:func:`meta_analysis` of ``G`` groups at once, iterating all groups in lock step.

    Parameters
    ----------
    y, se : array_like [G, k]
        Padded estimates and standard errors; values outside ``mask`` are ignored.
    mask : array_like [G, k] bool
        True for real studies.
    method, test, alpha
        As for :func:`meta_analysis`.

    Returns
    -------
    MetaBatchResult
        Groups without any study are NaN (and ``k = 0``).

    Raises
    ------
    InputError
        Bad shapes, options, or a bad value inside the mask (named by ``(group, index)``).
    """
    _check_options(method, test, alpha)
    yv = np.asarray(y, dtype=float)
    sev = np.asarray(se, dtype=float)
    valid = np.asarray(mask, dtype=bool)
    if yv.ndim != 2 or sev.shape != yv.shape or valid.shape != yv.shape:
        raise InputError(f"y, se and mask must be [G, k] of one shape; got {yv.shape}, {sev.shape}, {valid.shape}")
    _check_studies(yv, sev, valid)
    return _batch(yv, sev, valid, method, test, alpha)


def _batch(y, se, valid, method: str, test: str, alpha: float) -> MetaBatchResult:
    """Run :func:`_fit` on validated arrays and wrap the result."""
    st = _Studies(np.where(valid, y, 0.0), np.where(valid, se, 1.0) ** 2, valid)
    fields = _fit(st, method, test, alpha)
    empty = st.k == 0
    for name in _NUMERIC:
        if name not in ("k", "converged"):
            fields[name] = np.where(empty, np.nan, fields[name])
    fields["converged"] = fields["converged"] & ~empty
    return MetaBatchResult(**fields)
