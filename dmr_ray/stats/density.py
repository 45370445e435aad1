"""R's ``density()`` grid (R <= 4.3 arithmetic) and its argmax, vectorised over many rows.

``mr_mbe`` estimates the mode as the grid point where ``density(theta, weights = w, bw = h)``
peaks. R's algorithm (``stats:::density.default`` and ``massdist.c`` of R 4.2) is:

1. ``from = min - 3h``, ``to = max + 3h``, ``lo = from - 4h``, ``up = to + 4h``; 512 nodes
   ``xords = seq.int(lo, up, length.out = 512)``.
2. Linear binning of the weights on the nodes (``BinDist``), zero-padded to 1024.
3. Circular convolution (FFT) with a Gaussian sampled at ``kords = seq.int(0, 2 (up - lo),
   length.out = 1024)``, mirrored. The kernel step ``2 (up - lo) / 1023`` differs from the
   node step ``(up - lo) / 511``: that is R bug 18337, fixed in R 4.4 (``old.coords``).
4. ``pmax(0, .)``, then linear interpolation (``approx``) onto
   ``x = seq.int(from, to, length.out = 512)``.

:func:`r_density` is a literal port. :func:`density_mode` returns the argmax of the same
grid for many rows at once, in three ways:

* The screened search (rows whose kernel SD spans >= 8 nodes, non-negative weights; in
  bootstraps nearly all rows) never builds the 512-node density. A float32 coarse density on
  128 points bounds it everywhere, 24 nodes around the coarse peak are interpolated, and the
  density is then summed exactly (float64, one term per bin, no transform) at the best node
  and its two neighbours. R's interpolation onto the output grid is applied to those exact
  values, and the row is *certified* only when a rigorous upper bound on every other node
  stays below the winning value; see the comment block above :func:`_screened_mode`.
* Direct convolution (rows the screen does not take or certify whose kernel is narrow:
  SD below 3 nodes, or J x SD up to 1500 nodes, e.g. outlying ratio estimates or uneven
  SEs): the binned weights are convolved directly with R's sampled kernel
  ``dnorm(|i - m| kstep, bw)``, a vectorised multiply-add per bin, which costs less than
  transforms of 512 nodes. Below 3 nodes the kernel takes one ``exp`` per term out to 12
  bandwidths; from 3 nodes a ratio recurrence out to 9 bandwidths, both bins of a point in
  one pass, accurate far beyond ``1e-9``. Where another output value comes within ``1e-9``
  (relative) of the mode's, the rounding of the convolution decides between them, so such
  rows with kernels of 3 nodes or more take the full grid, as they did before the direct
  sum took them: the answer does not depend on the path that J and the kernel width choose.
* The full grid (every other row): the binned weights go through one DCT-II, are multiplied
  by the kernel's spectrum and come back through one DCT-III. The data lie at least ``7h``
  inside ``[lo, up]``, so the DCT's mirror images add less than ``e^-24`` of a kernel peak at
  any node and less than ``e^-60`` near the data; the result equals R's circular convolution
  up to rounding. The kernel spans at least 3 nodes here, so its spectrum is the Gaussian's
  (Poisson summation; aliasing below ``e^-44``).

The last two take the argmax from R's own interpolation formula on the few output points
around the highest node, with a whole-grid fallback for rows where another node comes close.

All equal the argmax of R's grid except where two output values tie to within rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.special

from dmr_ray.stats import _density_kernels as _kernels
from dmr_ray.stats._common import scratch, take_last
from dmr_ray.stats.workers import SERIAL, Threads, Workers, run_all, workers_for

__all__ = ["N_GRID", "RDensity", "density_mode", "r_density"]

N_GRID = 512
"""R's grid size for ``density(n = 512)``."""

_CUT = 3.0  # density(cut = 3)
_PAD = 4.0  # lo = from - 4 bw, up = to + 4 bw
_INV_SQRT_2PI = 0.398942280401432677939946059934  # M_1_SQRT_2PI
_UNDERFLOW_Z = 38.7  # exp(-z^2 / 2) is 0 in float64 beyond
_NARROW_REACH_Z = 12.0  # direct convolution: terms beyond weigh < e^-72 of the kernel's peak
_DIRECT_REACH_Z = 9.0  # the same where ties go to the full grid: < e^-40.5
_ANALYTIC_MIN_SIGMA = 3.0  # kernel SD in nodes above which aliasing is below e^-44
_DIRECT_MAX_WORK = 1500.0  # J x kernel SD in nodes where direct convolution costs about what the DCTs do
_TIE = 1e-9  # output values this close (relative) are tied: the full grid's rounding decides
_SPECTRUM_CUTOFF = 1.527  # exp(-2 pi^2 (sigma nu)^2) < 1e-20 beyond nu = cutoff / sigma
_CHUNK_ROWS = 2048
_CHUNK_VALUES = 1 << 16  # rows x J per chunk: the screen's scratch stays a few MiB


@dataclass(frozen=True)
class RDensity:
    """The output of R's ``density(x, weights, bw)``.

    Attributes
    ----------
    x : ndarray [512]
        ``seq.int(from, to, length.out = 512)``.
    y : ndarray [512]
        Density interpolated on ``x``.
    bw : float
        The bandwidth used.
    """

    x: np.ndarray
    y: np.ndarray
    bw: float


@dataclass(frozen=True)
class _Frame:
    """Per-row coordinates of R's density grid (all ``[B]``)."""

    bw: np.ndarray
    frm: np.ndarray
    to: np.ndarray
    lo: np.ndarray
    up: np.ndarray

    @classmethod
    def of(
        cls,
        x: np.ndarray,
        bw: np.ndarray,
        valid: np.ndarray | None,
        extremes: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> _Frame:
        """The frame of rows ``x [B, J]``; ``valid`` None means every entry is data.

        ``extremes`` may give the rows' ``(min, max)`` when they are known already.
        """
        if extremes is not None:
            xmin, xmax = extremes
        else:
            xmin = (x if valid is None else np.where(valid, x, np.inf)).min(axis=1)
            xmax = (x if valid is None else np.where(valid, x, -np.inf)).max(axis=1)
        frm = xmin - _CUT * bw
        to = xmax + _CUT * bw
        return cls(bw=bw, frm=frm, to=to, lo=frm - _PAD * bw, up=to + _PAD * bw)

    def take(self, rows: np.ndarray) -> _Frame:
        return _Frame(*(a[rows] for a in (self.bw, self.frm, self.to, self.lo, self.up)))


def _rseq(start: np.ndarray, stop: np.ndarray, length: int, index: np.ndarray) -> np.ndarray:
    """Element ``index`` of R's ``seq.int(start, stop, length.out = length)``.

    R fills the first half forwards from ``start`` and the second half backwards from
    ``stop`` (``seq.c``); ``start``/``stop`` are ``[B]``, ``index`` is ``[B, K]``.
    """
    a = start[:, None]
    b = stop[:, None]
    step = (b - a) / (length - 1)
    out = np.where(index < length // 2, a + index * step, b - (length - 1 - index) * step)
    out = np.where(index == 0, a, out)
    return np.where(index == length - 1, b, out)


def _dnorm(x: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """R's ``dnorm(x, 0, sd)`` for ``|x / sd| < 5`` (beyond, equal to a few ulps)."""
    z = x / sd
    with np.errstate(over="ignore"):  # z * z = inf: the density is 0, as R's
        return _INV_SQRT_2PI * np.exp(-0.5 * z * z) / sd


def _bin(x: np.ndarray, w: np.ndarray, frame: _Frame) -> np.ndarray:
    """R's ``BinDist``: linear binning of ``w`` at ``x`` on the 512 nodes, ``[B, 512]``.

    Point by point (R's order of additions), ``w (1 - f)`` goes to node ``ix`` and ``w f`` to
    ``ix + 1`` when those nodes exist. The data lie ``7 bw`` inside ``[lo, up]``, so both
    exist unless ``bw`` is below the data's floating-point resolution.
    """
    rows = x.shape[0]
    delta = (frame.up - frame.lo) / (N_GRID - 1)
    pos = (x - frame.lo[:, None]) / delta[:, None]  # in [0, 511]: lo <= min(x), max(x) <= up
    ix = np.floor(pos)
    mass = np.empty(x.shape + (2,))
    np.multiply(w, pos - ix, out=mass[..., 1])
    np.subtract(w, mass[..., 1], out=mass[..., 0])
    last = ix == N_GRID - 1  # R's ix == n - 1 case: no upper node
    mass[..., 1][last] = 0.0
    index = np.empty(mass.shape, dtype=np.int64)
    index[..., 0] = ix
    index[..., 0] += (np.arange(rows, dtype=np.int64) * N_GRID)[:, None]
    np.add(index[..., 0], ~last, out=index[..., 1])
    return np.bincount(index.ravel(), weights=mass.ravel(), minlength=rows * N_GRID).reshape(rows, N_GRID)


def _kernel_step(frame: _Frame) -> np.ndarray:
    """Step of ``kords = seq.int(0, 2 (up - lo), length.out = 1024)``."""
    return 2.0 * (frame.up - frame.lo) / (2 * N_GRID - 1)


def _sampled_kernel(frame: _Frame) -> np.ndarray:
    """``dnorm(kords[0:513], sd = bw)``: R's kernel up to its fold point, ``[B, 513]``.

    ``kords[m] = m * kstep`` for m < 512 (R's ``seq.int`` fills the first half forwards from
    0); ``kords[512]`` comes backwards from ``2 (up - lo)``. Beyond z = 38.7 the density
    underflows to 0 (R's ``dnorm`` returns 0 from z = 38.58), so only the columns a row can
    reach are evaluated.
    """
    rows = frame.bw.shape[0]
    step = _kernel_step(frame)
    out = np.zeros((rows, N_GRID + 1))
    if rows == 0:
        return out
    reach = min(N_GRID + 1, int(np.ceil(_UNDERFLOW_Z * np.max(frame.bw / step))) + 2)
    kords = np.multiply.outer(step, np.arange(reach, dtype=np.float64))
    if reach == N_GRID + 1:
        kords[:, N_GRID] = 2.0 * (frame.up - frame.lo) - (N_GRID - 1) * step
    out[:, :reach] = _dnorm(kords, frame.bw[:, None])
    return out


def _kernel_spectrum(frame: _Frame) -> np.ndarray:
    """DFT (length 1024, first 512 terms) of R's mirrored kernel, ``[B, k]``, for kernels at
    least 3 nodes wide: there the Gaussian's own spectrum (Poisson summation) equals the
    sampled kernel's up to aliasing below ``e^-44``.

    Trailing terms below 1e-20 of the first are dropped, so ``k <= 512`` columns come back.
    """
    step = _kernel_step(frame)
    sigma = frame.bw / step  # kernel SD in nodes
    n_terms = min(N_GRID, int(np.ceil(2 * N_GRID * _SPECTRUM_CUTOFF / sigma.min())) + 1)
    nu = np.arange(n_terms) / (2 * N_GRID)
    spectrum = np.multiply.outer(-2.0 * np.pi**2 * sigma**2, nu * nu)
    np.exp(spectrum, out=spectrum)
    spectrum /= step[:, None]
    return spectrum


def _approx(dens: np.ndarray, frame: _Frame, k: np.ndarray) -> np.ndarray:
    """R's ``approx(xords, dens, x[k])$y`` for grid indices ``k`` (``[B, K]``)."""
    x = _rseq(frame.frm, frame.to, N_GRID, k)
    delta = (frame.up - frame.lo) / (N_GRID - 1)
    i = np.clip(np.floor((x - frame.lo[:, None]) / delta[:, None]).astype(np.int64), 0, N_GRID - 2)
    i -= _rseq(frame.lo, frame.up, N_GRID, i) > x  # R's bisection: xords[i] <= x < xords[i + 1]
    i += _rseq(frame.lo, frame.up, N_GRID, i + 1) <= x
    i = np.clip(i, 0, N_GRID - 2)
    x0 = _rseq(frame.lo, frame.up, N_GRID, i)
    x1 = _rseq(frame.lo, frame.up, N_GRID, i + 1)
    y0 = np.maximum(take_last(dens, i), 0.0)  # R's pmax(0, .), applied where it is read
    y1 = np.maximum(take_last(dens, i + 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # nodes that coincide at the data's resolution
        return y0 + (y1 - y0) * ((x - x0) / (x1 - x0))


def _prepare(
    x: np.ndarray, bw: np.ndarray | float, weights: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """float64 ``x [B, J]``, ``bw [B]``, weights ``[B, J]`` (0 where masked) and the mask.

    Without a mask (or an all-True one) the mask comes back as None and the weights may be a
    read-only broadcast view.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    bw = np.broadcast_to(np.asarray(bw, dtype=np.float64), x.shape[:1])
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), x.shape)
    valid = None if mask is None else np.asarray(mask, dtype=bool)
    if valid is not None and valid.all():
        valid = None
    w = weights if valid is None else np.where(valid, weights, 0.0)
    return x, bw, w, valid


def density_mode(
    x: np.ndarray,
    bw: np.ndarray | float,
    weights: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    threads: Threads = None,
) -> np.ndarray:
    """Grid point where R's ``density(x, weights = weights, bw = bw)`` peaks, row by row.

    Parameters
    ----------
    x : ndarray [B, J]
        Data, one row per density.
    bw : ndarray [B] or float
        Gaussian bandwidths; rows whose bandwidth is not finite and > 0 get NaN (R's
        ``density`` stops with "'bw' is not positive"), and so do rows whose bandwidth is so
        far below the data's floating-point resolution that the grid's nodes coincide (R's
        ``BinDist`` divides by zero there).
    weights : ndarray [B, J] or [J]
        Weights (R's ``density`` expects them to sum to 1; they are used as given).
    mask : ndarray [B, J] of bool, optional
        True for real data; masked entries are ignored.
    threads : int, Executor or None
        Threads that share the chunks of rows (:mod:`dmr_ray.stats.workers`; None: up to 2,
        the CPUs this process may use). Results do not depend on it.

    Returns
    -------
    ndarray [B]
        ``d$x[which.max(d$y)]``: on ties, the first grid point (R's ``mbe_est`` would return
        all of them).

    Notes
    -----
    Equals the argmax of :func:`r_density` except where two grid values tie to within
    rounding (~1e-15 relative). Most rows are answered by the screened search (see the
    comment block above :func:`_screened_mode`), the others by a direct convolution or the full grid.
    """
    with workers_for(threads) as workers:
        return _density_modes(*_prepare(x, bw, weights, mask), workers=workers)


def _density_modes(
    x: np.ndarray,
    bw: np.ndarray,
    w: np.ndarray,
    valid: np.ndarray | None,
    extremes: tuple[np.ndarray, np.ndarray] | None = None,
    workers: Workers = SERIAL,
) -> np.ndarray:
    """:func:`density_mode` of prepared arrays (see :func:`_prepare`); ``extremes`` as in
    :meth:`_Frame.of`; the chunks of rows run on ``workers``."""
    out = np.full(x.shape[0], np.nan)
    good = np.isfinite(bw) & (bw > 0)
    rows_w = _kernel_weights(w)  # one row when all rows share it
    nonneg = np.broadcast_to((rows_w >= 0).all(axis=1) & (rows_w.sum(axis=1) > 0), good.shape)
    size = _chunk_size(int(good.sum()), x.shape[1], workers)
    chunks: list[slice | np.ndarray]
    if good.all():
        chunks = [slice(start, start + size) for start in range(0, x.shape[0], size)]
    else:
        good = np.flatnonzero(good)
        chunks = [good[start : start + size] for start in range(0, good.size, size)]

    def run(rows: slice | np.ndarray) -> None:
        ends = None if extremes is None else (extremes[0][rows], extremes[1][rows])
        mask = None if valid is None else valid[rows]
        out[rows] = _chunk_mode(x[rows], bw[rows], w[rows], mask, nonneg[rows], ends)

    run_all(run, chunks, workers)
    return out


def _chunk_size(rows: int, width: int, workers: Workers) -> int:
    """Rows per chunk of ``rows`` rows of ``width`` values: at most ``_CHUNK_ROWS`` and
    ``_CHUNK_VALUES / width`` (the screen's scratch stays in cache), and cut as evenly as that
    allows into a multiple of the threads' count, so that the threads finish together (five
    chunks of 2048 draws on two threads left one thread idle for a fifth of the call)."""
    size = max(1, min(_CHUNK_ROWS, _CHUNK_VALUES // max(1, width)))
    threads = workers.helpers + 1
    chunks = -(-max(rows, 1) // size)
    chunks = -(-chunks // threads) * threads
    return max(1, -(-rows // chunks))


def _chunk_mode(
    x: np.ndarray,
    bw: np.ndarray,
    w: np.ndarray,
    valid: np.ndarray | None,
    nonneg: np.ndarray,
    extremes: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Modes of one chunk: the screened search where it certifies its answer, else a direct
    convolution (narrow kernels, no tie) or the full grid."""
    frame = _Frame.of(x, bw, valid, extremes)
    xs = x if valid is None else np.where(valid, x, frame.frm[:, None] + _CUT * bw[:, None])
    out = np.full(x.shape[0], np.nan)
    pending = frame.up > frame.lo  # else the nodes coincide (R's BinDist divides by 0): NaN
    delta = (frame.up - frame.lo) / (N_GRID - 1)
    step = _kernel_step(frame)
    with np.errstate(divide="ignore", invalid="ignore"):
        # The screen needs every bin >= 8 nodes inside the grid. The data lie 7 bw (>= 56
        # nodes) inside in exact arithmetic, so this only turns away bandwidths at the data's
        # floating-point resolution, whose rounded grid may put data on the end nodes.
        inside = ((frame.frm - frame.lo) / delta >= _SCREEN_MARGIN) & (
            (frame.to - frame.lo) / delta <= N_GRID - 1 - _SCREEN_MARGIN
        )
    eligible = pending & nonneg & inside & (bw >= _SCREEN_MIN_SIGMA * step)
    if eligible.any():
        rows, part = _subset(eligible, xs, w, frame)
        out[rows], certified = _screened_mode(*part)
        pending[rows] = ~certified
    narrow = pending & (bw < _ANALYTIC_MIN_SIGMA * step)
    if narrow.any():
        rows, part = _subset(narrow, xs, w, frame)
        out[rows] = _direct_mode(*part)[0]
        pending[rows] = False
    direct = pending & (x.shape[1] * bw <= _DIRECT_MAX_WORK * step)
    if direct.any():  # where the convolution's rounding decides, the full grid's does (as before)
        rows, part = _subset(direct, xs, w, frame)
        out[rows], pending[rows] = _direct_mode(*part, accurate=False)
    if pending.any():
        rows, part = _subset(pending, xs, w, frame)
        out[rows] = _full_grid_mode(*part)
    return out


def _subset(
    which: np.ndarray, xs: np.ndarray, w: np.ndarray, frame: _Frame
) -> tuple[slice | np.ndarray, tuple[np.ndarray, np.ndarray, _Frame]]:
    """Rows ``which [B]`` of a chunk: their index (a slice when all), and their data, weights
    and frame. Weights that every row shares stay one ``[1, J]`` row (no ``[rows, J]`` copy).
    """
    if which.all():
        return slice(None), (xs, w, frame)
    rows = np.flatnonzero(which)
    shared = _kernel_weights(w)
    return rows, (xs[rows], shared if shared.shape[0] == 1 else shared[rows], frame.take(rows))


def _kernel_weights(w: np.ndarray) -> np.ndarray:
    """``w`` [B, J] as the compiled kernels take it: one shared ``[1, J]`` row when every row
    is the same broadcast row (the bootstrap's case), else ``w`` itself."""
    return w[:1].copy() if w.shape[0] > 1 and w.strides[0] == 0 else w


def _direct_mode(xs: np.ndarray, w: np.ndarray, frame: _Frame, accurate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Modes of rows with narrow kernels by direct convolution of the bins, ``[B]``, and
    whether another output value comes within ``_TIE`` of the mode's (``[B]`` bool).

    ``accurate``: R's kernel from one ``exp`` per term out to 12 bandwidths (the terms left
    out change a node by less than ``J e^-72`` of the kernel's peak, far below the rounding of
    R's own FFT convolution). Else, for kernels of 3 nodes or more, from a ratio recurrence
    (term k within ``2 k`` ulps, k < 512) out to 9 bandwidths (the terms left out weigh less
    than ``2 J e^-40.5`` of the maximum): far below ``_TIE``, so wherever no tie is flagged
    the mode is that of any accurate convolution, the full grid's included.
    """
    out = np.empty(xs.shape[0])
    tied = np.empty(xs.shape[0], dtype=np.bool_)
    reach = _NARROW_REACH_Z if accurate else _DIRECT_REACH_Z
    lo, up, frm, to = frame.lo, frame.up, frame.frm, frame.to
    _kernels.direct_modes(xs, _kernel_weights(w), lo, up, frm, to, frame.bw, reach, not accurate, _TIE, out, tied)
    return out, tied


def _full_grid_mode(xs: np.ndarray, w: np.ndarray, frame: _Frame) -> np.ndarray:
    """Modes from the whole binned density: one DCT-II and one DCT-III of 512 nodes per row
    (kernel SD at least 3 nodes)."""
    binned = _bin(xs, w, frame)
    spectrum = _kernel_spectrum(frame)
    coef = scipy.fft.dct(binned, type=2, axis=1, overwrite_x=True)
    coef[:, : spectrum.shape[1]] *= spectrum
    coef[:, spectrum.shape[1] :] = 0.0
    dens = scipy.fft.idct(coef, type=2, axis=1, overwrite_x=True)
    out = np.empty(xs.shape[0])
    _kernels.grid_modes(dens, frame.lo, frame.up, frame.frm, frame.to, out)
    return out


# --------------------------------------------------------------------------- screened mode
#
# R's binned density at node i is the finite sum D(i) = sum_m y_m K(|i - m|) over the <= 2J
# nonzero bins y_m, with K(d) = dnorm(d * kstep, bw): the mirrored kernel makes R's circular
# convolution wrap-free (|i - m| <= 511). Its continuous extension D(x) = sum_m y_m K(x - m)
# is smooth; sigma = bw / kstep is the kernel SD in nodes; bounds below are in units of
# sum(w) K(0). For each row (sigma >= 8, w >= 0):
#
# 1. Coarse density. Each bin is spread onto 128 coarse points u_c = 4c + 1.5 with a cubic
#    B-spline; the coarse DCT-II divided by the B-spline's transform sinc^4(n / 256) equals the
#    bins' DCT up to aliasing, |err_n| <= sum(w) A(n / 256) with A(xi) = sum_{k != 0}
#    sinc^4(k - xi) (Poisson summation). Times the Gaussian's spectrum (n < 128) and one
#    DCT-III this gives D(u_c) within eps: aliasing + spectral truncation (Mills' bound on
#    n >= 128) + float32 rounding (an L1 bound per transform) + the DCT's mirror images
#    (>= 6.99 sigma from every node, 2 e^-23.8).
# 2. Upper bounds. Between two coarse points D exceeds the larger by at most h^2/8 max|D''|,
#    h = 4, max|D''| <= 1 / sigma^2 ("rest"); nodes 0, 1, 510, 511 lie >= 6.65 sigma from all
#    bins. Around the coarse maximum, 6-point Lagrange interpolation gives D at 24 nodes
#    within Lebesgue * eps + |omega| h^6 / 6! * 15 / sigma^6 ("far", for the nodes of the
#    window other than top - 1 .. top + 1, where `top` is the window's best node).
# 3. Exact decision. D is summed in float64 at top - 1, top and top + 1, and R's approx() is
#    applied at the output points in [xords[top - 1], xords[top + 1]); the first best one has
#    value L. The row is certified when D(top - 1), D(top + 1) and the upper bound of every
#    other node are all strictly below L: every other output point interpolates between
#    two nodes, one of them outside top - 1 .. top + 1, so it stays below L, and the first
#    argmax is the one found, exactly as R's which.max() finds it (barring ties to within
#    rounding of the exact sums). Uncertified rows (near-tied modes, kernels narrower than 8
#    nodes) take the direct convolution or the full grid.

_SCREEN_MIN_SIGMA = 8.0  # narrower kernels: the coarse grid aliases too much, use the full grid
_SCREEN_MARGIN = 8  # nodes between the grid's ends and the screen's bins: the coarse spreading's reach
_NC = 128  # coarse points, 4 nodes apart
_SPREAD = 4
_F32_EPS = float(np.finfo(np.float32).eps)


def _bspline3(g: float) -> np.ndarray:
    """Cubic B-spline weights of the 4 coarse points around fractional position ``g``."""
    return np.array([(1 - g) ** 3, 3 * g**3 - 6 * g**2 + 4, -3 * g**3 + 3 * g**2 + 3 * g + 1, g**3]) / 6


def _spread_tables() -> tuple[np.ndarray, np.ndarray]:
    """Weights of a point's two bins (node ix, ix + 1) on coarse points q - 2 .. q + 2, ix = 4q + r.

    Node m sits at coarse coordinate (m - 1.5) / 4; with r = m % 4 its fractional part is
    0.625, 0.875, 0.125, 0.375 and its four B-spline points start at q - 2, q - 2, q - 1, q - 1.
    Returns ``[5, 4]`` tables (slot, r) for the lower bin and for upper minus lower.
    """
    frac = (0.625, 0.875, 0.125, 0.375)
    first = (0, 0, 1, 1)
    lower = np.zeros((4, 5))
    upper = np.zeros((4, 5))
    for r in range(4):
        lower[r, first[r] : first[r] + 4] = _bspline3(frac[r])
        r1 = (r + 1) % 4
        start = first[r1] + (r == 3)  # node 4q + 4 belongs to q + 1
        upper[r, start : start + 4] = _bspline3(frac[r1])
    return np.ascontiguousarray(lower.T), np.ascontiguousarray((upper - lower).T)


def _alias_ratio(xi: np.ndarray) -> np.ndarray:
    """sum_{k != 0} sinc^4(k - xi) / sinc^4(xi) = xi^4 sum_{k != 0} (k - xi)^-4.

    The sums over k >= 1 of (k - xi)^-4 and of (k + xi)^-4 are polygamma(3, 1 -+ xi) / 3!.
    """
    return xi**4 * (scipy.special.polygamma(3, 1.0 - xi) + scipy.special.polygamma(3, 1.0 + xi)) / 6.0


def _lagrange_window() -> tuple[np.ndarray, float, float]:
    """Interpolation of 24 nodes (6 coarse cells) from 11 coarse points, and its error constants.

    Node 4c + 2 + p (p = 0..3) lies in cell [u_c, u_c+1] at t = (p + 0.5) / 4; it is
    interpolated from points c - 2 .. c + 3. Returns the ``[11, 24]`` matrix, the Lebesgue
    constant and max |omega(t)| / 6! (in units of h^6).
    """
    nodes = np.arange(-2, 4)
    t = (np.arange(4) + 0.5) / 4.0
    weights = np.array([[np.prod([(tt - m) / (k - m) for m in nodes if m != k]) for k in nodes] for tt in t])
    matrix = np.zeros((11, 24))
    for cell in range(6):
        matrix[cell : cell + 6, 4 * cell : 4 * cell + 4] = weights.T
    grid = np.linspace(0.0, 1.0, 4001)
    omega = np.abs(np.prod(grid[:, None] - nodes[None, :], axis=1)).max()
    return matrix, float(np.abs(weights).sum(axis=1).max()), float(omega / 720.0)


_LOWER, _DELTA = _spread_tables()
_XI = np.arange(_NC) / 256.0  # coarse-grid frequency of DCT index n (cycles per coarse step)
_DECONVOLVE = 1.0 / (4.0 * np.sinc(_XI) ** 4)  # the coarse B-spline's transform, divided out


def _bound_tables(sigmas: np.ndarray) -> np.ndarray:
    """Per unit of sum(w), in kstep * D units, at each sigma: ``[3, len(sigmas)]``.

    With the coarse multiplier M_n = exp(-2 pi^2 sigma^2 nu_n^2) / (4 sinc^4(xi_n)) and the
    DCT-III weights c_0 = 1, c_n = 2: row 0 bounds the aliasing, sum_n c_n A_n S_n / 512 with
    S_n = 4 sinc^4 M_n; rows 1 and 2 (sum c_n M_n, sum c_n nu_n^2 M_n) scale the float32
    rounding. Every entry decreases as sigma grows.
    """
    nu2 = (np.arange(_NC) / (2.0 * N_GRID)) ** 2
    c = np.where(np.arange(_NC) == 0, 1.0, 2.0)
    gain = np.exp(-2.0 * np.pi**2 * np.multiply.outer(sigmas**2, nu2)) / (4.0 * np.sinc(_XI) ** 4)
    alias = c * _alias_ratio(_XI) * 4.0 * np.sinc(_XI) ** 4 / N_GRID
    return np.stack([gain @ alias, gain @ c, gain @ (c * nu2)])


# sigma = bw / kstep = 511.5 bw / (range + 14 bw) < 36.6 nodes; the table reaches 64.
_SIGMAS = _SCREEN_MIN_SIGMA * 1.005 ** np.arange(418)
_BOUNDS = _bound_tables(_SIGMAS)
_WINDOW_MATRIX, _LEBESGUE, _OMEGA6 = _lagrange_window()
_PHI6 = 15.0  # max |d^6/dz^6 phi(z)| / phi(0), attained at z = 0
_IMAGES = 2.0 * np.exp(-0.5 * 6.9**2)  # DCT mirror images sit >= 6.99 sigma from every node
_EDGE = np.exp(-0.5 * (6.9 - 2.0 / _SCREEN_MIN_SIGMA) ** 2)  # D(i) / (sum(w) K(0)) at the end nodes


def _screened_mode(xs: np.ndarray, w: np.ndarray, frame: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """Modes of rows with sigma >= 8 and w >= 0, and whether each one is certified.

    Degenerate rows (nodes that coincide in floating point) give NaN and stay uncertified.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return _screen(xs, w, frame)


def _screen(xs: np.ndarray, w: np.ndarray, frame: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_screened_mode` without the floating-point error state."""
    rows = xs.shape[0]
    step = _kernel_step(frame)
    sigma = frame.bw / step
    shared = _kernel_weights(w)
    total = np.broadcast_to(shared.sum(axis=1), (rows,))
    unit = total * (_INV_SQRT_2PI / frame.bw)  # sum(w) K(0): bounds are relative to it
    delta = (frame.up - frame.lo) / (N_GRID - 1)
    # 1. D at the coarse points u_c = 4c + 1.5 (times kstep), within eps * unit.
    dens, eps = _coarse_density(xs, shared, frame.lo, delta, sigma)
    # 2. The 24 nodes around the coarse maximum by 6-point Lagrange interpolation; every other
    #    node is bounded by its cell's coarse points plus h^2/8 max|D''|.
    top = scratch("top", (rows,), np.int64)
    far = scratch("far", (rows,))
    ok = scratch("ok", (rows,), np.bool_)
    _kernels.window_bounds(
        dens,
        _WINDOW_MATRIX,
        1.0 / (step * unit),
        eps + (_SPREAD**2 / 8.0) / sigma**2,
        _LEBESGUE * eps + (_OMEGA6 * _SPREAD**6 * _PHI6) / sigma**6,
        _EDGE,
        top,
        far,
        ok,
    )
    # 3. D summed exactly at top - 1, top, top + 1, then R's approx() and which.max().
    exact = scratch("exact", (rows, 3))
    _kernels.exact_node_sums(xs, shared, frame.lo, delta, top, -0.5 * (step / frame.bw) ** 2, exact)
    exact /= total[:, None]  # times sum(w) K(0): D at top - 1 .. top + 1
    mode = np.empty(rows)
    certified = np.empty(rows, dtype=np.bool_)
    _kernels.decide(exact, top, far, frame.lo, frame.up, frame.frm, frame.to, mode, certified)
    return mode, ok & certified


def _coarse_density(
    xs: np.ndarray, w: np.ndarray, lo: np.ndarray, delta: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """kstep * D(u_c) at the 128 coarse points (float32 scratch) and its error bound per row.

    B-spline spreading of the bins, DCT-II, the Gaussian's spectrum over sinc^4, DCT-III.
    ``w`` is ``[B, J]`` or one shared ``[1, J]`` row. The bound is in units of sum(w) K(0)
    (see the comment block above).
    """
    rows = xs.shape[0]
    dens = scratch("coarse", (rows, _NC), np.float32)
    _kernels.spread_to_coarse(xs, w, lo, delta, _LOWER, _DELTA, dens)
    scipy.fft.dct(dens, type=2, axis=1, overwrite_x=True)
    alpha = (2.0 * np.pi**2 / (2.0 * N_GRID) ** 2) * sigma**2  # the Gaussian is exp(-alpha n^2)
    _kernels.apply_gaussian(-alpha, _DECONVOLVE, dens)
    scipy.fft.idct(dens, type=2, axis=1, overwrite_x=True)
    # Bounds per unit of sum(w), in kstep * D units: aliasing, spectral truncation (n >= 128,
    # Mills' bound), float32 rounding (an L1 bound per transform, (c log2 n + 4) u |input|_1 <=
    # 64 u |input|_1; forward and inverse give ~u sum c_n M_n, M_n's relative error
    # (|exponent| + 3) u the moment term, a generous bound since apply_gaussian rounds once, to
    # float32); then the DCT's mirror images.
    below = np.clip(np.searchsorted(_SIGMAS, sigma, side="right") - 1, 0, _SIGMAS.size - 1)
    alias, scale, moment = _BOUNDS[:, below]  # at the tabulated sigma just below: upper bounds
    tail = np.exp(-alpha * (_NC - 1) ** 2) / (2.0 * alpha * (_NC - 1) * 256.0)
    rounding = (2.0 * _F32_EPS) * (1.1 * scale + (0.02 * np.pi**2) * sigma**2 * moment)
    # sum(w) K(0) = sum(w) / (sqrt(2 pi) sigma kstep): divide kstep * D bounds by 1 / (sqrt(2 pi) sigma).
    eps = (alias + tail + rounding) * (np.sqrt(2.0 * np.pi) * sigma) + _IMAGES
    return dens, eps


def r_density(x: np.ndarray, bw: float, weights: np.ndarray | None = None) -> RDensity:
    """R's ``density(x, weights = weights, bw = bw)`` (Gaussian kernel, n = 512, cut = 3).

    A literal port of R 4.2's arithmetic (``BinDist``, FFT convolution with the sampled,
    mirrored kernel, ``pmax(0, .)``, ``approx``), with numpy's FFT in place of R's.

    Parameters
    ----------
    x : ndarray [J]
        Data.
    bw : float
        Bandwidth (> 0).
    weights : ndarray [J], optional
        Weights; default ``1 / J`` each.

    Returns
    -------
    RDensity
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.full(x.shape, 1.0 / x.size) if weights is None else weights
    x2, bw1, w2, valid = _prepare(x[None, :], np.array([bw]), w, None)
    frame = _Frame.of(x2, bw1, valid)
    y = np.zeros(2 * N_GRID)
    y[:N_GRID] = _bin(x2, w2, frame)[0]
    half = _sampled_kernel(frame)[0]
    kernel = np.concatenate([half, half[N_GRID - 1 : 0 : -1]])
    conv = np.fft.ifft(np.fft.fft(y) * np.conj(np.fft.fft(kernel))).real
    dens = np.maximum(conv[:N_GRID], 0.0)
    k = np.arange(N_GRID)[None, :]
    grid = _rseq(frame.frm, frame.to, N_GRID, k)[0]
    return RDensity(x=grid, y=_approx(dens[None, :], frame, k)[0], bw=float(bw))
