"""The reported ``--overwrite`` losses, through the command line: each is now one line and no change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dmr_ray.cli import main
from dmr_ray.models import save_weights
from dmr_ray.models.architectures import small_cnn
from dmr_ray.store import open_sequence_store, write_sequence_store

KWARGS = {"length": 12, "filters": 2, "kernel": 3, "n_conv": 1, "n_dense": 0, "n_tasks": 1}


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A sequence store ``s.zarr`` and a one-replicate model spec in ``tmp_path``."""
    write_sequence_store(tmp_path / "s.zarr", np.random.default_rng(0).integers(0, 4, (4, 12)), chunk_size=2)
    torch.manual_seed(0)
    save_weights(small_cnn(**KWARGS), tmp_path / "m.safetensors")
    doc = {
        "entrypoint": "dmr_ray.models.architectures:small_cnn",
        "kwargs": KWARGS,
        "weights": "m.safetensors",
        "input_length": 12,
        "outputs": [{"name": "y", "index": 0}],
        "replicates": {"kind": "single"},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "s.zarr", tmp_path / "spec.yaml"


def ism(store: Path, spec: Path, out: Path) -> list[str]:
    return ["ism", "--store", str(store), "--model", str(spec), "--out", str(out), "--overwrite", "--actors", "0"]


def one_line_error(capsys: pytest.CaptureFixture[str], *parts: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dmr-ray: error: "), err
    assert all(part in err for part in parts), err


def test_ism_does_not_replace_its_input_store(inputs, tmp_path: Path, capsys) -> None:
    store, spec = inputs
    before = tree(tmp_path)
    assert main(ism(store, spec, store)) == 2
    one_line_error(capsys, f"out: {store} is the store of the job")
    assert tree(tmp_path) == before and open_sequence_store(store).n_seq == 4


def test_ism_keeps_user_files_in_out(inputs, tmp_path: Path, capsys) -> None:
    store, spec = inputs
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("keep me")
    before = tree(tmp_path)
    assert main(ism(store, spec, tmp_path / "results")) == 2
    one_line_error(capsys, "results: is a directory holding notes.txt, not a dmr_ray store")
    assert tree(tmp_path) == before


def test_ism_overwrite_replaces_its_own_output(inputs, tmp_path: Path) -> None:
    store, spec = inputs
    assert main(ism(store, spec, tmp_path / "e.zarr")) == 0
    assert main(ism(store, spec, tmp_path / "e.zarr")) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.zarr", "m.safetensors", "s.zarr", "spec.yaml"]


def test_store_build_keeps_fasta_and_bed_in_out(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "genome.fa").write_text(">c\nACGTACGTACGTACGT\n")
    (data / "peaks.bed").write_text("c\t2\t10\n")
    before = tree(tmp_path)
    argv = ["store", "build", "--fasta", str(data / "genome.fa"), "--bed", str(data / "peaks.bed")]
    assert main([*argv, "--out", str(data), "--overwrite"]) == 2
    one_line_error(capsys, f"{data}: is a directory holding genome.fa, peaks.bed, not a dmr_ray store")
    assert tree(tmp_path) == before
