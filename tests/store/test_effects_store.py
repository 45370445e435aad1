"""effects.zarr: create, resume, conflicts, overwrite, chunk writes and the completion manifest."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from dmr_ray.errors import InputError, ResumeConflictError
from dmr_ray.store import EffectsStore, open_sequence_store, store_info, write_sequence_store

N_SEQ, LENGTH, TASKS, CHUNK = 10, 6, ["dnase", "atac"], 4
ATTRS = {
    "model_digest": "sha256:abc",
    "replicate_kind": "ensemble",
    "replicate_count": 5,
    "calibration": "none",
    "ddof": 0,
    "sequence_store": "seqs.zarr",
    "fast": False,
}
INFO = {"code_version": "0.1.0", "job": {"batch_size": 64}}
IDS = [f"r{i}" for i in range(N_SEQ)]


def create(path: Path | str, **changes: Any) -> EffectsStore:
    kwargs = {"seq_ids": IDS, "length": LENGTH, "tasks": TASKS, "chunk_size": CHUNK, "attrs": ATTRS, "info": INFO}
    kwargs.update(changes)
    return EffectsStore.create(path, **kwargs)


def chunk_data(store: EffectsStore, i: int, value: float) -> tuple[np.ndarray, ...]:
    start, stop = store.chunk_bounds(i)
    rows = stop - start
    big = np.full((rows, LENGTH, 3, len(TASKS)), value) + np.arange(rows)[:, None, None, None]
    small = np.full((rows, len(TASKS)), -value)
    return big, big / 10, small, small / 10


@pytest.fixture
def store(tmp_path: Path) -> EffectsStore:
    return create(tmp_path / "effects.zarr")


def test_layout(store: EffectsStore) -> None:
    group = zarr.open_group(store.location, mode="r")
    assert group["beta"].shape == (N_SEQ, LENGTH, 3, 2) and group["beta"].chunks == (CHUNK, LENGTH, 3, 2)
    assert group["se"].dtype == np.float32 and group["ref_mean"].chunks == (CHUNK, 2)
    assert group["complete"].shape == (3,) and group["complete"].chunks == (1,)
    assert store.tasks == TASKS and store.seq_ids(8).tolist() == ["r8", "r9"]
    assert {key: store.attrs[key] for key in ATTRS} == ATTRS
    assert {key: store.attrs[key] for key in INFO} == INFO
    assert store.attrs["identity_keys"] == sorted(ATTRS)
    assert store.attrs["chunk_size"] == CHUNK and store.n_chunks == 3 and store.chunk_bounds(2) == (8, 10)
    assert store.completed_chunks() == set() and store.missing_chunks() == [0, 1, 2] and not store.is_complete


def test_write_read_and_idempotence(store: EffectsStore) -> None:
    store.write_chunk(2, *chunk_data(store, 2, 1.5))
    store.write_chunk(2, *chunk_data(store, 2, 1.5))
    assert store.completed_chunks() == {2} and store.missing_chunks() == [0, 1]
    got = store.read_chunk(2)
    expected = chunk_data(store, 2, 1.5)
    for name, value in zip(("beta", "se", "ref_mean", "ref_se"), expected, strict=True):
        np.testing.assert_allclose(got[name], value.astype(np.float32))
        assert got[name].dtype == np.float32
    assert got["seq_id"].tolist() == ["r8", "r9"]
    store.write_chunk(2, *chunk_data(store, 2, 7.0))
    assert store.read_chunk(2)["ref_mean"][0, 0] == -7.0
    for i in (0, 1):
        store.write_chunk(i, *chunk_data(store, i, 1.0))
    assert store.is_complete and store.read()["beta"].shape == (N_SEQ, LENGTH, 3, 2)


def test_incomplete_chunks_are_absent(store: EffectsStore) -> None:
    store.write_chunk(1, *chunk_data(store, 1, 1.0))
    assert store.read(4, 8)["beta"].shape == (4, LENGTH, 3, 2)
    with pytest.raises(InputError, match=r"rows 2\.\.6 include incomplete chunks \[0\]"):
        store.read(2, 6)


def test_flag_set_only_after_data(store: EffectsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[str, Any]] = []
    original = zarr.Array.__setitem__

    def recording(self: zarr.Array, key: Any, value: Any) -> None:
        writes.append((self.basename, np.asarray(value).ravel()[:1].tolist()))
        if self.basename == "ref_se" and len(writes) < 6:
            raise OSError("simulated crash")
        original(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", recording)
    with pytest.raises(OSError, match="simulated crash"):
        store.write_chunk(0, *chunk_data(store, 0, 1.0))
    assert store.completed_chunks() == set()
    store.write_chunk(0, *chunk_data(store, 0, 1.0))
    assert [name for name, _ in writes[5:]] == [
        "complete",
        "beta",
        "se",
        "ref_mean",
        "ref_se",
        "committed_by",
        "complete",
    ]
    assert writes[-1] == ("complete", [True]) and store.completed_chunks() == {0}


def test_write_chunk_checks_shapes(store: EffectsStore) -> None:
    beta, se, ref_mean, ref_se = chunk_data(store, 0, 1.0)
    with pytest.raises(InputError, match=r"chunk 2: beta has shape \(4, 6, 3, 2\).*expected shape \(2, 6, 3, 2\)"):
        store.write_chunk(2, beta, se, ref_mean, ref_se)
    with pytest.raises(InputError, match="chunk 0: ref_se has shape"):
        store.write_chunk(0, beta, se, ref_mean, ref_se[:, :1])
    assert store.completed_chunks() == set()


def test_resume_keeps_completed_chunks(store: EffectsStore) -> None:
    store.write_chunk(1, *chunk_data(store, 1, 1.0))
    resumed = create(store.location, attrs=dict(ATTRS, ddof=np.int64(0)), info={"code_version": "0.2.0"})
    assert resumed.completed_chunks() == {1} and resumed.missing_chunks() == [0, 2]
    assert resumed.attrs["code_version"] == "0.1.0"  # informational attributes keep their first value


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"attrs": dict(ATTRS, model_digest="sha256:def")},
            "model_digest: 'sha256:abc' (existing) vs 'sha256:def' (now)",
        ),
        ({"attrs": dict(ATTRS, fast=True)}, "fast: False (existing) vs True (now)"),
        ({"attrs": {k: v for k, v in ATTRS.items() if k != "fast"}}, "fast: False (existing) vs '<absent>' (now)"),
        ({"tasks": ["dnase", "h3k27ac"]}, "tasks: ['dnase', 'atac'] (existing) vs ['dnase', 'h3k27ac'] (now)"),
        ({"chunk_size": 5}, "chunk_size: 4 (existing) vs 5 (now)"),
        ({"length": 7}, "length: 6 (existing) vs 7 (now)"),
        ({"seq_ids": IDS[:9] + ["other"]}, "seq_id: row 9 is 'r9' (existing) vs 'other' (now)"),
        ({"seq_ids": IDS[:9]}, "n_seq: 10 (existing) vs 9 (now)"),
    ],
)
def test_conflicts_name_each_difference(store: EffectsStore, changes: dict, message: str) -> None:
    with pytest.raises(ResumeConflictError) as info:
        create(store.location, **changes)
    assert message in str(info.value) and "--overwrite" in str(info.value)


def test_conflict_lists_every_key(store: EffectsStore) -> None:
    with pytest.raises(ResumeConflictError, match=r"calibration: .*; model_digest: .*--overwrite"):
        create(store.location, attrs=dict(ATTRS, model_digest="x", calibration="isotonic"))


def test_overwrite_starts_fresh(store: EffectsStore) -> None:
    store.write_chunk(0, *chunk_data(store, 0, 1.0))
    fresh = create(store.location, attrs=dict(ATTRS, model_digest="new"), overwrite=True)
    assert fresh.completed_chunks() == set() and fresh.attrs["model_digest"] == "new"


@pytest.mark.parametrize("overwrite", [False, True])
def test_sequence_store_at_path_is_never_replaced(tmp_path: Path, overwrite: bool) -> None:
    sequences = write_sequence_store(tmp_path / "x.zarr", np.zeros((2, 3), np.uint8))
    with pytest.raises(InputError, match=r"x.zarr: holds a sequence store, not an effects store; .*another path"):
        create(tmp_path / "x.zarr", overwrite=overwrite)
    assert open_sequence_store(sequences.location).n_seq == 2
    assert sorted(os.listdir(tmp_path)) == ["x.zarr"]


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"attrs": {"model_digest": "x"}}, r"missing keys \['replicate_kind'"),
        ({"attrs": dict(ATTRS, chunk_size=3)}, r"reserved keys \['chunk_size'\]"),
        ({"info": dict(INFO, ddof=1)}, r"keys in both attrs and info \['ddof'\]"),
        ({"attrs": dict(ATTRS, calibration=object())}, "'calibration'.*not JSON-serialisable"),
        ({"tasks": ["a", "a"]}, "unique"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer"),
        ({"seq_ids": ["a", "a"]}, "not unique"),
    ],
)
def test_bad_create_arguments(tmp_path: Path, changes: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        create(tmp_path / "e.zarr", **changes)


def test_create_for_mirrors_sequence_store(tmp_path: Path) -> None:
    sequences = write_sequence_store(tmp_path / "s.zarr", np.zeros((7, 5), np.uint8), IDS[:7], chunk_size=3)
    store = EffectsStore.create_for(sequences, tmp_path / "e.zarr", tasks=["t"], attrs=ATTRS, info=INFO)
    assert (store.n_seq, store.length, store.chunk_size, store.n_chunks) == (7, 5, 3, 3)
    assert store.seq_ids().tolist() == IDS[:7] and store.attrs["sequence_store"] == sequences.location


def test_pickle_and_url(store: EffectsStore) -> None:
    clone = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 4000
    clone.write_chunk(0, *chunk_data(clone, 0, 2.0))
    assert EffectsStore.open(store.location, mode="r").completed_chunks() == {0}
    remote = create(f"memory://{uuid.uuid4().hex}/effects.zarr")
    remote.write_chunk(1, *chunk_data(remote, 1, 3.0))
    assert EffectsStore.open(remote.location).completed_chunks() == {1}


def test_processes_write_different_chunks(store: EffectsStore) -> None:
    jobs = [(i, *chunk_data(store, i, float(i))) for i in range(store.n_chunks)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.starmap(store.write_chunk, jobs)
    assert store.is_complete
    np.testing.assert_allclose(store.read()["ref_mean"][:, 0], [0, 0, 0, 0, -1, -1, -1, -1, -2, -2])


def test_store_info_of_an_effects_store(store: EffectsStore) -> None:
    store.write_chunk(0, *chunk_data(store, 0, 1.0), run_id="run-a")
    store.write_chunk(2, *chunk_data(store, 2, 1.0), run_id="run-b")
    store.write_chunk(1, *chunk_data(store, 1, 1.0), run_id="run-b")
    EffectsStore.open(store.location)._root["complete"][1] = False  # committed_by is kept, the chunk is not
    info = store_info(f"file://{store.location}")
    assert info["kind"] == "effects" and info["location"] == store.location
    assert (info["n_seq"], info["length"], info["chunk_size"], info["tasks"]) == (N_SEQ, LENGTH, CHUNK, TASKS)
    assert (info["chunks_complete"], info["n_chunks"]) == (2, 3)
    assert info["committed_by"] == {"run-a": 1, "run-b": 1}
    assert info["identity"] == ATTRS and info["info"] == INFO
    assert info["first_seq_ids"] == IDS[:5] and info["format_version"] == 1


def test_store_info_counts_chunks_without_run_id(store: EffectsStore) -> None:
    store.write_chunk(1, *chunk_data(store, 1, 1.0))
    assert store_info(store.location)["committed_by"] == {"(unrecorded)": 1}
