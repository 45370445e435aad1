"""Which direction of a pair dominates: standardized causal effects compared across ensemble members.

Bidirectional MR of two model outputs X and Y estimates θ (X → Y, on X's instruments) and φ
(Y → X, on Y's instruments). Both can be significant in one model: a model whose shared layers
let Y's motif move X a little (docs/direction.md §9) has a small, real φ beside a large θ, and
MR measures both correctly. Which of the two is the direction the model learned is then a
comparison, made free of the outputs' units by standardizing each effect with the two outputs'
mutational SDs ``s_X`` and ``s_Y`` (the SD of every substitution's effect on the output,
pooled over the audit)::

    θ* = |θ| · s_X / s_Y            φ* = |φ| · s_Y / s_X

θ* is the share of Y's mutational spread, in SDs, that one SD of change in X carries along the
path. In a one-way X → Y model whose Y also has variants of its own, ``s_Y² = θ² s_X² + s_own²``,
so θ* ≤ 1 and φ* = 0; a leak φ adds a φ* as small as the leak. Where Y has no variants of its
own, θ* = 1 and the roles reversed give φ = 1/θ, φ* = 1: a tie, as it must be, since the two
directions are then observationally equivalent.

The test pairs the replicates (ensemble members, the same for both directions): per member r,
``d_r = |θ_r| s_X/s_Y − |φ_r| s_Y/s_X``; the difference is their mean, its SE their SD (ddof 1)
/ sqrt(R), and each one-sided p-value comes from Student's t on R − 1 df. Calling X → Y a
direction when θ is significant *and* X → Y dominates is an intersection-union test: both nulls
rejected at α gives a test of level α without adjustment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from dmr_ray.errors import InputError


@dataclass(frozen=True)
class Dominance:
    """The comparison of one pair's two directions.

    Attributes
    ----------
    forward, reverse : float
        Mean over replicates of the standardized absolute effects θ* (X → Y) and φ* (Y → X).
    difference, se : float
        Mean of the paired differences ``d_r = θ*_r − φ*_r`` and its SE.
    df : int
        Degrees of freedom, R − 1.
    p_forward, p_reverse : float
        One-sided p-values of X → Y dominating (``difference > 0``) and of Y → X dominating.
        NaN when a replicate estimate is not finite or all differences are equal.
    """

    forward: float
    reverse: float
    difference: float
    se: float
    df: int
    p_forward: float
    p_reverse: float


def dominance(
    forward_replicates: np.ndarray, reverse_replicates: np.ndarray, exposure_sd: float, outcome_sd: float
) -> Dominance:
    """Compare the standardized effects of X → Y and Y → X, paired over replicates.

    Parameters
    ----------
    forward_replicates, reverse_replicates : array of shape (R,)
        Replicate estimates (one per ensemble member, in the same member order) of the global
        effect X → Y and of Y → X.
    exposure_sd, outcome_sd
        Mutational SDs ``s_X`` and ``s_Y`` of the outputs X and Y (positive, finite).

    Returns
    -------
    Dominance
        NaN p-values where a replicate estimate is not finite or the differences do not vary.

    Raises
    ------
    InputError
        Fewer than two replicates, replicate vectors of different lengths, or an SD that is not
        a positive finite number.
    """
    forward = np.asarray(forward_replicates, dtype=np.float64)
    reverse = np.asarray(reverse_replicates, dtype=np.float64)
    if forward.ndim != 1 or forward.shape != reverse.shape or forward.size < 2:
        raise InputError(
            f"dominance needs two equally long vectors of at least 2 replicate estimates, got shapes "
            f"{forward.shape} and {reverse.shape}"
        )
    for name, sd in (("exposure_sd", exposure_sd), ("outcome_sd", outcome_sd)):
        if not (math.isfinite(sd) and sd > 0):
            raise InputError(f"dominance: {name} must be a positive finite number, got {sd}")
    ratio = outcome_sd / exposure_sd
    forward_std = np.abs(forward) / ratio
    reverse_std = np.abs(reverse) * ratio
    differences = forward_std - reverse_std
    df = forward.size - 1
    mean = float(differences.mean())
    se = float(differences.std(ddof=1) / math.sqrt(forward.size))
    if math.isfinite(mean) and se > 0:
        t = mean / se
        p_forward, p_reverse = float(stats.t.sf(t, df)), float(stats.t.sf(-t, df))
    else:
        p_forward = p_reverse = math.nan
    return Dominance(float(forward_std.mean()), float(reverse_std.mean()), mean, se, df, p_forward, p_reverse)
