"""R's density() grid: the literal port and the vectorised mode finder."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmr_ray.stats import _density_kernels, density
from dmr_ray.stats.density import N_GRID, density_mode, r_density


def _r_mode(x: np.ndarray, bw: float, w: np.ndarray) -> float:
    d = r_density(x, bw, w)
    return float(d.x[np.argmax(d.y)])


def _nrd(x: np.ndarray) -> float:
    """mbe_est's bandwidth (phi = 1)."""
    mad = 1.4826 * np.median(np.abs(x - np.median(x)))
    return 0.9 * min(np.std(x, ddof=1), mad) / x.size**0.2


@st.composite
def samples(draw):
    """Ratio-estimate-like samples: clusters, outliers (narrow kernels), uneven weights."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    j = draw(st.integers(2, 40))
    shape = draw(st.sampled_from(["normal", "outliers", "bimodal", "heavy"]))
    x = rng.standard_normal(j)
    if shape == "outliers":
        x[: max(1, j // 5)] *= 10.0 ** rng.uniform(1, 4)
    elif shape == "bimodal":
        x = np.where(rng.random(j) < 0.5, rng.normal(0, 0.1, j), rng.normal(1, 0.1, j))
    elif shape == "heavy":
        x = rng.standard_cauchy(j)
    w = rng.random(j) ** 3 + 1e-3
    bw = draw(st.sampled_from([0.1, 0.5, 1.0, 2.0])) * max(_nrd(x), 1e-3 * np.ptp(x) + 1e-12)
    return x, w / w.sum(), bw


@settings(max_examples=150, deadline=None)
@given(samples())
def test_mode_equals_argmax_of_the_literal_port(sample):
    x, w, bw = sample
    assert density_mode(x[None, :], bw, w)[0] == _r_mode(x, bw, w)


def test_many_rows_at_once_equal_row_by_row(monkeypatch):
    monkeypatch.setattr(density, "_CHUNK_ROWS", 7)  # several chunks
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 25)) * rng.uniform(0.1, 10, (40, 1))
    x[::5, 0] = 300.0  # narrow-kernel rows mixed with wide ones
    w = rng.random((40, 25))
    w /= w.sum(axis=1, keepdims=True)
    bw = np.array([_nrd(row) for row in x])
    modes = density_mode(x, bw, w)
    assert modes.tolist() == [_r_mode(x[i], bw[i], w[i]) for i in range(40)]


def test_masked_entries_are_ignored():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 12))
    w = rng.random(12)
    mask = np.ones((3, 12), dtype=bool)
    mask[1, 8:] = False
    garbage = x.copy()
    garbage[1, 8:] = [1e9, -1e9, np.nan, np.inf]
    modes = density_mode(garbage, 0.4, w, mask)
    w1 = w[:8] / 1.0
    assert modes[1] == _r_mode(x[1, :8], 0.4, w1)
    assert modes[0] == _r_mode(x[0], 0.4, w)


def test_nonpositive_bandwidth_gives_nan():
    modes = density_mode(np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([0.0, 0.5]), [0.5, 0.5])
    assert np.isnan(modes[0]) and np.isfinite(modes[1])


def test_ties_resolve_to_the_first_grid_point():
    frame = density._Frame(*(np.array([v]) for v in (1.0, -3.0, 3.0, -7.0, 7.0)))
    dens = np.zeros((1, N_GRID))
    dens[0, 180:191] = dens[0, 300:311] = 1.0  # two equal plateaus: R's which.max takes the first
    mode = np.empty(1)
    _density_kernels.grid_modes(dens, frame.lo, frame.up, frame.frm, frame.to, mode)
    x = mode[0]
    nodes = density._rseq(frame.lo, frame.up, N_GRID, np.array([[180, 181]]))[0]
    assert nodes[0] <= x <= nodes[1]


def test_grid_matches_r():
    x = np.array([0.3, -1.2, 2.5, 0.7])
    d = r_density(x, 0.5)
    assert d.x.size == N_GRID and d.y.size == N_GRID
    assert d.x[0] == -1.2 - 3 * 0.5 and d.x[-1] == 2.5 + 3 * 0.5
    assert np.all(d.y >= 0)
    assert np.trapezoid(d.y, d.x) == pytest.approx(1.0, abs=0.01)
    # The binned estimate approximates the exact Gaussian KDE.
    exact = np.mean(np.exp(-0.5 * ((d.x[:, None] - x) / 0.5) ** 2), axis=1) / (0.5 * np.sqrt(2 * np.pi))
    assert d.y == pytest.approx(exact, abs=2e-3 * exact.max())


def test_bandwidth_below_the_data_resolution_uses_r_edge_bins():
    # from/lo round to min(x): points fall on R's edge nodes (ix = -1 or 511).
    x = np.array([0.0, -1.0, -5e-18])
    w = np.array([0.5, 0.375, 0.125])
    assert density_mode(x[None, :], 5e-18, w)[0] == _r_mode(x, 5e-18, w)


@pytest.mark.parametrize("bw", [1e-17, 5e-17, 1e-16, 1e-15, 1e-14])
def test_bandwidths_at_the_data_resolution_stay_on_the_grid(bw: float):
    # A few ulps of spread: the rounded grid may put data on its end nodes, where the screen's
    # compiled spreading must not go; such rows take the full grid.
    x = (1.0 + np.spacing(1.0) * np.array([0.0, 1.0, 3.0, 2.0, 0.0, 1.0]))[None, :]
    w = np.full(x.shape, 1.0 / x.size)
    frame = density._Frame.of(x, np.array([bw]), None)
    assert density_mode(x, bw, w)[0] == density._full_grid_mode(x, w, frame)[0]


def test_grid_nodes_that_coincide_give_nan_not_an_exception():
    # bw far below the resolution of x = 1: every node rounds to 1.0 (R's BinDist divides by 0).
    x = np.array([[1.0, 1.0, 1.0 + 5e-18, 1.0 - 1e-17]])
    assert np.isnan(density_mode(x, 1e-17, np.full(x.shape, 0.25))[0])


# --------------------------------------------------------------------------- screened search


def _mbe_like_rows(rng: np.random.Generator, rows: int, j: int) -> tuple[np.ndarray, ...]:
    """Ratio-estimate-like rows (clusters, outliers, uneven weights) with mbe's bandwidths."""
    x = rng.standard_normal((rows, j)) * rng.uniform(0.1, 10.0, (rows, 1))
    outliers = rng.random((rows, j)) < 0.1
    x = np.where(outliers, x * rng.uniform(2.0, 20.0, (rows, j)), x)
    bimodal = rng.random(rows) < 0.3
    shift = 2.0 * x[bimodal].std(axis=1, keepdims=True)
    x[bimodal] += np.where(rng.random((bimodal.sum(), j)) < 0.5, 0.0, shift)
    w = rng.random((rows, j)) ** 3 + 1e-3
    w /= w.sum(axis=1, keepdims=True)
    bw = np.array([_nrd(row) for row in x]) * rng.choice([0.5, 1.0, 1.5], rows)
    return x, bw, w


def _exact_continuous(x: np.ndarray, w: np.ndarray, bw: np.ndarray, at: np.ndarray) -> np.ndarray:
    """sum_m y_m K(at - m) in float64 at node positions ``at [B, K]`` (not necessarily integer)."""
    frame = density._Frame.of(x, bw, None)
    pos = (x - frame.lo[:, None]) / ((frame.up - frame.lo) / (N_GRID - 1))[:, None]
    ix = np.floor(pos)
    f = pos - ix
    sigma = bw / density._kernel_step(frame)
    d = at[:, :, None] - ix[:, None, :]
    lower = (w * (1 - f))[:, None, :] * np.exp(-0.5 * (d / sigma[:, None, None]) ** 2)
    upper = (w * f)[:, None, :] * np.exp(-0.5 * ((d - 1) / sigma[:, None, None]) ** 2)
    return (lower + upper).sum(axis=2) / (np.sqrt(2 * np.pi) * bw[:, None])


def test_coarse_screen_and_window_stay_within_their_bounds():
    rng = np.random.default_rng(11)
    for j in (2, 5, 30, 80):
        x, bw, w = _mbe_like_rows(rng, 300, j)
        frame = density._Frame.of(x, bw, None)
        step = density._kernel_step(frame)
        keep = (bw > 0) & (bw >= density._SCREEN_MIN_SIGMA * step)
        sigma = np.where(keep, bw, 1.0) / np.where(keep, step, 1.0)
        x, bw, w, frame, step, sigma = x[keep], bw[keep], w[keep], frame.take(keep), step[keep], sigma[keep]
        unit = w.sum(axis=1) / (np.sqrt(2 * np.pi) * bw)
        delta = (frame.up - frame.lo) / (N_GRID - 1)
        dens, eps = density._coarse_density(x, w, frame.lo, delta, sigma)
        dens = dens.astype(np.float64) / step[:, None]
        u = 4.0 * np.arange(density._NC) + 1.5
        exact = _exact_continuous(x, w, bw, np.broadcast_to(u, dens.shape))
        assert np.all(np.abs(dens - exact) <= eps[:, None] * unit[:, None])
        # The Lagrange window around the coarse maximum.
        centre = np.clip(np.argmax(dens, axis=1), 5, density._NC - 6)
        samples = dens[np.arange(dens.shape[0])[:, None], centre[:, None] + np.arange(-5, 6)]
        near = samples @ density._WINDOW_MATRIX
        nodes = 4 * centre[:, None] - 10 + np.arange(24)
        bound = density._LEBESGUE * eps + density._OMEGA6 * density._SPREAD**6 * density._PHI6 / sigma**6
        exact = _exact_continuous(x, w, bw, nodes.astype(float))
        assert np.all(np.abs(near - exact) <= bound[:, None] * unit[:, None])


def test_screened_modes_equal_the_full_grid_and_most_rows_are_certified():
    rng = np.random.default_rng(12)
    x, bw, w = _mbe_like_rows(rng, 3000, 30)
    frame = density._Frame.of(x, bw, None)
    keep = (bw > 0) & (bw >= density._SCREEN_MIN_SIGMA * density._kernel_step(frame))
    x, w, frame = x[keep], w[keep], frame.take(keep)
    modes, certified = density._screened_mode(x, w, frame)
    full = density._full_grid_mode(x, w, frame)
    assert np.array_equal(modes[certified], full[certified])
    assert certified.mean() > 0.9


def test_narrow_kernels_convolved_directly_give_r_modes():
    # Kernels under 3 nodes (outlying ratio estimates: LDL's median is 0.75) skip the
    # transforms; every mode equals the argmax of the literal port of R's density().
    rng = np.random.default_rng(14)
    x, bw, w = _mbe_like_rows(rng, 800, 25)
    bw = bw * rng.uniform(0.005, 0.2, bw.shape)
    sigma = bw / density._kernel_step(density._Frame.of(x, bw, None))
    x, bw, w = x[sigma < 3], bw[sigma < 3], w[sigma < 3]
    assert x.shape[0] > 300 and (sigma < 0.5).any()
    modes = density_mode(x, bw, w)
    assert [_r_mode(x[i], bw[i], w[i]) for i in range(x.shape[0])] == modes.tolist()


def test_symmetric_twin_peaks_are_not_certified():
    # Two mirror-image clusters: the peaks tie up to rounding, so the screen must defer.
    half = np.array([-0.3, -0.1, 0.0, 0.15, 0.2])
    x = np.concatenate([half - 3.0, 3.0 - half])[None, :]
    w = np.full(x.shape, 0.1)
    bw = np.array([0.4])
    frame = density._Frame.of(x, bw, None)
    assert bw[0] / density._kernel_step(frame)[0] >= density._SCREEN_MIN_SIGMA
    _, certified = density._screened_mode(x, w, frame)
    assert not certified[0]  # the full grid then decides, as R's arithmetic happens to


def test_threads_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(13)
    x, bw, w = _mbe_like_rows(rng, 900, 20)
    monkeypatch.setattr(density, "_CHUNK_ROWS", 100)
    serial = density_mode(x, bw, w, threads=1)
    assert np.array_equal(density_mode(x, bw, w, threads=3), serial, equal_nan=True)
    with ThreadPoolExecutor(2) as pool:
        assert np.array_equal(density_mode(x, bw, w, threads=pool), serial, equal_nan=True)
