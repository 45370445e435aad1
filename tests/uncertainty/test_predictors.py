"""Replicate predictors: ensembles, MC dropout with locked masks, plain modules, specs."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from dmr_ray.errors import InputError, ModelSpecError
from dmr_ray.models import load_model_spec, save_weights
from dmr_ray.models.architectures import small_cnn
from dmr_ray.uncertainty import (
    EnsemblePredictor,
    LockedDropout,
    MCDropoutPredictor,
    SinglePredictor,
    as_predictor,
    build_predictor,
    mask_seed,
)

L = 10


def _cnn(seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    model = small_cnn(**{"length": L, "filters": 3, "kernel": 3, "n_conv": 1, "n_dense": 2, "hidden": 6, **kwargs})
    batch_norm = model.body[0][1]
    batch_norm.running_mean.uniform_(-1, 1)
    batch_norm.running_var.uniform_(0.5, 2)
    return model


def _onehot(n: int, seed: int = 0) -> torch.Tensor:
    tokens = torch.randint(0, 4, (n, L), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(tokens, 4).transpose(1, 2).float()


def test_ensemble_replicates_are_members():
    members = [_cnn(i) for i in range(3)]
    predictor = EnsemblePredictor(members)
    x = _onehot(5)
    assert predictor.kind == "ensemble" and predictor.n_replicates == 3 and predictor.input_length == L
    assert predictor.task_names is None and predictor.device == torch.device("cpu")
    all_preds = predictor.predict_all(x)
    assert all_preds.shape == (3, 5, 2) and all_preds.dtype == torch.float32
    for r, member in enumerate(members):
        torch.testing.assert_close(all_preds[r], member(x))
    with pytest.raises(InputError, match="replicate: 3 is out of range for 3 replicates"):
        predictor.predict(x, 3)
    with pytest.raises(ModelSpecError, match="at least 2 members"):
        EnsemblePredictor(members[:1])


def test_mc_dropout_masks_are_locked_per_pass():
    model = _cnn(dropout=0.5, conv_dropout=0.3)
    predictor = MCDropoutPredictor(model, passes=4, seed=7)
    x = _onehot(6)
    full = predictor.predict(x, 2)
    torch.testing.assert_close(predictor.predict(x, 2), full)
    torch.testing.assert_close(torch.cat([predictor.predict(x[i : i + 1], 2) for i in range(6)]), full)
    assert not torch.allclose(predictor.predict(x, 1), full)
    same_rows = predictor.predict(x[:1].expand(4, -1, -1), 0)
    assert torch.equal(same_rows, same_rows[:1].expand(4, -1))
    again = MCDropoutPredictor(model, passes=4, seed=7).predict_all(x)
    torch.testing.assert_close(again, predictor.predict_all(x))
    assert not torch.allclose(MCDropoutPredictor(model, passes=4, seed=8).predict_all(x), again)


def test_mc_dropout_leaves_the_model_alone_and_batch_norm_in_eval():
    model = _cnn(dropout=0.5)
    predictor = MCDropoutPredictor(model, passes=2)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    net = predictor.networks[0]
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())
    assert not any(m.training for m in net.modules())
    x = _onehot(3)
    torch.testing.assert_close(net(x), model.eval()(x))
    with predictor.replicate_network(1) as masked:
        torch.testing.assert_close(masked(x), predictor.predict(x, 1))
    assert all(layer.replicate is None for layer in predictor.dropouts)


def test_locked_masks_follow_the_seed_rule():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.25), nn.Linear(8, 2))
    predictor = MCDropoutPredictor(model, passes=3, seed=11)
    x = torch.randn(4, 5)
    generator = torch.Generator().manual_seed(mask_seed(11, 2, 0))
    mask = (torch.rand((1, 8), generator=generator) >= 0.25).float() / 0.75
    expected = model[2](model[0](x) * mask)
    torch.testing.assert_close(predictor.predict(x, 2), expected)


def test_channel_dropout_masks_whole_channels():
    layer = LockedDropout(0.5, channelwise=True, seed=0, layer=0)
    x = torch.ones(2, 16, 5)
    mask = layer.mask(0, x)
    assert mask.shape == (1, 16, 1) and set(mask.unique().tolist()) <= {0.0, 2.0}
    model = nn.Sequential(nn.Conv1d(4, 16, 3), nn.Dropout1d(0.5), nn.Flatten(), nn.Linear(16 * 8, 1))
    predictor = MCDropoutPredictor(model, passes=2)
    assert predictor.dropouts[0].channelwise and predictor.predict(_onehot(2), 1).shape == (2, 1)


def test_mc_dropout_without_dropout_is_refused():
    with pytest.raises(ModelSpecError, match="no.*dropout|none"):
        MCDropoutPredictor(_cnn(), passes=3)


def test_single_and_as_predictor():
    model = _cnn()
    predictor = as_predictor(model)
    assert isinstance(predictor, SinglePredictor) and predictor.n_replicates == 1 and predictor.kind == "single"
    assert as_predictor(predictor) is predictor
    torch.testing.assert_close(predictor.predict_all(_onehot(2))[0], model(_onehot(2)))
    with pytest.raises(TypeError):
        as_predictor("model.pt")


def test_bare_module_with_dict_output_needs_a_selector():
    class Dict(nn.Module):
        def forward(self, x):
            return {"a": x.sum((1, 2))}

    with pytest.raises(InputError, match="not a \\[batch, tasks\\] tensor"):
        SinglePredictor(Dict()).predict(_onehot(1), 0)


@pytest.mark.parametrize(
    ("replicates", "n_files", "expected"),
    [
        ({"kind": "ensemble"}, 3, (EnsemblePredictor, 3)),
        ({"kind": "mc_dropout", "passes": 5, "seed": 2}, 1, (MCDropoutPredictor, 5)),
        ({"kind": "single"}, 1, (SinglePredictor, 1)),
    ],
)
def test_build_predictor_from_spec(tmp_path, replicates, n_files, expected):
    kwargs = {
        "length": L,
        "filters": 3,
        "kernel": 3,
        "n_conv": 1,
        "n_dense": 1,
        "hidden": 4,
        "n_tasks": 3,
        "dropout": 0.2,
    }
    for i in range(n_files):
        save_weights(_cnn(i, **{k: v for k, v in kwargs.items() if k != "length"}), tmp_path / f"m{i}.safetensors")
    doc = {
        "entrypoint": "dmr_ray.models.architectures:small_cnn",
        "kwargs": kwargs,
        "weights": [f"m{i}.safetensors" for i in range(n_files)],
        "input_length": L,
        "outputs": [{"name": "y", "index": 2}, {"name": "x", "index": 0}],
        "replicates": replicates,
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    predictor = build_predictor(load_model_spec(tmp_path / "spec.yaml"), device="cpu")
    cls, n_rep = expected
    assert isinstance(predictor, cls) and predictor.n_replicates == n_rep
    assert predictor.task_names == ("y", "x") and predictor.input_length == L
    preds = predictor.predict_all(_onehot(4))
    assert preds.shape == (n_rep, 4, 2)
    if cls is EnsemblePredictor:
        raw = _cnn(1, **{k: v for k, v in kwargs.items() if k != "length"}).eval()(_onehot(4))
        torch.testing.assert_close(preds[1], raw[:, [2, 0]])
