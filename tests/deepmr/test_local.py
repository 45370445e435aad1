"""Per-region MR over a chunk: planted slopes, the original's estimator rule, schema, joins."""

import numpy as np
import pytest

from dmr_ray.deepmr.local import SCHEMA, LocalMROptions, local_effects_table, region_rows
from dmr_ray.stats import mr


def _effects(n: int, length: int, slope: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bx = rng.normal(0, 1, (n, length, 3))
    by = slope * bx + rng.normal(0, 0.05, (n, length, 3))
    beta = np.stack([bx, by], -1)
    se = np.stack([np.full_like(bx, 0.1), rng.uniform(0.05, 0.2, bx.shape)], -1)
    return beta, se


def _options(**kw) -> LocalMROptions:
    base = dict(
        tasks=("X", "Y"),
        pairs=(("X", "Y"),),
        estimators=("ivw",),
        filter="wald",
        threshold=5.0,
        moments_mean=(),
        moments_sd=(),
        region_width=20,
        iterations=200,
    )
    return LocalMROptions(**{**base, **kw})


def test_planted_slope_is_recovered_in_every_region() -> None:
    beta, se = _effects(6, 40, slope=0.7)
    table = local_effects_table(beta, se, np.arange(6), _options(estimators=("ivw", "egger")))
    assert table.schema == SCHEMA
    assert table.num_rows == 6 * 2 * 2
    estimate = table.column("estimate").to_numpy()
    assert np.all(np.abs(estimate - 0.7) < 4 * table.column("se").to_numpy())
    assert set(table.column("reason").to_pylist()) == {"ok"}


def test_region_rows_equal_the_scalar_estimator_on_the_same_instruments() -> None:
    beta, se = _effects(3, 40, slope=-0.4, seed=3)
    options = _options()
    table = local_effects_table(beta, se, np.array(["a", "b", "c"]), options)
    # region 1 of sequence "b": positions 20..39
    bx, sx, by, sy = (a[1, 20:40].ravel() for a in (beta[..., 0], se[..., 0], beta[..., 1], se[..., 1]))
    keep = np.abs(bx / sx) >= 5.0
    expected = mr.ivw(bx[keep], sx[keep], by[keep], sy[keep])
    row = table.filter(
        (table.column("seq_id").to_numpy(zero_copy_only=False) == "b") & (table.column("region").to_numpy() == 1)
    ).to_pylist()[0]
    assert row["n_instruments"] == keep.sum()
    assert row["estimate"] == pytest.approx(expected.estimate, rel=1e-12)
    assert row["se"] == pytest.approx(expected.se, rel=1e-12)
    assert (row["region_start"], row["region_end"]) == (20, 40)


def test_original_rule_robust_above_ten_plain_egger_below_skip_at_two() -> None:
    beta, se = _effects(3, 10, slope=0.5, seed=4)
    sx = se[..., 0]
    sx[0] = 10.0  # nothing passes the Wald filter: skipped
    sx[1] = 10.0
    sx[1, :2, :] = 0.01  # 6 instruments: plain Egger
    table = local_effects_table(
        beta, se, np.arange(3), _options(estimators=("deepmr",), region_width=10, threshold=3.0)
    )
    rows = {r["seq_id"]: r for r in table.to_pylist()}
    assert rows["0"]["estimator"] == "" and rows["0"]["reason"] == "too_few_instruments"
    assert np.isnan(rows["0"]["estimate"])
    assert rows["1"]["estimator"] == "egger" and rows["1"]["n_instruments"] == 6
    assert rows["2"]["estimator"] == "egger_robust" and rows["2"]["n_instruments"] > 10
    plain = mr.egger(beta[1, :2, :, 0].ravel(), sx[1, :2].ravel(), beta[1, :2, :, 1].ravel(), se[1, :2, :, 1].ravel())
    assert rows["1"]["estimate"] == pytest.approx(plain.estimate, rel=1e-10)


def test_unusable_substitutions_are_counted_not_fitted() -> None:
    beta, se = _effects(1, 20, slope=0.5, seed=5)
    beta[0, 0, :, 0] = 0.0  # bx == 0 cannot be an instrument
    se[0, 1, :, 1] = 0.0  # zero outcome SE
    (rows,) = [region_rows(beta, se, 0, 1, _options(region_width=20))]
    assert rows.n_unusable.tolist() == [6]
    assert rows.mask.sum() <= 20 * 3 - 6


def test_ragged_last_tile_and_nan_positions() -> None:
    beta, se = _effects(2, 25, slope=0.5, seed=6)
    beta[:, 3] = np.nan  # an N position: no effects
    se[:, 3] = np.nan
    table = local_effects_table(beta, se, np.arange(2), _options(region_width=10))
    assert table.column("region_end").to_pylist() == [10, 20, 25] * 2
    assert table.column("n_unusable").to_pylist() == [0, 0, 0, 0, 0, 0]


def test_direction_filter_drops_instruments_that_move_the_outcome_more() -> None:
    beta, se = _effects(2, 20, slope=0.5, seed=7)
    beta[0, :10, :, 1] = 3.0 * beta[0, :10, :, 0]  # acts on the outcome directly (reverse)
    plain = region_rows(beta, se, 0, 1, _options(region_width=20))
    directed = region_rows(beta, se, 0, 1, _options(region_width=20, direction_sd=(1.0, 1.0)))
    assert directed.mask[0].sum() == plain.mask[0].sum() - (np.abs(beta[0, :10, :, 0] / 0.1) >= 5).sum()
    assert directed.mask[1].sum() == plain.mask[1].sum()  # slope 0.5 < 1: every instrument kept
