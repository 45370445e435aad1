"""The embedded default: a Deep MR audit of a model trained on simulated TF cooperativity.

Nothing is downloaded. The demo simulates GATA → TAL1 cooperativity with a planted causal
effect (:mod:`dmr_ray.sim`), trains a small CNN ensemble on CPU, writes the sequences to a
store and the ensemble as safetensors plus a model spec, and runs the audit through a local
Ray instance. Every step is reused when its output already exists, so a rerun resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from dmr_ray._atomic import write_text_atomic
from dmr_ray.errors import InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ARCHITECTURES = {
    "small_cnn": "dmr_ray.models.architectures:small_cnn",
    "pooled_cnn": "dmr_ray.models.architectures:pooled_cnn",
}
"""The networks a simulation ensemble can be (``DemoSettings.architecture``) and their entrypoints."""
OUTPUTS = ("GATA", "TAL1")
"""The simulated outputs, in the models' output order."""
REPORTED_ESTIMATORS = ("deepmr", "ivw", "weighted_median")
"""The MR methods the demo's audit runs and reports (the original's robust Egger and the two
whose intervals the simulation study found calibrated)."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the embedded default, chosen to finish in a few minutes on 2 CPU cores."""

    n_train: int = 4000
    n_calibration: int = 1000
    n_audit: int = 64
    members: int = 5
    epochs: int = 25
    batch_size: int = 100
    learning_rate: float = 3e-3
    train_threads: int = 1
    effect: float = 0.5
    length: int = 100
    heads: str = "shared"
    """``small_cnn``'s dense layers: ``"shared"`` by the tasks (the original's) or ``"separate"`` towers."""
    architecture: str = "small_cnn"
    """The ensemble's network: ``small_cnn`` (the original's) or ``pooled_cnn`` (pooled over positions)."""


def check_architecture(architecture: str, heads: str) -> None:
    """Refuse an ``architecture`` not in :data:`ARCHITECTURES`, or ``heads`` other than
    ``"shared"`` with another architecture than ``small_cnn`` (whose option they are).

    Raises
    ------
    InputError
        Naming the value.
    """
    if architecture not in ARCHITECTURES:
        raise InputError(f"architecture: {architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    if architecture != "small_cnn" and heads != "shared":
        raise InputError(f"heads: {heads!r} is small_cnn's; {architecture} has one dense stack")


LATER_SETTINGS = {"architecture": "small_cnn"}
"""Settings added after demo directories were first written: at these defaults they are left out
of a demo's identity, so that a directory written before they existed keeps its identity."""


def demo_identity(seed: int, settings: DemoSettings) -> dict[str, Any]:
    """What a demo directory is claimed with: the seed and the settings, less the
    :data:`LATER_SETTINGS` at their defaults."""
    from dataclasses import asdict

    recorded = {k: v for k, v in asdict(settings).items() if LATER_SETTINGS.get(k, ...) != v}
    return {"experiment": "demo", "seed": seed, "settings": recorded}


def train_simulation_ensemble(
    tokens: np.ndarray,
    labels: np.ndarray,
    model_dir: Path,
    *,
    members: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    length: int,
    seed: int,
    threads: int = 1,
    reuse: bool = False,
    heads: str = "shared",
    architecture: str = "small_cnn",
) -> Path:
    """Train a CNN ensemble on simulated GATA/TAL1 counts and save it as a model spec.

    Parameters
    ----------
    tokens, labels
        ``uint8 [n, length]`` training sequences and their ``[n, 2]`` (GATA, TAL1) labels.
    model_dir
        Receives ``member{i}.safetensors`` and ``model.yaml``.
    reuse
        Keep each member whose weights are already in ``model_dir`` and train only the missing
        ones (the demo's resume; see :func:`train_missing_members`).
    threads
        Torch threads while training (small batches: more threads cost more than they give).
    heads
        ``small_cnn``'s ``heads``: dense layers shared by both tasks or one tower per task.
    architecture
        ``small_cnn`` or ``pooled_cnn`` (:mod:`dmr_ray.models.architectures`; ``heads`` must
        then be ``"shared"``).

    Returns
    -------
    The path of ``model.yaml``.
    """
    from dmr_ray.models import architectures

    check_architecture(architecture, heads)
    kwargs: dict[str, Any] = {"length": length, "n_tasks": 2, **({"heads": heads} if heads != "shared" else {})}
    network = getattr(architectures, architecture)
    weights = [model_dir / f"member{i}.safetensors" for i in range(members)]
    model_dir.mkdir(parents=True, exist_ok=True)
    train_missing_members(
        lambda _: network(**kwargs),
        tokens,
        labels,
        weights,
        seed=seed,
        threads=threads,
        reuse=reuse,
        epochs=epochs,
        batch_size=batch_size,
        lr=learning_rate,
    )
    spec = {
        "entrypoint": ARCHITECTURES[architecture],
        "kwargs": kwargs,
        "weights": [w.name for w in weights],
        "input_length": length,
        "outputs": [{"name": name, "index": i} for i, name in enumerate(OUTPUTS)],
        "replicates": {"kind": "ensemble"},
    }
    spec_path = model_dir / "model.yaml"
    write_text_atomic(spec_path, yaml.safe_dump(spec, sort_keys=False))
    return spec_path


def train_missing_members(
    factory: Callable[[int], torch.nn.Module],
    tokens: np.ndarray,
    labels: np.ndarray,
    weights: Sequence[Path],
    *,
    seed: int,
    threads: int,
    reuse: bool = True,
    **training: Any,
) -> int:
    """Train member ``i`` of an ensemble and save it as ``weights[i]``, one member at a time.

    Member ``i`` is built and trained from seed ``seed + i``, as
    :func:`~dmr_ray.models.training.train_ensemble` seeds its members, so a member trained after
    an interruption equals the one an uninterrupted run would have trained. Weights are written
    atomically (:func:`~dmr_ray.models.weights.save_weights`): a file that exists is a whole member.

    Parameters
    ----------
    factory
        As for :func:`~dmr_ray.models.training.train_ensemble`.
    tokens, labels
        ``uint8 [n, L]`` training sequences and their ``[n, T]`` labels.
    weights
        One safetensors path per member (their directory must exist).
    seed
        Base seed.
    threads
        Torch threads while training.
    reuse
        Keep the members whose file exists; otherwise train and overwrite every member.
    **training
        Passed to :func:`~dmr_ray.models.training.train_regressor` (``epochs`` is required).

    Returns
    -------
    int
        How many members were trained.
    """
    import torch

    from dmr_ray.models.training import train_ensemble
    from dmr_ray.models.weights import save_weights

    missing = [i for i, path in enumerate(weights) if not (reuse and path.exists())]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for i in missing:
            (member,) = train_ensemble(factory, tokens, labels, 1, seed=seed + i, **training)
            save_weights(member, weights[i])
    finally:
        torch.set_num_threads(previous)
    return len(missing)


def simulated_seq_id(row: int) -> str:
    """The sequence id of row ``row`` of a simulation in the stores dmr_ray writes: ``simNNNNN``."""
    return f"sim{row:05d}"


def write_demo_stores(sim, audit: np.ndarray, calibration: np.ndarray, out: Path) -> None:
    """Write ``sequences.zarr`` (rows ``audit``), ``calibration.zarr`` and ``calibration_labels.npy``
    (rows ``calibration``) of a simulation into ``out``; stores already there are kept (resume).
    Sequence ids are ``simNNNNN``, the row index in ``sim``."""
    from dmr_ray.store import write_sequence_store

    ids = np.array([simulated_seq_id(i) for i in range(len(sim.tokens))])
    for name, rows in (("sequences.zarr", audit), ("calibration.zarr", calibration)):
        if not (out / name).exists():
            write_sequence_store(
                out / name,
                sim.tokens[rows],
                ids[rows],
                source="dmr_ray demo TF-cooperativity simulation",
                chunk_size=16,
            )
    np.save(out / "calibration_labels.npy", sim.labels[calibration].astype(np.float64))


def audit_config(out: Path, spec: Path) -> Path:
    """Write the demo's Deep MR configuration as ``out/audit.yaml`` (paths relative to ``out``) and return its path.

    Its estimators are :data:`REPORTED_ESTIMATORS`, the audit's default first (the report's primary method).
    """
    from dmr_ray.deepmr.config import DEFAULT_ESTIMATOR

    estimators = [DEFAULT_ESTIMATOR, *(m for m in REPORTED_ESTIMATORS if m != DEFAULT_ESTIMATOR)]
    config = {
        "store": "sequences.zarr",
        "model": str(spec.relative_to(out)),
        "out": "audit",
        "calibration": {
            "method": "isotonic",
            "mode": "quantile",
            "store": "calibration.zarr",
            "labels": "calibration_labels.npy",
        },
        "instruments": {"filter": "zscore", "threshold": 1.0, "direction_filter": True},
        "methods": {"estimators": estimators, "iterations": 1000},
        "meta": {"method": "DL"},
        "engine": {"actors": 2},
        "ray": {"num_cpus": 2},
    }
    path = out / "audit.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def simulated_sequences(settings: DemoSettings) -> int:
    """How many sequences to simulate for ``settings``: training, calibration and a pool that
    holds ``n_audit`` pair sequences (both motifs) with room to spare."""
    return settings.n_train + settings.n_calibration + 8 * settings.n_audit


def prepare_simulated_audit(sim, settings: DemoSettings, out: Path, seed: int) -> tuple[Path, np.ndarray]:
    """Split a simulation, train (or reuse) the ensemble, write the stores and the audit config.

    Rows ``[0, n_train)`` train the ensemble (seeded by ``seed``), the next ``n_calibration``
    calibrate it, and the first ``n_audit`` pair sequences after them are audited: the
    sequences the truth is defined on (both motifs); the original sampled all
    exposure-carrying sequences but scored against pair-only truths (its quirk #3).

    Returns
    -------
    The path of ``out/audit.yaml`` and the ``int64 [n_audit]`` rows of ``sim`` it audits.
    """
    out.mkdir(parents=True, exist_ok=True)
    train = np.arange(settings.n_train)
    calibration = np.arange(settings.n_train, settings.n_train + settings.n_calibration)
    rest = np.arange(settings.n_train + settings.n_calibration, len(sim.tokens))
    audit = rest[sim.is_pair[rest]][: settings.n_audit]
    spec = train_simulation_ensemble(
        sim.tokens[train],
        sim.labels[train],
        out / "model",
        members=settings.members,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        length=settings.length,
        seed=seed,
        threads=settings.train_threads,
        reuse=True,
        heads=settings.heads,
        architecture=settings.architecture,
    )
    write_demo_stores(sim, audit, calibration, out)
    return audit_config(out, spec), audit


DEMO_OUTPUTS = ("model", "sequences.zarr", "calibration.zarr", "calibration_labels.npy", "audit.yaml", "audit")
"""What the demo writes directly under its ``out`` (``overwrite`` removes these and nothing else)."""


def prepare_demo(
    out: Path, *, seed: int = 0, settings: DemoSettings = DemoSettings(), overwrite: bool = False
) -> tuple[Path, dict]:
    """Simulate, train and write everything the demo audit needs; returns (config path, truth).

    ``out`` is claimed first with the demo's identity (seed and settings): a rerun with the same
    identity resumes (finished members, stores and audit stages are kept); a directory of
    another identity, or one dmr_ray did not write, is refused before anything is written
    unless ``overwrite`` (which removes only :data:`DEMO_OUTPUTS`).

    Raises
    ------
    InputError
        For such a directory, naming it.
    """

    from dmr_ray.experiments.directory import claim_experiment_directory
    from dmr_ray.sim import global_true_effect, simulate_tf_coop
    from dmr_ray.sim.jaspar import JASPAR_RELEASE
    from dmr_ray.sim.tf_coop import EXPOSURE_MATRIX, EXPOSURE_MOTIF, OUTCOME_MATRIX, OUTCOME_MOTIF

    claim_experiment_directory(out, demo_identity(seed, settings), DEMO_OUTPUTS, overwrite=overwrite)
    sim = simulate_tf_coop(simulated_sequences(settings), length=settings.length, effect=settings.effect, seed=seed)
    config_path, audit = prepare_simulated_audit(sim, settings, out, seed)
    truth = {
        "planted exposure": "GATA",
        "planted outcome": "TAL1",
        f"motifs ({JASPAR_RELEASE})": f"GATA {EXPOSURE_MATRIX} {EXPOSURE_MOTIF.name}, "
        f"TAL1 {OUTCOME_MATRIX} {OUTCOME_MOTIF.name}",
        "true global causal effect GATA→TAL1": global_true_effect(subset_simulation(sim, audit)),
        "true effect TAL1→GATA": 0.0,
    }
    return config_path, truth


def subset_simulation(sim, rows: np.ndarray):
    """The simulation restricted to ``rows``: every array field indexed, everything else kept."""
    from dataclasses import fields, replace

    arrays = {f.name: getattr(sim, f.name)[rows] for f in fields(sim) if isinstance(getattr(sim, f.name), np.ndarray)}
    return replace(sim, **arrays)


def run_demo(out: Path, *, seed: int = 0, settings: DemoSettings = DemoSettings(), overwrite: bool = False) -> str:
    """Run the embedded default audit into ``out`` (:func:`prepare_demo`); returns a message saying
    where the report is."""
    from dmr_ray.deepmr.config import DeepMRConfig
    from dmr_ray.deepmr.pipeline import run_audit

    config_path, truth = prepare_demo(out, seed=seed, settings=settings, overwrite=overwrite)
    summary = run_audit(DeepMRConfig.load(config_path), run_info={"simulation": truth})
    return (
        f"Deep MR demo finished. True GATA→TAL1 effect "
        f"{truth['true global causal effect GATA→TAL1']:.3f}.\n"
        f"Open the report: {summary.report}"
    )
