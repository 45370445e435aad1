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
grid for many rows at once: the binned weights of every row go through one DCT-II, are
multiplied by the kernel's spectrum and come back through one DCT-III. The data lie at least
``7h`` inside ``[lo, up]``, so the DCT's mirror images add less than ``e^-60`` of a kernel
peak and the result equals R's circular convolution up to rounding. The kernel spectrum is
the Gaussian's (Poisson summation) when the kernel spans at least 3 nodes, else the DCT-I
of the sampled kernel, exactly as R builds it. The argmax is then taken from R's own
interpolation formula on the few grid points around the highest node, with a full-grid
fallback for rows where another node comes close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from dmr_ray.stats._common import take_last

__all__ = ["N_GRID", "RDensity", "density_mode", "r_density"]

N_GRID = 512
"""R's grid size for ``density(n = 512)``."""

_CUT = 3.0  # density(cut = 3)
_PAD = 4.0  # lo = from - 4 bw, up = to + 4 bw
_INV_SQRT_2PI = 0.398942280401432677939946059934  # M_1_SQRT_2PI
_ANALYTIC_MIN_SIGMA = 3.0  # kernel SD in nodes above which aliasing is below e^-44
_SPECTRUM_CUTOFF = 1.527  # exp(-2 pi^2 (sigma nu)^2) < 1e-20 beyond nu = cutoff / sigma
_WINDOW = np.arange(-4, 5)  # grid points tried around the highest node
_CHUNK_ROWS = 4096


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
    def of(cls, x: np.ndarray, bw: np.ndarray, valid: np.ndarray) -> _Frame:
        xmin = np.where(valid, x, np.inf).min(axis=1)
        xmax = np.where(valid, x, -np.inf).max(axis=1)
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
    """``dnorm(kords[0:513], sd = bw)``: R's kernel up to its fold point, ``[B, 513]``."""
    rows = frame.bw.shape[0]
    m = np.broadcast_to(np.arange(N_GRID + 1), (rows, N_GRID + 1))
    kords = _rseq(np.zeros(rows), 2.0 * (frame.up - frame.lo), 2 * N_GRID, m)
    return _dnorm(kords, frame.bw[:, None])


def _kernel_spectrum(frame: _Frame) -> np.ndarray:
    """DFT (length 1024, first 512 terms) of R's mirrored kernel, ``[B, k]``.

    Trailing terms below 1e-20 of the first are dropped, so ``k <= 512`` columns come back.
    """
    step = _kernel_step(frame)
    sigma = frame.bw / step  # kernel SD in nodes
    narrow = sigma < _ANALYTIC_MIN_SIGMA
    n_terms = N_GRID
    if not narrow.any():
        n_terms = min(N_GRID, int(np.ceil(2 * N_GRID * _SPECTRUM_CUTOFF / sigma.min())) + 1)
    nu = np.arange(n_terms) / (2 * N_GRID)
    spectrum = np.multiply.outer(-2.0 * np.pi**2 * sigma**2, nu * nu)
    np.exp(spectrum, out=spectrum)
    spectrum /= step[:, None]
    if narrow.any():
        exact = scipy.fft.dct(_sampled_kernel(frame.take(narrow)), type=1, axis=1)
        spectrum[narrow] = exact[:, :N_GRID]
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
    return y0 + (y1 - y0) * ((x - x0) / (x1 - x0))


def _grid_argmax(dens: np.ndarray, frame: _Frame) -> np.ndarray:
    """Index of the first maximum of the interpolated density on R's output grid, ``[B]``.

    Only the grid points around the highest node are interpolated. They cover both node
    segments next to it, so their best value is at least as high as both neighbours; when no
    other node reaches that value, no grid point elsewhere can, and the window holds the
    answer. Other rows fall back to the whole grid.
    """
    rows = dens.shape[0]
    top = np.argmax(dens, axis=1)
    x_top = _rseq(frame.lo, frame.up, N_GRID, top[:, None])[:, 0]
    dx = (frame.to - frame.frm) / (N_GRID - 1)
    centre = np.rint((x_top - frame.frm) / dx).astype(np.int64)
    k = np.clip(centre[:, None] + _WINDOW, 0, N_GRID - 1)
    values = _approx(dens, frame, k)
    best = np.argmax(values, axis=1)
    out = k[np.arange(rows), best]
    peak = dens[np.arange(rows), top]
    dens[np.arange(rows), top] = -np.inf
    ambiguous = dens.max(axis=1) >= values[np.arange(rows), best]
    dens[np.arange(rows), top] = peak
    if ambiguous.any():
        sub = np.flatnonzero(ambiguous)
        full = np.broadcast_to(np.arange(N_GRID), (sub.size, N_GRID))
        out[sub] = np.argmax(_approx(dens[sub], frame.take(sub), full), axis=1)
    return out


def _prepare(
    x: np.ndarray, bw: np.ndarray, weights: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    bw = np.broadcast_to(np.asarray(bw, dtype=np.float64), x.shape[:1])
    valid = np.ones(x.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    w = np.where(valid, np.broadcast_to(np.asarray(weights, dtype=np.float64), x.shape), 0.0)
    return x, bw, w, valid


def density_mode(
    x: np.ndarray,
    bw: np.ndarray | float,
    weights: np.ndarray,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Grid point where R's ``density(x, weights = weights, bw = bw)`` peaks, row by row.

    Parameters
    ----------
    x : ndarray [B, J]
        Data, one row per density.
    bw : ndarray [B] or float
        Gaussian bandwidths; rows whose bandwidth is not finite and > 0 get NaN (R's
        ``density`` stops with "'bw' is not positive").
    weights : ndarray [B, J] or [J]
        Weights (R's ``density`` expects them to sum to 1; they are used as given).
    mask : ndarray [B, J] of bool, optional
        True for real data; masked entries are ignored.

    Returns
    -------
    ndarray [B]
        ``d$x[which.max(d$y)]``: on ties, the first grid point (R's ``mbe_est`` would return
        all of them).

    Notes
    -----
    Equals the argmax of :func:`r_density` except where two grid values tie to within
    rounding (~1e-15 relative).
    """
    x, bw, w, valid = _prepare(x, bw, weights, mask)
    out = np.full(x.shape[0], np.nan)
    good = np.flatnonzero(np.isfinite(bw) & (bw > 0))
    for start in range(0, good.size, _CHUNK_ROWS):
        rows = good[start : start + _CHUNK_ROWS]
        out[rows] = _chunk_mode(x[rows], bw[rows], w[rows], valid[rows])
    return out


def _chunk_mode(x: np.ndarray, bw: np.ndarray, w: np.ndarray, valid: np.ndarray) -> np.ndarray:
    frame = _Frame.of(x, bw, valid)
    xs = np.where(valid, x, frame.frm[:, None] + _CUT * bw[:, None])  # padding: any inside point
    binned = _bin(xs, w, frame)
    spectrum = _kernel_spectrum(frame)
    coef = scipy.fft.dct(binned, type=2, axis=1, overwrite_x=True)
    coef[:, : spectrum.shape[1]] *= spectrum
    coef[:, spectrum.shape[1] :] = 0.0
    dens = scipy.fft.idct(coef, type=2, axis=1, overwrite_x=True)
    k = _grid_argmax(dens, frame)
    return _rseq(frame.frm, frame.to, N_GRID, k[:, None])[:, 0]


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
