"""Stores on an S3-protocol object store (moto's server on loopback): build, ISM, Ctrl-C, resume.

Credentials and the endpoint reach s3fs (through botocore) from the environment only, as on
a cluster: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_ENDPOINT_URL``. They are
fake here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from dmr_ray.engine import EngineOptions, IsmJob, run_ism
from dmr_ray.errors import InputError
from dmr_ray.models import save_weights
from dmr_ray.models.architectures import small_cnn
from dmr_ray.store import EffectsStore, build_from_fasta_bed, open_sequence_store, store_info, write_sequence_store

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

L, N_SEQ, CHUNK = 16, 10, 2
KWARGS = {"length": L, "filters": 3, "kernel": 3, "n_conv": 2, "n_dense": 1, "hidden": 4, "n_tasks": 2}
DATA = ("beta", "se", "ref_mean", "ref_se")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[None]:
    """A moto S3 server on a free loopback port, reached through the environment (fake credentials)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "fake-key",
            "AWS_SECRET_ACCESS_KEY": "fake-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


@pytest.fixture
def bucket(endpoint: None) -> str:
    """A new, empty bucket: ``s3://<name>``."""
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(name)
    return f"s3://{name}"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    """A two-member small_cnn ensemble spec (local files: every node needs the spec and weights)."""
    names = []
    for i in range(2):
        torch.manual_seed(i)
        names.append(f"m{i}.safetensors")
        save_weights(small_cnn(**KWARGS), tmp_path / names[-1])
    doc = {
        "entrypoint": "dmr_ray.models.architectures:small_cnn",
        "kwargs": KWARGS,
        "weights": names,
        "input_length": L,
        "outputs": [{"name": "a", "index": 0}, {"name": "b", "index": 1}],
        "replicates": {"kind": "ensemble"},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "spec.yaml"


def tokens() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 4, (N_SEQ, L)).astype(np.uint8)


def test_ism_on_s3_resumes_after_ctrl_c(bucket: str, spec: Path, tmp_path: Path, monkeypatch) -> None:
    ids = [f"s{i}" for i in range(N_SEQ)]
    remote = write_sequence_store(f"{bucket}/seqs.zarr", tokens(), ids, chunk_size=CHUNK)
    local = write_sequence_store(tmp_path / "seqs.zarr", tokens(), ids, chunk_size=CHUNK)
    assert open_sequence_store(remote.location).n_chunks == N_SEQ // CHUNK == 5

    reference = run_ism(IsmJob(local.location, str(spec), str(tmp_path / "effects.zarr")), EngineOptions(actors=0))
    assert reference.computed == 5

    job = IsmJob(remote.location, str(spec), f"{bucket}/effects.zarr")
    real_write, committed = EffectsStore.write_chunk, []

    def ctrl_c_on_the_third_commit(self: EffectsStore, i: int, *arrays: Any, run_id: str = "") -> None:
        if len(committed) == 2:
            committed.append(None)
            raise KeyboardInterrupt
        real_write(self, i, *arrays, run_id=run_id)
        committed.append((i, run_id))

    monkeypatch.setattr(EffectsStore, "write_chunk", ctrl_c_on_the_third_commit)
    with pytest.raises(KeyboardInterrupt):
        run_ism(job, EngineOptions(actors=0))
    (first, first_run), (second, second_run) = committed[:2]
    assert (first, second) == (0, 1) and first_run == second_run
    partial = EffectsStore.open(job.out, mode="r")
    assert partial.missing_chunks() == [2, 3, 4]
    assert store_info(job.out)["chunks_complete"] == 2

    resumed = run_ism(job, EngineOptions(actors=0))
    assert (resumed.computed, resumed.skipped) == (3, 2)
    done = EffectsStore.open(job.out, mode="r")
    assert done.committed_by().tolist() == [first_run] * 2 + [resumed.run_id] * 3
    assert store_info(job.out)["committed_by"] == {first_run: 2, resumed.run_id: 3}
    expected, got = EffectsStore.open(tmp_path / "effects.zarr", mode="r").read(), done.read()
    for name in DATA:
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name].view(np.uint32), expected[name].view(np.uint32), err_msg=name)
    assert got["seq_id"].tolist() == ids


def test_overwrite_on_s3_replaces_only_its_own_kind(bucket: str, tmp_path: Path) -> None:
    fasta, bed = tmp_path / "genome.fa", tmp_path / "peaks.bed"
    fasta.write_text(">c\n" + "ACGT" * 10 + "\n")
    bed.write_text("c\t0\t16\nc\t8\t24\nc\t20\t36\n")
    built = build_from_fasta_bed(fasta, bed, f"{bucket}/seqs.zarr", chunk_size=2)
    assert built.seq_ids().tolist() == ["c:0-16", "c:8-24", "c:20-36"]
    attrs = {key: "x" for key in ("model_digest", "replicate_kind", "calibration", "code_version")}
    with pytest.raises(InputError, match=rf"{bucket}/seqs.zarr: holds a sequence store, not an effects store"):
        EffectsStore.create(
            built.location,
            seq_ids=[0],
            length=16,
            tasks=["t"],
            chunk_size=1,
            attrs={**attrs, "replicate_count": 1, "ddof": 0, "sequence_store": "s"},
            overwrite=True,
        )
    fs, root = s3fs.S3FileSystem(), bucket.removeprefix("s3://")
    fs.pipe(f"{root}/results/notes.txt", b"mine")
    with pytest.raises(InputError, match=rf"{bucket}/results: is a directory holding notes.txt"):
        write_sequence_store(f"{bucket}/results", tokens(), overwrite=True)
    assert fs.cat(f"{root}/results/notes.txt") == b"mine"
    replaced = build_from_fasta_bed(fasta, bed, f"{bucket}/seqs.zarr", length=8, overwrite=True)
    assert open_sequence_store(replaced.location).length == 8
    fs.invalidate_cache()
    assert sorted(fs.ls(root)) == [f"{root}/results", f"{root}/seqs.zarr"]
