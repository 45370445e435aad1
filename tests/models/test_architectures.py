"""Built-in architectures: shapes, the body/head contract, layer lists."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmr_ray.models import resolve_entrypoint
from dmr_ray.models.architectures import BPNet, DeepSEA, SmallCNN, bpnet, deepsea, small_cnn

X = torch.zeros(3, 4, 40)
X[:, 0] = 1


@pytest.mark.parametrize(
    ("factory", "kwargs", "shapes"),
    [
        (small_cnn, {"length": 40, "filters": 3, "n_tasks": 5}, {None: (3, 5)}),
        (
            bpnet,
            {"filters": 4, "n_layers": 3, "n_tasks": 2, "strands": 2, "trim": 6},
            {"profile": (3, 2, 2, 28), "counts": (3, 2, 2)},
        ),
        (
            deepsea,
            {"length": 40, "channels": (4, 6, 8), "kernel": 3, "pool": 2, "hidden": 7, "n_tasks": 3},
            {None: (3, 3)},
        ),
    ],
)
def test_forward_shapes(factory, kwargs, shapes):
    model = factory(**kwargs).eval()
    out = model(X)
    outs = out if isinstance(out, dict) else {None: out}
    assert {k: tuple(v.shape) for k, v in outs.items()} == shapes
    assert model.fast_ism_layout == "body_head"
    assert isinstance(model.body, nn.Sequential)
    head_of_body = model.head(model.body(X))
    for key, value in outs.items():
        assert torch.equal(head_of_body if key is None else head_of_body[key], value)


def test_entrypoints_resolve_to_the_classes():
    for name, cls in (("small_cnn", SmallCNN), ("bpnet", BPNet), ("deepsea", DeepSEA)):
        assert resolve_entrypoint(f"dmr_ray.models.architectures:{name}") is cls


def test_small_cnn_matches_counts_regressor_layout():
    model = small_cnn(dropout=0.5, conv_dropout=0.1)
    assert model.input_length == 100
    assert [type(m).__name__ for m in model.body[0]] == ["Conv1d", "BatchNorm1d", "ReLU", "Dropout"]
    assert [type(m).__name__ for m in model.head] == [
        "Flatten",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert model.head[1].in_features == 15 * (100 - 3 * 6)
    assert not any(isinstance(m, nn.Dropout) for m in small_cnn().modules())


def test_bpnet_dilations_and_defaults():
    model = bpnet()
    assert [block.conv.dilation[0] for block in model.body[1:]] == [2**i for i in range(1, 10)]
    assert model.body[0][0].kernel_size == (21,) and model.head.profile.kernel_size == (75,)
    out = model(torch.zeros(1, 4, 1000))
    assert out["profile"].shape == (1, 4, 2, 1000)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="too short"):
        small_cnn(length=10, kernel=7)
    with pytest.raises(ValueError, match="odd"):
        bpnet(profile_kernel=74)
    with pytest.raises(ValueError, match="dropout has 2 values for 3 blocks"):
        deepsea(dropout=(0.1, 0.2))
