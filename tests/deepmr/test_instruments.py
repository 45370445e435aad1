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


@pytest.mark.parametrize("scale", ["region", "reference"])
def test_region_scale_keeps_steep_regions_mediated_instruments_out_of_the_reverse(scale) -> None:
    from dmr_ray.deepmr.local import LocalMROptions, local_effects_table

    slopes = (0.5, 0.5, 2.5)  # the reference SDs give one ratio for all, between the slopes
    beta = _chain(slopes)
    se = np.full(beta.shape, 0.05)
    options = LocalMROptions(
        tasks=("X", "Y"),
        pairs=(("X", "Y"), ("Y", "X")),
        estimators=("ivw",),
        filter="wald",
        threshold=3.0,
        moments_mean=(),
        moments_sd=(),
        region_width=40,
        direction_sd=(1.0, 1.2),
        direction_scale=scale,
    )
    rows = {
        (r["seq_id"], r["exposure"]): r
        for r in local_effects_table(beta, se, np.array(["a", "b", "c"]), options).to_pylist()
    }
    if scale == "region":
        for seq_id, slope in zip("abc", slopes, strict=True):
            assert rows[seq_id, "X"]["estimate"] == pytest.approx(slope, rel=0.01)
            assert rows[seq_id, "X"]["n_instruments"] == 24  # every X-motif substitution
            assert abs(rows[seq_id, "Y"]["estimate"]) < 0.01  # Y's own drivers: no reverse effect
    else:  # the steep sequence lends its X-motif substitutions to the reverse direction
        assert rows["c", "X"]["n_instruments"] == 0
        assert rows["c", "Y"]["n_instruments"] == 48  # Y's own drivers and X's motif
        assert rows["c", "Y"]["estimate"] > 0.25  # a reverse effect nobody planted
