"""Replicate groups: splitting, exact merging (Chan's parallel formula), predictor subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from engine_support import L, write_spec

from dmr_ray.engine import merge_groups, split_replicates
from dmr_ray.errors import InputError
from dmr_ray.ism import ISMResult
from dmr_ray.models import load_model_spec
from dmr_ray.uncertainty import EnsemblePredictor, ReplicateSubset, SinglePredictor, build_predictor


def test_split_replicates_into_contiguous_near_equal_ranges() -> None:
    assert split_replicates(5, 2) == [(0, 1, 2), (3, 4)]
    assert split_replicates(3, 3) == [(0,), (1,), (2,)]
    assert split_replicates(4, 1) == [(0, 1, 2, 3)]
    for bad in (0, 6, True, 2.0):
        with pytest.raises(InputError, match="replicate groups"):
            split_replicates(5, bad)


def _result(diffs: np.ndarray, refs: np.ndarray, ddof: int) -> ISMResult:
    """The ISMResult of replicate-wise differences ``[R, n, L, 3, T]`` and references ``[R, n, T]``."""
    return ISMResult(
        beta=diffs.mean(0).astype(np.float32),
        se=diffs.std(0, ddof=ddof).astype(np.float32),
        ref_mean=refs.mean(0).astype(np.float32),
        ref_se=refs.std(0, ddof=ddof).astype(np.float32),
        task_names=("a", "b"),
        n_replicates=len(diffs),
        replicate_kind="single",
        ddof=ddof,
    )


@pytest.mark.parametrize("ddof", [0, 1])
def test_merged_groups_equal_all_replicates_together(ddof: int) -> None:
    rng = np.random.default_rng(1)
    diffs = rng.normal(0.3, 2.0, size=(7, 3, 5, 3, 2))
    refs = rng.normal(5.0, 1.0, size=(7, 3, 2))
    groups = split_replicates(7, 3)
    parts = [_result(diffs[list(g)], refs[list(g)], 0) for g in groups]
    merged = merge_groups(parts, ddof, "ensemble")
    direct = _result(diffs, refs, ddof)
    for name in ("beta", "se", "ref_mean", "ref_se"):
        np.testing.assert_allclose(getattr(merged, name), getattr(direct, name), rtol=1e-6, atol=1e-6, err_msg=name)
    assert (merged.n_replicates, merged.ddof, merged.replicate_kind) == (7, ddof, "ensemble")


def test_merge_needs_ddof_zero_groups_and_a_valid_ddof() -> None:
    diffs, refs = np.ones((2, 1, 4, 3, 2)), np.ones((2, 1, 2))
    with pytest.raises(InputError, match="ddof=0"):
        merge_groups([_result(diffs, refs, 1)], 0, "ensemble")
    with pytest.raises(InputError, match=r"ddof: must be in \[0, 2\)"):
        merge_groups([_result(diffs, refs, 0)], 2, "ensemble")


def _onehot(n: int = 4) -> torch.Tensor:
    tokens = torch.randint(0, 4, (n, L), generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.one_hot(tokens, 4).transpose(1, 2).float()


def test_ensemble_subsets_load_only_their_members(tmp_path: Path) -> None:
    spec = load_model_spec(write_spec(tmp_path, members=4))
    full = build_predictor(spec, device="cpu").predict_all(_onehot())
    pair = build_predictor(spec, device="cpu", replicates=[1, 3])
    assert isinstance(pair, EnsemblePredictor) and pair.n_replicates == 2
    torch.testing.assert_close(pair.predict_all(_onehot()), full[[1, 3]], rtol=0, atol=0)
    one = build_predictor(spec, device="cpu", replicates=[2])
    assert isinstance(one, SinglePredictor)
    torch.testing.assert_close(one.predict(_onehot(), 0), full[2], rtol=0, atol=0)


def test_mc_dropout_pass_ranges_reproduce_the_same_passes(tmp_path: Path) -> None:
    spec = load_model_spec(write_spec(tmp_path, kind="mc_dropout", members=5, dropout=0.3, conv_dropout=0.2))
    full = build_predictor(spec, device="cpu").predict_all(_onehot())
    tail = build_predictor(spec, device="cpu", replicates=(3, 4))
    assert isinstance(tail, ReplicateSubset)
    assert (tail.kind, tail.n_replicates, tail.indices) == ("mc_dropout", 2, (3, 4))
    torch.testing.assert_close(tail.predict_all(_onehot()), full[3:], rtol=0, atol=0)
    assert not torch.equal(full[3], full[4])


@pytest.mark.parametrize("bad", [[], [2, 1], [0, 0], [5], [-1]])
def test_replicate_subsets_are_validated(tmp_path: Path, bad: list[int]) -> None:
    spec = load_model_spec(write_spec(tmp_path, kind="mc_dropout", members=5, dropout=0.3))
    with pytest.raises(InputError, match="replicates: expected distinct ascending indices"):
        build_predictor(spec, device="cpu", replicates=bad)
