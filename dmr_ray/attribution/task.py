"""The benchmark's seeds as a :class:`~dmr_ray.engine.ChunkTask`: one chunk per training seed.

A chunk trains the seed's classifier on the simulation (or reloads it), explains its correctly
classified test samples with each method, and scores the attributions: feature agreement
with the true genes and prediction gaps with their curves. The task ``returns_values``: the
driver's :meth:`SeedTask.reduce` writes what the chunk computed into ``seeds/`` (the
classifier as ``seed-<s>.safetensors``, the record as ``seed-<s>.json``, both atomically),
so a finished seed survives an interrupted run.

Resume works per part. The record stores, for the classifier and for each method, the digest
of the identity that produced it: the classifier's holds the simulation's digest, the model,
the training recipe and the seed; a method's holds the classifier's digest, its own options
and the explain and gap options. A chunk recomputes exactly the parts whose digest changed
(a new training option retrains and re-attributes; a new SmoothGrad noise reruns SmoothGrad
only), and a seed with no such part is not pending at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from dmr_ray._atomic import write_atomic, write_text_atomic
from dmr_ray.attribution.config import AttributionConfig
from dmr_ray.attribution.curves import gap_curves
from dmr_ray.attribution.data import Split, Standardizer
from dmr_ray.attribution.gaps import GAPS, prediction_gaps
from dmr_ray.attribution.methods import Attributions, integrated_gradients, saliency, smoothgrad
from dmr_ray.attribution.metrics import feature_agreement
from dmr_ray.attribution.models import build_model
from dmr_ray.attribution.simdata import SimulationData, load_simulation
from dmr_ray.attribution.train import Classifier, fit_classifier, predict
from dmr_ray.engine import ActorResources, ChunkTask
from dmr_ray.stage import identity_digest

CLASSIFIER = "classifier"
"""The record's key of the classifier part."""


def record_path(directory: Path, seed: int) -> Path:
    """The JSON record of ``seed``."""
    return directory / f"seed-{seed:04d}.json"


def model_path(directory: Path, seed: int) -> Path:
    """The trained classifier of ``seed`` (weights, z-score and split)."""
    return directory / f"seed-{seed:04d}.safetensors"


def read_record(directory: Path, seed: int) -> dict[str, Any]:
    """The record of ``seed``, or an empty one."""
    try:
        return json.loads(record_path(directory, seed).read_text())
    except FileNotFoundError:
        return {"seed": seed, CLASSIFIER: None, "methods": {}}


class SeedTask(ChunkTask):
    """Train, attribute and score every seed of ``config``.

    Parameters
    ----------
    config
        The benchmark.
    simulation
        The directory of the simulated data (:mod:`dmr_ray.attribution.simdata`).
    directory
        Where the seeds' records and classifiers go (it exists).
    simulation_digest
        The simulation stage's digest (part of every classifier's identity).
    """

    label = "attribution seeds"
    unit = "seeds"
    returns_values = True
    device = "cpu"
    shard_name = "seed"

    def __init__(self, config: AttributionConfig, simulation: Path, directory: Path, simulation_digest: str) -> None:
        self.config = config
        self.simulation = simulation.resolve()
        self.directory = directory.resolve()
        self.simulation_digest = simulation_digest
        self.seeds = config.seed_list
        self.location = str(self.directory)
        self.failure_file = str(self.directory / "_failed_seeds.txt")

    @property
    def n_chunks(self) -> int:
        """One chunk per seed."""
        return len(self.seeds)

    def classifier_digest(self, seed: int) -> str:
        """Digest of what determines the classifier of ``seed``."""
        config = self.config
        identity = {
            "simulation": self.simulation_digest,
            "model": config.model,
            "training": config.training.model_dump(mode="json"),
            "seed": seed,
        }
        return identity_digest(identity)

    def method_digest(self, seed: int, method: str) -> str:
        """Digest of what determines ``method``'s results for ``seed``."""
        config = self.config
        identity = {
            CLASSIFIER: self.classifier_digest(seed),
            "method": method,
            "options": config.method_options(method).model_dump(mode="json"),
            "explain": config.explain.model_dump(mode="json"),
            "gaps": config.gaps.model_dump(mode="json"),
        }
        return identity_digest(identity)

    def todo(self, seed: int, record: dict[str, Any]) -> list[str]:
        """Parts of ``seed`` still to compute: ``classifier`` and/or method names."""
        parts = []
        classifier = record.get(CLASSIFIER)
        if (
            classifier is None
            or classifier["digest"] != self.classifier_digest(seed)
            or not model_path(self.directory, seed).exists()
        ):
            parts.append(CLASSIFIER)
        for method in self.config.methods:
            done = record["methods"].get(method)
            if done is None or done["digest"] != self.method_digest(seed, method):
                parts.append(method)
        return parts

    def pending(self) -> list[int]:
        """Seeds with a part to compute."""
        return [i for i, seed in enumerate(self.seeds) if self.todo(seed, read_record(self.directory, seed))]

    def units(self, index: int) -> int:
        """One seed."""
        return 1

    def describe_chunk(self, index: int) -> str:
        """The seed."""
        return f"seed {self.seeds[index]} (chunk {index})"

    def setup(self, shard: int, resources: ActorResources) -> SeedWorker:
        """A worker holding the memory-mapped simulation."""
        torch.set_num_threads(resources.threads)
        return SeedWorker(self, load_simulation(self.simulation))

    def reduce(self, index: int, partials: Any) -> dict[str, Any]:
        """Write the seed's new parts (classifier first, then the record); returns the record."""
        (value,) = partials
        seed = self.seeds[index]
        record = read_record(self.directory, seed)
        if value["model"] is not None:
            payload = value["model"]
            write_atomic(model_path(self.directory, seed), lambda tmp: tmp.write_bytes(payload))
            record[CLASSIFIER] = value[CLASSIFIER]
        record["methods"].update(value["methods"])
        write_text_atomic(record_path(self.directory, seed), json.dumps(record, indent=1))
        return {**record, "computed": value["computed"]}


class SeedWorker:
    """Computes the missing parts of one seed on the simulation it holds."""

    def __init__(self, task: SeedTask, data: SimulationData) -> None:
        self.task = task
        self.data = data

    def describe(self) -> str:
        """What it holds."""
        return f"attribution seeds on {self.task.simulation} ({self.data.x.shape[0]} × {self.data.x.shape[1]})"

    def compute(self, index: int) -> dict[str, Any]:
        """The new parts of seed ``index``: classifier (with its serialised weights) and method results."""
        task, config, data = self.task, self.task.config, self.data
        seed = task.seeds[index]
        record = read_record(task.directory, seed)
        todo = task.todo(seed, record)
        began = time.perf_counter()
        model_bytes = None
        if CLASSIFIER in todo:
            classifier = fit_classifier(
                config.model,
                data.x,
                data.y,
                n_classes=data.n_classes,
                test_fraction=config.training.test_fraction,
                split_seed=config.training.split_seed,
                seed=seed,
                options=config.training.options(),
            )
            model_bytes = save_classifier(classifier)
            record[CLASSIFIER] = {
                "digest": task.classifier_digest(seed),
                "train_accuracy": classifier.train_accuracy,
                "test_accuracy": classifier.test_accuracy,
                "test_balanced_accuracy": classifier.test_balanced_accuracy,
                "seconds": time.perf_counter() - began,
            }
        else:
            classifier = load_classifier(model_path(task.directory, seed).read_bytes(), config.model, data.n_classes)
        explained = explained_samples(classifier, data, config.explain.samples_per_class)
        methods = {}
        for method in config.methods:
            if method in todo:
                methods[method] = {
                    "digest": task.method_digest(seed, method),
                    **evaluate(config, explained, method, seed),
                }
        return {
            "seed": seed,
            CLASSIFIER: record[CLASSIFIER],
            "model": model_bytes,
            "methods": methods,
            "computed": todo,
        }


@dataclass(frozen=True)
class Explained:
    """The correctly classified test samples a seed explains.

    Attributes
    ----------
    model
        The classifier (eval mode).
    x
        ``float32 [m, G]`` z-scored expression.
    y, groups
        ``int64 [m]`` classes and truth groups (sub-classes).
    truth
        ``bool [n_groups, G]`` each group's informative genes.
    """

    model: torch.nn.Module
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    truth: np.ndarray

    def first_per_class(self, limit: int | None) -> np.ndarray:
        """``int64 [m]``: indices of the first ``limit`` samples of each class (all for ``None``)."""
        if limit is None:
            return np.arange(len(self.y))
        rank = np.zeros(len(self.y), dtype=np.int64)
        for c in np.unique(self.y):
            members = self.y == c
            rank[members] = np.arange(members.sum())
        return np.flatnonzero(rank < limit)


def explained_samples(classifier: Classifier, data: SimulationData, samples_per_class: int | None) -> Explained:
    """The test samples ``classifier`` classifies correctly, at most ``samples_per_class`` per class, in test order."""
    test = classifier.split.test
    x = classifier.standardizer.transform(np.asarray(data.x[test]))
    y = data.y[test]
    correct = predict(classifier.model, x) == y
    full = Explained(classifier.model, x[correct], y[correct], data.groups[test][correct], data.group_truth)
    keep = full.first_per_class(samples_per_class)
    return Explained(classifier.model, full.x[keep], full.y[keep], full.groups[keep], data.group_truth)


def attribute(config: AttributionConfig, explained: Explained, method: str, seed: int) -> Attributions:
    """``method``'s attributions of the explained samples to their true class."""
    model, x, y = explained.model, explained.x, explained.y
    if method == "ig":
        ig = config.ig
        return integrated_gradients(
            model,
            x,
            y,
            output=ig.output,
            tolerance=ig.tolerance,
            start_steps=ig.start_steps,
            max_steps=ig.max_steps,
            batch_size=ig.batch_size,
        )
    if method == "saliency":
        sal = config.saliency
        return saliency(model, x, y, output=sal.output, absolute=sal.absolute, batch_size=sal.batch_size)
    sg = config.smoothgrad
    return smoothgrad(
        model,
        x,
        y,
        output=sg.output,
        absolute=sg.absolute,
        noise=sg.noise,
        n_samples=sg.n_samples,
        seed=seed,
        batch_size=sg.batch_size,
    )


def evaluate(config: AttributionConfig, explained: Explained, method: str, seed: int) -> dict[str, Any]:
    """Attribute with ``method`` and score: feature agreement, prediction gaps and their curves (JSON-able)."""
    began = time.perf_counter()
    attributions = attribute(config, explained, method, seed)
    seconds = time.perf_counter() - began
    agreement = feature_agreement(attributions.values, explained.groups, explained.truth, seed=seed)
    result: dict[str, Any] = {
        "local_agreement": agreement.local_mean,
        "global_agreement": agreement.global_mean,
        "n_explained": len(explained.y),
        "attribution_seconds": seconds,
    }
    if method == "ig":
        result |= {
            "n_steps": attributions.n_steps,
            "max_abs_delta": float(np.abs(attributions.delta).max(initial=0.0)),
            "converged": attributions.converged,
        }
    gaps = config.gaps
    if gaps.enabled:
        began = time.perf_counter()
        keep = explained.first_per_class(gaps.samples_per_class)
        x, y, values = explained.x[keep], explained.y[keep], attributions.values[keep]
        measured = prediction_gaps(explained.model, x, y, values, step=gaps.step, n_random=gaps.n_random, seed=seed)
        curves = gap_curves(explained.model, x, y, values, points=gaps.curve_points, seed=seed)
        result |= {gap: measured.mean(gap) for gap in GAPS}
        result |= {
            "n_gap_samples": len(y),
            "curves": {"counts": curves.counts.tolist(), **{k: v.tolist() for k, v in curves.drops.items()}},
            "gap_seconds": time.perf_counter() - began,
        }
    return result


def save_classifier(classifier: Classifier) -> bytes:
    """The classifier's weights, z-score and split as safetensors bytes."""
    standardizer, split = classifier.standardizer, classifier.split
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in classifier.model.state_dict().items()}
    tensors |= {
        "mean": torch.from_numpy(standardizer.mean),
        "scale": torch.from_numpy(standardizer.scale),
        "keep": torch.from_numpy(standardizer.keep),
        "train": torch.from_numpy(split.train),
        "test": torch.from_numpy(split.test),
    }
    return safetensors.torch.save(tensors)


def load_classifier(payload: bytes, name: str, n_classes: int) -> Classifier:
    """Inverse of :func:`save_classifier` (accuracies are not stored there: NaN)."""
    tensors = safetensors.torch.load(payload)
    standardizer = Standardizer(tensors["mean"].numpy(), tensors["scale"].numpy(), tensors["keep"].numpy())
    model = build_model(name, standardizer.n_features, n_classes)
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    split = Split(tensors["train"].numpy(), tensors["test"].numpy())
    nan = float("nan")
    return Classifier(model.eval(), name, standardizer, split, nan, nan, nan)
