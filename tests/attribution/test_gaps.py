"""Prediction gaps on hand-built models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dmr_ray.attribution.gaps import prediction_gap, prediction_gaps
from dmr_ray.attribution.methods import integrated_gradients
from dmr_ray.errors import InputError


def _one_feature_model() -> nn.Linear:
    """Logits (3 x₀, 0): only feature 0 matters."""
    model = nn.Linear(5, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[0, 0] = 3.0
    return model.eval()


def test_prediction_gap_by_hand():
    model, x = _one_feature_model(), np.ones((1, 5), dtype=np.float32)
    drop = (1 / (1 + np.exp(-3)) - 0.5) / (1 / (1 + np.exp(-3)))  # relative drop once x₀ is masked
    # masking 2 features per point: {0, 1} then {0 … 3}, then the last partial point (1 feature)
    first = prediction_gap(model, x, np.array([0]), np.arange(5), step=2)
    assert first[0] == pytest.approx(drop * (2 + 2 + 1) / 5)
    last = prediction_gap(model, x, np.array([0]), np.arange(5)[::-1], step=2)
    assert last[0] == pytest.approx(drop * 1 / 5)  # only the full mask moves the prediction
    with pytest.raises(InputError, match="permutation"):
        prediction_gap(model, x, np.array([0]), np.zeros(5, dtype=int), step=2)


def test_important_first_beats_random_beats_unimportant_first():
    torch.manual_seed(0)
    model = nn.Linear(60, 3).eval()
    x = np.random.default_rng(0).normal(size=(30, 60)).astype(np.float32)
    with torch.no_grad():
        target = model(torch.as_tensor(x)).argmax(dim=1).numpy()  # the predicted class
    attributions = integrated_gradients(model, x, target).values
    gaps = prediction_gaps(model, x, target, attributions, step=5, n_random=5, seed=0)
    assert gaps.mean("pgi_local") > gaps.mean("pgr") > gaps.mean("pgu_local")
    for name in ("pgi_local", "pgu_local", "pgi_global", "pgu_global", "pgr"):
        values = getattr(gaps, name)
        assert values.shape == (30,) and ((values >= 0) & (values <= 1)).all()
    per_class = [gaps.pgr[target == c].mean() for c in np.unique(target)]
    assert gaps.mean("pgr") == pytest.approx(np.mean(per_class))
