"""Compiled inner loops of the screened density search (:mod:`dmr_ray.stats.density`).

The kernels walk each row's data points once and keep their sums in registers; in numpy the
same arithmetic takes a dozen passes over ``[5, rows, J]`` temporaries and a ``bincount``,
which cost three times more than the arithmetic. Each point's bins follow R's ``BinDist``:
``pos = (x - lo) / delta``, lower bin ``ix = floor(pos)`` gets ``w (1 - f)`` and ``ix + 1``
gets ``w f`` with ``f = pos - ix``. The kernels release the GIL, so the density search's
thread pool runs them side by side. Divisions follow IEEE (numba's ``error_model="numpy"``),
as the numpy code they replace did: nodes that coincide at the data's resolution give NaN
values, not an exception.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "apply_gaussian",
    "decide",
    "direct_modes",
    "exact_node_sums",
    "grid_modes",
    "spread_to_coarse",
    "window_bounds",
]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def spread_to_coarse(
    x: np.ndarray,
    w: np.ndarray,
    lo: np.ndarray,
    delta: np.ndarray,
    lower_table: np.ndarray,
    delta_table: np.ndarray,
    out: np.ndarray,
) -> None:
    """B-spline spreading of every row's bins onto the coarse points.

    Parameters
    ----------
    x : ndarray [B, J]
        Data, at least 7 bandwidths inside each row's ``[lo, up]``.
    w : ndarray [B, J] or [1, J]
        Weights; one row is shared by all rows.
    lo, delta : ndarray [B]
        First node and node spacing of each row's grid.
    lower_table, delta_table : ndarray [5, 4]
        Weights of a point's lower bin, and upper minus lower, on coarse points
        ``q - 2 .. q + 2`` by ``ix % 4`` (``ix = 4 q + ix % 4``).
    out : ndarray [B, C] of float32
        Coarse sums (float64 accumulation, one rounding at the end).
    """
    rows, width = x.shape
    coarse = np.empty(out.shape[1])
    for r in range(rows):
        weights = w[r] if w.shape[0] > 1 else w[0]
        coarse[:] = 0.0
        for j in range(width):
            pos = (x[r, j] - lo[r]) / delta[r]
            floor = np.floor(pos)
            ix = int(floor)
            phase = ix & 3
            first = (ix >> 2) - 2
            mass = weights[j]
            upper = mass * (pos - floor)
            for slot in range(5):
                coarse[first + slot] += lower_table[slot, phase] * mass + delta_table[slot, phase] * upper
        for c in range(coarse.size):
            out[r, c] = coarse[c]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def apply_gaussian(coef: np.ndarray, deconvolve: np.ndarray, spectrum: np.ndarray) -> None:
    """Multiply each row of ``spectrum`` by ``exp(coef n^2) deconvolve[n]``, n = 0, 1, ...

    The Gaussian comes from a float64 recurrence (consecutive terms differ by
    ``exp(coef (2 n + 1))``, those factors by ``exp(2 coef)``): relative error below
    ``2 n`` float64 ulps, far below the float32 rounding of the product.

    Parameters
    ----------
    coef : ndarray [B]
        ``-2 pi^2 sigma^2 / 1024^2`` per row (<= 0).
    deconvolve : ndarray [C]
        The B-spline deconvolution factors ``1 / (4 sinc^4(n / 256))``.
    spectrum : ndarray [B, C] of float32
        DCT-II coefficients, multiplied in place.
    """
    rows, width = spectrum.shape
    for r in range(rows):
        gauss = 1.0
        ratio = np.exp(coef[r])
        step = ratio * ratio
        for n in range(width):
            spectrum[r, n] = spectrum[r, n] * (gauss * deconvolve[n])
            gauss *= ratio
            ratio *= step


@numba.njit(nogil=True, cache=True, error_model="numpy")
def exact_node_sums(
    x: np.ndarray,
    w: np.ndarray,
    lo: np.ndarray,
    delta: np.ndarray,
    top: np.ndarray,
    coef: np.ndarray,
    out: np.ndarray,
) -> None:
    """``sum_m y_m exp(coef (node - m)^2)`` over the bins at nodes ``top - 1 .. top + 1``.

    Parameters
    ----------
    x, w, lo, delta : ndarray
        As for :func:`spread_to_coarse`.
    top : ndarray [B] of int
        Each row's best node.
    coef : ndarray [B]
        ``-(kstep / bw)^2 / 2``, for kernels at least one node wide (so the ratios of
        consecutive terms, at most ``exp(1023 |coef|)``, stay finite).
    out : ndarray [B, 3]
        The three sums (float64, no transform; each term within a few ulps of its own
        ``exp``, far below what separates a certified maximum from the rest).
    """
    rows, width = x.shape
    for r in range(rows):
        weights = w[r] if w.shape[0] > 1 else w[0]
        c = coef[r]
        step = np.exp(2.0 * c)
        at_lower = at_top = at_upper = 0.0
        for j in range(width):
            pos = (x[r, j] - lo[r]) / delta[r]
            floor = np.floor(pos)
            frac = pos - floor
            lower = (1.0 - frac) * weights[j]
            upper = weights[j] * frac
            d = float(top[r] - int(floor)) - 2.0  # node top - 2 minus the lower bin
            # exp(c (d + k)^2) for k = 0..3 from two exponentials: consecutive terms differ by
            # the factor exp(c (2 (d + k) + 1)), and those factors by exp(2 c).
            k0 = np.exp(c * d * d)
            ratio = np.exp(c * (2.0 * d + 1.0))
            k1 = k0 * ratio
            ratio *= step
            k2 = k1 * ratio
            ratio *= step
            k3 = k2 * ratio
            at_lower += k1 * lower + k0 * upper
            at_top += k2 * lower + k1 * upper
            at_upper += k3 * lower + k2 * upper
        out[r, 0] = at_lower
        out[r, 1] = at_top
        out[r, 2] = at_upper


@numba.njit(nogil=True, cache=True, error_model="numpy")
def window_bounds(
    dens: np.ndarray,
    window_matrix: np.ndarray,
    to_unit: np.ndarray,
    rest_slack: np.ndarray,
    far_slack: np.ndarray,
    edge: float,
    top: np.ndarray,
    far: np.ndarray,
    ok: np.ndarray,
) -> None:
    """Step 2 of the screened search: the best node near the coarse maximum, bounds elsewhere.

    Parameters
    ----------
    dens : ndarray [B, C] of float32
        ``kstep * D`` at the coarse points.
    window_matrix : ndarray [11, 24]
        Lagrange interpolation of 24 nodes from the 11 coarse points around the maximum.
    to_unit : ndarray [B]
        Converts ``kstep * D`` to units of ``sum(w) K(0)``.
    rest_slack, far_slack : ndarray [B]
        What a node between two coarse points, and an interpolated node, may exceed its
        estimate by (same units).
    edge : float
        Bound of the end nodes that lie outside the coarse points.
    top, far, ok : ndarray [B]
        Out: the best interpolated node; an upper bound of D at every node but
        ``top - 1 .. top + 1``; whether both maxima lay inside their windows.
    """
    rows, n_coarse = dens.shape
    near = np.empty(24)
    for r in range(rows):
        coarse_top = 0
        for c in range(1, n_coarse):
            if dens[r, c] > dens[r, coarse_top]:
                coarse_top = c
        centre = min(max(coarse_top, 5), n_coarse - 6)
        rest = -np.inf
        for c in range(n_coarse):
            if abs(c - centre) > 2:
                rest = max(rest, float(dens[r, c]))
        rest = max(rest * to_unit[r] + rest_slack[r], edge)
        near[:] = 0.0
        for i in range(11):
            sample = float(dens[r, centre - 5 + i])
            for k in range(24):
                near[k] += sample * window_matrix[i, k]
        best = 0
        for k in range(1, 24):
            if near[k] > near[best]:
                best = k
        ok[r] = centre == coarse_top and 2 <= best <= 21
        best = min(max(best, 2), 21)
        top[r] = 4 * centre - 10 + best
        bound = -np.inf
        for k in range(24):
            if abs(k - best) > 1:
                bound = max(bound, near[k])
        far[r] = max(bound * to_unit[r] + far_slack[r], rest)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _grid_point(start: float, stop: float, step: float, index: int) -> float:
    """Element ``index`` of R's 512-point ``seq.int(start, stop, length.out = 512)``."""
    if index < 256:
        return start + index * step
    return stop - (511 - index) * step


@numba.njit(nogil=True, cache=True, error_model="numpy")
def decide(
    exact: np.ndarray,
    top: np.ndarray,
    far: np.ndarray,
    lo: np.ndarray,
    up: np.ndarray,
    frm: np.ndarray,
    to: np.ndarray,
    mode: np.ndarray,
    certified: np.ndarray,
) -> None:
    """Step 3 of the screened search: R's ``approx()`` and ``which.max()`` near node ``top``.

    The output points ``k* - 3 .. k* + 3`` around node ``top`` cover the segments
    ``[top - 1, top]`` and ``[top, top + 1]``; those inside them (``x0 <= x < x1``, as R's
    bisection finds) are interpolated from ``exact`` and the first best is the mode. It is
    certified when D at ``top - 1`` and ``top + 1`` and the bound ``far`` of every other node
    all lie strictly below it.

    Parameters
    ----------
    exact : ndarray [B, 3]
        D at nodes ``top - 1 .. top + 1``.
    top : ndarray [B] of int
        The best node.
    far : ndarray [B]
        Upper bound of D at every other node (units of ``exact``).
    lo, up, frm, to : ndarray [B]
        R's node range and output range.
    mode, certified : ndarray [B]
        Out: the output point, and whether no other output point can reach it.
    """
    values = np.empty(7)
    points = np.empty(7)
    for r in range(top.size):
        delta = (up[r] - lo[r]) / 511.0
        dx = (to[r] - frm[r]) / 511.0
        left = _grid_point(lo[r], up[r], delta, top[r] - 1)
        middle = _grid_point(lo[r], up[r], delta, top[r])
        right = _grid_point(lo[r], up[r], delta, top[r] + 1)
        centre = int(np.rint((middle - frm[r]) / dx))
        for i in range(7):
            k = min(max(centre - 3 + i, 0), 511)
            x = _grid_point(frm[r], to[r], dx, k)
            points[i] = x
            if x < left or x >= right:
                values[i] = -np.inf
            elif x >= middle:
                values[i] = exact[r, 1] + (exact[r, 2] - exact[r, 1]) * ((x - middle) / (right - middle))
            else:
                values[i] = exact[r, 0] + (exact[r, 1] - exact[r, 0]) * ((x - left) / (middle - left))
        best = -1
        for i in range(7):  # numpy's argmax: the first maximum, or the first NaN
            if np.isnan(values[i]):
                best = i
                break
            if best < 0 or values[i] > values[best]:
                best = i
        level = values[best]
        mode[r] = points[best]
        certified[r] = exact[r, 0] < level and exact[r, 2] < level and far[r] < level


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _output_value(dens: np.ndarray, lo: float, up: float, delta: float, x: float) -> float:
    """R's ``approx(xords, pmax(0, dens), x)``: the node segment holding ``x`` by R's
    bisection (``xords[i] <= x < xords[i + 1]``), then linear interpolation."""
    i = min(max(int(np.floor((x - lo) / delta)), 0), 510)
    if _grid_point(lo, up, delta, i) > x:
        i -= 1
    if _grid_point(lo, up, delta, i + 1) <= x:
        i += 1
    i = min(max(i, 0), 510)
    x0 = _grid_point(lo, up, delta, i)
    x1 = _grid_point(lo, up, delta, i + 1)
    y0 = max(dens[i], 0.0)
    y1 = max(dens[i + 1], 0.0)
    return y0 + (y1 - y0) * ((x - x0) / (x1 - x0))


@numba.njit(nogil=True, cache=True, error_model="numpy")
def direct_modes(
    x: np.ndarray,
    w: np.ndarray,
    lo: np.ndarray,
    up: np.ndarray,
    frm: np.ndarray,
    to: np.ndarray,
    bw: np.ndarray,
    reach_z: float,
    recurrence: bool,
    tie: float,
    out: np.ndarray,
    tied: np.ndarray,
) -> None:
    """Modes of R's density by direct convolution of the bins with R's sampled kernel.

    R convolves the binned weights with ``dnorm(|i - m| kstep, bw)`` (its mirrored kernel
    makes the circular convolution wrap-free for ``|i - m| <= 511``); for a kernel a few nodes
    wide the sum over the bins within ``reach_z`` bandwidths is cheaper than R's transforms.
    Bins follow ``BinDist`` (``w - w f`` to node ``ix``, ``w f`` to ``ix + 1`` unless
    ``ix = 511``); each bin adds ``mass * kernel`` to a contiguous run of nodes (the kernel is
    stored mirrored, so the loop is one vectorised multiply-add). The mode is the first
    maximum of R's ``approx`` on the 512 output points (the first NaN, as numpy's argmax, if
    any), found near the highest node; rows where another output point comes within ``tie``
    of it are flagged.

    Parameters
    ----------
    x, w : ndarray [B, J], [B, J] or [1, J]
        Data and weights, as for :func:`spread_to_coarse`.
    lo, up, frm, to, bw : ndarray [B]
        R's node range, output range and bandwidth of each row.
    reach_z : float
        Kernel terms beyond ``reach_z`` bandwidths are left out.
    recurrence : bool
        Kernel terms from two exponentials and a ratio recurrence (relative error below
        ``2 k`` ulps at term k, for kernels at least a few nodes wide), else one ``exp``
        per term (R's ``dnorm`` to an ulp).
    tie : float
        Relative gap below which two output values count as tied.
    out : ndarray [B]
        The modes.
    tied : ndarray [B] of bool
        Out: whether another output point comes within ``tie`` of the mode's value (or a
        value is NaN): there the rounding of the convolution decides.
    """
    rows, width = x.shape
    dens = np.empty(512)
    mirrored = np.empty(1023)  # kernel[|d|] at index 511 + d
    for r in range(rows):
        weights = w[r] if w.shape[0] > 1 else w[0]
        delta = (up[r] - lo[r]) / 511.0
        kstep = 2.0 * (up[r] - lo[r]) / 1023.0
        reach = min(512, int(np.ceil(reach_z * bw[r] / kstep)) + 2)
        if recurrence:  # exp(c k^2): consecutive terms differ by exp(c (2 k + 1)), those by exp(2 c)
            reach = min(reach, 511)
            value = 0.398942280401432677939946059934 / bw[r]
            ratio = np.exp(-0.5 * (kstep / bw[r]) ** 2)
            step = ratio * ratio
            for k in range(reach + 1):
                mirrored[511 + k] = value
                mirrored[511 - k] = value
                value *= ratio
                ratio *= step
        else:
            for k in range(reach):
                z = (k * kstep) / bw[r]
                value = 0.398942280401432677939946059934 * np.exp(-0.5 * z * z) / bw[r]
                mirrored[511 + k] = value
                mirrored[511 - k] = value
        dens[:] = 0.0
        for j in range(width):
            pos = (x[r, j] - lo[r]) / delta
            floor = np.floor(pos)
            ix = int(floor)
            upper = weights[j] * (pos - floor)
            if recurrence:
                _spread_point(dens, mirrored, reach, ix, weights[j] - upper, upper if ix < 511 else 0.0)
                continue
            _spread_bin(dens, mirrored, reach, ix, weights[j] - upper)
            if ix < 511:
                _spread_bin(dens, mirrored, reach, ix + 1, upper)
        out[r], tied[r] = _row_mode(dens, lo[r], up[r], frm[r], to[r], tie)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def grid_modes(
    dens: np.ndarray, lo: np.ndarray, up: np.ndarray, frm: np.ndarray, to: np.ndarray, out: np.ndarray
) -> None:
    """Modes of R's density from its values at the 512 nodes, row by row.

    Parameters
    ----------
    dens : ndarray [B, 512]
        The density at R's nodes ``xords`` (before ``pmax(0, .)``).
    lo, up, frm, to : ndarray [B]
        R's node range and output range.
    out : ndarray [B]
        ``x[which.max(approx(xords, pmax(0, dens), x))]`` with ``x`` the output grid.
    """
    for r in range(dens.shape[0]):
        out[r] = _row_mode(dens[r], lo[r], up[r], frm[r], to[r], 0.0)[0]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _row_mode(dens: np.ndarray, lo: float, up: float, frm: float, to: float, tie: float) -> tuple[float, bool]:
    """The output point where R's interpolated density first peaks (``dens`` [512] at nodes),
    and whether another output point comes within ``tie`` (relative) of it.

    The output points around the highest node cover both of its segments. When every other
    node (and 0, R's ``pmax`` floor) lies below their best value by more than ``tie``, no
    output point elsewhere (each between two nodes, one of them not the highest) reaches it or
    comes that close; else the whole grid is scanned. A NaN value counts as a tie.
    """
    delta = (up - lo) / 511.0
    dx = (to - frm) / 511.0
    top, others = _top_two(dens)
    centre = int(np.rint((_grid_point(lo, up, delta, top) - frm) / dx))
    first, last = max(centre - 4, 0), min(centre + 5, 512)
    best, level, second = _first_max(dens, lo, up, delta, frm, to, dx, first, last)
    gap = level - tie * abs(level)
    if not (others < gap and 0.0 < gap):  # R's pmax(0, .) lifts negative nodes to 0
        best, level, second = _first_max(dens, lo, up, delta, frm, to, dx, 0, 512)
    return _grid_point(frm, to, dx, best), not second < level - tie * abs(level)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _top_two(dens: np.ndarray) -> tuple[int, float]:
    """``np.argmax(dens)`` (the first maximum, or the first NaN) and the largest other value
    (NaN if any value is NaN), in one pass."""
    top, peak, others, nan = 0, dens[0], -np.inf, np.isnan(dens[0])
    for i in range(1, dens.size):
        value = dens[i]
        if value > peak:
            top, peak, others = i, value, peak
        elif value > others:
            others = value
        nan |= np.isnan(value)
    if nan:
        top = int(np.argmax(dens))
        others = np.nan
    return top, others


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _first_max(
    dens: np.ndarray,
    lo: float,
    up: float,
    delta: float,
    frm: float,
    to: float,
    dx: float,
    first: int,
    last: int,
) -> tuple[int, float, float]:
    """First maximum of R's ``approx`` at output points ``first .. last - 1`` (or the first
    NaN, as numpy's argmax), its value, and the largest value at the other points (NaN with a
    NaN)."""
    best, level, second = first, -np.inf, -np.inf
    for k in range(first, last):
        value = _output_value(dens, lo, up, delta, _grid_point(frm, to, dx, k))
        if np.isnan(value):
            return k, value, value
        if value > level:
            best, level, second = k, value, level
        elif value > second:
            second = value
    return best, level, second


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _spread_bin(dens: np.ndarray, mirrored: np.ndarray, reach: int, node: int, mass: float) -> None:
    """Add ``mass * kernel[|i - node|]`` to ``dens[i]`` for the nodes within ``reach``
    (``mirrored[511 + d]`` holds ``kernel[|d|]``)."""
    first = max(node - reach + 1, 0)
    last = max(min(node + reach, 512), first)  # a node beyond the grid: no nodes, not a wrap-round
    target = dens[first:last]
    kernel = mirrored[first + 511 - node : last + 511 - node]  # as long as target (reach <= 512)
    for i in range(target.size):  # from 0: no wraparound checks, so LLVM vectorises it
        target[i] += mass * kernel[i]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _spread_point(dens: np.ndarray, mirrored: np.ndarray, reach: int, node: int, lower: float, upper: float) -> None:
    """Add ``lower * kernel[|i - node|] + upper * kernel[|i - node - 1|]`` to ``dens[i]`` for
    the nodes within ``reach`` of either bin, in one pass (``mirrored[511 + d]`` holds
    ``kernel[|d|]`` for ``|d| <= reach <= 511``)."""
    first = max(node - reach + 1, 0)
    # Unsigned indices (all >= 0 as reach <= 511): no wraparound checks, no array views, so
    # LLVM vectorises the loop and a point costs little more than its multiply-adds. A node
    # more than reach below the grid (bins of data at the grid's floating-point resolution)
    # leaves the loop empty instead of wrapping round.
    start = np.uint64(first)
    stop = np.uint64(max(min(node + reach + 1, 512), first))
    at_upper = np.uint64(first + 510 - node)  # mirrored's index of kernel[|first - node - 1|]
    one = np.uint64(1)
    for i in range(start, stop):
        k = i - start + at_upper
        dens[i] += lower * mirrored[k + one] + upper * mirrored[k]
