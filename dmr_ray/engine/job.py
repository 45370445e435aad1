"""One ISM job and the summary of its run: data and small pure helpers only.

How a job is computed is in :mod:`dmr_ray.engine.ism_task`; how it is run, in
:mod:`dmr_ray.engine.runner`.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, replace
from typing import Literal

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.ism import Precision, check_precision
from dmr_ray.store import normalise_location


@dataclass(frozen=True)
class IsmJob:
    """Everything that defines a saturation-mutagenesis run.

    Parameters
    ----------
    store
        Path or URL of ``sequences.zarr``.
    model
        Path of the model spec YAML.
    out
        Path or URL of the ``effects.zarr`` to write.
    chunk_size
        Sequences per unit of work (and of commit and resume); ``None`` uses the store's
        chunk size.
    batch_size
        Mutants per forward pass; ``None`` derives it from a memory budget.
    ddof
        Delta degrees of freedom of the replicate standard deviation.
    device
        Torch device; ``None`` picks CUDA when present, else CPU.
    fast
        ``True``, ``False`` or ``"auto"`` (default): the receptive-field fast path.
    calibration
        Path of a ``calibration.json`` whose recalibration is applied to every replicate
        prediction before differencing (``None``: uncalibrated). Calibrated jobs run the
        exact path, which evaluates all replicates of an input together.
    precision
        ``"float32"``, ``"bfloat16"`` or ``"float16"``: autocast dtype of the fast path's
        linear layers on differences (:func:`~dmr_ray.ism.saturation_mutagenesis`); other
        than float32 it needs ``fast`` set and no ``calibration`` (calibrated jobs run the
        exact path in float32).
    keep_replicates
        Also store every replicate's effects (``beta_replicates``, ``float32 [R, n_seq, L, 3, T]``
        in ``effects.zarr``, :func:`~dmr_ray.engine.ism_task.read_replicate_beta`) for
        inference across replicates. Both ISM paths keep them (``fast`` chooses as without
        the option); it needs float32 and is part of the store's identity.

    Raises
    ------
    InputError
        An unknown ``precision``, or one other than float32 with ``fast=False`` or with
        ``calibration`` or ``keep_replicates``; ``ddof`` not an integer >= 0; ``chunk_size`` or ``batch_size`` not
        an integer >= 1; ``device`` not a torch device; ``out`` the same location as
        ``store`` or ``calibration``.
    """

    store: str
    model: str
    out: str
    chunk_size: int | None = None
    batch_size: int | None = None
    ddof: int = 0
    device: str | None = None
    fast: bool | Literal["auto"] = "auto"
    calibration: str | None = None
    precision: Precision = "float32"
    keep_replicates: bool = False

    def __post_init__(self) -> None:
        if not is_int(self.ddof) or self.ddof < 0:
            raise InputError(f"ddof: must be an integer >= 0, got {self.ddof!r}")
        for name in ("chunk_size", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise InputError(f"{name}: must be an integer >= 1, got {value!r}")
        if self.device is not None:
            check_device(self.device)
        for name in ("store", "calibration"):
            value = getattr(self, name)
            if value and normalise_location(value) == normalise_location(self.out):
                raise InputError(f"out: {self.out} is the {name} of the job; choose another output location")
        check_precision(self.precision, self.fast)
        if self.calibration and self.precision != "float32":
            raise InputError(
                f"precision: {self.precision!r} cannot be combined with calibration "
                "(calibrated jobs run the exact path in float32)"
            )
        if self.keep_replicates and self.precision != "float32":
            raise InputError(
                f"precision: {self.precision!r} cannot be combined with keep_replicates "
                "(per-replicate effects are computed and stored in float32)"
            )

    def resolved(self) -> IsmJob:
        """The same job with absolute paths (workers may run in another directory)."""
        calibration = os.path.abspath(self.calibration) if self.calibration else None
        return replace(
            self,
            store=normalise_location(self.store),
            model=os.path.abspath(self.model),
            out=normalise_location(self.out),
            calibration=calibration,
        )

    @property
    def ism_fast(self) -> bool | Literal["auto"]:
        """The ``fast`` argument ISM runs with: the exact path when calibrated (the map needs
        every replicate's absolute prediction of an input together), else ``fast``."""
        return False if self.calibration else self.fast


@dataclass(frozen=True)
class RunSummary:
    """What a run did.

    Attributes
    ----------
    out : str
        The effects store.
    n_chunks : int
        Chunks in the store.
    computed : int
        Chunks committed by this run.
    skipped : int
        Chunks found complete from an earlier run (not recomputed).
    mutants : int
        Mutants evaluated (per replicate) by this run.
    startup_s : float
        Seconds before the first worker was ready (Ray start, actor placement, model load).
    compute_s : float
        Seconds of computation from then on; the rate is ``mutants / compute_s``.
    run_id : str
        This run's identifier, recorded in the store's ``committed_by`` manifest.
    reassigned : int
        Units of work given to another (or a restarted) actor after a worker was lost.
    """

    out: str
    n_chunks: int
    computed: int
    skipped: int
    mutants: int
    startup_s: float
    compute_s: float
    run_id: str = ""
    reassigned: int = 0

    def describe(self) -> str:
        """One line for the terminal."""
        rate = self.mutants / self.compute_s if self.compute_s > 0 else 0.0
        lost = f", {self.reassigned} unit(s) reassigned after lost workers" if self.reassigned else ""
        return (
            f"effects written to {self.out}: {self.computed} chunks computed, {self.skipped} "
            f"already complete, {self.mutants:,} mutants in {self.compute_s:.1f} s of compute "
            f"({rate:,.0f} mutants/s) after {self.startup_s:.1f} s of start-up{lost}"
        )


def new_run_id() -> str:
    """A fresh run identifier: UTC time and a random suffix, e.g. ``20250101T120000-1a2b3c4d``."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def check_device(device: str) -> None:
    """Refuse a string that is not a torch device (``--device foo``) with one line.

    Raises
    ------
    InputError
        ``device`` is not a torch device.
    """
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device: {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
