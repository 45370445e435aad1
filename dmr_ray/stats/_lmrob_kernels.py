"""Compiled M-scale solve of the fast-S estimator (:mod:`dmr_ray.stats.lmrob`).

Every region's 500 subsample candidates need their own M-scale, a safeguarded Newton
iteration of a handful of steps over J residuals. In numpy each step was a pass over the whole
``[candidates, J]`` block plus bookkeeping for the shrinking active set; one compiled loop per
candidate does the same arithmetic without temporaries and stops each candidate on its own.
Divisions follow IEEE (numba's ``error_model="numpy"``), as the numpy version did: a zero
slope or bracket width gives inf or NaN, which the safeguards and the NaN stop handle.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["m_scale_log"]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _safeguarded_step(t: float, g: float, newton: float, lo: float, hi: float, g_lo: float, g_hi: float) -> float:
    """``t - newton`` inside ``(lo, hi)``; else a secant step between the bracket ends
    (bisection if that is unusable), or a unit step towards the root while an end is open."""
    step = t - newton
    if lo < step < hi:
        return step
    if np.isfinite(lo) and np.isfinite(hi):
        secant = hi - g_hi * (hi - lo) / (g_hi - g_lo)
        return secant if lo < secant < hi else 0.5 * (lo + hi)
    return t + 1.0 if g > 0 else t - 1.0


@numba.njit(nogil=True, cache=True, error_model="numpy")
def m_scale_log(r2: np.ndarray, n_terms: np.ndarray, t: np.ndarray, maxit: int) -> None:
    """Solve ``sum(rho) = n_terms`` for ``t = log s`` per row, in place.

    Parameters
    ----------
    r2 : ndarray [N, n]
        Squared residuals over the squared tuning constant, ``(res / c)^2``.
    n_terms : ndarray [N]
        ``(n - p) * BB``, the target of the bisquare rho sum.
    t : ndarray [N]
        In: the log starting scales (rows that are not finite are left alone). Out: the log
        M-scales. Newton on ``g(t) = log(sum rho / n_terms)``, bracketed as iterates fall on
        either side, stopping when ``g = 0``, the step or the bracket falls below
        ``1e-12 max(1, |t|)``, or ``g`` is NaN.
    """
    rows, width = r2.shape
    for r in range(rows):
        tt = t[r]
        if not np.isfinite(tt):
            continue
        lo, hi = -np.inf, np.inf
        g_lo, g_hi = np.nan, np.nan
        for _ in range(maxit):
            shrink = np.exp(-2.0 * tt)
            total = 0.0
            slope = 0.0
            for j in range(width):
                v = r2[r, j] * shrink
                if v > 1.0:
                    v = 1.0
                total += v * (3.0 + v * (-3.0 + v))
                slope += v * (1.0 - v) ** 2
            slope *= -6.0
            g = np.log(total / n_terms[r])
            if g > 0:
                lo, g_lo = tt, g
            else:
                hi, g_hi = tt, g
            nxt = _safeguarded_step(tt, g, g * total / slope, lo, hi, g_lo, g_hi)
            tol = 1e-12 * max(1.0, abs(tt))
            if g == 0:
                break
            done = abs(nxt - tt) <= tol or hi - lo <= tol or np.isnan(g)
            tt = nxt
            if done:
                break
        t[r] = tt
