"""A benchmark's simulated data on disk: written once by the driver, memory-mapped by every worker.

The directory holds ``.npy`` files (``x`` float32 CPM ``[n, G]``, ``y`` int64 ``[n]``,
``groups`` int64 ``[n]``: the sub-class each sample's truth comes from, ``group_truth`` bool
``[n_groups, G]``) and ``meta.json`` (the number of classes). Each file is written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from dmr_ray._atomic import write_atomic, write_text_atomic
from dmr_ray.sim.lda import LDASimulation

_ARRAYS = ("x", "y", "groups", "group_truth")


@dataclass(frozen=True)
class SimulationData:
    """What the benchmark needs of a simulation.

    Attributes
    ----------
    x
        ``float32 [n, G]`` counts per million (memory-mapped when loaded).
    y
        ``int64 [n]`` class labels.
    groups
        ``int64 [n]`` group (sub-class) whose truth each sample is scored against.
    group_truth
        ``bool [n_groups, G]`` each group's informative genes.
    n_classes
        Classes of the task.
    """

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    group_truth: np.ndarray
    n_classes: int


def write_simulation(simulation: LDASimulation, directory: Path) -> SimulationData:
    """Write ``simulation``'s arrays to ``directory`` (created); returns them as :class:`SimulationData`."""
    data = SimulationData(
        x=simulation.x,
        y=simulation.y,
        groups=simulation.subclass,
        group_truth=simulation.subclass_truth,
        n_classes=simulation.config.n_classes,
    )
    directory.mkdir(parents=True, exist_ok=True)
    for name in _ARRAYS:
        write_atomic(directory / f"{name}.npy", partial(_save, array=getattr(data, name)))
    write_text_atomic(directory / "meta.json", json.dumps({"n_classes": data.n_classes}))
    return data


def _save(path: Path, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (through a file object, so no ``.npy`` is appended)."""
    with path.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)


def load_simulation(directory: Path) -> SimulationData:
    """The arrays :func:`write_simulation` wrote (``x`` memory-mapped, read-only)."""
    arrays = {
        name: np.load(directory / f"{name}.npy", mmap_mode="r" if name == "x" else None, allow_pickle=False)
        for name in _ARRAYS
    }
    meta = json.loads((directory / "meta.json").read_text())
    return SimulationData(**arrays, n_classes=int(meta["n_classes"]))
