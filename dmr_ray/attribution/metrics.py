"""Feature agreement of attributions with the true biomarkers (attribution.md §4).

Feature agreement is precision at k with k = the number of true genes (so also recall at k and
R-precision). Rankings use signed attributions in descending order. Ties are broken by a seeded
random order of the genes: a stable sort would favour low gene indices, which in the LDA
simulations are class 0's pathways, so a saturated model whose gradients are all exactly 0
would look as if it had found class 0's biomarkers.

* Local: each sample's top-k genes against its group's truth, averaged within each group and
  then across groups.
* Global (the reference's ``intersect_rank_scores``): the k genes that appear most often in a
  group's per-sample top-k lists, against the group's truth; then averaged across groups.

A group is a class, or a sub-class for sub-class data (``LDASimulation.subclass``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmr_ray.errors import InputError


@dataclass(frozen=True)
class FeatureAgreement:
    """Feature agreement of one set of attributions.

    Attributes
    ----------
    local
        ``float64 [n]`` precision at k of each sample's own ranking.
    local_per_group, global_per_group
        ``float64 [n_groups]`` the group means of ``local`` and each group's global agreement;
        NaN for a group with no sample.
    local_mean, global_mean
        Means over the groups that have samples: fractions in [0, 1].
    """

    local: np.ndarray
    local_per_group: np.ndarray
    global_per_group: np.ndarray
    local_mean: float
    global_mean: float


def top_k(values: np.ndarray, k: int, tie_order: np.ndarray | None = None) -> np.ndarray:
    """``int64 [n, k]``: column indices of each row's ``k`` largest values, largest first.

    Equal values come in the order of ``tie_order`` (a permutation of the columns; default
    ascending index).
    """
    values = np.asarray(values)
    order = np.arange(values.shape[-1]) if tie_order is None else np.asarray(tie_order)
    return order[np.argsort(-values[..., order], axis=-1, kind="stable")[..., :k]]


def feature_agreement(
    attributions: np.ndarray, groups: np.ndarray, truth: np.ndarray, *, seed: int | np.random.Generator = 0
) -> FeatureAgreement:
    """Local and global feature agreement of ``attributions`` with the true genes.

    Parameters
    ----------
    attributions
        ``[n, n_genes]`` signed attributions (higher = more important).
    groups
        ``int [n]`` the group (class or sub-class) of each sample.
    truth
        ``bool [n_groups, n_genes]`` each group's true genes.
    seed
        Seed of the random gene order that breaks ties.

    Raises
    ------
    InputError
        For mismatched shapes, a group outside ``0 … n_groups − 1``, or a group whose truth is
        empty while it has samples.
    """
    attributions, groups, truth = np.asarray(attributions), np.asarray(groups), np.asarray(truth, dtype=bool)
    if attributions.ndim != 2 or truth.ndim != 2 or attributions.shape[1] != truth.shape[1]:
        raise InputError(
            f"attributions [n, genes] and truth [groups, genes] disagree: {attributions.shape}, {truth.shape}"
        )
    if groups.shape != (attributions.shape[0],) or (groups.size and not 0 <= groups.min() <= groups.max() < len(truth)):
        raise InputError(f"groups must be [{attributions.shape[0]}] with values in 0 … {len(truth) - 1}")
    tie_order = np.random.default_rng(seed).permutation(truth.shape[1])
    local = np.empty(len(groups))
    local_per_group = np.full(len(truth), np.nan)
    global_per_group = np.full(len(truth), np.nan)
    for g in np.unique(groups):
        k = int(truth[g].sum())
        if k == 0:
            raise InputError(f"group {g} has samples but no true gene")
        members = groups == g
        top = top_k(attributions[members], k, tie_order)
        hits = truth[g][top]
        local[members] = hits.mean(axis=1)
        local_per_group[g] = local[members].mean()
        counts = np.bincount(top.ravel(), minlength=truth.shape[1])
        consensus = top_k(counts, k, tie_order)
        global_per_group[g] = truth[g][consensus].mean()
    return FeatureAgreement(
        local=local,
        local_per_group=local_per_group,
        global_per_group=global_per_group,
        local_mean=float(np.nanmean(local_per_group)) if groups.size else float("nan"),
        global_mean=float(np.nanmean(global_per_group)) if groups.size else float("nan"),
    )
