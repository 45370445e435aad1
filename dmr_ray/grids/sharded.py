"""A GRIDS population whose cells are sharded over Ray actors (grids.md §13.6).

Every value a search asks of a :class:`~dmr_ray.grids.population.Population` is a sum over
cells: the loss, the transition sums and the candidates' exact loss sums. Split the cells into
blocks, let one actor hold each block with its own surrogate replica, and the search gets the
same numbers by adding the blocks' partial sums. :class:`PopulationShards` is that work as a
platform :class:`~dmr_ray.engine.ChunkTask` (one chunk, ``n_shards`` shards, values returned to
the driver); :func:`sharded_population` keeps one persistent pool of its actors for a whole
search and answers each query with one ``pool.run(params=query)``. The engine restarts a lost
actor (which loads its surrogate and cells again) and recomputes the query, so a search with a
killed actor ends where a clean one does.

Inside a Ray Tune trial the pool is sized from the trial's placement group; a pool with more
shards than the group has free bundles is refused at once (more actors than bundles would
wait forever).
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from dmr_ray._checks import is_int
from dmr_ray.engine import ActorResources, ChunkTask, EngineOptions, TaskPool, open_pool
from dmr_ray.engine.pool import current_bundles
from dmr_ray.errors import EngineError, InputError
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.population import Population, Selection, TransitionSums

Build = Callable[[sp.csr_matrix], Population]
"""Picklable: a block of cells' ATAC ``[cells, n_peaks]`` → its population (runs in each actor)."""


@dataclass(frozen=True)
class SurrogatePopulations:
    """Builds a :class:`~dmr_ray.grids.population.LocalPopulation` of a saved surrogate, in each actor.

    Attributes
    ----------
    surrogate
        The surrogate's directory (safetensors and JSON, loaded without unpickling code).
    objective
        Target gene and direction.
    """

    surrogate: str
    objective: Objective

    def __call__(self, x: sp.csr_matrix) -> Population:
        from dmr_ray.grids.population import LocalPopulation
        from dmr_ray.grids.surrogate import load_surrogate

        return LocalPopulation(load_surrogate(Path(self.surrogate)), x, self.objective)


@dataclass(frozen=True)
class Query:
    """One question to every shard (a pool call's ``params``).

    Attributes
    ----------
    what
        ``"loss"`` (:meth:`Population.loss_sum`), ``"transition"``
        (:meth:`Population.transition_sums`) or ``"candidates"``
        (:meth:`Population.candidate_loss_sums`).
    selected
        ``int64 [L]``: the current selection r.
    row, candidates
        For ``"candidates"``: the row of r replaced and ``int64 [k]`` peaks put there.
    """

    what: Literal["loss", "transition", "candidates"]
    selected: np.ndarray
    row: int = 0
    candidates: np.ndarray | None = None


def shard_rows(n_cells: int, n_shards: int) -> list[np.ndarray]:
    """``n_shards`` contiguous, near-equal blocks of ``0..n_cells`` (``int64`` each, none empty)."""
    if not is_int(n_shards) or not 1 <= n_shards <= n_cells:
        raise InputError(f"shards: need 1..{n_cells} shards for {n_cells} cells, got {n_shards!r}")
    return [np.asarray(block, dtype=np.int64) for block in np.array_split(np.arange(n_cells), n_shards)]


class PopulationShards(ChunkTask):
    """The queries of a search as a chunk task: one chunk, one shard per block of cells.

    Parameters
    ----------
    build
        Makes a block's population in its actor (:class:`SurrogatePopulations`).
    x
        ``[n_cells, n_peaks]`` sparse ATAC of the whole population.
    n_shards
        Blocks of cells (:func:`shard_rows`), one actor each.
    """

    label = "grids population"
    unit = "cells"
    returns_values = True
    device = "cpu"
    shard_name = "cell shard"

    def __init__(self, build: Build, x: sp.spmatrix | sp.sparray, n_shards: int) -> None:
        x = sp.csr_matrix(x)
        self.build = build
        self.n_cells, self.n_peaks = int(x.shape[0]), int(x.shape[1])
        self.rows = shard_rows(self.n_cells, n_shards)
        self.blocks = [x[rows] for rows in self.rows]
        self.n_shards = n_shards

    @property
    def n_chunks(self) -> int:
        return 1

    def pending(self) -> list[int]:
        return [0]

    def units(self, index: int) -> int:
        return self.n_cells

    def describe_chunk(self, index: int) -> str:
        return f"the population's query ({self.n_cells} cells in {self.n_shards} shards)"

    def setup(self, shard: int, resources: ActorResources) -> PopulationShard:
        import torch

        torch.set_num_threads(resources.threads)
        rows = self.rows[shard]
        return PopulationShard(self.build(self.blocks[shard]), f"cells {rows[0]}..{rows[-1] + 1}")

    def reduce(self, index: int, partials: Sequence[Any]) -> Any:
        """The shards' partial sums added (floats, ``float64`` arrays or :class:`TransitionSums`)."""
        return functools.reduce(operator.add, partials)


class PopulationShard:
    """One actor's block of cells: answers a :class:`Query` with its partial sums."""

    def __init__(self, population: Population, cells: str) -> None:
        self.population = population
        self.cells = cells

    def compute(self, index: int, params: Query | None = None) -> float | np.ndarray | TransitionSums:
        if params is None:
            raise InputError("a population shard needs a query")
        if params.what == "loss":
            return float(self.population.loss_sum(params.selected))
        if params.what == "transition":
            return self.population.transition_sums(params.selected)
        if params.candidates is None:
            raise InputError("a candidates query needs candidates")
        return np.asarray(
            self.population.candidate_loss_sums(params.selected, params.row, params.candidates), dtype=np.float64
        )

    def describe(self) -> str:
        return f"{self.cells} (pid {os.getpid()})"


class ShardedPopulation:
    """A :class:`~dmr_ray.grids.population.Population` answered by a pool of shard actors.

    Made by :func:`sharded_population`; each method is one pool call whose shards' partial sums
    are added in the driver.
    """

    def __init__(self, pool: TaskPool, n_cells: int, n_peaks: int) -> None:
        self._pool = pool
        self._n_cells, self._n_peaks = n_cells, n_peaks

    @property
    def n_cells(self) -> int:
        return self._n_cells

    @property
    def n_peaks(self) -> int:
        return self._n_peaks

    def _ask(self, query: Query) -> Any:
        return self._pool.run(params=query).values[0]

    def loss_sum(self, r: Selection) -> float:
        return float(self._ask(Query("loss", _array(r))))

    def transition_sums(self, r: Selection) -> TransitionSums:
        return self._ask(Query("transition", _array(r)))

    def candidate_loss_sums(self, r: Selection, row: int, candidates: Selection) -> np.ndarray:
        return np.asarray(self._ask(Query("candidates", _array(r), int(row), _array(candidates))), dtype=np.float64)


def _array(values: Selection) -> np.ndarray:
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def check_shard_capacity(n_shards: int) -> None:
    """Refuse more shards than the current placement group has free bundles (outside one: nothing to check).

    Raises
    ------
    EngineError
        Inside a placement group (a Ray Tune trial) with fewer free CPU bundles than shards.
    """
    import ray

    bundles = current_bundles() if ray.is_initialized() else None
    if bundles is None:
        return
    free = [bundle for bundle in bundles if bundle.get("CPU", 0.0) > 0]
    if n_shards > len(free):
        raise EngineError(
            f"{n_shards} shard actors asked for, but the trial's placement group has {len(free)} free bundle(s) "
            f"{free}; reserve one bundle per shard (tune.PlacementGroupFactory)"
        )


@contextmanager
def sharded_population(
    build: Build, x: sp.spmatrix | sp.sparray, n_shards: int, options: EngineOptions | None = None
) -> Iterator[ShardedPopulation]:
    """A population of ``x``'s cells over ``n_shards`` actors, kept for the ``with`` block.

    Parameters
    ----------
    build
        Makes each block's population in its actor (:class:`SurrogatePopulations`).
    x
        ``[n_cells, n_peaks]`` sparse ATAC.
    n_shards
        Actors, one per contiguous block of cells.
    options
        Engine options (restarts of lost actors, stall timeout, address); ``actors`` is
        ``n_shards``, unless it is 0: then the shards are computed one after the other in
        this process.

    Raises
    ------
    InputError
        ``n_shards`` not in ``1..n_cells``.
    EngineError
        More shards than the current placement group's free bundles.
    """
    task = PopulationShards(build, x, n_shards)
    options = options or EngineOptions()
    if options.actors != 0:
        check_shard_capacity(n_shards)
    with open_pool(task, replace(options, actors=0 if options.actors == 0 else n_shards)) as pool:
        yield ShardedPopulation(pool, task.n_cells, task.n_peaks)
