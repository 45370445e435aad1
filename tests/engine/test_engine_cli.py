"""``dmr-ray ism`` in subprocesses: SIGKILL of the driver then resume (joining a running cluster by
address), and Ctrl-C of a run on its own local Ray instance."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from engine_support import HERE, RUNTIME_ENV, make_tokens, write_spec

from dmr_ray.errors import InputError
from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models import load_model_spec
from dmr_ray.store import EffectsStore
from dmr_ray.uncertainty import build_predictor

N_CHUNKS = 12


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def n_complete(out: Path) -> int:
    """Chunks marked complete in ``out`` (0 while the store does not exist yet)."""
    try:
        return len(EffectsStore.open(out, mode="r").completed_chunks())
    except InputError:
        return 0


def test_driver_sigkill_then_the_same_command_resumes(ray_local, store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "slower", entrypoint="faulty_models:faulty_cnn", delay=0.1)
    out = workdir / "effects_cli.zarr"
    address = ray_local.get_runtime_context().gcs_address
    command = _ism_command(store, spec, out, "--actors", "2", "--chunk-size", "2", "--address", address)
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: n_complete(out) >= 3, 120, "3 committed chunks")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    before = EffectsStore.open(out, mode="r").committed_by()
    done_before = np.flatnonzero(before != "")
    assert 3 <= len(done_before) < N_CHUNKS
    wait_for(lambda: ray_local.available_resources().get("CPU") == 2.0, 60, "the killed driver's actors to be released")

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    computed, skipped = map(int, re.search(r"(\d+) chunks computed, (\d+) already complete", rerun.stdout).groups())
    assert computed + skipped == N_CHUNKS and skipped >= len(done_before)

    effects = EffectsStore.open(out, mode="r")
    after = effects.committed_by()
    assert effects.is_complete
    assert (after[done_before] == before[done_before]).all(), "chunks committed before the kill were recomputed"
    assert len(set(after) - set(before)) == 1, "the rerun should commit the rest under one new run id"
    expected = saturation_mutagenesis(build_predictor(load_model_spec(spec), device="cpu"), make_tokens())
    got = effects.read()
    for name in ("beta", "se", "ref_mean", "ref_se"):
        np.testing.assert_allclose(got[name], getattr(expected, name), rtol=0, atol=1e-6, err_msg=name)


def test_ctrl_c_stops_a_local_run_promptly(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "hang", entrypoint="faulty_models:faulty_cnn", hang=True)
    command = _ism_command(store, spec, workdir / "effects_interrupted.zarr", "--actors", "1")
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    # A test run launched in the background (``pytest &`` in a non-interactive shell) ignores
    # SIGINT, and a child inherits an ignored signal, so the driver would never see the Ctrl-C.
    # A handled signal is reset to the default at exec: the driver starts as from a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        driver = subprocess.Popen(command, env={**env, "PYTHONPATH": str(HERE)}, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        lines = []
        for line in driver.stderr:  # the run started its own Ray, and its actor is computing
            lines.append(line)
            if "actor 0 ready" in line:
                break
        assert "Started a local Ray instance" in "".join(lines)
        driver.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        rest = driver.communicate(timeout=30)[1]
    finally:
        driver.kill()
    assert time.monotonic() - stopped < 15
    assert driver.returncode == 130 and "interrupted; finished chunks are kept" in rest


def _ism_command(store: Path, spec: Path, out: Path, *options: str) -> list[str]:
    """``dmr-ray ism`` in a fresh interpreter, with the test models' runtime environment."""
    return [
        *(sys.executable, "-m", "dmr_ray.cli", "ism"),
        *("--store", str(store), "--model", str(spec), "--out", str(out)),
        *options,
        *("--runtime-env-json", json.dumps(RUNTIME_ENV)),
    ]
