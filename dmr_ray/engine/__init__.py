"""The Ray engine: saturation mutagenesis of a sequence store by replica actors.

* :func:`run_ism` (:class:`IsmJob`, :class:`EngineOptions`) -> :class:`RunSummary`: in
  process (``actors=0``) or on Ray, resumable chunk by chunk.
* :func:`run_on_ray`, :func:`run_in_process`, :func:`connect`: the two paths and the Ray
  connection they share.
* :func:`plan_resources` -> :class:`ActorResources`: logical resources of the actors.
* :func:`split_replicates`, :func:`merge_groups`: replicate groups spread over actors.
* :class:`EngineError`, :class:`StalledRunError`: a run that cannot go on (defined in
  :mod:`dmr_ray.errors`, re-exported here).
"""

from dmr_ray.engine.chunks import ChunkReport
from dmr_ray.engine.job import IsmJob, RunSummary, run_in_process
from dmr_ray.engine.replicas import merge_groups, split_replicates
from dmr_ray.engine.resources import ActorResources, plan_resources
from dmr_ray.engine.runner import EngineOptions, connect, run_ism, run_on_ray
from dmr_ray.errors import EngineError, StalledRunError

__all__ = [
    "ActorResources",
    "ChunkReport",
    "EngineError",
    "EngineOptions",
    "IsmJob",
    "RunSummary",
    "StalledRunError",
    "connect",
    "merge_groups",
    "plan_resources",
    "run_in_process",
    "run_ism",
    "run_on_ray",
    "split_replicates",
]
