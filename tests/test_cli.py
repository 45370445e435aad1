"""The command line end to end: FASTA + BED -> sequences.zarr -> effects.zarr of a BPNet ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dmr_ray.cli import main
from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models import load_model_spec, save_weights
from dmr_ray.models.architectures import bpnet
from dmr_ray.store import EffectsStore, open_sequence_store
from dmr_ray.uncertainty import build_predictor

BPNET_KWARGS = {"filters": 4, "n_layers": 2, "n_tasks": 2, "strands": 2, "profile_kernel": 5}


@pytest.fixture()
def genome(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    fasta = tmp_path / "genome.fa"
    chroms = {"chr1": 300, "chr2": 200}
    with fasta.open("w") as fh:
        for name, size in chroms.items():
            seq = "".join(rng.choice(list("ACGTacgt"), size))
            fh.write(f">{name}\n" + "\n".join(seq[i : i + 60] for i in range(0, size, 60)) + "\n")
    bed = tmp_path / "peaks.bed"
    bed.write_text("chr1\t40\t70\tpeakA\nchr1\t150\t190\tpeakB\nchr2\t60\t100\tpeakC\n")
    return fasta, bed


def _bpnet_spec(directory: Path, length: int) -> Path:
    weights = []
    for i in range(2):
        torch.manual_seed(i)
        path = directory / f"member{i}.safetensors"
        save_weights(bpnet(**BPNET_KWARGS), path)
        weights.append(path.name)
    spec = {
        "entrypoint": "dmr_ray.models.architectures:bpnet",
        "kwargs": BPNET_KWARGS,
        "weights": weights,
        "input_length": length,
        "outputs": [
            {"name": "TF0", "select": "counts", "index": 0, "reduce": "mean"},
            {"name": "TF1", "select": "counts", "index": 1, "reduce": "mean"},
        ],
        "replicates": {"kind": "ensemble"},
    }
    path = directory / "model.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_store_build_info_and_ism_of_a_bpnet_ensemble(genome, tmp_path, capsys) -> None:
    fasta, bed = genome
    store = tmp_path / "seqs.zarr"
    assert (
        main(["store", "build", "--fasta", str(fasta), "--bed", str(bed), "--length", "32", "--out", str(store)]) == 0
    )
    assert main(["store", "info", str(store)]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["n_seq"] == 3 and info["length"] == 32
    assert info["first_seq_ids"] == ["peakA", "peakB", "peakC"]

    spec_path = _bpnet_spec(tmp_path, 32)
    out = tmp_path / "effects.zarr"
    assert main(["ism", "--store", str(store), "--model", str(spec_path), "--out", str(out), "--actors", "0"]) == 0
    effects = EffectsStore.open(str(out), mode="r")
    assert effects.is_complete and effects.tasks == ["TF0", "TF1"]
    assert effects.attrs["replicate_kind"] == "ensemble" and effects.attrs["replicate_count"] == 2
    tokens = open_sequence_store(str(store)).read(0, 3)
    expected = saturation_mutagenesis(build_predictor(load_model_spec(spec_path)), tokens)
    got = effects.read(0, 3)
    np.testing.assert_allclose(got["beta"], expected.beta, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["se"], expected.se, rtol=1e-6, atol=1e-7)
    assert list(got["seq_id"]) == ["peakA", "peakB", "peakC"]


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("dmr-ray: error:") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    ("bed_text", "fasta_patch", "message"),
    [
        ("chr1\t40\t70\n", ("A", "X"), "symbol"),
        ("chrZ\t40\t70\n", None, "chrZ"),
        ("chr1\t280\t330\n", None, "chr1"),
        ("chr1\tforty\t70\n", None, "line 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(genome, tmp_path, capsys, bed_text, fasta_patch, message) -> None:
    fasta, bed = genome
    bed.write_text(bed_text)
    if fasta_patch:
        lines = fasta.read_text().splitlines()
        lines[1] = lines[1][:50] + fasta_patch[1] + lines[1][51:]  # inside the window
        fasta.write_text("\n".join(lines) + "\n")
    code = main(
        [
            "store",
            "build",
            "--fasta",
            str(fasta),
            "--bed",
            str(bed),
            "--length",
            "32",
            "--out",
            str(tmp_path / "bad.zarr"),
        ]
    )
    assert code == 2 and message in _one_line_error(capsys)
    assert not (tmp_path / "bad.zarr").exists()


def _store_of_32_bp(genome: tuple[Path, Path], tmp_path: Path) -> Path:
    fasta, bed = genome
    store = tmp_path / "seqs.zarr"
    main(["store", "build", "--fasta", str(fasta), "--bed", str(bed), "--length", "32", "--out", str(store)])
    return store


def test_ism_with_a_broken_spec_names_the_field(genome, tmp_path, capsys) -> None:
    store = _store_of_32_bp(genome, tmp_path)
    spec_path = _bpnet_spec(tmp_path, 32)
    spec = yaml.safe_load(spec_path.read_text())
    spec["outputs"][1]["index"] = 9
    spec_path.write_text(yaml.safe_dump(spec))
    code = main(
        ["ism", "--store", str(store), "--model", str(spec_path), "--out", str(tmp_path / "e.zarr"), "--actors", "0"]
    )
    assert code == 2 and "outputs[1].index" in capsys.readouterr().err


def test_ism_precision_runs_the_fast_path_in_bfloat16(genome, tmp_path) -> None:
    store = _store_of_32_bp(genome, tmp_path)
    spec_path = _bpnet_spec(tmp_path, 32)
    out = tmp_path / "effects.zarr"
    assert (
        main(
            [
                "ism",
                "--store",
                str(store),
                "--model",
                str(spec_path),
                "--out",
                str(out),
                "--actors",
                "0",
                "--fast",
                "true",
                "--precision",
                "bfloat16",
            ]
        )
        == 0
    )
    effects = EffectsStore.open(str(out), mode="r")
    assert effects.attrs["precision"] == "bfloat16"
    tokens = open_sequence_store(str(store)).read(0, 3)
    expected = saturation_mutagenesis(
        build_predictor(load_model_spec(spec_path)), tokens, fast=True, precision="bfloat16"
    )
    np.testing.assert_allclose(effects.read(0, 3)["beta"], expected.beta, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--precision", "fp8"], "precision: must be one of ['bfloat16', 'float16', 'float32'], got 'fp8'"),
        (["--precision", "bfloat16", "--fast", "false"], "precision: 'bfloat16' needs the fast path"),
    ],
)
def test_ism_bad_precision_is_one_line_and_exit_code_2(tmp_path, capsys, options, message) -> None:
    argv = [
        "ism",
        "--store",
        str(tmp_path / "s.zarr"),
        "--model",
        str(tmp_path / "m.yaml"),
        "--out",
        str(tmp_path / "e.zarr"),
        *options,
    ]
    assert main(argv) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "e.zarr").exists()


@pytest.mark.parametrize(
    ("ism", "message"),
    [
        ({"precision": "fp8"}, "ism.precision: Input should be 'float32', 'bfloat16' or 'float16'"),
        ({"fast": False, "precision": "float16"}, "ism.precision: 'float16' needs the fast path (fast=True or 'auto')"),
    ],
)
def test_deep_mr_config_names_a_bad_ism_precision(tmp_path, capsys, ism, message) -> None:
    config = tmp_path / "audit.yaml"
    config.write_text(yaml.safe_dump({"store": "seqs.zarr", "model": "model.yaml", "out": "audit", "ism": ism}))
    assert main(["deep-mr", "run", str(config)]) == 2
    assert message in _one_line_error(capsys)
