"""Training the attribution study's classifiers and measuring held-out accuracy (attribution.md §2).

Recipe of the reference: cross-entropy on logits, SGD (lr 0.1, momentum 0.9, weight decay
1e-4), 25 epochs of mini-batches of 32, learning rate ×0.1 at epochs 12 and 22. Initialisation,
dropout masks and batch order all come from ``seed`` (the reference left them unseeded), drawn
inside :func:`torch.random.fork_rng` so the caller's global torch stream is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.attribution.data import Split, Standardizer, fit_standardizer, train_test_split
from dmr_ray.attribution.models import build_model
from dmr_ray.errors import InputError


@dataclass(frozen=True)
class TrainingOptions:
    """The SGD recipe.

    Attributes
    ----------
    epochs, batch_size
        Passes over the training set and mini-batch size (the last batch may be smaller; a
        batch of one sample is dropped, since BatchNorm cannot train on it).
    lr, momentum, weight_decay
        SGD settings.
    milestones, gamma
        Epochs at which the learning rate is multiplied by ``gamma``.
    threads
        Torch intra-op threads while training (restored afterwards): batches of 32 gain
        nothing from more than one.
    """

    epochs: int = 25
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = (12, 22)
    gamma: float = 0.1
    threads: int = 1


@dataclass(frozen=True)
class Classifier:
    """A trained classifier with its preprocessing and held-out performance.

    Attributes
    ----------
    model
        The torch module (in eval mode), mapping z-scored genes ``[batch, n_features]`` to logits.
    name
        ``lr`` or ``mlp``.
    standardizer
        The z-score fitted on the training samples.
    split
        The sample indices it was trained and tested on.
    train_accuracy, test_accuracy, test_balanced_accuracy
        Fractions in [0, 1]; balanced accuracy is the mean per-class recall over the classes
        present in the test set.
    """

    model: nn.Module
    name: str
    standardizer: Standardizer
    split: Split
    train_accuracy: float
    test_accuracy: float
    test_balanced_accuracy: float


def train_model(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    options: TrainingOptions = TrainingOptions(),  # noqa: B008 (frozen, so a shared default is safe)
    seed: int,
) -> nn.Module:
    """Train classifier ``name`` on z-scored ``x [n, n_features]`` (float32) and labels ``y [n]``.

    Returns
    -------
    torch.nn.Module
        In eval mode.

    Raises
    ------
    InputError
        For mismatched shapes, labels outside ``0 … n_classes − 1`` or a non-integer seed.
    """
    if not is_int(seed):
        raise InputError(f"seed must be an integer, got {seed!r}")
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if x_t.ndim != 2 or y_t.shape != (x_t.shape[0],):
        raise InputError(f"x must be [n, n_features] and y [n], got {tuple(x_t.shape)} and {tuple(y_t.shape)}")
    if y_t.numel() and not 0 <= int(y_t.min()) <= int(y_t.max()) < n_classes:
        raise InputError(f"labels must lie in 0 … {n_classes - 1}")
    threads = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(name, x_t.shape[1], n_classes)
            _sgd(model, x_t, y_t, options)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _sgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, options: TrainingOptions) -> None:
    """Run the recipe's epochs on ``model`` in place, drawing batch order from torch's global stream."""
    optimiser = torch.optim.SGD(
        model.parameters(), lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay
    )
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, list(options.milestones), options.gamma)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(options.epochs):
        for batch in torch.randperm(x.shape[0]).split(options.batch_size):
            if batch.numel() < 2:
                continue
            optimiser.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimiser.step()
        schedule.step()


def predict(model: nn.Module, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """``int64 [n]``: the arg-max class of ``model`` on z-scored ``x [n, n_features]``."""
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    with torch.no_grad():
        return torch.cat([model(chunk).argmax(dim=1) for chunk in x_t.split(batch_size)]).numpy()


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def fit_classifier(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int | None = None,
    test_fraction: float = 0.4,
    split_seed: int = 43,
    seed: int,
    drop_constant: bool = False,
    options: TrainingOptions = TrainingOptions(),  # noqa: B008 (frozen, so a shared default is safe)
) -> Classifier:
    """Split, z-score with training statistics, train and evaluate on the held-out samples.

    Parameters
    ----------
    name
        ``lr`` or ``mlp``.
    x, y
        Expression ``[n_samples, n_genes]`` (e.g. CPM) and labels ``[n_samples]``.
    n_classes
        Number of classes (default ``max(y) + 1``).
    test_fraction, split_seed
        The held-out share and the split's seed (43, the reference's ``random_state``).
    seed
        Seed of initialisation, dropout and batch order.
    drop_constant
        Drop genes with zero training variance instead of leaving them at 0.
    options
        The SGD recipe.
    """
    y = np.asarray(y)
    split = train_test_split(len(y), test_fraction=test_fraction, seed=split_seed)
    x_train = np.asarray(x)[split.train]
    standardizer = fit_standardizer(x_train, drop_constant=drop_constant)
    x_train = standardizer.transform(x_train)
    x_test = standardizer.transform(np.asarray(x)[split.test])
    classes = int(y.max()) + 1 if n_classes is None else n_classes
    model = train_model(name, x_train, y[split.train], classes, options=options, seed=seed)
    predicted = predict(model, x_test)
    return Classifier(
        model=model,
        name=name,
        standardizer=standardizer,
        split=split,
        train_accuracy=float(np.mean(predict(model, x_train) == y[split.train])),
        test_accuracy=float(np.mean(predicted == y[split.test])),
        test_balanced_accuracy=balanced_accuracy(y[split.test], predicted),
    )
