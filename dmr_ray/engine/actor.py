"""The replica actor and the merge task: the code that runs in Ray workers.

A :class:`ReplicaActor` loads the model spec once onto its device (all replicates, or one
group of them), keeps its fast-ISM plan across chunks (:class:`~dmr_ray.ism.FastPlanCache`),
and computes chunks by index: it reads the chunk's tokens directly from
``sequences.zarr``, builds the mutants on its device inside
:func:`~dmr_ray.ism.saturation_mutagenesis`, and either commits the chunk to ``effects.zarr``
itself (all replicates) or returns its group's ``ddof=0`` result to the object store, where
:func:`merge_task` picks up every group's result and commits the merged chunk. Tokens and
effects never pass through the driver.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import ray

from dmr_ray.engine.chunks import ChunkReport, commit_partials, compute_chunk, partial_chunk
from dmr_ray.engine.job import IsmJob, job_predictor
from dmr_ray.engine.resources import ActorResources, configure_worker, configure_zarr
from dmr_ray.errors import ModelSpecError
from dmr_ray.ism import FastPlanCache, ISMResult
from dmr_ray.models import load_model_spec, model_digest
from dmr_ray.store import EffectsStore, open_sequence_store


@dataclass(frozen=True)
class ActorInfo:
    """Where a replica actor runs, as reported once it is ready."""

    pid: int
    node: str
    device: str
    threads: int
    replicates: tuple[int, ...] | None

    def describe(self) -> str:
        """One line for logs."""
        which = "all replicates" if self.replicates is None else f"replicates {list(self.replicates)}"
        return f"pid {self.pid} on {self.node}, {self.device}, {self.threads} thread(s), {which}"


@ray.remote(concurrency_groups={"control": 1})
class ReplicaActor:
    """Holds one copy of the model (or one replicate group) and computes chunks by index.

    Chunk methods run one at a time; :meth:`ready` and :meth:`info` run in a separate
    concurrency group so they answer while a chunk is being computed.

    Parameters
    ----------
    job
        The job, with absolute paths (:meth:`IsmJob.resolved`).
    replicates
        The replicate indices this actor evaluates; ``None`` for all (it then commits chunks
        itself).
    resources
        Its device and torch thread count.
    run_id
        Recorded as the committer of each chunk.
    digest
        The model digest of the run; the actor refuses to start if the spec it loads hashes
        differently (weights changed, or another copy on this node).
    """

    def __init__(
        self,
        job: IsmJob,
        replicates: Sequence[int] | None,
        resources: ActorResources,
        run_id: str,
        digest: str,
    ) -> None:
        configure_worker(resources.threads)
        self.job = job
        self.run_id = run_id
        self.sequences = open_sequence_store(job.store)
        self.effects = EffectsStore.open(job.out)
        spec = load_model_spec(job.model, check=False)
        found = model_digest(spec)
        if found != digest:
            raise ModelSpecError(
                f"{job.model}: on node {ray.util.get_node_ip_address()} the model digest is {found}, "
                f"but the run uses {digest}; every node must see the same spec and weight files"
            )
        self.replicates = None if replicates is None else tuple(replicates)
        self.predictor = job_predictor(spec, job, resources.device, replicates=self.replicates)
        self.plans = FastPlanCache()
        self._info = ActorInfo(
            pid=os.getpid(),
            node=ray.util.get_node_ip_address(),
            device=str(self.predictor.device),
            threads=resources.threads,
            replicates=self.replicates,
        )

    @ray.method(concurrency_group="control")
    def ready(self) -> ActorInfo:
        """Where the actor runs; answers once the model is loaded."""
        return self._info

    def run(self, index: int) -> ChunkReport:
        """Compute chunk ``index`` with all replicates and commit it (see :func:`compute_chunk`)."""
        return compute_chunk(self.predictor, self.sequences, self.effects, index, self.job, self.run_id, self.plans)

    @ray.method(num_returns=2)
    def partial(self, index: int) -> tuple[ChunkReport, ISMResult]:
        """This replicate group's ``ddof=0`` result for chunk ``index``, and a small report.

        The report lets the driver learn that the chunk succeeded without fetching the result.
        """
        began = time.perf_counter()
        result = partial_chunk(self.predictor, self.sequences, self.effects, index, self.job, self.plans)
        start, stop = self.effects.chunk_bounds(index)
        return ChunkReport(index, stop - start, True, self._info.pid, time.perf_counter() - began), result


@ray.remote
def merge_task(
    effects: EffectsStore, index: int, job: IsmJob, replicate_kind: str, run_id: str, *parts: ISMResult
) -> ChunkReport:
    """Merge every replicate group's result of chunk ``index`` and commit it (a Ray task)."""
    configure_zarr()
    return commit_partials(effects, index, parts, job, replicate_kind, run_id)
