"""SmallCNN's ``heads`` option: the shared layout unchanged, separate towers per task, specs."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from dmr_ray.errors import InputError, ModelSpecError
from dmr_ray.models import load_model_spec
from dmr_ray.models.architectures import TaskTowers, conv_block, dense_stack, small_cnn
from dmr_ray.uncertainty import build_predictor

KWARGS = {"length": 20, "filters": 3, "kernel": 3, "n_conv": 2, "n_dense": 2, "hidden": 5, "n_tasks": 3}
X = torch.nn.functional.one_hot(torch.randint(0, 4, (6, 20), generator=torch.Generator().manual_seed(0)), 4)
X = X.transpose(1, 2).float()


class _SharedReference(nn.Module):
    """SmallCNN as it was built before ``heads`` existed (same layers, same order)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_block(4, 3, 3, batch_norm=True), conv_block(3, 3, 3, batch_norm=True))
        self.head = nn.Sequential(nn.Flatten(), *dense_stack(3 * 16, [5, 5], 3, 0.0))


def test_shared_heads_are_the_layout_of_before():
    torch.manual_seed(4)
    reference = _SharedReference().eval()
    for heads in ({}, {"heads": "shared"}):
        torch.manual_seed(4)
        model = small_cnn(**KWARGS, **heads).eval()
        got, want = model.state_dict(), reference.state_dict()
        assert list(got) == list(want)
        assert list(got)[-2:] == ["head.5.weight", "head.5.bias"]
        for name, tensor in want.items():
            assert torch.equal(got[name], tensor), name
        assert torch.equal(model(X), reference.head(reference.body(X)))


def test_separate_towers_shape_and_body_head_contract():
    torch.manual_seed(0)
    model = small_cnn(**KWARGS, heads="separate").eval()
    assert isinstance(model.head, TaskTowers) and len(model.head.towers) == 3
    out = model(X)
    assert out.shape == (6, 3)
    assert torch.equal(out, model.head(model.body(X)))
    assert model.fast_ism_layout == "body_head"
    for t, tower in enumerate(model.head.towers):
        assert isinstance(tower[0], nn.Flatten) and tower[-1].out_features == 1
        assert torch.equal(out[:, t : t + 1], tower(model.body(X)))


def test_a_task_does_not_read_another_tasks_tower():
    torch.manual_seed(1)
    model = small_cnn(**KWARGS, heads="separate", dropout=0.2).eval()
    before = model(X)
    with torch.no_grad():
        for p in model.head.towers[1].parameters():
            p.add_(torch.randn_like(p))
    after = model(X)
    assert torch.equal(after[:, [0, 2]], before[:, [0, 2]])
    assert not torch.allclose(after[:, 1], before[:, 1])
    model.train()
    model(X)[:, 0].sum().backward()
    assert all(p.grad is None or not p.grad.any() for t in (1, 2) for p in model.head.towers[t].parameters())
    assert all(p.grad is not None and p.grad.any() for p in model.head.towers[0].parameters())


@pytest.mark.parametrize("heads", ["towers", "Separate", None])
def test_bad_heads_name_the_option(heads):
    with pytest.raises(InputError, match=r"^heads: must be one of \['shared', 'separate'\]"):
        small_cnn(**KWARGS, heads=heads)


def test_separate_heads_need_a_task():
    with pytest.raises(InputError, match="n_tasks"):
        small_cnn(**{**KWARGS, "n_tasks": 0}, heads="separate")


def test_spec_with_separate_heads_loads_and_predicts(tmp_path, spec_doc):
    doc = spec_doc(2, heads="separate")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    spec = load_model_spec(tmp_path / "spec.yaml")
    assert spec.kwargs["heads"] == "separate"
    members = spec.build_members()
    torch.manual_seed(1)
    expected = small_cnn(**doc["kwargs"]).state_dict()
    assert list(members[1].state_dict()) == list(expected)
    assert "head.towers.3.3.weight" in expected
    for name, tensor in members[1].state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    predictor = build_predictor(spec, device="cpu")
    onehot = torch.zeros(5, 4, 16)
    onehot[:, 2] = 1
    with torch.inference_mode():
        got = predictor.predict_all(onehot)
        raw = torch.stack([m(onehot) for m in members])
    assert got.shape == (2, 5, 2)
    torch.testing.assert_close(got[..., 0], raw[..., 0])
    torch.testing.assert_close(got[..., 1], raw[..., 1:3].mean(-1))


def test_spec_errors_name_heads_and_refuse_weights_of_the_other_layout(tmp_path, spec_doc):
    doc = spec_doc(2, heads="separate")
    with pytest.raises(ModelSpecError, match="kwargs: .* heads: must be one of"):
        _load(tmp_path, {**doc, "kwargs": {**doc["kwargs"], "heads": "both"}})
    with pytest.raises(ModelSpecError, match=r"weights\[0\]"):
        _load(tmp_path, {**doc, "kwargs": {**doc["kwargs"], "heads": "shared"}})


def _load(tmp_path, doc):
    """Load ``doc`` as a YAML spec next to its weight files (checked)."""
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_model_spec(path)
