"""Prediction gaps: how much a prediction drops as features are replaced by the baseline (attribution.md §4).

For a sample x of class y and an ordering of the G features, the first ``step · i`` features
(i = 1 … ⌊G / step⌋) are replaced by their baseline values and, as in the reference code
(``XAI_interpret.prediction_gap_with_dataloader``),

    PG(x) = (step / G) Σ_i max(0, (f_y(x) − f_y(x̃_i)) / f_y(x)) + (G mod step) / G · max(0, (f_y(x) − f_y(b)) / f_y(x)),

with f the softmax probability: 0 when nothing moves the prediction, 1 when the first features
already take it all. PGI orders features by descending attribution, PGU by ascending, PGR by a
random order (the mean over ``n_random`` orders). Local orderings are per sample, the global
one sorts the sum over the samples of their attributions divided by their L2 norms (the
reference's post-processing and ``"sum"`` type; an all-zero row adds nothing).

Pass correctly classified samples only, as the reference does; :meth:`PredictionGaps.mean`
averages within each class and then across classes.
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

GAPS = ("pgi_local", "pgu_local", "pgi_global", "pgu_global", "pgr")
"""The prediction gaps :func:`prediction_gaps` measures."""


@dataclass(frozen=True)
class PredictionGaps:
    """Per-sample prediction gaps (fractions in [0, 1]).

    Attributes
    ----------
    pgi_local, pgu_local, pgi_global, pgu_global, pgr
        ``float64 [n]`` each.
    groups
        ``int64 [n]`` class of each sample, for :meth:`mean`.
    """

    pgi_local: np.ndarray
    pgu_local: np.ndarray
    pgi_global: np.ndarray
    pgu_global: np.ndarray
    pgr: np.ndarray
    groups: np.ndarray

    def mean(self, gap: str) -> float:
        """Gap ``gap`` (one of :data:`GAPS`) averaged within each class, then across classes."""
        if gap not in GAPS:
            raise InputError(f"unknown prediction gap {gap!r}; choose one of {', '.join(GAPS)}")
        values = getattr(self, gap)
        return float(np.mean([values[self.groups == g].mean() for g in np.unique(self.groups)]))


def prediction_gap(
    model: nn.Module,
    x: np.ndarray,
    target: np.ndarray,
    order: np.ndarray,
    *,
    baseline: np.ndarray | None = None,
    step: int = 10,
) -> np.ndarray:
    """``float64 [n]``: the prediction gap of each sample when features go to the baseline in ``order``.

    Parameters
    ----------
    model
        Classifier in eval mode returning logits; the gap is measured on the softmax.
    x, target
        Inputs ``[n, G]`` and classes ``[n]``.
    order
        ``int [G]`` (one order for all samples) or ``int [n, G]`` (one per sample): permutations
        of the features, masked first to last.
    baseline
        ``[G]`` replacement values; default zeros (the training mean of z-scored data).
    step
        Features masked per point.
    """
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    n, g = x_t.shape
    order = np.broadcast_to(np.asarray(order), (n, g))
    if not is_int(step) or not 1 <= step <= g:
        raise InputError(f"step must be an integer in 1 … {g}, got {step!r}")
    if not (np.sort(order, axis=1) == np.arange(g)).all():
        raise InputError("order must hold a permutation of the features in every row")
    base = torch.zeros(g) if baseline is None else torch.as_tensor(np.asarray(baseline, dtype=np.float32))
    prob = scaled_output(model, "probability")
    rows = torch.arange(n)[:, None]
    target_t = torch.as_tensor(np.asarray(target, dtype=np.int64))[:, None]
    order_t = torch.as_tensor(order.astype(np.int64))
    with torch.no_grad():
        full = prob(x_t).gather(1, target_t)[:, 0].double()
        masked = x_t.clone()
        area = torch.zeros(n, dtype=torch.float64)
        for i in range(g // step):
            columns = order_t[:, i * step : (i + 1) * step]
            masked[rows, columns] = base[columns]
            drop = (full - prob(masked).gather(1, target_t)[:, 0].double()) / full
            area += drop.clamp(min=0) * step
        if g % step:
            drop = (full - prob(base.expand(n, g)).gather(1, target_t)[:, 0].double()) / full
            area += drop.clamp(min=0) * (g % step)
    return (area / g).numpy()


def prediction_gaps(
    model: nn.Module,
    x: np.ndarray,
    target: np.ndarray,
    attributions: np.ndarray,
    *,
    baseline: np.ndarray | None = None,
    step: int = 10,
    n_random: int = 30,
    seed: int | np.random.Generator,
) -> PredictionGaps:
    """PGI and PGU with local and global orderings, and PGR, for ``attributions [n, G]`` of ``x``.

    ``seed`` draws the random orders and breaks ties between equal attributions.
    """
    attributions = np.asarray(attributions)
    if attributions.shape != np.shape(x):
        raise InputError(f"attributions {attributions.shape} and x {np.shape(x)} differ in shape")
    if not is_int(n_random) or n_random < 1:
        raise InputError(f"n_random must be an integer >= 1, got {n_random!r}")
    rng = np.random.default_rng(seed)
    g = attributions.shape[1]
    tie_order = rng.permutation(g)
    norms = np.linalg.norm(attributions, axis=1, keepdims=True)
    summed = (attributions / np.where(norms > 0, norms, 1.0)).sum(axis=0, keepdims=True)

    def gap(order: np.ndarray) -> np.ndarray:
        return prediction_gap(model, x, target, order, baseline=baseline, step=step)

    return PredictionGaps(
        pgi_local=gap(top_k(attributions, g, tie_order)),
        pgu_local=gap(top_k(-attributions, g, tie_order)),
        pgi_global=gap(top_k(summed, g, tie_order)[0]),
        pgu_global=gap(top_k(-summed, g, tie_order)[0]),
        pgr=np.mean([gap(rng.permutation(g)) for _ in range(n_random)], axis=0),
        groups=np.asarray(target, dtype=np.int64),
    )
