"""The fast ISM path against the exact path: built-in architectures, ensembles, MC dropout,
sequence ends, N positions, sub-batching, path choice and fallbacks."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from dmr_ray.errors import InputError
from dmr_ray.ism import fast as ism_fast
from dmr_ray.ism import fast_ism_eligibility, saturation_mutagenesis
from dmr_ray.ism import rules as ism_rules
from dmr_ray.ism import windows as ism_windows
from dmr_ray.models.architectures import bpnet, deepsea, small_cnn
from dmr_ray.models.heads import OutputSelector, OutputSpec
from dmr_ray.uncertainty import EnsemblePredictor, MCDropoutPredictor
from dmr_ray.uncertainty.predictors import SinglePredictor, as_predictor

L = 40


def assert_matches_exact(fast, exact, rtol: float = 1e-5):
    """Fast equals exact within ``rtol`` relative to each task's output scale (NaNs alike)."""
    scale = np.maximum(np.abs(exact.ref_mean).max(axis=0), np.nanmax(np.abs(exact.beta), axis=(0, 1, 2)))
    for name in ("beta", "se"):
        a, b = getattr(fast, name), getattr(exact, name)
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale.max(), err_msg=name)
    np.testing.assert_allclose(fast.ref_mean, exact.ref_mean, rtol=rtol, atol=rtol * scale.max())
    np.testing.assert_allclose(fast.ref_se, exact.ref_se, rtol=rtol, atol=rtol * scale.max())


def both(predictor, tokens, **kwargs):
    """(fast, exact) results of the same call, checking that the fast path is taken."""
    predictor = as_predictor(predictor)
    with torch.inference_mode():
        assert ism_fast.fast_path(predictor, torch.from_numpy(tokens), True, None) is not None
    return (
        saturation_mutagenesis(predictor, tokens, fast=True, **kwargs),
        saturation_mutagenesis(predictor, tokens, fast=False, **kwargs),
    )


def _tokens(n: int = 3, length: int = L, seed: int = 0) -> np.ndarray:
    tokens = np.random.default_rng(seed).integers(0, 4, size=(n, length)).astype(np.uint8)
    tokens[-1, [0, 7, 8, length - 1]] = 4
    return tokens


def _randomize_norms(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def _cnn(seed: int, length: int = L, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return _randomize_norms(
        small_cnn(length=length, filters=4, kernel=3, n_conv=3, n_dense=2, hidden=8, n_tasks=2, **kwargs)
    )


def _bpnet(seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    options = {"filters": 4, "n_layers": 3, "n_tasks": 2, "strands": 2, "profile_kernel": 5, "trim": 3, **kwargs}
    return bpnet(**options).eval()


def _deepsea(seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return deepsea(length=L, channels=(4, 5, 6), kernel=3, pool=2, hidden=7, n_tasks=3, **kwargs).eval()


BPNET_TASKS = OutputSelector(
    [
        OutputSpec(name="counts0", select="counts", index=0, reduce="mean"),
        OutputSpec(name="profile1", select="profile", index=1, reduce="sum"),
        OutputSpec(name="profile0_max", select="profile", index=0, reduce="max"),
    ]
)
BPNET_LINEAR_TASKS = OutputSelector(
    [
        OutputSpec(name="counts0", select="counts", index=0, reduce="mean"),
        OutputSpec(name="counts1", select="counts", index=[1], reduce="sum"),
        OutputSpec(name="profile1", select="profile", index=1, reduce="sum"),
        OutputSpec(name="profile", select="profile", reduce="mean"),
    ]
)


def folded(predictor, tokens) -> list[bool]:
    """Whether each network's linear tail is folded."""
    with torch.inference_mode():
        path = ism_fast.fast_path(as_predictor(predictor), torch.from_numpy(tokens), True, None)
    return [runner.tail is not None for runner in path.runners.values()]


def test_small_cnn_ensemble():
    predictor = EnsemblePredictor([_cnn(i) for i in range(3)])
    assert_matches_exact(*both(predictor, _tokens()))


@pytest.mark.parametrize("trim", [0, 3, 12])
@pytest.mark.parametrize("tasks", [BPNET_TASKS, BPNET_LINEAR_TASKS], ids=["spliced", "folded"])
def test_bpnet_ensemble_profile_and_count_heads_with_cropping(trim, tasks):
    predictor = EnsemblePredictor([_bpnet(i, trim=trim) for i in range(2)], tasks, input_length=L)
    tokens = _tokens()
    assert folded(predictor, tokens) == [tasks is BPNET_LINEAR_TASKS] * 2
    assert_matches_exact(*both(predictor, tokens))


@pytest.mark.parametrize("tasks", [BPNET_TASKS, BPNET_LINEAR_TASKS], ids=["spliced", "folded"])
def test_bpnet_receptive_field_shorter_than_the_sequence(tasks):
    predictor = EnsemblePredictor([_bpnet(i, n_layers=2, trim=2) for i in range(2)], tasks, input_length=3 * L)
    assert_matches_exact(*both(predictor, _tokens(2, 3 * L), batch_size=30))


def test_deepsea_ensemble_with_pooling():
    predictor = EnsemblePredictor([_deepsea(i) for i in range(2)])
    assert_matches_exact(*both(predictor, _tokens()))


def _wide_deepsea(seed: int, **kwargs) -> nn.Module:
    """A reduced-width DeepSEA with the built-in's kernels and pools (blocks of 16 positions)."""
    torch.manual_seed(seed)
    return deepsea(length=8 * L, channels=(6, 8, 10), hidden=9, n_tasks=4, **kwargs).eval()


def test_deepsea_windows_are_evenly_spaced_blocks(monkeypatch):
    """Every window of the built-in layout is a strided view: a gather would fail the run."""
    predictor = as_predictor(EnsemblePredictor([_wide_deepsea(i) for i in range(2)]))
    tokens = _tokens(2, 8 * L, seed=3)
    with torch.inference_mode():
        path = ism_fast.fast_path(predictor, torch.from_numpy(tokens), True, None)
    plans = [runner.plan for runner in path.runners.values()]
    assert [p.group for p in plans] == [16, 16]
    assert all(w.step is not None for p in plans for w in p.windows.values())

    def no_gathers(*args):
        raise AssertionError("gathered windows")

    monkeypatch.setattr(ism_windows, "gather_windows", no_gathers)
    assert_matches_exact(*both(predictor, tokens))


def test_deepsea_mc_dropout_blocks_with_n_positions():
    """Runs cut by N and by sub-batches of any size are padded to whole blocks."""
    tokens = _tokens(2, 8 * L, seed=4)
    tokens[0, [5, 17, 18, 100]] = 4
    tokens[1, -9:] = 4
    predictor = MCDropoutPredictor(_wide_deepsea(8), passes=3, seed=2, input_length=8 * L)
    fast, exact = both(predictor, tokens)
    assert_matches_exact(fast, exact)
    assert np.isnan(fast.beta[tokens == 4]).all() and not np.isnan(fast.beta[tokens != 4]).any()
    for batch_size in (1, 50):
        assert_matches_exact(saturation_mutagenesis(predictor, tokens, fast=True, batch_size=batch_size), exact)


def _bpnet_counts_with_dropout(seed: int) -> nn.Module:
    """BPNet with element-wise dropout between its residual layers, returning its counts."""
    model = _bpnet(seed)
    model.body.insert(2, nn.Dropout(0.3))
    return nn.Sequential(model, _Counts())


class _Counts(nn.Module):
    """BPNet's counts as a ``[batch, tasks]`` tensor (a bare-module output)."""

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return out["counts"].flatten(1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _cnn(5, dropout=0.3, conv_dropout=0.3),
        lambda: _deepsea(6),
        lambda: _bpnet_counts_with_dropout(7),
    ],
    ids=["small_cnn", "deepsea", "bpnet"],
)
def test_mc_dropout_keeps_the_shared_masks(make):
    predictor = MCDropoutPredictor(make(), passes=4, seed=3, input_length=L)
    fast, exact = both(predictor, _tokens(seed=1))
    assert_matches_exact(fast, exact)
    assert (fast.se[np.isfinite(fast.se)] > 0).mean() > 0.5


@pytest.mark.parametrize("tasks", [BPNET_TASKS, BPNET_LINEAR_TASKS], ids=["spliced", "folded"])
@pytest.mark.parametrize("batch_size", [1, 7, 10_000, None])
def test_sub_batch_size_does_not_change_results(batch_size, tasks):
    predictor = EnsemblePredictor([_bpnet(i) for i in range(2)], tasks, input_length=L)
    tokens = _tokens()
    reference = saturation_mutagenesis(predictor, tokens, fast=True, batch_size=3)
    assert_matches_exact(saturation_mutagenesis(predictor, tokens, fast=True, batch_size=batch_size), reference)


def test_sequence_ends_and_n_positions():
    tokens = _tokens(4, seed=2)
    tokens[0, :3] = 4
    tokens[1, -3:] = 4
    tokens[2, ::2] = 4
    predictor = EnsemblePredictor([_bpnet(i, trim=0) for i in range(2)], BPNET_TASKS, input_length=L)
    fast, exact = both(predictor, tokens, ddof=1)
    assert_matches_exact(fast, exact)
    assert np.isnan(fast.beta[tokens == 4]).all() and not np.isnan(fast.beta[tokens != 4]).any()


def test_all_n_reference():
    tokens = _tokens(2)
    tokens[0] = 4
    assert_matches_exact(*both(EnsemblePredictor([_cnn(0), _cnn(1)]), tokens))


def test_eligibility_is_declared_for_built_ins_and_inferred_for_sequentials():
    declared = fast_ism_eligibility(_cnn(0))
    assert declared.eligible and declared.declared and declared.reason == ""
    inferred = fast_ism_eligibility(
        nn.Sequential(nn.Conv1d(4, 3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2)), length=L
    )
    assert inferred.eligible and not inferred.declared


class _ChannelSum(nn.Module):
    """Sums over the channel axis first: no layer works on a window of positions."""

    def forward(self, x):
        return x.sum(dim=1).mean(dim=1, keepdim=True) * torch.ones(1, 2)


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def forward(self, x):
        return x.mean(dim=(1, 2))[:, None] if x.sum() > 0 else x.sum(dim=(1, 2))[:, None]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (_ChannelSum(), "no layer can be recomputed on a window"),
        (_Branchy(), "torch.fx cannot trace it"),
    ],
)
def test_ineligible_models_fall_back_with_one_warning(model, reason, caplog):
    tokens = _tokens(1, L)
    assert reason in fast_ism_eligibility(model, L).reason
    exact = saturation_mutagenesis(model, tokens)
    with caplog.at_level(logging.DEBUG, logger="dmr_ray.ism"):
        fast = saturation_mutagenesis(model, tokens, fast=True)
    warnings = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(warnings) == 1 and reason in warnings[0].getMessage() and "exact path" in warnings[0].getMessage()
    np.testing.assert_array_equal(fast.beta, exact.beta)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dmr_ray.ism"):
        saturation_mutagenesis(model, tokens, fast="auto")
    assert not caplog.records


def test_auto_takes_the_fast_path_where_it_saves_work(caplog, monkeypatch):
    runs = []
    original = ism_fast.FastISM.run
    monkeypatch.setattr(ism_fast.FastISM, "run", lambda self, *a: runs.append(1) or original(self, *a))
    saturation_mutagenesis(_cnn(0, length=200), _tokens(1, 200), fast="auto")
    assert runs == [1]
    whole = nn.Sequential(
        nn.Conv1d(4, 2, 39, padding=19),
        nn.ReLU(),
        nn.Conv1d(2, 2, 39, padding=19),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
    )
    with caplog.at_level(logging.DEBUG, logger="dmr_ray.ism"):
        saturation_mutagenesis(whole, _tokens(1), fast="auto")
    assert runs == [1] and "full forward's work" in caplog.text


def _dropout_bpnet(**kwargs) -> nn.Module:
    """The benchmark's BPNet with dropout after its stem (for MC dropout)."""
    model = bpnet(n_layers=8, **kwargs)
    model.body.insert(1, nn.Dropout(0.1))
    return model.eval()


_ARCHITECTURES = {
    "small_cnn": (lambda: small_cnn(length=1000, dropout=0.1, conv_dropout=0.1).eval(), None),
    "deepsea": (lambda: deepsea().eval(), None),
    "bpnet_linear": (_dropout_bpnet, BPNET_LINEAR_TASKS),
    "bpnet_max": (_dropout_bpnet, BPNET_TASKS),
}


def _replicates(kind: str, make, tasks, length: int):
    torch.manual_seed(0)
    if kind == "ensemble":
        return EnsemblePredictor([make() for _ in range(2)], tasks, input_length=length)
    if kind == "mc_dropout":
        return MCDropoutPredictor(make(), tasks, passes=2, input_length=length)
    return SinglePredictor(make(), tasks, input_length=length)


@pytest.mark.parametrize("kind", ["single", "ensemble", "mc_dropout"])
@pytest.mark.parametrize("architecture", list(_ARCHITECTURES))
def test_auto_chooses_by_the_cost_model(architecture, kind):
    """At 1 kb every built-in does a fraction of a full forward's work per mutant on the fast
    path (DeepSEA ~0.12, BPNet with a folded tail ~0.2, with a max task ~0.49), so "auto" takes it."""
    make, tasks = _ARCHITECTURES[architecture]
    predictor = _replicates(kind, make, tasks, 1000)
    with torch.inference_mode():
        path = ism_fast.plan_fast_path(predictor, 1000, "auto", None)
    assert path is not None and path.work_ratio < ism_fast.AUTO_MAX_WORK_RATIO


@pytest.mark.parametrize("kind", ["single", "ensemble", "mc_dropout"])
def test_auto_takes_the_exact_path_when_windows_cover_the_sequence(kind):
    """BPNet's 1 kb receptive field on 100 bp: every window is the whole sequence."""
    predictor = _replicates(kind, _dropout_bpnet, BPNET_TASKS, 100)
    with torch.inference_mode():
        assert ism_fast.plan_fast_path(predictor, 100, "auto", None) is None
        assert ism_fast.plan_fast_path(predictor, 100, True, None).work_ratio >= ism_fast.AUTO_MAX_WORK_RATIO


def test_undeclared_models_are_checked_against_the_exact_path(caplog, monkeypatch):
    model = nn.Sequential(nn.Conv1d(4, 3, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * L, 2))
    tokens = _tokens(2)
    assert_matches_exact(*both(model, tokens))
    monkeypatch.setattr(ism_rules.Relu, "__call__", lambda self, diffs, batch, cache: diffs[0] * 0)
    with caplog.at_level(logging.WARNING, logger="dmr_ray.ism"):
        fallback = saturation_mutagenesis(model, tokens, fast=True)
    assert "failed its check" in caplog.text
    np.testing.assert_array_equal(fallback.beta, saturation_mutagenesis(model, tokens).beta)


def _linear_tail_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(4, 8, 5, padding="same"),
        nn.ReLU(),
        nn.Conv1d(8, 6, 9, padding="same", dilation=2),
        nn.AvgPool1d(2),
        nn.Dropout(0.2),
        nn.Flatten(),
        nn.Linear(6 * (L // 2), 3),
    ).eval()


def test_linear_tail_of_a_user_model_is_folded():
    predictor = EnsemblePredictor([_linear_tail_model(i) for i in range(2)])
    tokens = _tokens()
    assert folded(predictor, tokens) == [True, True]
    assert_matches_exact(*both(predictor, tokens))


@pytest.mark.parametrize("tasks", [BPNET_TASKS, BPNET_LINEAR_TASKS], ids=["spliced", "folded"])
def test_bfloat16_differences_stay_close_to_float32(tasks):
    predictor = EnsemblePredictor([_bpnet(i) for i in range(2)], tasks, input_length=L)
    tokens = _tokens()
    low = saturation_mutagenesis(predictor, tokens, fast=True, precision="bfloat16")
    full = saturation_mutagenesis(predictor, tokens, fast=True)
    assert_matches_exact(low, full, rtol=3e-2)
    assert not np.array_equal(low.beta, full.beta)


def test_precision_is_checked():
    with pytest.raises(InputError, match="precision: must be one of"):
        saturation_mutagenesis(_cnn(0), _tokens(1), fast=True, precision="int8")
    with pytest.raises(InputError, match="needs the fast path"):
        saturation_mutagenesis(_cnn(0), _tokens(1), precision="bfloat16")


def test_a_plan_cache_builds_each_plan_once_and_still_checks_every_call(caplog, monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(4, 3, 5, padding=2), nn.ReLU(), nn.Conv1d(3, 2, 3, padding=1), nn.AdaptiveAvgPool1d(1), nn.Flatten()
    ).eval()  # undeclared: checked before use
    predictor = as_predictor(model)
    chunks = [_tokens(2, L, seed) for seed in range(3)]
    uncached = [saturation_mutagenesis(predictor, tokens, fast=True) for tokens in chunks]
    builds, checks = [], []
    build, check = ism_fast.plan_fast_path, ism_fast.FastISM.matches_exact
    monkeypatch.setattr(ism_fast, "plan_fast_path", lambda *a: builds.append(a[1:]) or build(*a))
    monkeypatch.setattr(ism_fast.FastISM, "matches_exact", lambda self, t: checks.append(1) or check(self, t))
    plans = ism_fast.FastPlanCache()
    for tokens, expected in zip(chunks, uncached, strict=True):
        cached = saturation_mutagenesis(predictor, tokens, fast=True, plans=plans)
        np.testing.assert_array_equal(cached.beta, expected.beta)
        np.testing.assert_array_equal(cached.se, expected.se)
    assert builds == [(L, True, None)] and len(checks) == 3
    saturation_mutagenesis(predictor, _tokens(2, 2 * L), fast=True, plans=plans)
    saturation_mutagenesis(predictor, chunks[0], fast=True, precision="bfloat16", plans=plans)
    assert builds[1:] == [(2 * L, True, None), (L, True, torch.bfloat16)]

    monkeypatch.setattr(ism_rules.Relu, "__call__", lambda self, diffs, batch, cache: diffs[0] * 0)
    with caplog.at_level(logging.WARNING, logger="dmr_ray.ism"):
        fallback = saturation_mutagenesis(predictor, chunks[1], fast=True, plans=plans)
    assert "failed its check" in caplog.text and len(builds) == 3
    np.testing.assert_array_equal(fallback.beta, saturation_mutagenesis(predictor, chunks[1]).beta)
