"""Overwriting stores: only a store of the same kind that dmr_ray wrote is ever replaced."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr

import dmr_ray.store
from dmr_ray.errors import InputError
from dmr_ray.store import EffectsStore, build_from_fasta_bed, open_sequence_store, write_sequence_store
from dmr_ray.store._zarr_io import store_kind

TOKENS = np.tile(np.arange(4, dtype=np.uint8), (6, 2))
ATTRS = {
    "model_digest": "d",
    "replicate_kind": "single",
    "replicate_count": 1,
    "calibration": "none",
    "ddof": 0,
    "code_version": "0",
    "sequence_store": "s",
}


def effects(path: Path | str, *, overwrite: bool = False, digest: str = "d") -> EffectsStore:
    return EffectsStore.create(
        path,
        seq_ids=np.arange(6),
        length=8,
        tasks=["t"],
        chunk_size=2,
        attrs=dict(ATTRS, model_digest=digest),
        overwrite=overwrite,
    )


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_marker_attribute_and_kind() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    sequences = write_sequence_store(f"{url}/s.zarr", TOKENS)
    output = effects(f"{url}/e.zarr")
    assert sequences.attrs["dmr_ray"] == {"kind": "sequences", "format": 1}
    assert output.attrs["dmr_ray"] == {"kind": "effects", "format": 1}
    assert store_kind(sequences.location) == "sequences" and store_kind(output.location) == "effects"


@pytest.mark.parametrize("overwrite", [False, True])
def test_directory_of_user_files_is_kept(tmp_path: Path, overwrite: bool) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.txt").write_text("my notes")
    (results / "genome.fa").write_text(">c\nACGT\n")
    before = tree(tmp_path)
    message = r"results: is a directory holding genome.fa, notes.txt, not a dmr_ray store; .*choose another path"
    with pytest.raises(InputError, match=message):
        effects(results, overwrite=overwrite)
    with pytest.raises(InputError, match=message):
        write_sequence_store(results, TOKENS, overwrite=overwrite)
    assert tree(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["results"]


def test_store_holding_user_files_is_kept(tmp_path: Path) -> None:
    store = write_sequence_store(tmp_path / "s.zarr", TOKENS)
    (tmp_path / "s.zarr" / "README.txt").write_text("mine")
    before = tree(tmp_path)
    with pytest.raises(InputError, match=r"holds a sequence store and also README.txt, not written by dmr_ray"):
        write_sequence_store(store.location, TOKENS[:2], overwrite=True)
    assert tree(tmp_path) == before


def test_effects_store_is_not_replaced_by_a_sequence_store(tmp_path: Path) -> None:
    output = effects(tmp_path / "e.zarr")
    before = tree(tmp_path)
    with pytest.raises(InputError, match=r"e.zarr: holds an effects store, not a sequence store"):
        write_sequence_store(output.location, TOKENS, overwrite=True)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "make, holds",
    [
        (lambda p: p.write_text("x"), "is a file"),
        (lambda p: zarr.open_group(str(p), mode="w").attrs.update({"format": "mine"}), "holds a Zarr group that"),
    ],
)
def test_other_things_are_refused(tmp_path: Path, make, holds: str) -> None:
    make(tmp_path / "x.zarr")
    before = tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(InputError, match=f"x.zarr: {holds}"):
            write_sequence_store(tmp_path / "x.zarr", TOKENS, overwrite=overwrite)
        with pytest.raises(InputError, match=f"x.zarr: {holds}"):
            effects(tmp_path / "x.zarr", overwrite=overwrite)
    assert tree(tmp_path) == before


def test_empty_directory_is_filled(tmp_path: Path) -> None:
    (tmp_path / "s.zarr").mkdir()
    assert write_sequence_store(tmp_path / "s.zarr", TOKENS).n_seq == 6


def test_same_kind_is_replaced_with_overwrite(tmp_path: Path) -> None:
    effects(tmp_path / "e.zarr").write_chunk(0, *(np.zeros(s, np.float32) for s in [(2, 8, 3, 1)] * 2 + [(2, 1)] * 2))
    fresh = effects(tmp_path / "e.zarr", overwrite=True, digest="new")
    assert fresh.completed_chunks() == set() and fresh.attrs["model_digest"] == "new"
    assert sorted(os.listdir(tmp_path)) == ["e.zarr"]


def test_store_written_before_the_marker_is_recognised(tmp_path: Path) -> None:
    store = write_sequence_store(tmp_path / "s.zarr", TOKENS)
    meta_path = tmp_path / "s.zarr" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["dmr_ray"]
    meta_path.write_text(json.dumps(meta))
    assert store_kind(store.location) == "sequences"
    with pytest.raises(InputError, match="already exists"):
        write_sequence_store(store.location, TOKENS[:3])
    assert write_sequence_store(store.location, TOKENS[:3], overwrite=True).n_seq == 3


def test_urls_are_checked_too() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    sequences = write_sequence_store(f"{url}/s.zarr", TOKENS)
    with pytest.raises(InputError, match=r"s.zarr: holds a sequence store, not an effects store"):
        effects(sequences.location, overwrite=True)
    assert open_sequence_store(sequences.location).n_seq == 6


def test_fasta_bed_build_refuses_before_reading_inputs(tmp_path: Path) -> None:
    (tmp_path / "genome.fa").write_text(">c\nACGTACGTAC\n")
    (tmp_path / "peaks.bed").write_text("c\t1\t5\n")
    before = tree(tmp_path)
    with pytest.raises(InputError, match="is a directory holding genome.fa, peaks.bed"):
        build_from_fasta_bed(tmp_path / "genome.fa", tmp_path / "peaks.bed", tmp_path, overwrite=True)
    assert tree(tmp_path) == before  # not even genome.fa.fai was written


def test_normalise_location_is_public(tmp_path: Path) -> None:
    assert "normalise_location" in dmr_ray.store.__all__
    assert dmr_ray.store.normalise_location(f"file://{tmp_path}/s.zarr") == f"{tmp_path}/s.zarr"
    assert dmr_ray.store.normalise_location("s3://bucket/s.zarr/") == "s3://bucket/s.zarr"


def test_store_info_names_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"is a directory holding notes.txt, not a dmr_ray store"):
        dmr_ray.store.store_info(tmp_path)
