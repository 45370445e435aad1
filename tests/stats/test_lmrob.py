"""Tests of the lmrob MM-estimator against R (robustbase 0.95-0 via MendelianRandomization)."""

from __future__ import annotations

import numpy as np
import pytest

from dmr_ray.errors import InputError, InsufficientInstrumentsError
from dmr_ray.stats import lmrob
from dmr_ray.stats._common import MAD_CONSTANT
from dmr_ray.stats.lmrob import lmrob_mm, lmrob_mm_batched

# MendelianRandomization R/1Data.R (Waterworth et al. 2010): LDL-c -> CHD, J = 28.
LDLC = [
    0.026,
    -0.044,
    -0.038,
    -0.023,
    -0.017,
    -0.031,
    -0.018,
    0.046,
    0.059,
    0.004,
    0.011,
    -0.005,
    0.004,
    0.022,
    -0.005,
    -0.002,
    -0.002,
    0.004,
    0.011,
    0.009,
    -0.011,
    -0.003,
    -0.012,
    0.0003,
    -0.015,
    -0.008,
    0.009,
    -0.036,
]
CHDLODDS = [
    0.0677,
    -0.1625,
    -0.1054,
    -0.0619,
    -0.0834,
    -0.1278,
    -0.0408,
    0.0770,
    0.1570,
    -0.0305,
    0.0100,
    0.1823,
    -0.0408,
    0.1989,
    0.0100,
    0.0488,
    0.0100,
    -0.0408,
    -0.0305,
    -0.0408,
    -0.0202,
    -0.0619,
    0.0296,
    0.0677,
    -0.0726,
    -0.0726,
    0.0000,
    0.0198,
]
CHDLODDSSE = [
    0.0286,
    0.0300,
    0.0310,
    0.0243,
    0.0222,
    0.0667,
    0.0373,
    0.0543,
    0.0306,
    0.0236,
    0.0277,
    0.0403,
    0.0344,
    0.0335,
    0.0378,
    0.0292,
    0.0253,
    0.0319,
    0.0316,
    0.0241,
    0.0285,
    0.0217,
    0.0298,
    0.0239,
    0.0220,
    0.0246,
    0.0255,
    0.0647,
]


def _egger_design(bx, by, byse):
    """Oriented robust-Egger regression: design [1, |bx|], response sign(bx) by, weights se^-2."""
    bx, by, byse = (np.asarray(a, dtype=float) for a in (bx, by, byse))
    x = np.column_stack([np.ones_like(bx), np.abs(bx)])
    return x, np.sign(bx) * by, byse**-2.0


def _robust_egger(bx, by, byse, seed=0):
    """(slope, slope SE as MendelianRandomization reports it, RSE, fit)."""
    fit = lmrob_mm(*_egger_design(bx, by, byse), seed=seed)
    return fit.coef[1], np.sqrt(fit.cov[1, 1]) / min(fit.scale, 1.0), fit.scale, fit


def _simulated_regions(n_regions, j_max, seed, ragged=True):
    """Padded robust-Egger problems with 3..j_max variants (all j_max unless ``ragged``),
    about 10 % gross outliers and NaN padding."""
    rng = np.random.default_rng(seed)
    bx = rng.normal(0.1, 0.05, (n_regions, j_max))
    byse = rng.uniform(0.01, 0.05, (n_regions, j_max))
    by = 0.5 * bx + rng.normal(0.0, 1.3, bx.shape) * byse
    outlier = rng.random(bx.shape) < 0.1
    by[outlier] += rng.normal(0.0, 0.2, outlier.sum())
    n_valid = rng.integers(3, j_max + 1, n_regions) if ragged else np.full(n_regions, j_max)
    mask = np.arange(j_max)[None, :] < n_valid[:, None]
    x = np.stack([np.ones_like(bx), np.abs(bx)], axis=-1)
    y = np.sign(bx) * by
    w = byse**-2.0
    x[~mask] = np.nan
    y[~mask] = np.nan
    return x, y, w, mask


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_robust_egger_matches_r(reference, seed):
    for case in reference["mr"]:
        expected = case["egger_robust"]
        est, se, _, fit = _robust_egger(case["bx"], case["by"], case["byse"], seed=seed)
        assert fit.converged
        assert est == pytest.approx(expected["est"], abs=1e-8), case["id"]
        assert fit.coef[0] == pytest.approx(expected["int"], abs=1e-8), case["id"]
        assert se == pytest.approx(expected["se"], rel=1e-6), case["id"]


def test_robust_egger_ldl_matches_r():
    """deep_mr.md section 16: mr_egger(robust=TRUE) on the LDL-c -> CHD data."""
    est, se, rse, fit = _robust_egger(LDLC, CHDLODDS, CHDLODDSSE)
    assert fit.converged
    assert est == pytest.approx(3.2560170114, abs=1e-6)
    assert se == pytest.approx(0.6238948475, rel=1e-6)
    assert rse == pytest.approx(1.4979645126, rel=1e-6)


@pytest.mark.parametrize("start_factor", [1.0, 1e-6, 1e6])
def test_m_scale_solves_the_s_equation_from_far_starts(start_factor):
    # Starts far below or above the root take the unit steps in log s before bracketing it.
    rng = np.random.default_rng(7)
    res = rng.standard_normal((4, 50, 30)) * rng.uniform(0.1, 10.0, (4, 1, 1))
    res[..., :3] *= 40.0  # gross outliers: rho saturates for them
    dof = np.full((4, 1), 28.0)
    start = MAD_CONSTANT * np.median(np.abs(res), axis=-1) * start_factor
    scale = lmrob._m_scale(res, start, dof, maxit=500)
    mean_rho = lmrob._rho(res / scale[..., None], lmrob.C_CHI).sum(axis=-1) / dof
    np.testing.assert_allclose(mean_rho, lmrob.BB, rtol=1e-10)


def test_m_scale_leaves_unusable_starts_alone():
    res = np.ones((1, 3, 5))
    start = np.array([[np.nan, np.inf, 0.0]])
    scale = lmrob._m_scale(res, start, np.full((1, 1), 3.0), maxit=50)
    assert np.isnan(scale[0, 0]) and scale[0, 1] == np.inf and scale[0, 2] == 0.0


def test_batched_matches_scalar():
    x, y, w, mask = _simulated_regions(40, 30, seed=3)
    batch = lmrob_mm_batched(x, y, w, mask, seed=5)
    for r in range(x.shape[0]):
        m = mask[r]
        fit = lmrob_mm(x[r][m], y[r][m], w[r][m], seed=5)
        np.testing.assert_allclose(batch.coef[r], fit.coef, rtol=0, atol=1e-10)
        np.testing.assert_allclose(batch.cov[r], fit.cov, rtol=1e-8, atol=1e-14)
        assert batch.scale[r] == pytest.approx(fit.scale, rel=1e-10)
        assert batch.converged[r] == fit.converged
        assert batch.n_iter[r] == fit.n_iter
        np.testing.assert_allclose(batch.robust_weights[r][m], fit.robust_weights, atol=1e-10)
        assert np.all(batch.robust_weights[r][~m] == 0.0)


def test_region_result_does_not_depend_on_batch_company():
    x, y, w, mask = _simulated_regions(12, 20, seed=9)
    full = lmrob_mm_batched(x, y, w, mask, seed=2)
    part = lmrob_mm_batched(x[5:8, :15], y[5:8, :15], w[5:8, :15], mask[5:8, :15], seed=2)
    keep = mask[5:8].sum(axis=1) <= 15
    np.testing.assert_allclose(part.coef[keep], full.coef[5:8][keep], atol=1e-12)


def test_prior_weights_scale_rows():
    x, y, w, _ = _simulated_regions(1, 25, seed=4, ragged=False)
    weighted = lmrob_mm(x[0], y[0], w[0], seed=1)
    scaled = lmrob_mm(x[0] * np.sqrt(w[0])[:, None], y[0] * np.sqrt(w[0]), seed=1)
    np.testing.assert_allclose(weighted.coef, scaled.coef, atol=1e-10)
    assert weighted.scale == pytest.approx(scaled.scale, rel=1e-10)


def test_zero_weight_rows_are_dropped():
    x, y, w, _ = _simulated_regions(1, 25, seed=6, ragged=False)
    base = lmrob_mm(x[0], y[0], w[0], seed=3)
    x2 = np.vstack([x[0][:10], [[1.0, np.nan]], x[0][10:]])
    y2 = np.concatenate([y[0][:10], [np.nan], y[0][10:]])
    w2 = np.concatenate([w[0][:10], [0.0], w[0][10:]])
    padded = lmrob_mm(x2, y2, w2, seed=3)
    np.testing.assert_allclose(padded.coef, base.coef, atol=1e-12)
    assert padded.robust_weights[10] == 0.0


def test_resists_gross_outliers():
    rng = np.random.default_rng(0)
    xv = rng.uniform(0, 10, 40)
    y = 1.0 + 2.0 * xv + rng.normal(0, 0.1, 40)
    y[:12] += 50.0
    fit = lmrob_mm(np.column_stack([np.ones(40), xv]), y)
    assert fit.converged
    np.testing.assert_allclose(fit.coef, [1.0, 2.0], atol=0.1)
    assert np.all(fit.robust_weights[:12] == 0.0)
    assert np.all(fit.robust_weights[12:] > 0.5)
    assert np.all(np.linalg.eigvalsh(fit.cov) > 0)


def test_through_origin_single_column():
    """p = 1 (robust IVW: By ~ Bx - 1) runs and batches like the two-column case."""
    x, y, w, mask = _simulated_regions(6, 20, seed=8)
    x1 = x[:, :, 1:]
    batch = lmrob_mm_batched(x1, y, w, mask, seed=0)
    fit = lmrob_mm(x1[2][mask[2]], y[2][mask[2]], w[2][mask[2]], seed=0)
    assert fit.coef.shape == (1,) and fit.cov.shape == (1, 1)
    np.testing.assert_allclose(batch.coef[2], fit.coef, atol=1e-12)
    assert fit.coef[0] == pytest.approx(0.5, abs=0.2)


def test_exact_fit_has_zero_scale():
    xv = np.arange(10.0)
    y = 3.0 - xv
    y[[2, 7]] += [5.0, -4.0]
    fit = lmrob_mm(np.column_stack([np.ones(10), xv]), y)
    np.testing.assert_allclose(fit.coef, [3.0, -1.0], atol=1e-12)
    assert fit.scale == 0.0 and not fit.converged
    assert np.all(fit.cov == 0.0)
    assert fit.robust_weights.tolist() == [1, 1, 0, 1, 1, 1, 1, 0, 1, 1]


def test_unconverged_m_step_reports_nan_covariance(monkeypatch):
    monkeypatch.setattr(lmrob, "MAX_IT", 2)
    x, y, w, _ = _simulated_regions(1, 30, seed=1, ragged=False)
    fit = lmrob_mm(x[0], y[0], w[0])
    assert not fit.converged and fit.n_iter == 2
    assert np.all(np.isnan(fit.cov)) and np.all(np.isfinite(fit.coef))


def test_batched_degenerate_regions_are_nan():
    x, y, w, mask = _simulated_regions(3, 10, seed=2)
    mask[0, 2:] = False  # two rows for two coefficients
    x[1, :, 1] = 0.3  # all slopes equal: rank deficient
    batch = lmrob_mm_batched(x, y, w, mask)
    assert np.all(np.isnan(batch.coef[:2])) and not batch.converged[:2].any()
    assert np.all(np.isfinite(batch.coef[2]))


@pytest.mark.parametrize(
    ("field", "index", "value"),
    [("X", (3, 1), np.nan), ("y", 4, np.inf), ("weights", 5, np.nan), ("weights", 6, -1.0)],
)
def test_bad_values_are_named(field, index, value):
    x, y, w, _ = _simulated_regions(1, 12, seed=0, ragged=False)
    args = {"X": x[0].copy(), "y": y[0].copy(), "weights": w[0].copy()}
    args[field][index] = value
    row = index[0] if isinstance(index, tuple) else index
    with pytest.raises(InputError, match=rf"{field}.*index {row}"):
        lmrob_mm(args["X"], args["y"], args["weights"])


def test_batched_bad_value_names_region_and_row():
    x, y, w, mask = _simulated_regions(4, 12, seed=0)
    y[2, 1] = np.nan
    mask[2, 1] = True
    with pytest.raises(InputError, match=r"y.*\(2, 1\)"):
        lmrob_mm_batched(x, y, w, mask)


def test_shape_and_size_errors():
    with pytest.raises(InputError):
        lmrob_mm(np.ones((5, 2)), np.ones(4))
    with pytest.raises(InsufficientInstrumentsError):
        lmrob_mm(np.column_stack([np.ones(2), [1.0, 2.0]]), np.ones(2))
    with pytest.raises(InputError, match="rank"):
        lmrob_mm(np.column_stack([np.ones(6), np.full(6, 0.2)]), np.arange(6.0))
    with pytest.raises(InputError):
        lmrob_mm_batched(np.ones((2, 5, 2)), np.ones((2, 5)), np.ones((2, 5)), np.ones((2, 4), bool))
