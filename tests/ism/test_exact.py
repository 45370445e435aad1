"""Exact saturation mutagenesis against a brute-force numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from dmr_ray.alphabet import tokens_to_onehot
from dmr_ray.errors import ChunkFailedError, InputError
from dmr_ray.ism import NonFinitePredictionError, alt_alleles, saturation_mutagenesis
from dmr_ray.models import load_model_spec, save_weights
from dmr_ray.models.architectures import bpnet, small_cnn
from dmr_ray.uncertainty import EnsemblePredictor, MCDropoutPredictor, build_predictor

L = 12
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _cnn(seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    model = small_cnn(length=L, filters=4, kernel=3, n_conv=2, n_dense=2, hidden=8, n_tasks=2, **kwargs)
    for block in model.body:
        block[1].running_mean.uniform_(-0.5, 0.5)
        block[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def _tokens(n: int = 3, seed: int = 0) -> np.ndarray:
    tokens = np.random.default_rng(seed).integers(0, 4, size=(n, L)).astype(np.uint8)
    tokens[-1, [2, 7]] = 4
    return tokens


def _brute_force(predictor, tokens, ddof=0):
    """Every mutant built in numpy, predicted one at a time, differenced and reduced per replicate."""
    n, length = tokens.shape
    n_rep = predictor.n_replicates
    refs = np.stack([predictor.predict(torch.from_numpy(tokens_to_onehot(tokens)), r).numpy() for r in range(n_rep)])
    beta = np.full((n, length, 3, refs.shape[2]), np.nan, dtype=np.float32)
    se = beta.copy()
    alts = alt_alleles(tokens)
    for i in range(n):
        for pos in range(length):
            for slot in range(3):
                if tokens[i, pos] == 4:
                    continue
                mutant = tokens[i].copy()
                mutant[pos] = alts[i, pos, slot]
                x = torch.from_numpy(tokens_to_onehot(mutant[None]))
                diffs = np.stack([predictor.predict(x, r).numpy()[0] - refs[r, i] for r in range(n_rep)])
                beta[i, pos, slot] = diffs.mean(0)
                se[i, pos, slot] = diffs.std(0, ddof=ddof)
    return beta, se, refs


def _assert_matches(result, predictor, tokens, ddof=0):
    beta, se, refs = _brute_force(predictor, tokens, ddof)
    np.testing.assert_allclose(result.beta, beta, **TOL)
    np.testing.assert_allclose(result.se, se, **TOL)
    np.testing.assert_allclose(result.ref_mean, refs.mean(0), **TOL)
    np.testing.assert_allclose(result.ref_se, refs.std(0, ddof=ddof), **TOL)


def test_ensemble_matches_brute_force():
    predictor = EnsemblePredictor([_cnn(i) for i in range(3)])
    tokens = _tokens()
    result = saturation_mutagenesis(predictor, tokens)
    assert result.beta.shape == (3, L, 3, 2) and result.beta.dtype == np.float32
    assert result.ref_mean.shape == (3, 2) and result.n_replicates == 3 and result.replicate_kind == "ensemble"
    _assert_matches(result, predictor, tokens)


def test_mc_dropout_matches_brute_force_one_mutant_at_a_time():
    predictor = MCDropoutPredictor(_cnn(0, dropout=0.3, conv_dropout=0.2), passes=4, seed=5)
    tokens = _tokens(seed=1)
    result = saturation_mutagenesis(predictor, torch.from_numpy(tokens), batch_size=10)
    _assert_matches(result, predictor, tokens)
    assert (result.se[np.isfinite(result.se)] > 0).mean() > 0.9


def test_n_positions_are_skipped_and_the_rest_mutated():
    result = saturation_mutagenesis(EnsemblePredictor([_cnn(0), _cnn(1)]), _tokens())
    nan = np.isnan(result.beta).all(axis=(2, 3))
    assert nan.tolist() == (_tokens() == 4).tolist()
    assert not np.isnan(result.se[~nan]).any()


def test_ddof():
    predictor = EnsemblePredictor([_cnn(i) for i in range(4)])
    tokens = _tokens(2)
    pop = saturation_mutagenesis(predictor, tokens, ddof=0)
    sample = saturation_mutagenesis(predictor, tokens, ddof=1)
    np.testing.assert_allclose(sample.se, pop.se * np.sqrt(4 / 3), rtol=1e-5)
    np.testing.assert_allclose(sample.ref_se, pop.ref_se * np.sqrt(4 / 3), rtol=1e-5)
    _assert_matches(sample, predictor, tokens, ddof=1)
    with pytest.raises(InputError, match=r"ddof: must be an integer in \[0, 4\)"):
        saturation_mutagenesis(predictor, tokens, ddof=4)


@pytest.mark.parametrize("kind", ["ensemble", "mc_dropout"])
def test_sub_batch_size_does_not_change_results(kind):
    if kind == "ensemble":
        predictor = EnsemblePredictor([_cnn(0), _cnn(1)])
    else:
        predictor = MCDropoutPredictor(_cnn(2, dropout=0.4), passes=3, seed=1)
    tokens = _tokens()
    results = [saturation_mutagenesis(predictor, tokens, batch_size=b) for b in (None, 1, 7, 10_000)]
    for other in results[1:]:
        np.testing.assert_allclose(other.beta, results[0].beta, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(other.se, results[0].se, rtol=1e-5, atol=1e-6)
    tiny_budget = saturation_mutagenesis(predictor, tokens, memory_budget=1)
    np.testing.assert_allclose(tiny_budget.beta, results[0].beta, rtol=1e-5, atol=1e-6)


def test_shared_masks_pair_reference_and_mutants():
    model = _cnn(3, dropout=0.5)
    shared = MCDropoutPredictor(model, passes=16, seed=0)
    other = MCDropoutPredictor(model, passes=16, seed=1)
    tokens = _tokens(2)
    paired_se = saturation_mutagenesis(shared, tokens).se
    refs = shared.predict_all(torch.from_numpy(tokens_to_onehot(tokens))).numpy()
    alts = alt_alleles(tokens)
    valid = np.argwhere(tokens != 4)
    mutants = np.repeat(tokens[valid[:, 0]], 3, axis=0)
    rows = np.arange(len(mutants))
    mutants[rows, np.repeat(valid[:, 1], 3)] = alts[valid[:, 0], valid[:, 1]].reshape(-1)
    unpaired = (
        other.predict_all(torch.from_numpy(tokens_to_onehot(mutants))).numpy() - refs[:, np.repeat(valid[:, 0], 3)]
    )
    unpaired_se = unpaired.std(axis=0)
    assert np.nanmean(paired_se) < 0.5 * unpaired_se.mean()


def test_bpnet_ensemble_end_to_end_with_output_selection(tmp_path):
    kwargs = {"filters": 4, "n_layers": 2, "n_tasks": 3, "strands": 2, "profile_kernel": 5, "trim": 2}
    for i in range(2):
        torch.manual_seed(i)
        save_weights(bpnet(**kwargs), tmp_path / f"bp{i}.safetensors")
    doc = {
        "entrypoint": "dmr_ray.models.architectures:bpnet",
        "kwargs": kwargs,
        "weights": ["bp0.safetensors", "bp1.safetensors"],
        "input_length": L,
        "outputs": [
            {"name": "Oct4", "select": "counts", "index": 0, "reduce": "mean"},
            {"name": "Sox2_profile", "select": "profile", "index": 1, "reduce": "sum"},
        ],
        "replicates": {"kind": "ensemble"},
    }
    (tmp_path / "bpnet.yaml").write_text(yaml.safe_dump(doc))
    predictor = build_predictor(load_model_spec(tmp_path / "bpnet.yaml"), device="cpu")
    tokens = _tokens(2)
    result = saturation_mutagenesis(predictor, tokens, batch_size=16, device="cpu")
    assert result.task_names == ("Oct4", "Sox2_profile") and result.beta.shape == (2, L, 3, 2)
    _assert_matches(result, predictor, tokens)
    x = torch.from_numpy(tokens_to_onehot(tokens))
    raw = predictor.networks[1](x)
    torch.testing.assert_close(
        predictor.predict(x, 1), torch.stack([raw["counts"][:, 0].mean(1), raw["profile"][:, 1].sum((1, 2))], 1)
    )


def test_plain_module_is_one_replicate():
    model = _cnn(4)
    tokens = _tokens(2)
    result = saturation_mutagenesis(model, tokens)
    assert result.n_replicates == 1 and result.task_names is None
    assert np.all(result.se[np.isfinite(result.se)] == 0) and np.all(result.ref_se == 0)
    expected = model(torch.from_numpy(tokens_to_onehot(tokens))).detach().numpy()
    np.testing.assert_allclose(result.ref_mean, expected, **TOL)


class _LogA(nn.Module):
    """log(number of A): -inf when a sequence has no A."""

    def forward(self, x):
        return torch.log(x[:, 0].sum(dim=1, keepdim=True))


def test_non_finite_predictions_name_the_sequence():
    tokens = np.array([[0, 0, 1, 2], [1, 0, 2, 3]], dtype=np.uint8)
    with pytest.raises(NonFinitePredictionError, match=r"sequence 1: non-finite prediction for a mutant at position 1"):
        saturation_mutagenesis(_LogA(), tokens)
    tokens[0] = 1
    with pytest.raises(InputError, match=r"sequence 0: non-finite prediction for the reference"):
        saturation_mutagenesis(_LogA(), tokens)
    assert issubclass(NonFinitePredictionError, ChunkFailedError)


def test_options_are_checked():
    model, tokens = _cnn(0), _tokens(1)
    with pytest.raises(InputError, match="fast: must be True, False or 'auto'"):
        saturation_mutagenesis(model, tokens, fast="yes")
    with pytest.raises(InputError, match="batch_size: must be a positive integer"):
        saturation_mutagenesis(model, tokens, batch_size=0)
    with pytest.raises(InputError, match="length 11 does not match the model's input_length 12"):
        saturation_mutagenesis(model, tokens[:, 1:])
