"""Instrument filters and pooled exposure moments."""

import json

import numpy as np
import pytest

from dmr_ray.deepmr.instruments import exposure_moments, passes_filter, usable
from dmr_ray.errors import InputError
from dmr_ray.store import EffectsStore

EFFECTS_ATTRS = {
    "model_digest": "test",
    "replicate_kind": "ensemble",
    "replicate_count": 2,
    "calibration": "none",
    "ddof": 0,
    "code_version": "test",
    "sequence_store": "none",
}


def test_zscore_filter_matches_the_original_formula() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 20, 3))
    z = np.abs(x - x.mean()) / x.std()  # np.std: ddof 0, as the original
    got = passes_filter(x, np.ones_like(x), kind="zscore", threshold=1.0, mean=x.mean(), sd=x.std())
    np.testing.assert_array_equal(got, z >= 1.0)


def test_wald_filter_uses_beta_over_se() -> None:
    beta = np.array([0.5, -3.0, 2.0])
    se = np.array([1.0, 1.0, 0.5])
    np.testing.assert_array_equal(passes_filter(beta, se, kind="wald", threshold=2.0), [False, True, True])


def test_filter_errors() -> None:
    with pytest.raises(InputError, match="moments"):
        passes_filter(np.ones(3), np.ones(3), kind="zscore", threshold=1.0)
    with pytest.raises(InputError, match="unknown instrument filter"):
        passes_filter(np.ones(3), np.ones(3), kind="nope", threshold=1.0)
    flat = passes_filter(np.ones(3), np.ones(3), kind="zscore", threshold=1.0, mean=1.0, sd=0.0)
    assert not flat.any()


def test_unusable_substitutions_are_excluded() -> None:
    bx = np.array([1.0, 0.0, 1.0, np.nan, 1.0])
    sx = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    by = np.array([1.0, 1.0, 1.0, 1.0, np.inf])
    np.testing.assert_array_equal(usable(bx, sx, by, np.ones(5)), [True, False, False, False, False])


def _effects(path, beta: np.ndarray, run_id: str = "") -> EffectsStore:
    """An effects store holding ``beta`` [n, length, 3, 2], chunks of 4, committed by ``run_id``."""
    n, length = beta.shape[:2]
    effects = EffectsStore.create(
        path, seq_ids=[f"s{i}" for i in range(n)], length=length, tasks=["a", "b"], chunk_size=4, attrs=EFFECTS_ATTRS
    )
    for i in range(effects.n_chunks):
        _rewrite(effects, i, beta, run_id)
    return effects


def _rewrite(effects: EffectsStore, i: int, beta: np.ndarray, run_id: str) -> None:
    start, stop = effects.chunk_bounds(i)
    part, reference = beta[start:stop], np.arange(2 * (stop - start), dtype=np.float32).reshape(-1, 2)
    effects.write_chunk(i, part, np.ones_like(part), reference, reference, run_id=run_id)


def test_exposure_moments_stream_equals_pooled(tmp_path) -> None:
    rng = np.random.default_rng(2)
    n, length, tasks = 11, 7, 2
    beta = rng.normal(3.0, 2.0, size=(n, length, 3, tasks)).astype(np.float32)
    beta[0, 0, 0, 0] = np.nan  # an N position
    moments = exposure_moments(_effects(tmp_path / "e.zarr", beta))
    flat = beta.reshape(-1, tasks).astype(np.float64)
    np.testing.assert_allclose(moments.mean, np.nanmean(flat, axis=0), rtol=1e-12)
    np.testing.assert_allclose(moments.sd, np.nanstd(flat, axis=0), rtol=1e-10)
    assert moments.count.tolist() == [flat.shape[0] - 1, flat.shape[0]]


def test_direction_filter_is_scale_free_and_rejects_constant_outputs() -> None:
    from dmr_ray.deepmr.instruments import passes_direction

    bx = np.array([1.0, 1.0, 0.1])
    by = np.array([0.5, 3.0, 1.0])
    np.testing.assert_array_equal(passes_direction(bx, by, 1.0, 1.0), [True, False, False])
    np.testing.assert_array_equal(passes_direction(10 * bx, by, 10.0, 1.0), passes_direction(bx, by, 1.0, 1.0))
    with pytest.raises(InputError, match="vary"):
        passes_direction(bx, by, 0.0, 1.0)


def test_recorded_moments_are_reused_only_for_the_same_effects(tmp_path, monkeypatch) -> None:
    from dmr_ray.deepmr import pipeline

    beta = np.random.default_rng(3).normal(size=(10, 5, 3, 2)).astype(np.float32)
    effects = _effects(tmp_path / "e.zarr", beta, run_id="run1")
    record = tmp_path / "instruments.json"
    first = pipeline.pooled_moments(effects, record)
    saved = record.read_bytes()
    calls: list[int] = []

    def counted(store):
        calls.append(1)
        return exposure_moments(store)

    monkeypatch.setattr(pipeline, "exposure_moments", counted)
    again = pipeline.pooled_moments(EffectsStore.open(tmp_path / "e.zarr", mode="r"), record)
    assert calls == [] and again.to_dict() == first.to_dict() and record.read_bytes() == saved

    beta[4] += 1.0  # chunk 1 recomputed by another run
    _rewrite(effects, 1, beta, "run2")
    changed = pipeline.pooled_moments(effects, record)
    assert calls == [1] and changed.to_dict() == exposure_moments(effects).to_dict() != first.to_dict()
    assert json.loads(record.read_text())["mean"] == changed.mean.tolist()

    _rewrite(effects, 1, beta, "")  # no committing run recorded: never reused
    pipeline.pooled_moments(effects, record)
    pipeline.pooled_moments(effects, record)
    assert calls == [1, 1, 1]


def _chain(slopes: tuple[float, ...], seed: int = 0) -> np.ndarray:
    """``[n, 40, 3, 2]`` effects of X → Y chains: X's motif (positions 0-7) moves Y by each
    sequence's own slope; Y's own motif (20-27) moves Y only; small noise elsewhere."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(0, 0.01, (len(slopes), 40, 3, 2))
    for i, slope in enumerate(slopes):
        bx = -rng.uniform(1, 4, (8, 3))
        beta[i, :8, :, 0] = bx
        beta[i, :8, :, 1] = slope * bx
        beta[i, 20:28, :, 1] = -rng.uniform(1, 4, (8, 3))
    return beta


def _ivw_fits(beta: np.ndarray, seq_ids: str, tasks: tuple, pairs: tuple, **direction) -> dict:
    """IVW local effects of ``beta`` (SE 0.05 everywhere; Wald filter at 3; one 40 bp region per
    sequence) under the ``direction`` filter options, keyed by (seq_id, exposure)."""
    from dmr_ray.deepmr.local import LocalMROptions, local_effects_table

    options = LocalMROptions(
        tasks=tasks,
        pairs=pairs,
        estimators=("ivw",),
        filter="wald",
        threshold=3.0,
        moments_mean=(),
        moments_sd=(),
        region_width=40,
        **direction,
    )
    table = local_effects_table(beta, np.full(beta.shape, 0.05), np.array(list(seq_ids)), options)
    return {(r["seq_id"], r["exposure"]): r for r in table.to_pylist()}


@pytest.mark.parametrize("scale", ["region", "reference"])
def test_region_scale_keeps_steep_regions_mediated_instruments_out_of_the_reverse(scale) -> None:
    slopes = (0.5, 0.5, 2.5)  # the reference SDs give one ratio for all, between the slopes
    rows = _ivw_fits(
        _chain(slopes), "abc", ("X", "Y"), (("X", "Y"), ("Y", "X")), direction_sd=(1.0, 1.2), direction_scale=scale
    )
    if scale == "region":
        for seq_id, slope in zip("abc", slopes, strict=True):
            assert rows[seq_id, "X"]["estimate"] == pytest.approx(slope, rel=0.01)
            assert rows[seq_id, "X"]["n_instruments"] == 24  # every X-motif substitution
            assert abs(rows[seq_id, "Y"]["estimate"]) < 0.01  # Y's own drivers: no reverse effect
    else:  # the steep sequence lends its X-motif substitutions to the reverse direction
        assert rows["c", "X"]["n_instruments"] == 0
        assert rows["c", "Y"]["n_instruments"] == 48  # Y's own drivers and X's motif
        assert rows["c", "Y"]["estimate"] > 0.25  # a reverse effect nobody planted


def _common_cause(seed: int = 0) -> np.ndarray:
    """``[2, 40, 3, 3]`` effects of tasks (Z, X, Y) with no X → Y effect: Z's motif (positions
    0-7) moves Z and, through Z, X (slope 0.6) and Y (0.5), a common upstream cause; X's own
    motif (20-27) moves X only, Y's own motif (30-37) Y only; small noise elsewhere."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(0, 0.01, (2, 40, 3, 3))
    for i in range(2):
        bz = -rng.uniform(1, 4, (8, 3))
        beta[i, :8, :, 0] = bz
        beta[i, :8, :, 1] = 0.6 * bz
        beta[i, :8, :, 2] = 0.5 * bz
        beta[i, 20:28, :, 1] = -rng.uniform(0.5, 1.5, (8, 3))
        beta[i, 30:38, :, 2] = -rng.uniform(0.5, 1.5, (8, 3))
    return beta


@pytest.mark.parametrize("scale", ["region", "reference"])
def test_direction_against_all_tasks_drops_a_third_tasks_instruments(scale) -> None:
    """X → Y has no effect, but Z's substitutions move X more than Y (0.6 against 0.5), so the
    pair-only filter takes them as X's instruments and IVW reads about 0.5 / 0.6 from a common
    cause. Compared with every task, they move Z more than X and are dropped: X → Y reads 0
    from X's own motif. The mediated pair Z → X keeps every Z-motif substitution either way."""
    beta = _common_cause()
    sd = tuple(float(v) for v in beta.reshape(-1, 3).std(axis=0))

    def fits(against: str) -> dict:
        return _ivw_fits(
            beta, "ab", ("Z", "X", "Y"), (("X", "Y"), ("Z", "X")),
            direction_sd=sd, direction_scale=scale, direction_against=against,
        )  # fmt: skip

    pair_only, every_task = fits("outcome"), fits("all")
    for seq_id in "ab":
        assert pair_only[seq_id, "X"]["estimate"] > 0.3  # the common cause read as X → Y
        assert abs(every_task[seq_id, "X"]["estimate"]) < 0.02
        assert every_task[seq_id, "X"]["n_instruments"] == 24  # X's own motif only
        for fitted in (pair_only, every_task):
            assert fitted[seq_id, "Z"]["n_instruments"] == 24
            assert fitted[seq_id, "Z"]["estimate"] == pytest.approx(0.6, rel=0.01)


def test_direction_against_all_needs_the_direction_filter() -> None:
    from dmr_ray.deepmr.config import InstrumentOptions

    assert InstrumentOptions(direction_filter=True, direction_against="all").direction_against == "all"
    with pytest.raises(ValueError, match="direction_against: all needs instruments.direction_filter"):
        InstrumentOptions(direction_against="all")
