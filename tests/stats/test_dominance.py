"""The dominance test of a pair's two directions (standardized effects paired over replicates)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dmr_ray.errors import InputError
from dmr_ray.stats.dominance import dominance


def test_standardization_and_t_test_by_hand() -> None:
    theta = np.array([0.70, 0.66, 0.72, 0.69, 0.68])
    phi = np.array([0.05, 0.07, 0.03, -0.04, 0.06])
    s_x, s_y = 2.0, 1.5  # s_Y / s_X = 0.75: θ* = |θ| / 0.75, φ* = |φ| · 0.75
    result = dominance(theta, phi, s_x, s_y)
    d = np.abs(theta) / 0.75 - np.abs(phi) * 0.75
    reference = stats.ttest_1samp(d, 0.0, alternative="greater")
    assert result.forward == pytest.approx(np.mean(np.abs(theta)) / 0.75, rel=1e-14)
    assert result.reverse == pytest.approx(np.mean(np.abs(phi)) * 0.75, rel=1e-14)
    assert result.difference == pytest.approx(d.mean(), rel=1e-14)
    assert result.se == pytest.approx(d.std(ddof=1) / math.sqrt(5), rel=1e-14)
    assert result.df == 4
    assert result.p_forward == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.p_reverse == pytest.approx(1 - reference.pvalue, rel=1e-12)


def test_a_one_way_chain_dominates_and_its_mirror_does_not() -> None:
    """X → Y with slope θ and Y's own variants: θ* = θ s_X / s_Y < 1 and φ* = 0 (a tiny leak).
    Reading the same numbers the other way round (X and Y swapped) reverses the call."""
    rng = np.random.default_rng(1)
    theta_true, s_x, s_own = 0.7, 1.0, 0.5
    s_y = math.hypot(theta_true * s_x, s_own)
    theta = theta_true + rng.normal(0, 0.02, 5)
    phi = 0.02 + rng.normal(0, 0.01, 5)
    forward = dominance(theta, phi, s_x, s_y)
    assert forward.forward == pytest.approx(theta.mean() * s_x / s_y, rel=1e-12)
    assert forward.forward < 1 and forward.p_forward < 1e-4 and forward.p_reverse > 0.99
    mirrored = dominance(phi, theta, s_y, s_x)
    assert mirrored.p_reverse == pytest.approx(forward.p_forward, rel=1e-12)


def test_a_region_without_own_variants_of_the_outcome_is_a_tie() -> None:
    """Y = θ X exactly: s_Y = θ s_X, and the reversed reading φ = 1/θ; both standardize to 1."""
    theta = np.full(4, 0.5) + np.array([0.01, -0.01, 0.02, -0.02])
    result = dominance(theta, 1 / theta, 2.0, 1.0)
    assert result.forward == pytest.approx(1.0, abs=0.02) and result.reverse == pytest.approx(1.0, abs=0.02)
    assert result.p_forward > 0.05 and result.p_reverse > 0.05


def test_non_finite_replicates_and_constant_differences_give_nan_p() -> None:
    assert math.isnan(dominance(np.array([1.0, np.nan]), np.array([0.1, 0.2]), 1.0, 1.0).p_forward)
    constant = dominance(np.array([1.0, 1.0, 1.0]), np.array([0.1, 0.1, 0.1]), 1.0, 1.0)
    assert math.isnan(constant.p_forward) and constant.difference == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("forward", "reverse", "s_x", "s_y", "message"),
    [
        (np.ones(1), np.ones(1), 1.0, 1.0, "at least 2"),
        (np.ones(3), np.ones(4), 1.0, 1.0, "equally long"),
        (np.ones(3), np.ones(3), 0.0, 1.0, "exposure_sd"),
        (np.ones(3), np.ones(3), 1.0, math.nan, "outcome_sd"),
    ],
)
def test_bad_input_is_refused(forward, reverse, s_x, s_y, message) -> None:
    with pytest.raises(InputError, match=message):
        dominance(forward, reverse, s_x, s_y)
