"""Batched MR estimators: equal to the scalar ones region by region, reason codes, layout."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmr_ray.errors import InputError
from dmr_ray.stats import batched, mr
from dmr_ray.stats.batched import Reason, ragged_to_padded

SIZES = [1, 2, 3, 5, 12, 30]  # regions of different sizes, padded to 30


def _regions(seed: int, sizes: list[int]) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    bx = rng.uniform(0.05, 0.5, n) * rng.choice([-1.0, 1.0], n)
    bxse = rng.uniform(0.01, 0.05, n)
    by = 0.4 * bx + rng.normal(0, 0.05, n)
    byse = rng.uniform(0.02, 0.08, n)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return (offsets, bx, bxse, by, byse)


def _compare(result, scalar_results, rtol: float) -> None:
    """Batched columns against scalar results (None where the region has too few instruments)."""
    for i, expected in enumerate(scalar_results):
        if expected is None:
            assert result.reason[i] == Reason.TOO_FEW_INSTRUMENTS
            assert np.isnan(result.estimate[i]) and np.isnan(result.se[i])
            continue
        assert result.reason[i] == Reason.OK
        for field in dataclasses.fields(expected):
            want = getattr(expected, field.name)
            got = getattr(result, field.name)
            if field.name == "method":
                assert got == want
            elif want is None:
                assert got is None, field.name
            elif isinstance(want, str):
                assert got[i] == want, field.name
            else:
                assert got[i] == pytest.approx(want, rel=rtol, abs=1e-14, nan_ok=True), field.name


def _assert_same(a, b) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=field.name)
        else:
            assert x == y, field.name


def _scalar(func, offsets, columns, minimum, **options):
    out = []
    for start, stop in zip(offsets[:-1], offsets[1:], strict=True):
        args = [c[start:stop] for c in columns]
        out.append(func(*args, **options) if stop - start >= minimum else None)
    return out


CASES = [
    ("ivw", {}),
    ("ivw", {"model": "fixed", "distribution": "t-dist"}),
    ("ivw", {"weights": "delta", "psi": 0.2, "penalized": True}),
    ("egger", {}),
    ("egger", {"distribution": "t-dist", "penalized": True}),
    ("weighted_median", {"iterations": 200}),
    ("weighted_median", {"weighting": "penalized", "iterations": 200, "seed": 7}),
    ("weighted_median", {"weighting": "simple", "iterations": 200}),
    ("mbe", {"iterations": 200}),
    ("mbe", {"weighting": "unweighted", "stderror": "simple", "phi": 0.5, "iterations": 200}),
]


@pytest.mark.parametrize("name, options", CASES)
def test_batched_equals_scalar(name, options):
    offsets, *columns = _regions(1, SIZES)
    *padded, mask = ragged_to_padded(offsets, *columns)
    result = getattr(batched, name)(*padded, mask, **options)
    expected = _scalar(getattr(mr, name), offsets, columns, batched.MIN_INSTRUMENTS[name], **options)
    assert result.method == name
    assert result.n_instruments.tolist() == SIZES
    _compare(result, expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["weighted_median", "mbe"])
def test_a_mask_with_gaps_bootstraps_what_r_draws_for_the_instruments_alone(name):
    """Instruments need not be a prefix of a padded row: each draws R's normals by its rank
    among the row's instruments, so the bootstrap SEs equal the scalar (R-exact) ones to
    rounding. Before, a gap shifted later instruments onto other draws (SE 0.044 against R's
    0.064 in one case)."""
    offsets, *columns = _regions(5, [8, 11, 9])
    rng = np.random.default_rng(5)
    width = 16
    gapped = [np.ones((3, width)) for _ in columns]
    mask = np.zeros((3, width), dtype=bool)
    for row, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        slots = np.sort(rng.choice(width, stop - start, replace=False))  # in order, with gaps
        mask[row, slots] = True
        for a, c in zip(gapped, columns, strict=True):
            a[row, slots] = c[start:stop]
    result = getattr(batched, name)(*gapped, mask, iterations=300)
    expected = _scalar(getattr(mr, name), offsets, columns, batched.MIN_INSTRUMENTS[name], iterations=300)
    assert not all(np.flatnonzero(m).tolist() == list(range(m.sum())) for m in mask)
    _compare(result, expected, rtol=1e-12)  # SEs included: the same draws


def test_batched_robust_equals_scalar():
    pytest.importorskip("dmr_ray.stats.lmrob")
    offsets, *columns = _regions(2, [3, 8, 20])
    *padded, mask = ragged_to_padded(offsets, *columns)
    for name in ("egger", "ivw"):
        result = getattr(batched, name)(*padded, mask, robust=True, seed=3)
        expected = _scalar(getattr(mr, name), offsets, columns, 1, robust=True, seed=3)
        _compare(result, expected, rtol=1e-9)


def test_steiger_batched_equals_scalar():
    offsets, *columns = _regions(3, SIZES)
    *padded, mask = ragged_to_padded(offsets, *columns)
    result = batched.steiger(*padded, mask)
    for i, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        if stop - start < 2:
            assert result.reason[i] == Reason.TOO_FEW_INSTRUMENTS and result.direction[i] == 0
            continue
        one = mr.steiger(*(c[start:stop] for c in columns))
        assert {1: "x_to_y", -1: "y_to_x"}[int(result.direction[i])] == one.direction
        assert result.p_value[i] == pytest.approx(one.p_value, rel=1e-12)
        assert result.statistic[i] == pytest.approx(one.statistic, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 15), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_batched_equals_scalar_for_any_layout(sizes, seed):
    offsets, *columns = _regions(seed, sizes)
    *padded, mask = ragged_to_padded(offsets, *columns)
    for name in ("ivw", "egger"):
        expected = _scalar(getattr(mr, name), offsets, columns, batched.MIN_INSTRUMENTS[name])
        _compare(getattr(batched, name)(*padded, mask), expected, rtol=1e-10)


def test_bootstrap_blocks_do_not_change_results(monkeypatch):
    offsets, *columns = _regions(4, [4, 9, 16, 25])
    *padded, mask = ragged_to_padded(offsets, *columns)
    whole = batched.mbe(*padded, mask, iterations=100)
    median = batched.weighted_median(*padded, mask, iterations=100)
    monkeypatch.setattr(batched, "BOOTSTRAP_BUDGET", 1000)  # one region per block
    _assert_same(batched.mbe(*padded, mask, iterations=100), whole)
    _assert_same(batched.weighted_median(*padded, mask, iterations=100), median)


def test_mbe_threads_do_not_change_results():
    for sizes in ([4, 9, 16, 25], [12, 12, 12]):  # padded rows, then rows without padding
        offsets, *columns = _regions(4, sizes)
        *padded, mask = ragged_to_padded(offsets, *columns)
        serial = batched.mbe(*padded, mask, iterations=3000, threads=1)  # several chunks per region
        _assert_same(batched.mbe(*padded, mask, iterations=3000, threads=3), serial)
        with ThreadPoolExecutor(2) as pool:
            _assert_same(batched.mbe(*padded, mask, iterations=3000, threads=pool), serial)
    with pytest.raises(InputError, match="threads"):
        batched.mbe(*padded, mask, iterations=10, threads=0)


@pytest.mark.parametrize("iterations", [1, 2.5, True])
def test_bootstraps_need_an_integer_number_of_draws(iterations):
    offsets, *columns = _regions(4, [5, 6])
    *padded, mask = ragged_to_padded(offsets, *columns)
    for name in ("mbe", "weighted_median"):
        with pytest.raises(InputError, match="iterations"):
            getattr(batched, name)(*padded, mask, iterations=iterations)


def test_generator_seeds_draw_fresh_blocks():
    offsets, *columns = _regions(5, [6, 6])
    *padded, mask = ragged_to_padded(offsets, *columns)
    a = batched.weighted_median(*padded, mask, iterations=300, seed=np.random.default_rng(1))
    b = batched.weighted_median(*padded, mask, iterations=300, seed=np.random.default_rng(1))
    np.testing.assert_array_equal(a.se, b.se)
    assert a.se[0] != a.se[1] or a.estimate[0] != a.estimate[1]
    assert np.all(np.isfinite(a.se))


def test_degenerate_regions_get_a_reason_not_an_exception():
    bx = np.array([[0.1, -0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
    by = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    se = np.full(bx.shape, 0.01)
    egger = batched.egger(bx, se, by, se)
    assert egger.reason.tolist() == [Reason.DEGENERATE, Reason.OK]
    assert np.isnan(egger.estimate[0]) and np.isfinite(egger.estimate[1])
    mode = batched.mbe(bx, se, by, se, iterations=50)  # region 1: all ratios equal, zero bandwidth
    assert mode.reason.tolist() == [Reason.OK, Reason.DEGENERATE]
    assert np.isnan(mode.estimate[1]) and np.isnan(mode.se[1])


def test_invalid_values_name_region_and_instrument_but_padding_is_free():
    bx = np.array([[0.1, 0.2, np.nan], [0.3, 0.0, 0.2]])
    good = np.ones(bx.shape) * 0.1
    mask = np.array([[True, True, False], [True, True, True]])
    with pytest.raises(InputError, match=r"bx\[region 1, instrument 1\]"):
        batched.ivw(bx, good, good, good, mask)
    mask[1, 1] = False
    assert batched.ivw(bx, good, good, good, mask).n_instruments.tolist() == [2, 2]


def test_ragged_to_padded():
    bx, by, mask = ragged_to_padded([0, 2, 2, 5], [1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0])
    assert mask.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    assert bx[0, :2].tolist() == [1.0, 2.0] and bx[2].tolist() == [3.0, 4.0, 5.0]
    assert np.isnan(bx[0, 2]) and by[2, 0] == 8.0
    with pytest.raises(InputError, match="offsets"):
        ragged_to_padded([0, 3, 2], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="column 0"):
        ragged_to_padded([0, 4], [1.0, 2.0])


@pytest.mark.parametrize("name", ["ivw", "egger", "weighted_median", "mbe", "steiger"])
def test_empty_regions_and_batches(name):
    *padded, mask = ragged_to_padded([0, 0, 0], [], [], [], [])
    result = getattr(batched, name)(*padded, mask)
    assert result.reason.tolist() == [Reason.TOO_FEW_INSTRUMENTS] * 2
    assert result.n_instruments.tolist() == [0, 0]
    empty = getattr(batched, name)(*(np.zeros((0, 3)) for _ in range(4)))
    assert empty.reason.shape == (0,)


def test_bootstrap_kernels_equal_their_masked_forms():
    rng = np.random.default_rng(8)
    theta = rng.standard_normal((3000, 31)) * rng.uniform(0.5, 2.0, (3000, 1))
    w = rng.random(31)
    valid = np.ones((1, 1, 31), dtype=bool)
    fast = batched._weighted_median_draws(theta, w)
    masked = batched._weighted_median_rows(theta[None], w[None, None, :], valid)[0]
    np.testing.assert_allclose(fast, masked, rtol=1e-13, atol=1e-15)
    for j in (3, 25, 27, 31):  # bit for bit, whatever J (numpy's power loop for J^(1/5))
        rows = np.ascontiguousarray(theta[:, :j])
        dense, (low, high) = batched._dense_bandwidth(rows, 0.7)
        assert np.array_equal(dense, batched._bandwidth(rows, np.ones(rows.shape, dtype=bool), 0.7))
        assert np.array_equal(low, rows.min(axis=1)) and np.array_equal(high, rows.max(axis=1))


def test_bootstrap_draw_chunks_do_not_change_results(monkeypatch):
    offsets, *columns = _regions(6, [9, 30])
    *padded, mask = ragged_to_padded(offsets, *columns)
    whole = batched.weighted_median(*padded, mask, iterations=700)
    monkeypatch.setattr(batched, "_DRAW_CHUNK", 64)
    _assert_same(batched.weighted_median(*padded, mask, iterations=700), whole)
