"""Replicate-wise inference: a member-specific pleiotropic shift shared by every instrument."""

import numpy as np
import pytest

from dmr_ray.deepmr.local import LocalMROptions, local_effects_table
from dmr_ray.deepmr.replicates import replicate_global_effects
from dmr_ray.deepmr.stages import global_effects_table
from dmr_ray.errors import InputError

THETA = 0.7
SHIFT = np.array([0.0, 0.7, 0.6, 0.8, -0.2])  # per member; the demo's sizes (docs/direction.md)


def _replicates(n: int = 40, length: int = 20, seed: int = 0) -> np.ndarray:
    """``[R, n, L, 3, 2]``: X's motif (positions 0-4) drives Y with THETA; Y's motif (10-14)
    moves Y and, by each member's own shift, X; elsewhere small noise."""
    rng = np.random.default_rng(seed)
    r = SHIFT.size
    beta = rng.normal(0, 0.05, (r, n, length, 3, 2))
    bx = -8 + rng.normal(0, 0.3, (r, n, 5, 3))
    beta[:, :, :5, :, 0] = bx
    beta[:, :, :5, :, 1] = THETA * bx + rng.normal(0, 0.1, bx.shape)
    beta[:, :, 10:15, :, 1] = -6 + rng.normal(0, 0.3, (r, n, 5, 3))
    beta[:, :, 10:15, :, 0] = -SHIFT[:, None, None, None] + rng.normal(0, 0.05, (r, n, 5, 3))
    return beta


def _options(beta: np.ndarray) -> LocalMROptions:
    return LocalMROptions(
        tasks=("X", "Y"),
        pairs=(("X", "Y"), ("Y", "X")),
        estimators=("ivw", "weighted_median"),
        filter="zscore",
        threshold=1.0,
        moments_mean=tuple(beta.mean(axis=(0, 1, 2)).tolist()),
        moments_sd=tuple(beta.std(axis=(0, 1, 2)).tolist()),
        region_width=beta.shape[1],
        direction_sd=(1.0, 1.0),
        iterations=200,
    )


def _rows(table) -> dict:
    data = table.to_pydict()
    keys = zip(data["exposure"], data["outcome"], data["method"], strict=True)
    return {key: {name: values[i] for name, values in data.items()} for i, key in enumerate(keys)}


def test_shared_member_shift_fools_the_ensemble_mean_but_not_replicate_wise_inference():
    replicates = _replicates()
    mean, se = replicates.mean(axis=0), replicates.std(axis=0)
    ids = np.arange(mean.shape[0])
    options = _options(mean)
    ensemble = _rows(global_effects_table(local_effects_table(mean, se, ids, options)))
    wise = _rows(replicate_global_effects(replicates, se, ids, options))
    for method in ("ivw", "weighted_median"):
        assert ensemble["Y", "X", method]["p_value"] < 1e-6  # the false direction, as on the demo
        assert wise["Y", "X", method]["p_value"] > 0.05
        forward = wise["X", "Y", method]
        assert forward["p_value"] < 1e-4 and forward["estimate"] == pytest.approx(THETA, abs=0.01)
        assert forward["n_replicates"] == SHIFT.size and len(forward["replicate_estimates"]) == SHIFT.size


def test_replicate_estimates_are_the_audits_of_each_member():
    replicates = _replicates(n=8)
    se = replicates.std(axis=0)
    ids = np.arange(8)
    options = _options(replicates.mean(axis=0))
    wise = _rows(replicate_global_effects(replicates, se, ids, options))
    member = _rows(global_effects_table(local_effects_table(replicates[2], se, ids, options)))
    for key, row in wise.items():
        assert row["replicate_estimates"][2] == pytest.approx(member[key]["estimate"])
        assert row["estimate"] == pytest.approx(np.mean(row["replicate_estimates"]))


def test_needs_two_matching_replicates():
    replicates = _replicates(n=4)
    se = replicates.std(axis=0)
    with pytest.raises(InputError, match="R >= 2"):
        replicate_global_effects(replicates[:1], se, np.arange(4), _options(replicates[0]))
    with pytest.raises(InputError, match="matching se"):
        replicate_global_effects(replicates, se[:2], np.arange(4), _options(replicates[0]))
