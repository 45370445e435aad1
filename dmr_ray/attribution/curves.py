"""Prediction-gap curves: the mean prediction drop after masking the first ``c`` features of an ordering.

The prediction gaps of :mod:`dmr_ray.attribution.gaps` are areas under these curves (with
``c`` every ``step`` features); the benchmark's figure draws the curves themselves at a few
log-spaced counts, for the orderings of the gaps: important first (local and global), unimportant
first (local and global), and random. The drop of a sample is its clipped relative drop
``max(0, (f_y(x) − f_y(x̃)) / f_y(x))`` on the softmax, as in the gaps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.attribution.methods import scaled_output
from dmr_ray.attribution.metrics import top_k
from dmr_ray.errors import InputError

ORDERINGS = ("important_local", "unimportant_local", "important_global", "unimportant_global", "random")
"""The orderings a :class:`GapCurves` holds."""


@dataclass(frozen=True)
class GapCurves:
    """Mean clipped relative prediction drop per masked-feature count.

    Attributes
    ----------
    counts
        ``int64 [points]`` features masked, increasing, the last one all of them.
    drops
        Per ordering of :data:`ORDERINGS`, ``float64 [points]``: the drop averaged within each
        class, then across classes.
    """

    counts: np.ndarray
    drops: dict[str, np.ndarray]


def curve_counts(n_features: int, points: int) -> np.ndarray:
    """``int64 [<= points]``: distinct, log-spaced counts from 1 to ``n_features``."""
    if not is_int(points) or points < 2:
        raise InputError(f"points must be an integer >= 2, got {points!r}")
    return np.unique(np.geomspace(1, n_features, points).round().astype(np.int64))


def gap_curves(
    model: nn.Module,
    x: np.ndarray,
    target: np.ndarray,
    attributions: np.ndarray,
    *,
    points: int = 20,
    baseline: np.ndarray | None = None,
    seed: int | np.random.Generator,
) -> GapCurves:
    """The gap curves of ``attributions [n, G]`` of ``x [n, G]`` (targets ``[n]``).

    Parameters
    ----------
    model
        Classifier in eval mode returning logits.
    points
        At most this many masked-feature counts (:func:`curve_counts`).
    baseline
        ``[G]`` replacement values; default zeros (the training mean of z-scored data).
    seed
        Breaks ties between equal attributions and draws each sample's random order.
    """
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    attributions = np.asarray(attributions)
    if attributions.shape != tuple(x_t.shape) or x_t.ndim != 2:
        raise InputError(f"attributions {attributions.shape} and x {tuple(x_t.shape)} must be the same [n, G]")
    n, g = x_t.shape
    rng = np.random.default_rng(seed)
    tie_order = rng.permutation(g)
    norms = np.linalg.norm(attributions, axis=1, keepdims=True)
    summed = (attributions / np.where(norms > 0, norms, 1.0)).sum(axis=0, keepdims=True)
    orders = {
        "important_local": top_k(attributions, g, tie_order),
        "unimportant_local": top_k(-attributions, g, tie_order),
        "important_global": np.broadcast_to(top_k(summed, g, tie_order), (n, g)),
        "unimportant_global": np.broadcast_to(top_k(-summed, g, tie_order), (n, g)),
        "random": rng.permuted(np.broadcast_to(np.arange(g), (n, g)), axis=1),
    }
    counts = curve_counts(g, points)
    base = torch.zeros(g) if baseline is None else torch.as_tensor(np.asarray(baseline, dtype=np.float32))
    prob = scaled_output(model, "probability")
    target_t = torch.as_tensor(np.asarray(target, dtype=np.int64))[:, None]
    groups = np.asarray(target)
    rows = torch.arange(n)[:, None]
    drops = {}
    with torch.no_grad():
        full = prob(x_t).gather(1, target_t)[:, 0].double()
        for name, order in orders.items():
            order_t = torch.tensor(np.asarray(order), dtype=torch.int64)
            curve = []
            for c in counts:
                masked = x_t.clone()
                columns = order_t[:, :c]
                masked[rows, columns] = base[columns]
                drop = ((full - prob(masked).gather(1, target_t)[:, 0].double()) / full).clamp(min=0).numpy()
                curve.append(np.mean([drop[groups == k].mean() for k in np.unique(groups)]))
            drops[name] = np.asarray(curve)
    return GapCurves(counts=counts, drops=drops)
