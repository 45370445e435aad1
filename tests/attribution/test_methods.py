"""Integrated gradients, saliency and SmoothGrad through Captum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dmr_ray.attribution.methods import integrated_gradients, saliency, scaled_output, smoothgrad
from dmr_ray.attribution.metrics import feature_agreement
from dmr_ray.attribution.models import build_model
from dmr_ray.errors import InputError


@pytest.fixture(scope="module")
def linear():
    """A linear 40-gene, 3-class model with known weights, and inputs."""
    torch.manual_seed(0)
    model = nn.Linear(40, 3)
    x = np.random.default_rng(1).normal(size=(12, 40)).astype(np.float32)
    return model.eval(), x


@pytest.fixture(scope="module")
def mlp():
    with torch.random.fork_rng():
        torch.manual_seed(2)
        model = build_model("mlp", 30, 4)
    x = 2 * np.random.default_rng(3).normal(size=(16, 30)).astype(np.float32)
    return model.eval(), x


def test_ig_of_a_linear_logit_is_weight_times_input(linear):
    model, x = linear
    target = np.arange(12) % 3
    baseline = np.full(40, 0.5, dtype=np.float32)
    ig = integrated_gradients(model, x, target, baseline=baseline, output="logit", tolerance=1e-4)
    w = model.weight.detach().numpy()[target]
    np.testing.assert_allclose(ig.values, w * (x - baseline), rtol=1e-4, atol=1e-5)
    assert ig.n_steps == 50 and ig.converged
    # the exact ranking: truth = each sample's top 5 of w · (x − b) is recovered perfectly
    exact = w * (x - baseline)
    truth_rows = np.zeros_like(exact, dtype=bool)
    np.put_along_axis(truth_rows, np.argsort(-exact, axis=1)[:, :5], True, axis=1)
    fa = feature_agreement(ig.values, np.arange(12), truth_rows)
    assert fa.local_mean == 1.0 and fa.global_mean == 1.0
    sal = saliency(model, x, target, output="logit")
    np.testing.assert_allclose(sal.values, np.abs(w), rtol=1e-6)


def test_ig_completeness_within_tolerance(mlp):
    model, x = mlp
    target = np.arange(16) % 4
    ig = integrated_gradients(model, x, target, tolerance=2e-3, start_steps=2)
    forward = scaled_output(model, "probability")
    with torch.no_grad():
        fx = forward(torch.as_tensor(x)).numpy()[np.arange(16), target]
        fb = forward(torch.zeros(1, 30)).numpy()[0, target]
    gap = ig.values.sum(axis=1) - (fx - fb)  # computed here, not taken from Captum
    assert ig.converged and np.abs(gap).max() <= 2e-3 + 1e-5
    np.testing.assert_allclose(ig.delta, gap, atol=1e-5)
    np.testing.assert_allclose(ig.baseline_output, fb, rtol=1e-5)
    assert ig.n_steps > 2  # 2 Gauss-Legendre points were not enough: the steps were raised


def test_ig_reports_a_missed_tolerance(mlp):
    model, x = mlp
    target = np.zeros(16, dtype=int)
    ig = integrated_gradients(model, x, target, output="logit", tolerance=1e-9, start_steps=2, max_steps=8)
    assert not ig.converged and ig.n_steps == 8 and np.abs(ig.delta).max() > 1e-9


def test_smoothgrad_noise_is_relative_and_seeded(mlp):
    model, x = mlp
    target = np.zeros(16, dtype=int)
    plain = saliency(model, x, target)
    noiseless = smoothgrad(model, x, target, noise=0.0, n_samples=3, seed=0)
    np.testing.assert_allclose(noiseless.values, plain.values, rtol=1e-5, atol=1e-8)
    a, b = (smoothgrad(model, x, target, noise=0.2, seed=5) for _ in range(2))
    np.testing.assert_array_equal(a.values, b.values)
    wide = smoothgrad(model, x, target, noise=0.2, scale=10.0, seed=5)
    # the same seed and a 10× spread: the noise, so the averaged map, differs more from the plain one
    assert np.abs(wide.values - plain.values).mean() > np.abs(a.values - plain.values).mean()


def test_bad_input(linear):
    model, x = linear
    with pytest.raises(InputError, match="output scale"):
        saliency(model, x, np.zeros(12, dtype=int), output="odds")
    with pytest.raises(InputError, match="baseline"):
        integrated_gradients(model, x, np.zeros(12, dtype=int), baseline=np.zeros(3))
