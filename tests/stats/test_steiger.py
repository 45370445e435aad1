"""The Steiger-style directionality test: calibration under the null, power, symmetries."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import stats

from dmr_ray.errors import InsufficientInstrumentsError
from dmr_ray.stats import batched, mr

REPLICATES = 4000


def _simulate(rng: np.random.Generator, j: int, strength: np.ndarray, ratio: float = 1.0):
    """Effects whose exposure z-scores have means ``strength`` and outcome ones ``ratio`` times that.

    SEs differ between variants and between exposure and outcome; signs are random.
    """
    shape = strength.shape
    bxse = rng.uniform(0.02, 0.2, shape)
    byse = rng.uniform(0.05, 0.5, shape)
    sign_x = rng.choice([-1.0, 1.0], shape)
    sign_y = rng.choice([-1.0, 1.0], shape)
    zx = sign_x * strength + rng.standard_normal(shape)
    zy = sign_y * ratio * strength + rng.standard_normal(shape)
    return zx * bxse, bxse, zy * byse, byse


def _binomial_bounds(n: int, p: float, z: float = 3.9) -> tuple[float, float]:
    half = z * np.sqrt(p * (1 - p) / n)
    return p - half, p + half


@pytest.mark.parametrize("j", [3, 10, 40])
@pytest.mark.parametrize("regime", ["noise", "moderate", "strong", "heterogeneous"])
def test_calibrated_under_a_symmetric_null(j, regime):
    rng = np.random.default_rng(zlib.crc32(f"{j}-{regime}".encode()))  # stable across processes
    size = (REPLICATES, j)
    strength = {
        "noise": np.zeros(size),
        "moderate": rng.uniform(0, 3, size),
        "strong": rng.uniform(3, 10, size),
        "heterogeneous": rng.exponential(4, size),
    }[regime]
    p = batched.steiger(*_simulate(rng, j, strength)).p_value
    lo, hi = _binomial_bounds(REPLICATES, 0.05)
    assert lo <= np.mean(p < 0.05) <= hi
    # Exactly uniform only for normal differences; the KS check guards against gross miscalibration.
    assert stats.kstest(p, "uniform").pvalue > 1e-4


@pytest.mark.parametrize("j, ratio, power", [(10, 0.5, 0.95), (30, 0.8, 0.9), (5, 0.3, 0.8)])
def test_power_in_a_planted_direction(j, ratio, power):
    rng = np.random.default_rng(j)
    strength = rng.uniform(3, 10, (500, j))
    forward = batched.steiger(*_simulate(rng, j, strength, ratio))
    assert np.mean((forward.p_value < 0.05) & (forward.direction == 1)) >= power
    backward = batched.steiger(*_simulate(rng, j, strength * ratio, 1 / ratio))
    assert np.mean((backward.p_value < 0.05) & (backward.direction == -1)) >= power


def test_swapping_exposure_and_outcome_flips_the_direction():
    rng = np.random.default_rng(5)
    bx, bxse, by, byse = _simulate(rng, 12, rng.uniform(2, 6, 12), 0.6)
    forward, backward = mr.steiger(bx, bxse, by, byse), mr.steiger(by, byse, bx, bxse)
    assert forward.direction == "x_to_y" and backward.direction == "y_to_x"
    assert backward.statistic == pytest.approx(-forward.statistic)
    assert backward.p_value == pytest.approx(forward.p_value)
    assert forward.mean_difference == pytest.approx(forward.strength_x - forward.strength_y)
    assert forward.ci_low < forward.mean_difference < forward.ci_high


def test_units_do_not_matter():
    rng = np.random.default_rng(6)
    bx, bxse, by, byse = _simulate(rng, 8, rng.uniform(2, 6, 8), 0.7)
    a = mr.steiger(bx, bxse, by, byse)
    b = mr.steiger(-3.0 * bx, 3.0 * bxse, by / 7.0, byse / 7.0)
    assert b.statistic == pytest.approx(a.statistic) and b.p_value == pytest.approx(a.p_value)


def test_equal_strengths_give_no_direction():
    result = mr.steiger([0.5, 1.0, -0.75], [0.25, 0.25, 0.25], [1.0, -2.0, 1.5], [0.5, 0.5, 0.5])
    assert result.direction == "none" and result.p_value == 1.0 and result.statistic == 0.0
    constant = mr.steiger([0.75, 1.0], [0.25, 0.25], [0.25, 0.5], [0.25, 0.25])
    assert constant.direction == "x_to_y" and constant.p_value == 0.0


def test_needs_two_instruments():
    with pytest.raises(InsufficientInstrumentsError):
        mr.steiger([0.1], [0.01], [0.1], [0.01])
