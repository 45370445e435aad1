"""sequences.zarr written from arrays: round trips, reading, URLs, validation, atomic publish."""

from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr

from dmr_ray.alphabet import tokens_to_onehot
from dmr_ray.errors import InputError
from dmr_ray.store import (
    SequenceStore,
    build_from_arrays,
    default_chunk_size,
    open_sequence_store,
    store_info,
    write_sequence_store,
)


@pytest.fixture
def tokens() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 5, size=(23, 17)).astype(np.uint8)


@pytest.fixture
def store(tmp_path: Path, tokens: np.ndarray) -> SequenceStore:
    ids = [f"seq{i}" for i in range(len(tokens))]
    coords = {"chrom": ["chr1"] * 23, "start": np.arange(23) * 100, "end": np.arange(23) * 100 + 17}
    return write_sequence_store(tmp_path / "s.zarr", tokens, ids, coords, chunk_size=5, source="test")


def test_round_trip_and_layout(store: SequenceStore, tokens: np.ndarray) -> None:
    assert (store.n_seq, store.length, store.chunk_size, store.n_chunks) == (23, 17, 5, 5)
    np.testing.assert_array_equal(store.read(), tokens)
    assert store.seq_ids().tolist() == [f"seq{i}" for i in range(23)]
    coords = store.coordinates(20, 23)
    assert coords is not None
    assert coords.chrom.tolist() == ["chr1"] * 3 and coords.start.tolist() == [2000, 2100, 2200]
    assert coords.strand.tolist() == ["."] * 3
    attrs = store.attrs
    assert attrs["alphabet"] == "ACGTN" and attrs["length"] == 17 and attrs["source"] == "test"
    assert attrs["format_version"] == 1 and attrs["chunk_size"] == 5
    group = zarr.open_group(store.location, mode="r")
    assert group["tokens"].chunks == (5, 17) and group["tokens"].dtype == np.uint8


def test_read_by_range_and_chunk(store: SequenceStore, tokens: np.ndarray) -> None:
    np.testing.assert_array_equal(store.read(7, 12), tokens[7:12])
    assert store.read(4, 4).shape == (0, 17)
    assert store.chunk_bounds(4) == (20, 23)
    chunk, ids = store.read_chunk(4, validate=True)
    np.testing.assert_array_equal(chunk, tokens[20:23])
    assert ids.tolist() == ["seq20", "seq21", "seq22"]
    assert store.seq_ids(3, 5).tolist() == ["seq3", "seq4"]
    with pytest.raises(IndexError):
        store.read_chunk(5)
    with pytest.raises(IndexError):
        store.read(10, 30)


def test_default_ids_and_no_coordinates(tmp_path: Path, tokens: np.ndarray) -> None:
    store = write_sequence_store(tmp_path / "s.zarr", tokens)
    assert store.seq_ids().dtype == np.int64 and store.seq_ids(0, 3).tolist() == [0, 1, 2]
    assert store.coordinates() is None and not store.has_coordinates


def test_default_chunk_size() -> None:
    assert default_chunk_size(1_000_000, 1000) == 1049
    assert default_chunk_size(200, 500) == 25
    assert default_chunk_size(3, 10**7) == 1


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_build_from_onehot(tmp_path: Path, tokens: np.ndarray, layout: str) -> None:
    onehot = tokens_to_onehot(tokens)
    array = onehot if layout == "NCL" else onehot.transpose(0, 2, 1)
    store = build_from_arrays(array, tmp_path / "s.zarr", seq_ids=np.arange(23) * 2)
    np.testing.assert_array_equal(store.read(), tokens)
    assert store.seq_ids(0, 2).tolist() == [0, 2]


def test_build_from_ambiguous_onehot_needs_layout(tmp_path: Path) -> None:
    onehot = tokens_to_onehot(np.array([[0, 1, 2, 3]], dtype=np.uint8))
    with pytest.raises(InputError, match="layout"):
        build_from_arrays(onehot, tmp_path / "a.zarr")
    store = build_from_arrays(onehot, tmp_path / "b.zarr", layout="NCL")
    assert store.read().tolist() == [[0, 1, 2, 3]]


@pytest.mark.parametrize(
    "array, ids, match",
    [
        (np.zeros((2, 3, 5, 1), np.uint8), None, "shape"),
        (np.full((2, 3), 5, np.uint8), None, r"value 5 at index \(0, 0\)"),
        (np.zeros((2, 3), np.float32), None, "dtype float32"),
        (np.zeros((0, 3), np.uint8), None, "non-empty"),
        (np.zeros((3, 3), np.uint8), ["a", "b", "a"], r"'a' is not unique \(rows \[0, 2\]\)"),
        (np.zeros((3, 3), np.uint8), ["a", "b"], "expected 3 identifiers"),
        (np.zeros((2, 3), np.uint8), [0.5, 1.5], "strings or integers"),
    ],
)
def test_bad_arrays(tmp_path: Path, array: np.ndarray, ids: list | None, match: str) -> None:
    with pytest.raises(InputError, match=match):
        build_from_arrays(array, tmp_path / "s.zarr", seq_ids=ids)
    assert os.listdir(tmp_path) == []


def test_bad_coordinates(tmp_path: Path, tokens: np.ndarray) -> None:
    coords = {"chrom": ["c"] * 23, "start": np.arange(23), "end": np.arange(23)}
    with pytest.raises(InputError, match="row 0 needs 0 <= start < end"):
        write_sequence_store(tmp_path / "s.zarr", tokens, coords=coords)
    with pytest.raises(InputError, match="missing"):
        write_sequence_store(tmp_path / "s.zarr", tokens, coords={"chrom": ["c"] * 23})


def test_existing_store_needs_overwrite(store: SequenceStore, tokens: np.ndarray) -> None:
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        write_sequence_store(store.location, tokens)
    replaced = write_sequence_store(store.location, tokens[:4], overwrite=True)
    assert replaced.n_seq == 4 and not replaced.has_coordinates
    assert os.listdir(Path(store.location).parent) == ["s.zarr"]


def test_url_access(store: SequenceStore, tokens: np.ndarray) -> None:
    via_file_url = open_sequence_store(f"file://{store.location}")
    np.testing.assert_array_equal(via_file_url.read(3, 9), tokens[3:9])
    url = f"memory://{uuid.uuid4().hex}/seqs.zarr"
    in_memory = write_sequence_store(url, tokens, chunk_size=4)
    assert in_memory.location == url
    reopened = open_sequence_store(url)
    np.testing.assert_array_equal(reopened.read_chunk(5)[0], tokens[20:23])
    assert reopened.seq_ids(0, 2).tolist() == [0, 1]
    with pytest.raises(InputError, match="already exists"):
        write_sequence_store(url, tokens)


def test_pickles_cheaply_and_reopens(store: SequenceStore, tokens: np.ndarray) -> None:
    blob = pickle.dumps(store)
    assert len(blob) < 2000
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.read(0, 5), tokens[:5])
    assert clone.n_chunks == store.n_chunks


def test_store_info(store: SequenceStore) -> None:
    info = store_info(store.location)
    assert info["kind"] == "sequences" and "committed_by" not in info
    assert info["n_seq"] == 23 and info["length"] == 17 and info["n_chunks"] == 5
    assert info["has_coordinates"] and info["source"] == "test" and info["format_version"] == 1
    assert info["first_seq_ids"] == ["seq0", "seq1", "seq2", "seq3", "seq4"]


def test_missing_array_is_named(store: SequenceStore) -> None:
    zarr.open_group(store.location, mode="r+").__delitem__("seq_id")
    with pytest.raises(InputError, match=rf"{store.location}: array 'seq_id' is missing"):
        open_sequence_store(store.location)


def test_wrong_dtype_is_named(store: SequenceStore) -> None:
    group = zarr.open_group(store.location, mode="r+")
    del group["tokens"]
    group.create_array("tokens", shape=(23, 17), dtype=np.int16, chunks=(5, 17))
    with pytest.raises(InputError, match=r"array 'tokens' has dtype int16"):
        open_sequence_store(store.location)


def test_wrong_attrs_are_named(store: SequenceStore) -> None:
    zarr.open_group(store.location, mode="r+").attrs["format"] = "something else"
    with pytest.raises(InputError, match="not a dmr_ray.sequences store"):
        open_sequence_store(store.location)


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a readable Zarr group"):
        open_sequence_store(tmp_path / "empty")


def test_out_of_range_tokens_found_when_validating(store: SequenceStore) -> None:
    zarr.open_group(store.location, mode="r+")["tokens"][12, 3] = 9
    assert store.read(10, 15)[2, 3] == 9
    with pytest.raises(InputError, match=rf"{store.location}: array 'tokens': value 9 at index \(12, 3\)"):
        store.read_chunk(2, validate=True)
