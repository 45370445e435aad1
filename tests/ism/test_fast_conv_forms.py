"""The fast path's other forms of a convolution against the exact path: input position by
input position after pooling (``ScatterConv``), tap by tap with few output channels, and only
the output channels the tasks read (``dmr_ray.ism.channels``)."""

from __future__ import annotations

import numpy as np
import torch
from test_fast import assert_matches_exact, both
from torch import nn

from dmr_ray.ism import fast as ism_fast
from dmr_ray.ism import rules as ism_rules
from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models.architectures import bpnet, deepsea
from dmr_ray.models.heads import OutputSelector, OutputSpec
from dmr_ray.uncertainty import EnsemblePredictor, MCDropoutPredictor
from dmr_ray.uncertainty.predictors import as_predictor


def _tokens(n: int, length: int, seed: int) -> np.ndarray:
    tokens = np.random.default_rng(seed).integers(0, 4, size=(n, length)).astype(np.uint8)
    tokens[-1, [0, 9, 10, length - 1]] = 4
    return tokens


def _convs(predictor, tokens) -> list[ism_rules.Conv]:
    """The convolution rules of the first network's plan (prepared)."""
    with torch.inference_mode():
        path = ism_fast.fast_path(as_predictor(predictor), torch.from_numpy(tokens), True, None)
    runner = next(iter(path.runners.values()))
    return [s.rule for s in runner.plan.steps if isinstance(s.rule, ism_rules.Conv)]


def _wide_deepsea(seed: int) -> nn.Module:
    """The built-in DeepSEA's kernels and pools (blocks of 16) with 32 channels: its second
    and third convolutions read 3 and 4 changed positions for output windows of 13 and 11."""
    torch.manual_seed(seed)
    return deepsea(length=400, channels=(32, 32, 8), hidden=6, n_tasks=3).eval()


def test_deepsea_convolutions_after_pooling_run_position_by_position():
    tokens = _tokens(2, 400, seed=5)
    predictor = EnsemblePredictor([_wide_deepsea(i) for i in range(2)])
    scatter = [c.scatter for c in _convs(predictor, tokens)]
    assert scatter[0] is None and [s.width for s in scatter[1:]] == [3, 4]  # type: ignore[union-attr]
    fast, exact = both(predictor, tokens)
    assert_matches_exact(fast, exact)
    assert_matches_exact(saturation_mutagenesis(predictor, tokens, fast=True, batch_size=50), exact)
    low = saturation_mutagenesis(predictor, tokens, fast=True, precision="bfloat16")
    assert_matches_exact(low, fast, rtol=3e-2)
    assert not np.array_equal(low.beta, fast.beta)


def test_deepsea_mc_dropout_position_by_position():
    torch.manual_seed(1)
    model = deepsea(length=400, channels=(32, 32, 8), hidden=6, n_tasks=3, dropout=0.2)
    predictor = MCDropoutPredictor(model, passes=2, seed=4, input_length=400)
    assert_matches_exact(*both(predictor, _tokens(1, 400, seed=6)))


PROFILE_ONE = OutputSelector(
    [
        OutputSpec(name="counts0", select="counts", index=0, reduce="mean"),
        OutputSpec(name="profile1_max", select="profile", index=1, reduce="max"),
    ]
)


def _bpnet(seed: int) -> nn.Module:
    """48 filters (the dilation-32 layer reads 81 changed positions for 145 outputs), a k17
    profile convolution (tap by tap) of 3 tasks x 2 strands."""
    torch.manual_seed(seed)
    return bpnet(filters=48, n_layers=5, n_tasks=3, strands=2, profile_kernel=17, trim=5).eval()


def test_bpnet_profile_task_computes_its_channels_only():
    tokens = _tokens(1, 200, seed=7)
    predictor = EnsemblePredictor([_bpnet(i) for i in range(2)], PROFILE_ONE, input_length=200)
    convs = _convs(predictor, tokens)
    profile = convs[-1]
    assert profile.channels is not None and profile.channels.tolist() == [2, 3]
    assert profile.taps is not None and profile.taps.shape == (2 * 17, 48)
    assert [c.scatter is not None for c in convs[1:-1]] == [False, False, False, False, True]
    assert_matches_exact(*both(predictor, tokens))


def test_tap_by_tap_with_dilation_and_valid_padding():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv1d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(6, 3, 17, dilation=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
    ).eval()
    tokens = _tokens(2, 60, seed=8)
    assert _convs(model, tokens)[1].taps is not None
    assert_matches_exact(*both(model, tokens))
