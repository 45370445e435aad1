"""Worker threads of the density search and the MBE bootstrap, chosen by the caller.

:func:`dmr_ray.stats.density.density_mode`, :func:`dmr_ray.stats.batched.mbe` and
:func:`dmr_ray.stats.mr.mbe` take ``threads`` (:data:`Threads`):

* an ``int``: that many threads for the call, the calling thread and a pool of the others
  (shut down when the call returns); 1 runs everything in the calling thread;
* an :class:`~concurrent.futures.Executor` the caller owns: the calling thread and the
  executor's workers share the work; it is used as it is and never shut down here (one pool
  for many calls: its threads keep their scratch arrays from call to call);
* None (the default): :func:`default_threads` threads for the call.

Chunks of rows or draws are taken in order from one shared queue by the calling thread and the
workers, side by side (numpy, pocketfft and the compiled kernels release the GIL). Each chunk
writes its own part of the output, so results do not depend on the threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError

__all__ = ["SERIAL", "Threads", "Workers", "default_threads", "run_all", "workers_for"]

Threads: TypeAlias = int | Executor | None
"""A thread count, a caller-owned executor, or None for :func:`default_threads`."""

T = TypeVar("T")


def default_threads() -> int:
    """CPUs this process may use, at most 2 and at most ``OMP_NUM_THREADS`` when that is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        cpus = min(cpus, int(limit))
    return min(2, cpus)


@dataclass(frozen=True)
class Workers:
    """Where a call's chunks run: the calling thread and ``helpers`` tasks on ``pool``."""

    pool: Executor | None
    helpers: int


SERIAL = Workers(None, 0)
"""Everything in the calling thread."""


@contextmanager
def workers_for(threads: Threads) -> Iterator[Workers]:
    """The :class:`Workers` of one call (see the module docstring); a pool created here is shut
    down on exit.

    Raises
    ------
    InputError
        ``threads`` is neither a positive integer, an executor nor None.
    """
    if isinstance(threads, Executor):
        yield Workers(threads, os.cpu_count() or 1)
        return
    count = default_threads() if threads is None else threads
    if not is_int(count) or count < 1:
        raise InputError(f"threads: must be a positive integer, an Executor or None, got {threads!r}")
    if count == 1:
        yield SERIAL
        return
    with ThreadPoolExecutor(int(count) - 1, thread_name_prefix="dmr-stats") as pool:
        yield Workers(pool, int(count) - 1)


def run_all(run: Callable[[T], object], items: list[T], workers: Workers) -> None:
    """``run(item)`` for every item, taken in order by the calling thread and up to
    ``workers.helpers`` pool tasks; returns when all are done (an error in a chunk is raised
    here)."""
    queue = iter(items)  # a list iterator hands out each item once, whichever thread asks

    def drain() -> None:
        for item in queue:
            run(item)

    pool, helpers = workers.pool, min(workers.helpers, len(items) - 1)
    futures = [pool.submit(drain) for _ in range(helpers)] if pool is not None else []
    try:
        drain()
    finally:
        for future in futures:
            future.cancel()  # not started yet (a busy caller-owned pool): nothing is left for it
        wait(futures)
    for future in futures:
        if not future.cancelled():
            future.result()
