"""Training of small sequence-to-counts regressors and their ensembles (deep_mr.md §8).

The original ``CountsRegressor`` recipe: MSE on Anscombe labels, ``Adam(amsgrad=True)``,
batch 1000, a random 15 % validation split and early stopping with patience 10; ensemble
member i is trained from seed i. Here training restores the weights of the best validation
epoch and is deterministic on CPU for a given seed: the split, the batch order and the
initialisation in :func:`train_ensemble` come from that seed, and the global torch RNG state of
the caller is left as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.alphabet import tokens_to_onehot
from dmr_ray.errors import ConfigError, InputError


@dataclass(frozen=True)
class TrainingHistory:
    """What happened while training one model.

    Attributes
    ----------
    train_loss
        Mean training MSE of each epoch run.
    val_loss
        Validation MSE after each epoch run (empty when ``val_fraction == 0``).
    best_epoch
        0-based epoch whose weights the model holds on return (the last one without validation).
    stopped_early
        Whether patience ran out before ``epochs``.
    n_train, n_val
        Sizes of the training and validation splits.
    seconds
        Wall-clock training time.
    """

    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    best_epoch: int
    stopped_early: bool
    n_train: int
    n_val: int
    seconds: float


def train_regressor(
    model: nn.Module,
    tokens: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 1000,
    lr: float = 1e-3,
    val_fraction: float = 0.15,
    patience: int = 10,
    seed: int,
    device: str | torch.device = "cpu",
) -> TrainingHistory:
    """Train ``model`` in place to regress ``labels`` on one-hot ``tokens`` with MSE.

    Parameters
    ----------
    model
        Maps ``float32 [batch, 4, L]`` one-hot input to ``[batch, T]``.
    tokens
        ``uint8 [n, L]`` tokens (A=0 C=1 G=2 T=3 N=4).
    labels
        ``[n, T]`` finite regression targets.
    epochs
        Maximum number of passes over the training split.
    batch_size
        Mini-batch size.
    lr
        Adam learning rate (``amsgrad=True``).
    val_fraction
        Fraction of rows held out for early stopping, in [0, 1); 0 trains on everything
        for exactly ``epochs`` epochs.
    patience
        Stop after this many epochs without a lower validation loss.
    seed
        Seeds the split, the batch order and torch's RNG (dropout, if any) during training.
    device
        Torch device to train on; the model is left there, in eval mode.

    Returns
    -------
    TrainingHistory

    Raises
    ------
    InputError
        For tokens or labels of the wrong shape, a token outside 0..4, non-finite labels,
        too few rows for the split, or model outputs whose shape differs from the labels'.
    ConfigError
        For a non-positive ``epochs``, ``batch_size``, ``lr`` or ``patience``, a
        ``val_fraction`` outside [0, 1), or training that diverged (no finite validation loss).
    """
    _check_settings(epochs=epochs, batch_size=batch_size, patience=patience, lr=lr, val_fraction=val_fraction)
    x, y = _tensors(tokens, labels, device)
    n = x.shape[0]
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n - n_val < 1:
        raise InputError(f"{n} rows leave nothing to train on after a {val_fraction} validation split")
    started = time.perf_counter()
    model.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=generator)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        optimiser = torch.optim.Adam(model.parameters(), lr=lr, amsgrad=True)
        train_loss: list[float] = []
        val_loss: list[float] = []
        best = (float("inf"), -1, _snapshot(model))
        for epoch in range(epochs):
            order = train_idx[torch.randperm(train_idx.numel(), generator=generator)]
            train_loss.append(_train_epoch(model, optimiser, x, y, order, batch_size))
            if not n_val:
                continue
            val_loss.append(_evaluate(model, x[val_idx], y[val_idx], batch_size))
            if val_loss[-1] < best[0]:
                best = (val_loss[-1], epoch, _snapshot(model))
            elif epoch - best[1] >= patience:
                break
    if n_val and best[1] < 0:
        raise ConfigError(f"validation loss was never finite ({val_loss[-1]}); training diverged, try a lower lr")
    if n_val:
        model.load_state_dict(best[2])
    model.eval()
    return TrainingHistory(
        train_loss=tuple(train_loss),
        val_loss=tuple(val_loss),
        best_epoch=best[1] if n_val else len(train_loss) - 1,
        stopped_early=len(train_loss) < epochs,
        n_train=n - n_val,
        n_val=n_val,
        seconds=time.perf_counter() - started,
    )


def train_ensemble(
    factory: Callable[[int], nn.Module],
    tokens: np.ndarray,
    labels: np.ndarray,
    n_members: int,
    *,
    seed: int,
    **kwargs,
) -> list[nn.Module]:
    """Train ``n_members`` models, member i built and trained from seed ``seed + i``.

    Parameters
    ----------
    factory
        Called as ``factory(seed + i)`` with torch's RNG seeded to ``seed + i`` (so default
        initialisation is reproducible); returns a fresh, untrained model.
    tokens, labels
        As for :func:`train_regressor`.
    n_members
        Ensemble size (≥ 1).
    seed
        Base seed.
    **kwargs
        Passed to :func:`train_regressor` (``epochs`` is required there).

    Returns
    -------
    list of torch.nn.Module
        The trained members in eval mode, each holding its best validation weights.

    Raises
    ------
    ConfigError
        For ``n_members < 1``, and as :func:`train_regressor`.
    InputError
        As :func:`train_regressor`.
    """
    if not is_int(n_members) or n_members < 1:
        raise ConfigError(f"n_members must be a positive integer, got {n_members!r}")
    members = []
    for i in range(n_members):
        member_seed = seed + i
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member_seed)
            model = factory(member_seed)
        train_regressor(model, tokens, labels, seed=member_seed, **kwargs)
        members.append(model)
    return members


def _check_settings(*, epochs: int, batch_size: int, patience: int, lr: float, val_fraction: float) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if not is_int(value) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(lr, Real) or not 0 < float(lr) < float("inf"):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if not isinstance(val_fraction, Real) or not 0 <= float(val_fraction) < 1:
        raise ConfigError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")


def _tensors(tokens: np.ndarray, labels: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and convert to one-hot ``float32 [n, 4, L]`` and ``float32 [n, T]`` on ``device``."""
    tokens = np.asarray(tokens)
    labels = np.asarray(labels)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise InputError(f"tokens must be an integer array [n, L], got {tokens.dtype} of shape {tokens.shape}")
    if labels.ndim != 2 or labels.shape[0] != tokens.shape[0]:
        raise InputError(f"labels must be [n, tasks] with n = {tokens.shape[0]} rows, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)):
        raise InputError("labels must be finite numbers")
    onehot = np.ascontiguousarray(tokens_to_onehot(tokens))
    x = torch.from_numpy(onehot).to(device)
    y = torch.from_numpy(labels.astype(np.float32)).to(device)
    return x, y


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _predict(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if out.shape != y.shape:
        raise InputError(f"model output shape {tuple(out.shape)} differs from the label shape {tuple(y.shape)}")
    return out


def _train_epoch(model, optimiser, x, y, order: torch.Tensor, batch_size: int) -> float:
    """One pass over ``order``; returns the row-weighted mean training MSE."""
    model.train()
    total = 0.0
    for start in range(0, order.numel(), batch_size):
        idx = order[start : start + batch_size]
        optimiser.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(_predict(model, x[idx], y[idx]), y[idx])
        loss.backward()
        optimiser.step()
        total += loss.item() * idx.numel()
    return total / order.numel()


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Mean MSE over all rows in eval mode."""
    model.eval()
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        total += nn.functional.mse_loss(_predict(model, xb, yb), yb, reduction="sum").item()
    return total / y.numel()
