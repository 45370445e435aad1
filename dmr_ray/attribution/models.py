"""The classifiers of the attribution study (attribution.md §2), as torch modules on z-scored genes.

Both output logits; the softmax is applied only when attributing.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError


def logistic_regression(n_genes: int, n_classes: int, *, dropout: float = 0.2) -> nn.Sequential:
    """``Dropout(dropout) → Linear(n_genes, n_classes)``: input ``[batch, n_genes]``, logits ``[batch, n_classes]``."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(n_genes, n_classes))


def mlp(n_genes: int, n_classes: int, *, hidden: int = 20) -> nn.Sequential:
    """``Linear(n_genes, hidden) → BatchNorm1d → ReLU → Linear(hidden, n_classes)``, no dropout."""
    return nn.Sequential(nn.Linear(n_genes, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


MODELS: dict[str, Callable[[int, int], nn.Sequential]] = {"lr": logistic_regression, "mlp": mlp}
"""Model factories by name."""


def build_model(name: str, n_genes: int, n_classes: int) -> nn.Sequential:
    """The classifier called ``name`` (``lr`` or ``mlp``) for ``n_genes`` inputs and ``n_classes`` outputs.

    Raises
    ------
    InputError
        For an unknown name or sizes that are not integers >= 1 (>= 2 classes).
    """
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if not is_int(n_genes) or n_genes < 1:
        raise InputError(f"n_genes must be an integer >= 1, got {n_genes!r}")
    if not is_int(n_classes) or n_classes < 2:
        raise InputError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    return MODELS[name](n_genes, n_classes)
