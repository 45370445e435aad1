"""MBE on three instrument layouts: the direct convolution that now takes the kernels the screen
does not take or certify (J x SD up to 1500 nodes, in place of the 512-node DCTs) changed no result."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from dmr_ray.stats import _density_kernels, batched, density, mr
from dmr_ray.stats.density import r_density

J = 30


@functools.cache
def _benchmark() -> ModuleType:
    """``benchmarks/stats_throughput.py``, whose instrument layouts these tests share."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "stats_throughput.py"
    spec = importlib.util.spec_from_file_location("stats_throughput", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _instruments(layout: str, seed: int) -> tuple[np.ndarray, ...]:
    """``bx, bxse, by, byse`` [J] of a layout of the throughput benchmark: "typical",
    "around_zero" (outlying ratio estimates) or "uneven_se" (SEs spanning two orders)."""
    return _benchmark()._instruments(np.random.default_rng(seed), (J,), layout)


# mr.mbe (10 000 draws of R's stream) before the change, at commit fb720d1, as float.hex().
_BEFORE = [
    ("typical", 1, {}, "0x1.cc42e8ed9fbfdp-2", "0x1.5a4657a8f1573p-5"),
    ("typical", 2, {"phi": 0.5}, "0x1.5c71973d14396p-2", "0x1.8433d8ca2010ep-5"),
    ("around_zero", 3, {}, "0x1.b92f684b0aeb0p-2", "0x1.86c242ac7d18ap-5"),
    ("around_zero", 5, {}, "0x1.d6607ae76bd80p-2", "0x1.08456b4804cfcp-4"),
    ("around_zero", 6, {"weighting": "unweighted"}, "0x1.d2e00449b49c4p-2", "0x1.028702829f837p-4"),
    ("around_zero", 1, {}, "0x1.2b5c10b77c6f0p-2", "0x1.0f77a6fc4d3a3p-1"),
    ("uneven_se", 1, {}, "0x1.cc42e8ed9fbfdp-2", "0x1.be438c7dea2a0p-7"),
    ("uneven_se", 5, {}, "0x1.92a5b98dbffeap-2", "0x1.152b74336dff3p-7"),
    ("uneven_se", 4, {"stderror": "simple", "phi": 2.0}, "0x1.ee8be5a7b124ep-2", "0x1.ff459a00e19e4p-8"),
]


@pytest.mark.parametrize(("layout", "seed", "options", "estimate", "se"), _BEFORE)
def test_estimates_and_ses_are_bit_for_bit_those_before(layout, seed, options, estimate, se):
    result = mr.mbe(*_instruments(layout, seed), **options)
    assert (float(result.estimate).hex(), float(result.se).hex()) == (estimate, se)


def _bootstrap_rows(layout: str, seed: int, draws: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MBE bootstrap densities of a layout: data ``[draws, J]``, bandwidths ``[draws]``, weights ``[J]``."""
    bx, bxse, by, byse = _instruments(layout, seed)
    theta = by / bx
    se = np.sqrt(byse**2 / bx**2 + by**2 * bxse**2 / bx**4)
    w = se**-2 / np.sum(se**-2)
    x = theta + se * np.random.default_rng(seed).standard_normal((draws, J))
    bw, _ = batched._dense_bandwidth(x, 1.0)
    return x, bw, w


@pytest.mark.parametrize(("layout", "seed"), [("around_zero", 5), ("around_zero", 8), ("uneven_se", 5)])
def test_direct_convolution_of_wider_kernels_equals_the_full_grid_and_r(layout, seed):
    x, bw, w = _bootstrap_rows(layout, seed, 3000)
    frame = density._Frame.of(x, bw, None)
    sigma = bw / density._kernel_step(frame)
    wide = np.flatnonzero((sigma >= density._ANALYTIC_MIN_SIGMA) & (J * sigma <= density._DIRECT_MAX_WORK))
    assert wide.size > 500
    weights = np.broadcast_to(w, (wide.size, J))
    direct, tied = density._direct_mode(x[wide], weights, frame.take(wide), accurate=False)
    assert np.array_equal(direct, density._full_grid_mode(x[wide], weights, frame.take(wide)))
    assert tied.mean() < 0.01
    some = wide[:150]
    r_modes = [float(d.x[np.argmax(d.y)]) for d in (r_density(x[i], bw[i], w) for i in some)]
    assert density.density_mode(x[some], bw[some], w).tolist() == r_modes


def test_tied_peaks_are_left_to_the_full_grid():
    # Two equal weights: the density is symmetric about the midpoint, and so are R's nodes, so
    # the two highest nodes tie and the rounding of the convolution picks one. The direct sum
    # flags the tie and the row takes the DCTs, as it did before the direct sum took such kernels.
    x = np.array([[0.1234, 0.5678], [0.1234, 0.9]])
    w = np.full(x.shape, 0.5)
    bw = np.array([0.2, 0.05])
    frame = density._Frame.of(x, bw, None)
    sigma = bw / density._kernel_step(frame)
    assert np.all((sigma >= density._ANALYTIC_MIN_SIGMA) & (2 * sigma <= density._DIRECT_MAX_WORK))
    _, tied = density._direct_mode(x, w, frame, accurate=False)
    assert tied.tolist() == [True, True]
    assert np.array_equal(density.density_mode(x, bw, w), density._full_grid_mode(x, w, frame))


def test_top_two_is_numpys_argmax_and_the_largest_other_value():
    rng = np.random.default_rng(3)
    for _ in range(200):
        dens = rng.choice([0.0, 1.0, 2.0, -1.0], 512) + (rng.random() < 0.5) * rng.random(512)
        if rng.random() < 0.2:
            dens[rng.integers(512, size=2)] = np.nan
        top, others = _density_kernels._top_two(dens)
        rest = np.delete(dens, np.argmax(dens))
        assert top == np.argmax(dens)
        assert others == rest.max() or (np.isnan(others) and np.isnan(dens).any())


@pytest.mark.parametrize("node", [-600, -100, -41, -40, -1, 0, 300, 511, 551, 552, 2000])
def test_bins_off_the_grid_spread_only_onto_it(node):
    # A bin far below or above the nodes (data at the grid's resolution) touches no node beyond them.
    reach = 40
    mirrored = np.zeros(1023)
    mirrored[511 - reach : 512 + reach] = 1.0  # kernel[|d|] = 1 for |d| <= reach
    nodes = np.arange(512)
    one_bin = np.zeros(512)
    _density_kernels._spread_bin(one_bin, mirrored, reach, node, 1.0)
    assert np.array_equal(one_bin, (np.abs(nodes - node) < reach).astype(float))
    both = np.zeros(512)
    _density_kernels._spread_point(both, mirrored, reach, node, 1.0, 0.5)
    within = (nodes >= node - reach + 1) & (nodes <= node + reach)
    expected = (np.abs(nodes - node) <= reach) + 0.5 * (np.abs(nodes - node - 1) <= reach)
    assert np.array_equal(both, np.where(within, expected, 0.0))
