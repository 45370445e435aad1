"""The fast ISM path on random models: convolutions (dilated, strided, padded), pooling, batch
norm, activations, residual blocks, cropping and three kinds of head; ensembles and MC dropout."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from test_fast import assert_matches_exact, both
from torch import nn

from dmr_ray.ism import fast_ism_eligibility
from dmr_ray.uncertainty import EnsemblePredictor, MCDropoutPredictor

L = 48
ACTIVATIONS = [nn.ReLU, nn.GELU, nn.Tanh, nn.ELU, lambda: nn.LeakyReLU(0.1), nn.Softplus, nn.Sigmoid, nn.SiLU]


class _Residual(nn.Module):
    """``x + act(conv(x))`` with a "same" convolution (traced through, as a user module would be)."""

    def __init__(self, channels: int, kernel: int, dilation: int, act: nn.Module):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding="same", dilation=dilation)
        self.act = act

    def forward(self, x):
        return x + self.act(self.conv(x))


class _Crop(nn.Module):
    """Drops ``trim`` positions at both ends."""

    def __init__(self, trim: int):
        super().__init__()
        self.trim = trim

    def forward(self, x):
        return x[..., self.trim : x.shape[-1] - self.trim]


class _MeanHead(nn.Module):
    """Mean over the length, then a linear layer."""

    def __init__(self, channels: int):
        super().__init__()
        self.linear = nn.Linear(channels, 2)

    def forward(self, x):
        return self.linear(torch.relu(x).mean(dim=-1))


def random_model(structure: int, weights: int, dropout: bool = False) -> nn.Module:
    """A random 1-D CNN: ``structure`` seeds its layers, ``weights`` its parameters."""
    rng = random.Random(structure)
    body: list[nn.Module] = []
    channels = 4
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(["conv", "conv", "pool", "residual"])
        act = rng.choice(ACTIVATIONS)()
        if kind == "conv":
            out = rng.randint(2, 5)
            kernel, dilation = rng.choice([1, 2, 3, 5]), rng.choice([1, 1, 2, 3])
            padding = rng.choice(["same", "valid", 1, 2])
            stride = 1 if padding == "same" else rng.choice([1, 1, 2])
            body.append(nn.Conv1d(channels, out, kernel, stride, padding, dilation))
            channels = out
            if rng.random() < 0.5:
                body.append(nn.BatchNorm1d(channels))
            body.append(act)
        elif kind == "pool":
            kernel = rng.choice([2, 3])
            stride, padding = rng.choice([1, 2, 3]), rng.choice([0, 1])
            pool = nn.MaxPool1d if rng.random() < 0.5 else nn.AvgPool1d
            body.append(pool(kernel, stride, padding))
        else:
            body.append(_Residual(channels, rng.choice([3, 5]), rng.choice([1, 2, 4]), act))
        if dropout and rng.random() < 0.7:
            body.append(nn.Dropout(0.3))
    if dropout and not any(isinstance(layer, nn.Dropout) for layer in body):
        body.append(nn.Dropout(0.3))
    head_kind = rng.choice(["flatten", "flatten", "mean", "pool"])
    if head_kind != "mean" and rng.random() < 0.5:
        body.append(_Crop(rng.randint(1, 3)))
    torch.manual_seed(weights)
    body_net = nn.Sequential(*body)
    length = body_net(torch.zeros(1, 4, L)).shape[-1]
    if head_kind == "flatten":
        head = [nn.Flatten(), nn.Linear(channels * length, 6), nn.ReLU(), nn.Linear(6, 2)]
    elif head_kind == "pool":
        head = [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, 2)]
    else:
        head = [_MeanHead(channels)]
    model = nn.Sequential(body_net, *head)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _tokens(n: int, seed: int) -> np.ndarray:
    tokens = np.random.default_rng(seed).integers(0, 4, size=(n, L)).astype(np.uint8)
    tokens[0, [1, L // 2]] = 4
    return tokens


@pytest.mark.parametrize("seed", range(12))
def test_random_model_ensemble(seed):
    members = [random_model(seed, 100 * seed + i) for i in range(2)]
    assert fast_ism_eligibility(members[0], L).eligible
    assert_matches_exact(*both(EnsemblePredictor(members), _tokens(2, seed), batch_size=2 + seed))


@pytest.mark.parametrize("seed", range(12, 18))
def test_random_model_mc_dropout(seed):
    predictor = MCDropoutPredictor(random_model(seed, seed, dropout=True), passes=3, seed=seed)
    assert_matches_exact(*both(predictor, _tokens(2, seed)))
