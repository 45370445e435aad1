"""Training of regressors and ensembles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dmr_ray.errors import ConfigError, InputError
from dmr_ray.models.training import train_ensemble, train_regressor

LENGTH = 20


def small_cnn(seed: int, length: int = LENGTH, conv: int = 3, dense: int = 2) -> nn.Module:
    """The simulation's ``CountsRegressor`` shape.

    [Conv1d(→15, k7) + BN + ReLU] × conv, [Linear(→30) + ReLU] × dense, Linear(→2).
    """
    layers: list[nn.Module] = []
    channels = 4
    for _ in range(conv):
        layers += [nn.Conv1d(channels, 15, 7), nn.BatchNorm1d(15), nn.ReLU()]
        channels, length = 15, length - 6
    layers.append(nn.Flatten())
    width = 15 * length
    for _ in range(dense):
        layers += [nn.Linear(width, 30), nn.ReLU()]
        width = 30
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


def linear_model(seed: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4 * LENGTH, 2))


def _toy(n: int = 600, seed: int = 0):
    """Labels that are a linear function of the one-hot input plus a little noise."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, size=(n, LENGTH)).astype(np.uint8)
    weights = rng.normal(size=(LENGTH, 4, 2))
    labels = weights[np.arange(LENGTH), tokens].sum(axis=1) + 0.1 * rng.normal(size=(n, 2))
    return tokens, labels.astype(np.float32)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


def test_loss_decreases_on_a_learnable_problem():
    tokens, labels = _toy()
    torch.manual_seed(0)
    model = small_cnn(0)
    history = train_regressor(model, tokens, labels, epochs=15, batch_size=50, lr=3e-3, seed=0)
    assert history.n_train + history.n_val == 600 and history.n_val == 90
    assert history.train_loss[-1] < 0.2 * history.train_loss[0]
    assert min(history.val_loss) < 0.3 * history.val_loss[0]
    assert not model.training


def test_deterministic_given_the_seed():
    tokens, labels = _toy(200)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(99)
        model = small_cnn(0)
        history = train_regressor(model, tokens, labels, epochs=3, batch_size=32, seed=seed)
        runs.append((model, history))
    _assert_same_weights(runs[0][0], runs[1][0])
    assert runs[0][1].train_loss == runs[1][1].train_loss and runs[0][1].val_loss == runs[1][1].val_loss
    assert runs[0][1].train_loss != runs[2][1].train_loss


def test_caller_rng_state_is_left_alone():
    tokens, labels = _toy(100)
    model = linear_model(0)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train_regressor(model, tokens, labels, epochs=2, seed=1)
    torch.testing.assert_close(torch.rand(3), expected)


def test_early_stopping_restores_the_best_weights():
    """Noisy labels overfit: validation loss turns up, training stops and the best epoch returns."""
    tokens, signal = _toy(120, seed=1)
    labels = (signal + 2.0 * np.random.default_rng(2).normal(size=signal.shape)).astype(np.float32)

    def wide() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(4 * LENGTH, 256), nn.ReLU(), nn.Linear(256, 2))

    settings = dict(batch_size=20, lr=1e-2, val_fraction=0.25, patience=3, seed=2)

    torch.manual_seed(0)
    stopped = wide()
    history = train_regressor(stopped, tokens, labels, epochs=50, **settings)
    best = history.best_epoch
    assert 0 < best and history.stopped_early and len(history.val_loss) == best + 1 + 3
    assert history.val_loss[best] == min(history.val_loss)

    torch.manual_seed(0)
    truncated = wide()  # same run, cut at the best epoch: its final weights are the best ones
    short = train_regressor(truncated, tokens, labels, epochs=best + 1, **settings)
    assert short.best_epoch == best and short.val_loss == history.val_loss[: best + 1]
    _assert_same_weights(stopped, truncated)


def test_without_validation_trains_every_epoch():
    tokens, labels = _toy(100)
    history = train_regressor(linear_model(0), tokens, labels, epochs=4, val_fraction=0.0, seed=0)
    assert history.val_loss == () and history.best_epoch == 3 and len(history.train_loss) == 4
    assert history.n_val == 0 and not history.stopped_early


def test_ensemble_members_are_seeded_seed_plus_i():
    tokens, labels = _toy(150)
    seen: list[int] = []

    def factory(seed: int) -> nn.Module:
        seen.append(seed)
        return small_cnn(seed)

    members = train_ensemble(factory, tokens, labels, 2, seed=10, epochs=2, batch_size=50)
    assert seen == [10, 11] and len(members) == 2
    assert not torch.equal(members[0][0].weight, members[1][0].weight)
    (alone,) = train_ensemble(small_cnn, tokens, labels, 1, seed=11, epochs=2, batch_size=50)
    _assert_same_weights(members[1], alone)


def test_divergence_is_reported():
    tokens, labels = _toy(100)
    with pytest.raises(ConfigError, match="diverged"):
        train_regressor(linear_model(0), tokens, labels * 1e20, epochs=2, lr=1e30, seed=0)


@pytest.mark.parametrize(
    ("tokens", "labels", "match"),
    [
        (np.zeros(10, np.uint8), np.zeros((10, 2), np.float32), r"\[n, L\]"),
        (np.zeros((10, LENGTH), np.uint8), np.zeros((9, 2), np.float32), "n = 10"),
        (np.zeros((10, LENGTH), np.uint8), np.zeros(10, np.float32), r"\[n, tasks\]"),
        (np.full((10, LENGTH), 7, np.uint8), np.zeros((10, 2), np.float32), "not a token"),
        (np.zeros((10, LENGTH), np.float32), np.zeros((10, 2), np.float32), "integer"),
        (np.zeros((10, LENGTH), np.uint8), np.full((10, 2), np.nan, np.float32), "finite"),
        (np.zeros((10, LENGTH), np.uint8), np.zeros((10, 3), np.float32), "model output shape"),
        (np.zeros((1, LENGTH), np.uint8), np.zeros((1, 2), np.float32), "nothing to train"),
    ],
)
def test_bad_inputs(tokens, labels, match):
    with pytest.raises(InputError, match=match):
        train_regressor(linear_model(0), tokens, labels, epochs=1, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1, "batch_size": 0}, "batch_size"),
        ({"epochs": 1, "lr": -1.0}, "lr"),
        ({"epochs": 1, "val_fraction": 1.0}, "val_fraction"),
        ({"epochs": 1, "patience": 0}, "patience"),
    ],
)
def test_bad_settings(kwargs, match):
    tokens, labels = _toy(20)
    with pytest.raises(ConfigError, match=match):
        train_regressor(linear_model(0), tokens, labels, seed=0, **kwargs)
    with pytest.raises(ConfigError, match="n_members"):
        train_ensemble(linear_model, tokens, labels, 0, seed=0, epochs=1)
