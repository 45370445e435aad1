"""Isotonic and variance-scaling recalibration of replicate predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmr_ray.errors import ConfigError, InputError
from dmr_ray.uncertainty.calibration import (
    IsotonicRecalibrator,
    VarianceScaler,
    calibration_curve,
    calibration_error,
    fit_isotonic_recalibration,
    fit_variance_scaling,
    load_recalibrator,
    replicate_moments,
)


def _forecasts(seed: int, n: int = 4000, tasks: int = 2, shrink: float = 1.0):
    """Gaussian forecasts (mu, sigma / shrink) and labels y ~ N(mu, sigma²)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, tasks))
    sigma = rng.uniform(0.5, 2.0, size=(n, tasks))
    return mu, sigma / shrink, mu + sigma * rng.normal(size=(n, tasks))


def _replicates(mu, sigma, seed: int, r: int = 20):
    """r replicates whose mean and SD (ddof 0) are exactly mu and sigma."""
    e = np.random.default_rng(seed).normal(size=(r, *mu.shape))
    return mu + sigma * (e - e.mean(axis=0)) / e.std(axis=0)


@pytest.fixture(scope="module")
def overconfident():
    """σ too small by 3×: a recalibration split and an evaluation split."""
    return _forecasts(0, shrink=3.0), _forecasts(1, shrink=3.0)


def _error_after(recalibrator, mu, sigma, y, seed=2):
    return calibration_error(*replicate_moments(recalibrator.apply(_replicates(mu, sigma, seed))), y)


def test_quantile_isotonic_reduces_planted_miscalibration(overconfident):
    fit_split, (mu, sigma, y) = overconfident
    before = calibration_error(mu, sigma, y)
    assert np.all(before > 0.12)
    coarse = _error_after(fit_isotonic_recalibration(*fit_split), mu, sigma, y)
    fine = _error_after(fit_isotonic_recalibration(*fit_split, n_bins=1000), mu, sigma, y)
    assert np.all(coarse < before / 2)
    assert np.all(fine < coarse)  # the 100-point grid is coarse in the tails (attribution.md §8.2)


def test_variance_scaling_recovers_lambda_and_fixes_calibration(overconfident):
    fit_split, (mu, sigma, y) = overconfident
    scaler = fit_variance_scaling(*fit_split)
    np.testing.assert_allclose(scaler.scale, 9.0, rtol=0.08)
    assert np.all(_error_after(scaler, mu, sigma, y) < 0.02)
    preds = _replicates(mu, sigma, 3)
    _, new_sigma = replicate_moments(scaler.apply(preds))
    np.testing.assert_allclose(new_sigma, sigma * np.sqrt(scaler.scale))


def test_faithful_interval_mode_widens_but_shifts_replicates(overconfident):
    """The original applies a two-sided interval map to one-sided levels (deep_mr.md §13 #4).

    On over-confident forecasts it widens the spread, but R(0.5) is far from 0.5, so every
    input's replicate mean moves by about σ Φ⁻¹(R(0.5)) and calibration gets worse.
    """
    fit_split, (mu, sigma, y) = overconfident
    recal = fit_isotonic_recalibration(*fit_split, mode="interval")
    assert recal.level_map(np.array([[0.5, 0.5]])).min() > 0.9
    new_mu, new_sigma = replicate_moments(recal.apply(_replicates(mu, sigma, 4)))
    assert np.all(new_sigma.mean(axis=0) > 1.2 * sigma.mean(axis=0))
    assert np.all(((new_mu - mu) / sigma).mean(axis=0) > 1.0)
    assert np.all(calibration_error(new_mu, new_sigma, y) > calibration_error(mu, sigma, y))


@pytest.mark.parametrize("mode", ["quantile", "interval"])
def test_calibrated_forecasts_stay_calibrated(mode):
    fit_split, (mu, sigma, y) = _forecasts(5), _forecasts(6)
    assert np.all(calibration_error(mu, sigma, y) < 0.015)
    assert np.all(_error_after(fit_isotonic_recalibration(*fit_split, mode=mode), mu, sigma, y) < 0.015)
    scaler = fit_variance_scaling(*fit_split)
    np.testing.assert_allclose(scaler.scale, 1.0, rtol=0.08)
    assert np.all(_error_after(scaler, mu, sigma, y) < 0.015)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shrink=st.floats(0.2, 5.0),
    mode=st.sampled_from(["quantile", "interval"]),
    n_bins=st.integers(2, 300),
)
def test_isotonic_map_is_monotone_within_unit_interval(seed, shrink, mode, n_bins):
    mu, sigma, y = _forecasts(seed, n=200, tasks=2, shrink=shrink)
    recal = fit_isotonic_recalibration(mu, sigma, y, mode=mode, n_bins=n_bins)
    levels = np.linspace(0.0, 1.0, 501)[:, None].repeat(2, axis=1)
    mapped = recal.level_map(levels)
    assert np.all(np.diff(mapped, axis=0) >= -1e-12)
    assert mapped.min() >= 0.0 and mapped.max() <= 1.0


def test_zero_epistemic_spread_cannot_be_recalibrated():
    """Replicates that agree exactly (σ = 0) keep zero spread and a PIT of 0 or 1.

    Isotonic recalibration gives every such replicate the same level q = 0.5, so they stay
    equal; variance scaling multiplies a zero deviation; and its λ explodes on the floored σ.
    """
    mu, sigma, y = _forecasts(7, tasks=1)
    zero = np.random.default_rng(8).random(mu.shape[0]) < 0.3
    sigma[zero] = 0.0
    preds = _replicates(mu, sigma, 9, r=5)
    for recal in (fit_isotonic_recalibration(mu, sigma, y), fit_variance_scaling(mu, sigma, y)):
        new_mu, new_sigma = replicate_moments(recal.apply(preds))
        assert np.all(np.isfinite(new_mu)) and new_sigma[zero].max() < 1e-9
        pit_extreme = np.abs(y - new_mu)[zero] > 1e3 * np.maximum(new_sigma[zero], 1e-6)
        assert pit_extreme.mean() > 0.99
    assert fit_variance_scaling(mu, sigma, y).scale[0] > 1e6
    isotonic = fit_isotonic_recalibration(mu, sigma, y)
    assert calibration_error(*replicate_moments(isotonic.apply(preds)), y)[0] > 0.025


def test_calibration_curve_shapes_and_ends():
    mu, sigma, y = _forecasts(10, n=50, tasks=3)
    for mode in ("quantile", "interval"):
        expected, observed = calibration_curve(mu, sigma, y, n_bins=11, mode=mode)
        assert expected.shape == (11,) and observed.shape == (11, 3)
        assert expected[0] == 0.0 and expected[-1] == 1.0
        np.testing.assert_array_equal(observed[0], 0.0)
        np.testing.assert_array_equal(observed[-1], 1.0)
        assert np.all(np.diff(observed, axis=0) >= 0)


def test_apply_handles_zero_spread_and_keeps_shape():
    recal = fit_isotonic_recalibration(*_forecasts(11, n=300))
    preds = np.ones((5, 4, 2))
    out = recal.apply(preds)
    assert out.shape == (5, 4, 2) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, 1.0, atol=1e-4)


@pytest.mark.parametrize("mode", ["quantile", "interval"])
def test_serialisation_round_trip(mode):
    mu, sigma, y = _forecasts(12, n=500, shrink=2.0)
    preds = _replicates(mu, sigma, 13, r=5)
    for recal in (fit_isotonic_recalibration(mu, sigma, y, mode=mode), fit_variance_scaling(mu, sigma, y)):
        loaded = load_recalibrator(json.loads(json.dumps(recal.to_dict())))
        assert type(loaded) is type(recal)
        np.testing.assert_array_equal(loaded.apply(preds), recal.apply(preds))
    again = IsotonicRecalibrator.from_dict(fit_isotonic_recalibration(mu, sigma, y, mode=mode).to_dict())
    assert again.mode == mode and again.n_tasks == 2
    assert VarianceScaler.from_dict(fit_variance_scaling(mu, sigma, y).to_dict()).scale.shape == (2,)


def test_bad_inputs():
    mu, sigma, y = _forecasts(14, n=50)
    with pytest.raises(InputError, match="one shape"):
        fit_isotonic_recalibration(mu, sigma, y[:, :1])
    with pytest.raises(InputError, match="2-D"):
        fit_variance_scaling(mu[:, 0], sigma[:, 0], y[:, 0])
    bad = y.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match=r"y holds a non-finite value at index \(3, 1\)"):
        calibration_error(mu, sigma, bad)
    with pytest.raises(InputError, match="sigma must be >= 0"):
        fit_isotonic_recalibration(mu, -sigma, y)
    with pytest.raises(InputError, match="at least 2 rows"):
        fit_variance_scaling(mu[:1], sigma[:1], y[:1])
    with pytest.raises(InputError, match="zero residuals"):
        fit_variance_scaling(mu, sigma, mu)
    with pytest.raises(ConfigError, match="mode"):
        fit_isotonic_recalibration(mu, sigma, y, mode="central")
    with pytest.raises(ConfigError, match="n_bins"):
        calibration_curve(mu, sigma, y, n_bins=1)
    with pytest.raises(ConfigError, match="sigma_floor"):
        fit_variance_scaling(mu, sigma, y, sigma_floor=0.0)
    with pytest.raises(ConfigError, match="eps"):
        fit_isotonic_recalibration(mu, sigma, y, eps=0.7)


def test_bad_replicates_and_dicts():
    recal = fit_isotonic_recalibration(*_forecasts(15, n=100))
    scaler = fit_variance_scaling(*_forecasts(15, n=100))
    preds = _replicates(*_forecasts(16, n=10)[:2], 17, r=3)
    for r in (recal, scaler):
        with pytest.raises(InputError, match=r"\[R, n, tasks\]"):
            r.apply(preds[0])
        with pytest.raises(InputError, match="2 fitted tasks"):
            r.apply(preds[..., :1])
        bad = preds.copy()
        bad[1, 2, 0] = np.inf
        with pytest.raises(InputError, match="non-finite"):
            r.apply(bad)
    with pytest.raises(InputError, match="kind"):
        load_recalibrator({"kind": "platt"})
    broken = recal.to_dict()
    broken["observed"][0] = broken["observed"][0][::-1]
    with pytest.raises(InputError, match="monotone"):
        load_recalibrator(broken)
    with pytest.raises(InputError, match="lacks"):
        load_recalibrator({"kind": "variance_scaling"})
    with pytest.raises(InputError, match="positive"):
        load_recalibrator({"kind": "variance_scaling", "scale": [0.0], "sigma_floor": 1e-6})
