"""MM-regression reproducing ``robustbase::lmrob`` defaults (robustbase 0.95-0).

This is the estimator behind MendelianRandomization's ``mr_egger(robust=TRUE)`` and
``mr_ivw(robust=TRUE)``: ``lmrob(y ~ x, weights = w, k.max = 500, maxit.scale = 500)``.

Algorithm (the facts follow robustbase's ``lmrob.c`` / ``lmrob.MM.R``; the code is ours):

1. Prior weights enter as rows scaled by ``sqrt(w)``; rows with zero weight are dropped.
2. S-estimator by the fast-S algorithm (Salibian-Barrera & Yohai 2006), bisquare ``rho`` with
   ``tuning.chi = 1.54764`` and ``bb = 0.5``:

   * ``nResample = 500`` "nonsingular" subsamples of ``p`` rows each: a random permutation of
     the rows is walked and a row is skipped when its pivot in a partially pivoted LU of the
     (``dgeequ``-equilibrated) design is below ``solve.tol = 1e-7``;
   * each exact-fit candidate gets ``k.fast.s = 1`` refinement step (scale step from the MAD
     about 0, then one weighted least-squares step) and its M-scale
     ``sum(rho(r / s)) / (n - p) = bb``;
   * the first candidate (in draw order) with more than ``(n + p) / 2`` residuals below
     ``1e-10`` in absolute value is an exact fit: the S-scale is 0 and the fit stops there
     (``converged = False``, covariance all zero). This is the robustbase 0.95-0 rule; later
     versions count zeros relative to ``mean(|y|)`` against ``n / 2``, which would turn every
     ``J = 3`` robust Egger fit into an exact fit (R's reference values show it did not);
   * the ``best.r.s = 2`` candidates with the smallest M-scales are refined to convergence
     (``refine.tol = 1e-7``, at most ``k.max`` steps); the one with the smaller scale wins.

3. M-step: bisquare IRWLS with ``tuning.psi = 4.685061`` at the fixed S-scale, at most
   ``max.it = 50`` passes (49 updates), relative L1 tolerance ``rel.tol = 1e-7``.
4. Covariance ``.vcov.avar1`` (Croux, Dhaene & Hoorelbeke) from the S residuals
   ``y - X beta_S`` and the MM residuals, with negative eigenvalues set to 0 and the
   diagonal restored ("posdefify"), as ``summary.lmrob`` reports it. The reported ``scale``
   is the S-scale (``summary(fit)$sigma``). When the S refinements or the M-step do not
   converge, R reports no standard errors: ``cov`` is NaN and ``converged`` False (the
   coefficients are then the S estimate, respectively the last M iterate, as in R).

Deviations from R, all documented:

* Random numbers come from numpy, not R's Mersenne-Twister, so the 500 subsamples differ
  from R's; the final MM estimate agrees whenever both land in the same basin (always for
  the reference cases, see ``tests/stats/test_lmrob.py``).
* The M-scale of each candidate is solved by a safeguarded Newton iteration instead of R's
  fixed-point iteration; both stop at the same root (R to ``1e-10`` relative).
  ``maxit_scale`` caps those Newton steps (a handful suffice).
* When the MAD of a candidate's residuals is exactly 0 (``n < 2p``), R's arithmetic turns
  the candidate into NaN or keeps it depending on whether the fitted points' residuals
  round to exactly 0; here such a candidate is always kept as its exact fit.
* The large-``n`` strategy (``n > 2000``) is not implemented; fast-S runs on all rows.

Seeds: one ``Generator`` draw of ``rng.random((n_rows, 500))`` defines the permutations;
the ``i``-th valid row of a fit uses key row ``i`` (its subsample order is the argsort of
those keys). A fit therefore depends only on the seed and its own rows, never on other
regions of a batch: ``lmrob_mm(X[r][m], y[r][m], w[r][m], seed=s)`` equals region ``r`` of
``lmrob_mm_batched(..., seed=s)`` (``m`` its mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dmr_ray.errors import InputError, InsufficientInstrumentsError
from dmr_ray.stats import _lmrob_kernels as _kernels
from dmr_ray.stats._common import MAD_CONSTANT, masked_median

__all__ = ["LmrobBatchFit", "LmrobFit", "lmrob_mm", "lmrob_mm_batched"]

C_CHI = 1.54764  # tuning.chi: bisquare S-estimator, 50 % breakdown
C_PSI = 4.685061  # tuning.psi: bisquare M-step, 95 % efficiency
BB = 0.5  # right-hand side of the S-equation
N_RESAMPLE = 500
BEST_R = 2
REFINE_TOL = 1e-7
REL_TOL = 1e-7
MAX_IT = 50
SOLVE_TOL = 1e-7  # pivot tolerance of the nonsingular subsampling
EXACT_ZERO = 1e-10  # |residual| below this counts as an exact zero
_BLOCK = 64  # regions per vectorised block (bounds memory at ~n * 500 * 64 doubles)
_LAPACK_SAFE_MIN = np.finfo(float).tiny
_LAPACK_SMALL = _LAPACK_SAFE_MIN / np.finfo(float).eps


@dataclass(frozen=True)
class LmrobFit:
    """One MM fit.

    Attributes
    ----------
    coef : ndarray [p]
        MM coefficients (the S coefficients when the S-step did not converge).
    cov : ndarray [p, p]
        ``.vcov.avar1`` covariance; all zero for an exact fit, NaN when not converged.
    scale : float
        Robust residual scale (the S-scale, ``summary.lmrob``'s ``sigma``).
    converged : bool
        True when both the S refinements and the M-step converged.
    robust_weights : ndarray [n]
        Bisquare robustness weights ``psi(r/s)/(r/s)`` of the final residuals (0 for rows
        with zero prior weight).
    n_iter : int
        IRWLS passes of the M-step (R's ``iter``).
    """

    coef: np.ndarray
    cov: np.ndarray
    scale: float
    converged: bool
    robust_weights: np.ndarray
    n_iter: int


@dataclass(frozen=True)
class LmrobBatchFit:
    """MM fits of many regions; field ``f[r]`` is region ``r``'s value of ``LmrobFit.f``.

    Regions with fewer valid rows than ``p + 1`` or a rank-deficient design get NaN
    estimates and ``converged = False``.
    """

    coef: np.ndarray
    cov: np.ndarray
    scale: np.ndarray
    converged: np.ndarray
    robust_weights: np.ndarray
    n_iter: np.ndarray


# --------------------------------------------------------------------------- bisquare


def _bisq_v(x: np.ndarray, c: float) -> np.ndarray:
    """``v = min((x / c)^2, 1)``; every bisquare function below is a polynomial in it.

    Clamping is exact: each function is continuous at ``|x| = c`` with its outside value.
    """
    return np.minimum((x / c) ** 2, 1.0)


def _rho_of_v(v: np.ndarray) -> np.ndarray:
    """Bisquare rho in ``v``: ``v (3 - 3v + v^2) = 1 - (1 - v)^3``."""
    return v * (3.0 + v * (-3.0 + v))


def _rho(x: np.ndarray, c: float) -> np.ndarray:
    """Bisquare rho normalised to ``rho(inf) = 1`` (robustbase ``Mchi``)."""
    return _rho_of_v(_bisq_v(x, c))


def _wgt(x: np.ndarray, c: float) -> np.ndarray:
    """Bisquare weight ``psi(x) / x = (1 - v)^2``."""
    return (1.0 - _bisq_v(x, c)) ** 2


def _psi(x: np.ndarray, c: float) -> np.ndarray:
    """Bisquare psi scaled to ``psi'(0) = 1`` (robustbase ``Mpsi``): ``x (1 - v)^2``."""
    return x * _wgt(x, c)


def _psi_prime(x: np.ndarray, c: float) -> np.ndarray:
    """Derivative of :func:`_psi`: ``(1 - v)(1 - 5v)``."""
    v = _bisq_v(x, c)
    return (1.0 - v) * (1.0 - 5.0 * v)


# ------------------------------------------------------------------- linear algebra


@dataclass(frozen=True)
class _Design:
    """Weighted design of a block of regions (invalid rows are all zero)."""

    x: np.ndarray  # [B, n, p]
    y: np.ndarray  # [B, n]
    valid: np.ndarray  # [B, n] bool
    n_valid: np.ndarray  # [B] int

    @property
    def p(self) -> int:
        return self.x.shape[2]

    @property
    def dof(self) -> np.ndarray:
        """``n - p`` per region, shaped [B, 1] to broadcast over candidates."""
        return (self.n_valid - self.p)[:, None].astype(float)

    def residuals(self, beta: np.ndarray) -> np.ndarray:
        """``y - X beta`` for ``beta`` [B, S, p] -> [B, S, n]."""
        return self.y[:, None, :] - np.matmul(beta, self.x.transpose(0, 2, 1))

    @cached_property
    def _outer(self) -> np.ndarray:
        """Row outer products ``x_i x_i'`` flattened to [B, n, p * p]."""
        return (self.x[:, :, :, None] * self.x[:, :, None, :]).reshape(*self.x.shape[:2], -1)

    @cached_property
    def _xy(self) -> np.ndarray:
        """Rows ``x_i y_i`` [B, n, p]."""
        return self.x * self.y[:, :, None]

    def wls(self, w: np.ndarray) -> np.ndarray:
        """Weighted least squares for weights [B, S, n] -> coefficients [B, S, p]."""
        gram = np.matmul(w, self._outer).reshape(*w.shape[:2], self.p, self.p)
        return _solve(gram, np.matmul(w, self._xy))


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched ``solve(a, b)`` for [..., p, p] and [..., p]; singular systems give NaN."""
    if a.shape[-1] == 2:  # the robust-Egger case: Cramer's rule avoids LAPACK call overhead
        det = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
        x0 = (a[..., 1, 1] * b[..., 0] - a[..., 0, 1] * b[..., 1]) / det
        x1 = (a[..., 0, 0] * b[..., 1] - a[..., 1, 0] * b[..., 0]) / det
        return np.where((det != 0)[..., None], np.stack([x0, x1], axis=-1), np.nan)
    ok = np.isfinite(a).all(axis=(-2, -1)) & np.isfinite(b).all(axis=-1)
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    a_safe = np.where(ok[..., None, None], a, eye)
    ok &= np.linalg.det(a_safe) != 0.0
    a_safe = np.where(ok[..., None, None], a_safe, eye)
    x = np.linalg.solve(a_safe, np.where(ok[..., None], b, 0.0)[..., None])[..., 0]
    return np.where(ok[..., None], x, np.nan)


def _inverse(a: np.ndarray) -> np.ndarray:
    """Batched inverse of [..., p, p]; singular matrices give NaN."""
    unit = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    return np.stack([_solve(a, unit[..., j]) for j in range(a.shape[-1])], axis=-1)


# ----------------------------------------------------------------- subsampling


def _equilibrate(design: _Design) -> np.ndarray:
    """Row/column equilibration of LAPACK ``dgeequ`` + ``dlaqge`` on the valid rows."""
    absx = np.abs(design.x)
    valid = design.valid
    rmax = absx.max(axis=2)
    zero_row = (valid & (rmax == 0.0)).any(axis=1)
    rmax_v = np.where(valid, rmax, np.nan)
    rowcnd = np.maximum(np.nanmin(rmax_v, axis=1), _LAPACK_SAFE_MIN) / np.minimum(
        np.nanmax(rmax_v, axis=1), 1.0 / _LAPACK_SAFE_MIN
    )
    r = np.where(valid, 1.0 / np.clip(rmax, _LAPACK_SAFE_MIN, 1.0 / _LAPACK_SAFE_MIN), 0.0)
    cmax = (absx * r[:, :, None]).max(axis=1)
    colcnd = np.maximum(cmax.min(axis=1), _LAPACK_SAFE_MIN) / np.minimum(cmax.max(axis=1), 1.0 / _LAPACK_SAFE_MIN)
    col = 1.0 / np.clip(cmax, _LAPACK_SAFE_MIN, 1.0 / _LAPACK_SAFE_MIN)
    amax = absx.max(axis=(1, 2))
    keep_rows = (rowcnd >= 0.1) & (amax >= _LAPACK_SMALL) & (amax <= 1.0 / _LAPACK_SMALL)
    scale_rows = ~keep_rows & ~zero_row
    scale_cols = (colcnd < 0.1) & ~zero_row
    row_f = np.where(scale_rows[:, None], r, 1.0)
    col_f = np.where(scale_cols[:, None], col, 1.0)
    return design.x * row_f[:, :, None] * col_f[:, None, :]


def _permutation_keys(design: _Design, keys: np.ndarray) -> np.ndarray:
    """Per-candidate sort keys [B, S, n]: the i-th valid row of a region gets key row i."""
    rank = np.cumsum(design.valid, axis=1) - 1
    gathered = keys.T[:, np.clip(rank, 0, None)]  # [S, B, n]
    return np.where(design.valid[None], gathered, np.inf).transpose(1, 0, 2).copy()


def _draw_subsamples(design: _Design, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nonsingular subsamples: ``p`` row indices [B, S, p] per candidate and a found-flag.

    Rows are taken in permutation order; a row whose largest remaining pivot (after
    eliminating the rows already taken, on the equilibrated design) is below
    ``SOLVE_TOL`` is skipped, as robustbase's ``subsample()`` does.
    """
    p = design.p
    xe = _equilibrate(design)
    order_keys = _permutation_keys(design, keys)
    n_blk, n_cand, n_rows = order_keys.shape
    flat_keys = order_keys.reshape(-1, n_rows)
    region = np.repeat(np.arange(n_blk), n_cand)
    echelon = np.zeros((flat_keys.shape[0], p, p))
    pivot = np.zeros((flat_keys.shape[0], p), dtype=int)
    used = np.zeros((flat_keys.shape[0], p), dtype=bool)
    chosen = np.zeros((flat_keys.shape[0], p), dtype=int)
    count = np.zeros(flat_keys.shape[0], dtype=int)
    exhausted = np.zeros(flat_keys.shape[0], dtype=bool)
    while True:
        todo = np.flatnonzero((count < p) & ~exhausted)
        if todo.size == 0:
            break
        row = np.argmin(flat_keys[todo], axis=1)
        exhausted[todo] = ~np.isfinite(flat_keys[todo, row])
        flat_keys[todo, row] = np.inf
        vec = xe[region[todo], row].copy()
        for k in range(p):
            has = k < count[todo]
            piv_k = pivot[todo, k]
            ek = echelon[todo, k]
            factor = np.where(has, vec[np.arange(todo.size), piv_k], 0.0) / np.where(
                has, ek[np.arange(todo.size), piv_k], 1.0
            )
            vec -= factor[:, None] * ek
        cand_abs = np.where(used[todo], 0.0, np.abs(vec))
        best = np.argmax(cand_abs, axis=1)
        accept = (cand_abs[np.arange(todo.size), best] >= SOLVE_TOL) & ~exhausted[todo]
        acc, slot = todo[accept], count[todo[accept]]
        echelon[acc, slot] = vec[accept]
        pivot[acc, slot] = best[accept]
        used[acc, best[accept]] = True
        chosen[acc, slot] = row[accept]
        count[acc] += 1
    return chosen.reshape(n_blk, n_cand, p), (count == p).reshape(n_blk, n_cand)


def _exact_fits(design: _Design, rows: np.ndarray) -> np.ndarray:
    """Coefficients [B, S, p] fitting the ``p`` subsample rows [B, S, p] exactly."""
    blk = np.arange(design.x.shape[0])[:, None, None]
    return _solve(design.x[blk, rows], design.y[blk, rows])


# ------------------------------------------------------------------- S-estimator


def _mean_rho(res: np.ndarray, scale: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """``sum(rho(res / scale)) / (n - p)`` over the last axis (robustbase ``sum_rho_sc``)."""
    return _rho(res / scale[..., None], C_CHI).sum(axis=-1) / dof


def _m_scale(res: np.ndarray, start: np.ndarray, dof: np.ndarray, maxit: int) -> np.ndarray:
    """M-scale ``s`` solving ``sum(rho(res / s)) / dof = BB`` over the last axis.

    Newton on ``g(t) = log(sum rho / dof) - log(BB)`` in ``t = log s`` from ``start``; the
    root is bracketed as iterates fall on either side, and a step leaving the bracket is
    replaced by a secant step inside it (or by a unit step in ``t`` while one side is open).
    See :func:`dmr_ray.stats._lmrob_kernels.m_scale_log`.
    """
    r2 = ((res / C_CHI) ** 2).reshape(-1, res.shape[-1])
    n_terms = np.broadcast_to(dof, start.shape).reshape(-1) * BB
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(start).reshape(-1)
    _kernels.m_scale_log(np.ascontiguousarray(r2), np.ascontiguousarray(n_terms), t, maxit)
    return np.exp(t).reshape(start.shape)


def _candidate_step(design: _Design, res: np.ndarray, maxit_scale: int) -> tuple[np.ndarray, np.ndarray]:
    """One fast-S refinement step (``k.fast.s = 1``) from candidate residuals [B, S, n].

    Returns the stepped coefficients [B, S, p] and their M-scales [B, S], solved from R's
    starting value ``sc`` (the MAD about 0 after one fixed-point update).
    """
    s0 = MAD_CONSTANT * masked_median(np.abs(res), design.valid[:, None, :])
    s1 = s0 * np.sqrt(_mean_rho(res, s0, design.dof) / BB)
    w = _wgt(res / s1[..., None], C_CHI)
    w = np.where((s0 > 0)[..., None], w, (res == 0).astype(float))
    beta = design.wls(w)
    new_res = design.residuals(beta)
    sum_sq = np.einsum("...n,...n->...", new_res, new_res)
    bound = np.sqrt(3.0 * sum_sq / (design.dof * C_CHI**2 * BB))  # rho(u) <= 3 (u / c)^2
    start = np.where(np.isfinite(s1) & (s1 > 0), s1, bound)
    return beta, _m_scale(new_res, start, design.dof, maxit_scale)


def _refine(
    design: _Design, beta: np.ndarray, scale: np.ndarray, k_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine candidates [B, S, p] with scales [B, S] to convergence (``refine.tol``).

    Each step updates the scale once by the fixed-point map and then the coefficients by
    weighted least squares; returns coefficients, the last scale and a converged flag.
    """
    res = design.residuals(beta)
    converged = np.zeros(scale.shape, dtype=bool)
    active = np.isfinite(scale) & (scale > 0)
    for _ in range(k_max):
        if not active.any():
            break
        new_scale = scale * np.sqrt(_mean_rho(res, scale, design.dof) / BB)
        new_beta = design.wls(_wgt(res / new_scale[..., None], C_CHI))
        delta = np.sqrt(((new_beta - beta) ** 2).sum(axis=-1))
        step_ok = delta <= REFINE_TOL * np.maximum(REFINE_TOL, np.sqrt((beta**2).sum(axis=-1)))
        scale = np.where(active, new_scale, scale)
        beta = np.where(active[..., None], new_beta, beta)
        converged |= active & step_ok
        active &= ~step_ok
        res = design.residuals(beta)
    return beta, scale, converged


@dataclass(frozen=True)
class _SFit:
    """Result of the S-step for a block."""

    coef: np.ndarray  # [B, p]
    scale: np.ndarray  # [B]
    converged: np.ndarray  # [B]
    exact: np.ndarray  # [B] exact fit (scale 0)
    failed: np.ndarray  # [B] no nonsingular subsample


def _s_estimate(design: _Design, keys: np.ndarray, k_max: int, maxit_scale: int) -> _SFit:
    """Fast-S estimate for every region of the block."""
    rows, found = _draw_subsamples(design, keys)
    failed = ~np.all(found, axis=1)
    cand = _exact_fits(design, rows)
    res = design.residuals(cand)
    zeros = (design.valid[:, None, :] & (np.abs(res) < EXACT_ZERO)).sum(axis=-1)
    perfect = zeros > (design.n_valid[:, None] + design.p) / 2.0
    exact = perfect.any(axis=1) & ~failed
    first_exact = cand[np.arange(cand.shape[0]), np.argmax(perfect, axis=1)]

    stepped, cand_scale = _candidate_step(design, res, maxit_scale)
    rank_key = np.where(np.isfinite(cand_scale) & found, cand_scale, np.inf)
    best = np.argsort(rank_key, axis=1, kind="stable")[:, :BEST_R]
    runner_up_ok = np.isfinite(np.take_along_axis(rank_key, best[:, 1:], axis=1))
    best[:, 1:] = np.where(runner_up_ok, best[:, 1:], best[:, :1])
    best_beta = np.take_along_axis(stepped, best[..., None], axis=1)
    best_scale = np.take_along_axis(rank_key, best, axis=1)
    beta, scale, conv = _refine(design, best_beta, best_scale, k_max)
    pick = np.argmin(np.where(np.isnan(scale), np.inf, scale), axis=1)
    blk = np.arange(beta.shape[0])
    coef = np.where(exact[:, None], first_exact, beta[blk, pick])
    s_scale = np.where(exact, 0.0, scale[blk, pick])
    return _SFit(coef, s_scale, conv.all(axis=1) & ~exact, exact, failed)


# ---------------------------------------------------------------------- M-step


def _irwls(design: _Design, beta: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bisquare IRWLS at fixed scale from ``beta`` [B, p]; returns coef, converged, passes."""
    beta = beta[:, None, :]
    res = design.residuals(beta)
    converged = np.zeros(scale.shape, dtype=bool)
    active = np.isfinite(scale) & (scale > 0)
    passes = np.zeros(scale.shape, dtype=int)
    for _ in range(MAX_IT - 1):
        if not active.any():
            break
        new_beta = design.wls(_wgt(res / scale[:, None, None], C_PSI))
        delta = np.abs(new_beta - beta).sum(axis=-1)[:, 0]
        size = np.abs(new_beta).sum(axis=-1)[:, 0]
        step_ok = delta <= REL_TOL * np.maximum(REL_TOL, size)
        beta = np.where(active[:, None, None], new_beta, beta)
        passes += active
        converged |= active & step_ok
        active &= ~step_ok
        res = design.residuals(beta)
    return beta[:, 0], converged, np.where(converged, passes, MAX_IT)


def _avar1(design: _Design, r0: np.ndarray, r: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """robustbase ``.vcov.avar1`` for S residuals ``r0`` and MM residuals ``r`` [B, n]."""
    x = design.x
    n = design.n_valid.astype(float)
    valid = design.valid
    rs = r / scale[:, None]
    r0s = r0 / scale[:, None]
    w = _psi_prime(rs, C_PSI)
    w0 = _psi(r0s, C_CHI) * 6.0 / C_CHI**2  # chi'(u)
    a_mat = _inverse(np.einsum("bn,bnp,bnq->bpq", w, x, x)) * scale[:, None, None]
    denom = (w0 * r0s).sum(axis=1) / n
    a_vec = np.einsum("bpq,bq->bp", a_mat, np.einsum("bnp,bn->bp", x, w * rs)) / denom[:, None]
    w = _psi(rs, C_PSI)
    w0 = _rho(r0s, C_CHI)
    xww = np.einsum("bnp,bn->bp", x, w * w0)
    u1 = a_mat @ np.einsum("bn,bnp,bnq->bpq", w**2, x, x) @ (n[:, None, None] * a_mat)
    u2 = a_vec[:, :, None] * np.einsum("bp,bpq->bq", xww, a_mat)[:, None, :]
    u3 = np.einsum("bpq,bq->bp", a_mat, xww)[:, :, None] * a_vec[:, None, :]
    u4 = (np.where(valid, w0**2 - BB**2, 0.0).sum(axis=1) / n)[:, None, None] * (a_vec[:, :, None] * a_vec[:, None, :])
    return _posdefify((u1 - u2 - u3 + u4) / n[:, None, None])


def _posdefify(cov: np.ndarray) -> np.ndarray:
    """Clip negative eigenvalues to 0 and restore the original diagonal (robustbase)."""
    ok = np.isfinite(cov).all(axis=(1, 2))
    safe = np.where(ok[:, None, None], cov, np.eye(cov.shape[1]))
    lam, vec = np.linalg.eigh(safe)
    neg = (lam < 0).any(axis=1) & ok
    fixed = np.einsum("bij,bj,bkj->bik", vec, np.maximum(lam, 0.0), vec)
    d = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0) / np.diagonal(fixed, axis1=1, axis2=2))
    fixed = d[:, :, None] * fixed * d[:, None, :]
    return np.where(neg[:, None, None], fixed, cov)


# ----------------------------------------------------------------------- driver


def _fit_block(design: _Design, keys: np.ndarray, k_max: int, maxit_scale: int) -> dict:
    """S-step, M-step and covariance for one block of regions."""
    s_fit = _s_estimate(design, keys, k_max, maxit_scale)
    mm_ok = s_fit.converged & ~s_fit.failed
    mm_coef, mm_conv, passes = _irwls(design, s_fit.coef, np.where(mm_ok, s_fit.scale, np.nan))
    coef = np.where(mm_ok[:, None], mm_coef, s_fit.coef)
    resid = design.residuals(coef[:, None, :])[:, 0]
    r0 = design.residuals(s_fit.coef[:, None, :])[:, 0]
    cov = _avar1(design, r0, resid, s_fit.scale)
    good = mm_ok & mm_conv & np.isfinite(cov).all(axis=(1, 2))
    cov = np.where(good[:, None, None], cov, np.where(s_fit.exact, 0.0, np.nan)[:, None, None])
    rweights = np.where(
        s_fit.exact[:, None],
        (np.abs(resid) < EXACT_ZERO).astype(float),
        _wgt(resid / s_fit.scale[:, None], C_PSI),
    )
    failed = s_fit.failed
    return {
        "coef": np.where(failed[:, None], np.nan, coef),
        "cov": cov,
        "scale": np.where(failed, np.nan, s_fit.scale),
        "converged": good,
        "robust_weights": np.where(design.valid, np.where(failed[:, None], np.nan, rweights), 0.0),
        "n_iter": np.where(mm_ok, passes, 0),
    }


def _fit_all(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    valid: np.ndarray,
    rng: np.random.Generator,
    k_max: int,
    maxit_scale: int,
) -> dict:
    """Fit regions [R, n, p] in blocks; regions with ``n_valid <= p`` come back NaN."""
    n_reg, n_rows, p = x.shape
    valid = valid & (weights > 0)
    sw = np.sqrt(np.where(valid, weights, 0.0))
    xw = np.where(valid[:, :, None], x, 0.0) * sw[:, :, None]
    yw = np.where(valid, y, 0.0) * sw
    keys = rng.random((n_rows, N_RESAMPLE))
    n_valid = valid.sum(axis=1)
    fittable = np.flatnonzero(n_valid > p)
    out = {
        "coef": np.full((n_reg, p), np.nan),
        "cov": np.full((n_reg, p, p), np.nan),
        "scale": np.full(n_reg, np.nan),
        "converged": np.zeros(n_reg, dtype=bool),
        "robust_weights": np.where(valid, np.nan, 0.0),
        "n_iter": np.zeros(n_reg, dtype=int),
    }
    # Lanes of the vectorised iterations that are masked, finished or degenerate produce
    # inf/NaN on purpose; they are selected away, so their warnings are noise.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, fittable.size, _BLOCK):
            idx = fittable[start : start + _BLOCK]
            design = _Design(xw[idx], yw[idx], valid[idx], n_valid[idx])
            for name, value in _fit_block(design, keys, k_max, maxit_scale).items():
                out[name][idx] = value
    return out


def _as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A Generator from an int seed, a Generator (used as is) or None (fresh entropy)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _raise_first(bad: np.ndarray, what: str) -> None:
    """Raise InputError ``"<what> at index <i>"`` for the first True entry of ``bad``."""
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{what} at index {index if len(index) > 1 else index[0]}")


def _check_inputs(x: np.ndarray, y: np.ndarray, weights: np.ndarray, valid: np.ndarray) -> None:
    """Raise InputError for bad weights where ``valid`` or bad data where the weight is > 0."""
    _raise_first(valid & ~np.isfinite(weights), "weights is not finite")
    _raise_first(valid & (weights < 0), "weights is negative")
    used = valid & (weights > 0)
    _raise_first(used & ~np.isfinite(x).all(axis=-1), "X is not finite")
    _raise_first(used & ~np.isfinite(y), "y is not finite")


def lmrob_mm(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    seed: int | np.random.Generator | None = 0,
    k_max: int = 500,
    maxit_scale: int = 500,
) -> LmrobFit:
    """MM-regression with ``robustbase::lmrob`` defaults.

    Parameters
    ----------
    X : ndarray [n, p]
        Design matrix, including an intercept column if one is wanted.
    y : ndarray [n]
        Response.
    weights : ndarray [n], optional
        Prior weights (e.g. ``se^-2``); rows enter scaled by ``sqrt(w)``, zero-weight rows
        are dropped. Default: all 1.
    seed : int, Generator or None
        Seed of the 500 random subsamples (see the module docstring for the semantics).
    k_max : int
        Maximal S refinement steps (``k.max``; MendelianRandomization passes 500).
    maxit_scale : int
        Cap on the M-scale solver iterations (``maxit.scale``).

    Returns
    -------
    LmrobFit

    Raises
    ------
    InputError
        Non-finite data or weights, negative weights, mismatched shapes, or a design whose
        rows contain no nonsingular ``p``-subset.
    InsufficientInstrumentsError
        Fewer than ``p + 1`` rows with positive weight.
    """
    x = np.asarray(X, dtype=float)
    yv = np.asarray(y, dtype=float)
    if x.ndim != 2 or yv.shape != (x.shape[0],):
        raise InputError(f"X must be [n, p] and y [n]; got {x.shape} and {yv.shape}")
    w = np.ones_like(yv) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != yv.shape:
        raise InputError(f"weights must have shape {yv.shape}; got {w.shape}")
    everywhere = np.ones(yv.shape, dtype=bool)
    _check_inputs(x, yv, w, everywhere)
    if (w > 0).sum() <= x.shape[1]:
        raise InsufficientInstrumentsError(
            f"lmrob_mm needs more than p = {x.shape[1]} rows with positive weight; got {(w > 0).sum()}"
        )
    out = _fit_all(x[None], yv[None], w[None], everywhere[None], _as_rng(seed), k_max, maxit_scale)
    if np.isnan(out["scale"][0]):
        raise InputError("X has no nonsingular p-row subset (rank-deficient design)")
    return LmrobFit(
        coef=out["coef"][0],
        cov=out["cov"][0],
        scale=float(out["scale"][0]),
        converged=bool(out["converged"][0]),
        robust_weights=out["robust_weights"][0],
        n_iter=int(out["n_iter"][0]),
    )


def lmrob_mm_batched(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    mask: np.ndarray,
    *,
    seed: int | np.random.Generator | None = 0,
    k_max: int = 500,
    maxit_scale: int = 500,
) -> LmrobBatchFit:
    """:func:`lmrob_mm` for many regions at once, vectorised across regions.

    Parameters
    ----------
    X : ndarray [R, n, p]
        Padded design matrices.
    y, weights : ndarray [R, n]
        Padded responses and prior weights (zero-weight rows are dropped, as in R).
    mask : ndarray [R, n] bool
        True for real rows; padding may hold anything (NaN included).
    seed, k_max, maxit_scale
        As for :func:`lmrob_mm`; region ``r`` equals ``lmrob_mm`` on its masked rows with the
        same ``seed`` (an int seed; a Generator is consumed once for the whole batch).

    Returns
    -------
    LmrobBatchFit
        Regions with at most ``p`` usable rows or a rank-deficient design are NaN.

    Raises
    ------
    InputError
        Bad shapes, or non-finite / negative values inside the mask (the message names the
        ``(region, row)`` index).
    """
    x = np.asarray(X, dtype=float)
    yv = np.asarray(y, dtype=float)
    w = np.asarray(weights, dtype=float)
    m = np.asarray(mask, dtype=bool)
    if x.ndim != 3 or yv.shape != x.shape[:2] or w.shape != yv.shape or m.shape != yv.shape:
        raise InputError(
            f"expected X [R, n, p] and y, weights, mask [R, n]; got {x.shape}, {yv.shape}, {w.shape}, {m.shape}"
        )
    _check_inputs(x, yv, w, m)
    out = _fit_all(x, yv, w, m, _as_rng(seed), k_max, maxit_scale)
    return LmrobBatchFit(**out)
