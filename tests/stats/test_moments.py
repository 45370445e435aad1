"""Moments merged exactly (stats/moments.py) and the caller's worker threads (stats/workers.py)."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from dmr_ray.errors import InputError
from dmr_ray.stats.moments import Moments, combine, finite_moments, merge
from dmr_ray.stats.workers import run_all, workers_for


def _pieces(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(3.0, 2.0, (int(n), 4)) for n in rng.integers(1, 40, 7)]


def test_combined_chunks_equal_the_pooled_moments() -> None:
    pieces = _pieces(np.random.default_rng(0))
    merged = functools.reduce(combine, (finite_moments(p) for p in pieces))
    pooled = np.concatenate(pieces)
    assert merged.count.tolist() == [pooled.shape[0]] * 4
    np.testing.assert_allclose(merged.mean, pooled.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(merged.variance(1), pooled.var(axis=0, ddof=1), rtol=1e-12)


def test_merge_in_one_pass_equals_the_pairwise_fold() -> None:
    groups = [finite_moments(p) for p in _pieces(np.random.default_rng(1))]
    one_pass, folded = merge(groups), functools.reduce(combine, groups)
    np.testing.assert_array_equal(one_pass.count, folded.count)
    np.testing.assert_allclose(one_pass.mean, folded.mean, rtol=1e-13)
    np.testing.assert_allclose(one_pass.m2, folded.m2, rtol=1e-12)


def test_one_observation_at_a_time_is_welfords_update_on_tensors() -> None:
    values = torch.from_numpy(np.random.default_rng(2).normal(size=(6, 5, 3)))
    zeros = torch.zeros(5, 3, dtype=torch.float64)
    state = Moments(0, zeros, zeros)
    mean = torch.zeros_like(zeros)
    for count, x in enumerate(values, start=1):
        state = combine(state, Moments(1, x, torch.zeros_like(x)))
        mean += (x - mean) / count  # Welford's mean, the same arithmetic
    assert state.count == 6 and torch.equal(state.mean, mean)
    sd, ref_mean = torch.std_mean(values, dim=0, correction=1)
    torch.testing.assert_close(state.variance(1).sqrt(), sd, rtol=1e-12, atol=0)
    torch.testing.assert_close(state.mean, ref_mean, rtol=1e-12, atol=0)


def test_empty_columns_stay_empty() -> None:
    values = np.array([[np.nan, 1.0], [np.inf, 3.0]])
    first = finite_moments(values)
    assert first.count.tolist() == [0.0, 2.0] and first.mean.tolist() == [0.0, 2.0] and first.m2.tolist() == [0.0, 2.0]
    both = combine(first, finite_moments(np.array([[np.nan, 5.0]])))
    assert both.count.tolist() == [0.0, 3.0] and both.mean[0] == 0.0 and both.m2[0] == 0.0
    np.testing.assert_allclose([both.mean[1], both.m2[1]], [3.0, 8.0], rtol=1e-15)


def test_threads_are_a_count_a_caller_owned_executor_or_none() -> None:
    done: list[int] = []
    with ThreadPoolExecutor(2) as pool:
        for threads in (None, 1, 3, pool):
            done.clear()
            with workers_for(threads) as workers:
                run_all(done.append, list(range(50)), workers)
            assert sorted(done) == list(range(50))
        assert pool.submit(int, "7").result() == 7  # still open: the caller owns it
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="threads"), workers_for(bad):  # type: ignore[arg-type]
            pass


def test_an_error_in_a_chunk_is_raised_by_run_all() -> None:
    def run(item: int) -> None:
        if item == 7:
            raise ValueError("chunk 7")

    with workers_for(2) as workers, pytest.raises(ValueError, match="chunk 7"):
        run_all(run, list(range(20)), workers)
