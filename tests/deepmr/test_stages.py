"""Resumable local-MR stage on the engine and the global meta-analysis."""

import re
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dmr_ray.deepmr.local import LocalMROptions, local_effects_table
from dmr_ray.deepmr.local_task import part_path
from dmr_ray.deepmr.stages import (
    GLOBAL_FIELDS,
    global_effects_table,
    read_local_effects,
    run_local_stage,
)
from dmr_ray.engine import EngineOptions
from dmr_ray.errors import ChunkFailedError, InputError, StalledRunError
from dmr_ray.stats.meta import meta_analysis, meta_analysis_batched
from dmr_ray.store import EffectsStore

ATTRS = {
    "model_digest": "test",
    "replicate_kind": "ensemble",
    "replicate_count": 2,
    "calibration": "none",
    "ddof": 0,
    "code_version": "test",
    "sequence_store": "none",
}


def _effects_store(path, n=12, length=30, chunk_size=4, seed=0) -> EffectsStore:
    rng = np.random.default_rng(seed)
    store = EffectsStore.create(
        path, seq_ids=[f"seq{i}" for i in range(n)], length=length, tasks=["X", "Y"], chunk_size=chunk_size, attrs=ATTRS
    )
    for i in range(store.n_chunks):
        start, stop = store.chunk_bounds(i)
        bx = rng.normal(size=(stop - start, length, 3))
        beta = np.stack([bx, 0.3 * bx + rng.normal(0, 0.05, bx.shape)], -1).astype(np.float32)
        se = np.full_like(beta, 0.1)
        zeros = np.zeros((stop - start, 2), np.float32)
        store.write_chunk(i, beta, se, zeros, zeros)
    return store


def _options(**kw) -> LocalMROptions:
    base = dict(
        tasks=("X", "Y"),
        pairs=(("X", "Y"), ("Y", "X")),
        estimators=("ivw", "egger"),
        filter="wald",
        threshold=3.0,
        moments_mean=(),
        moments_sd=(),
        region_width=30,
    )
    return LocalMROptions(**{**base, **kw})


def test_local_stage_writes_every_chunk_and_resumes_only_missing_parts(tmp_path, ray_local) -> None:
    store = _effects_store(tmp_path / "effects.zarr")
    out = tmp_path / "local_effects.parquet"
    out.mkdir()
    assert run_local_stage(str(tmp_path / "effects.zarr"), out, _options()) == store.n_chunks
    table = read_local_effects(out)
    assert sorted(set(table.column("seq_id").to_pylist())) == sorted(store.seq_ids().tolist())
    assert table.num_rows == 12 * 2 * 2
    for i in range(store.n_chunks):
        chunk = store.read_chunk(i)
        expected = local_effects_table(chunk["beta"], chunk["se"], chunk["seq_id"], _options())
        _assert_tables_identical(pq.read_table(part_path(out, i)), expected)

    stamps = {i: part_path(out, i).stat().st_mtime_ns for i in range(store.n_chunks)}
    part_path(out, 1).unlink()
    assert run_local_stage(str(tmp_path / "effects.zarr"), out, _options()) == 1
    for i in (0, 2):
        assert part_path(out, i).stat().st_mtime_ns == stamps[i], "finished part was recomputed"
    assert read_local_effects(out).num_rows == table.num_rows
    assert run_local_stage(str(tmp_path / "effects.zarr"), out, _options()) == 0

    fresh = tmp_path / "local_effects_threshold2.parquet"
    fresh.mkdir()
    in_process = EngineOptions(actors=0)
    assert run_local_stage(str(tmp_path / "effects.zarr"), fresh, _options(threshold=2.0), in_process) == store.n_chunks


def _assert_tables_identical(got: pa.Table, expected: pa.Table) -> None:
    """Same schema and the same values, bit for bit (NaN where NaN)."""
    assert got.schema.equals(expected.schema)
    for name in expected.column_names:
        have, want = (t.column(name).to_numpy(zero_copy_only=False) for t in (got, expected))
        if want.dtype.kind == "f":
            have, want = have.view(np.uint64), want.view(np.uint64)
        np.testing.assert_array_equal(have, want, err_msg=name)


def test_local_stage_needs_an_existing_directory(tmp_path) -> None:
    _effects_store(tmp_path / "effects.zarr")
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="nowhere: the local-MR directory does not exist"):
        run_local_stage(str(tmp_path / "effects.zarr"), missing, _options(), EngineOptions(actors=0))
    assert not missing.exists()


def test_local_stage_failures_name_chunks_and_seq_ids_and_list_all_in_a_file(tmp_path, ray_local) -> None:
    store = _effects_store(tmp_path / "effects.zarr", n=24)
    for chunk in (1, 2, 3, 5):  # unreadable chunks: the reads fail, the other parts are written
        (tmp_path / "effects.zarr" / "beta" / "c" / str(chunk) / "0" / "0" / "0").write_bytes(b"not a zarr chunk")
    out = tmp_path / "local_effects.parquet"
    out.mkdir()
    with pytest.raises(ChunkFailedError) as info:
        run_local_stage(str(tmp_path / "effects.zarr"), out, _options())
    message = str(info.value)
    assert "local MR: 4 chunk(s) failed; 2 of 6 chunks are committed" in message
    assert re.search(r"first 3: chunk 1 \(rows 4\.\.8, seq_ids \['seq4', 'seq5', 'seq6', 'seq7'\] \(4\)\)", message)
    assert "chunk 3 (rows 12..16" in message and "chunk 5" not in message
    listing = out / "_failed_chunks.txt"
    assert f"every failed chunk is listed in {listing}" in message
    lines = listing.read_text().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["chunk 1", "chunk 2", "chunk 3", "chunk 5"]
    assert "seq_ids ['seq20', 'seq21', 'seq22', 'seq23'] (4)" in lines[3]
    assert sorted(p.name for p in out.glob("part-*")) == ["part-000000.parquet", "part-000004.parquet"]
    assert read_local_effects(out).num_rows == 8 * 2 * 2, "the failure file must stay out of the dataset"
    assert store.n_chunks == 6


def test_local_stage_that_cannot_place_its_actors_stalls(tmp_path, ray_local) -> None:
    from ray.util.placement_group import placement_group, remove_placement_group

    _effects_store(tmp_path / "effects.zarr")
    out = tmp_path / "local_effects.parquet"
    out.mkdir()
    hog = placement_group([{"CPU": 2}])
    ray_local.get(hog.ready())
    try:
        with pytest.raises(StalledRunError, match=r"no work finished for 3 s \(0 of 3 chunks of local MR.*actors \[0"):
            run_local_stage(str(tmp_path / "effects.zarr"), out, _options(), EngineOptions(stall_timeout_s=3.0))
    finally:
        remove_placement_group(hog)
    assert list(out.iterdir()) == []


def _local_table(rng, groups: dict) -> pa.Table:
    rows = {"exposure": [], "outcome": [], "method": [], "estimate": [], "se": []}
    for (exposure, outcome, method), (y, se) in groups.items():
        rows["exposure"] += [exposure] * len(y)
        rows["outcome"] += [outcome] * len(y)
        rows["method"] += [method] * len(y)
        rows["estimate"] += list(y)
        rows["se"] += list(se)
    order = rng.permutation(len(rows["estimate"]))
    return pa.table({k: [v[i] for i in order] for k, v in rows.items()})


@pytest.mark.parametrize(("method", "test"), [("DL", "z"), ("REML", "knha")])
def test_global_table_equals_scalar_meta_analysis_per_group(method: str, test: str) -> None:
    rng = np.random.default_rng(7)
    groups = {
        ("X", "Y", "egger"): (rng.normal(0.3, 0.2, 9), rng.uniform(0.05, 0.3, 9)),
        ("Y", "X", "egger"): (rng.normal(0.0, 0.1, 4), rng.uniform(0.05, 0.3, 4)),
        ("X", "Y", "ivw"): (np.array([0.2, np.nan, 0.4]), np.array([0.1, 0.1, 0.0])),
    }
    table = global_effects_table(_local_table(rng, groups), method=method, test=test)
    got = {(r["exposure"], r["outcome"], r["method"]): r for r in table.to_pylist()}
    for key, (y, se) in groups.items():
        ok = np.isfinite(y) & (se > 0)
        expected = meta_analysis(y[ok], se[ok], method=method, test=test)
        assert got[key]["k"] == ok.sum() and got[key]["n_regions"] == len(y)
        for field in ("estimate", "se", "ci_low", "ci_high", "p_value", "tau2", "i2"):
            assert got[key][field] == pytest.approx(getattr(expected, field), rel=1e-10, abs=1e-14)


def _reference_global_table(local: pa.Table, method: str, test: str) -> dict[str, np.ndarray]:
    """The grouping spelled out: a dict of row lists per key, keys sorted, rows in table order."""
    groups = defaultdict(list)
    for row in local.to_pylist():
        groups[(row["exposure"], row["outcome"], row["method"])].append(row)
    keys = sorted(groups)
    pooled = [
        [
            (r["estimate"], r["se"])
            for r in groups[key]
            if np.isfinite(r["estimate"]) and np.isfinite(r["se"]) and r["se"] > 0
        ]
        for key in keys
    ]
    width = max(len(studies) for studies in pooled) or 1
    shape = (len(keys), width)
    y, se, mask = np.zeros(shape), np.ones(shape), np.zeros(shape, bool)
    for g, studies in enumerate(pooled):
        for j, (estimate, error) in enumerate(studies):
            y[g, j], se[g, j], mask[g, j] = estimate, error, True
    result = meta_analysis_batched(y, se, mask, method=method, test=test)
    columns = {
        name: np.array([key[i] for key in keys], dtype=object)
        for i, name in enumerate(("exposure", "outcome", "method"))
    }
    columns.update({name: getattr(result, name) for name in GLOBAL_FIELDS})
    columns["k"] = np.array([len(studies) for studies in pooled])
    columns["n_regions"] = np.array([len(groups[key]) for key in keys])
    return columns


@pytest.mark.parametrize(("method", "test"), [("DL", "z"), ("REML", "knha")])
def test_global_table_grouping_is_bitwise_the_reference(method: str, test: str) -> None:
    rng = np.random.default_rng(11)
    names = ["A", "AB", "a", "TAL1"]  # "A" < "AB": a prefix sorts first, as in a tuple sort
    groups = {}
    for exposure in names:
        for outcome in names[:3]:
            for mr_method in ("deepmr", "ivw", "egger"):
                n = int(rng.integers(1, 12))
                y, se = rng.normal(0.2, 0.3, n), rng.uniform(0.0, 0.3, n)
                y[rng.random(n) < 0.2] = np.nan
                groups[(exposure, outcome, mr_method)] = (y, se)
    groups[("A", "a", "ivw")] = (np.array([0.3]), np.array([0.1]))  # k = 1
    groups[("a", "A", "ivw")] = (np.array([0.3, np.nan]), np.array([0.1, 0.1]))  # k = 1 of 2
    groups[("a", "AB", "ivw")] = (np.array([np.nan]), np.array([0.1]))  # k = 0
    local = _local_table(rng, groups)
    chunked = pa.concat_tables([local.slice(0, 100), local.slice(100)])  # as read from parts
    got = global_effects_table(chunked, method=method, test=test)
    expected = _reference_global_table(local, method, test)
    assert got.column_names[:3] == ["exposure", "outcome", "method"]
    assert got.num_rows == len(groups) and set(got.column_names) >= set(expected)
    for name, want in expected.items():
        have = got.column(name).to_numpy(zero_copy_only=False)
        if want.dtype == np.float64:
            np.testing.assert_array_equal(have.view(np.uint64), want.view(np.uint64), err_msg=name)
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)
