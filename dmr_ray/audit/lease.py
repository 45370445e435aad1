"""A lease per cell on the output store, so two runs of a plan never compute a cell twice.

Leases live in ``leases/<key>/<generation>.json`` (generation ``000000``, ``000001``, …). The
current lease is the highest generation. A run takes a cell by creating the next generation
exclusively (``"xb"``: of two runs racing for it exactly one succeeds), and may do so only
when there is no lease yet, or the current one is released or expired (its last heartbeat
older than its ``ttl_s``: a run that died). The holder rewrites its own file with a fresh
heartbeat every ``ttl_s / 4`` from a background thread, and marks it released at the end.
Lease files are never deleted (generation numbers only grow), so a slow run can never mistake
an old lease for a free cell.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from dmr_ray.audit.output import Output

log = logging.getLogger(__name__)

LEASES = "leases"


@dataclass(frozen=True)
class LeaseState:
    """What a lease file says.

    Attributes
    ----------
    generation : int
    owner : str
        ``host:pid:run id`` of the run holding it.
    heartbeat : float
        Unix time of its last heartbeat.
    ttl_s : float
    released : bool
    """

    generation: int
    owner: str
    heartbeat: float
    ttl_s: float
    released: bool

    def free(self, now: float) -> bool:
        """Released, or expired at ``now``."""
        return self.released or now > self.heartbeat + self.ttl_s


def owner_id(run_id: str) -> str:
    """``host:pid:run_id``."""
    return f"{socket.gethostname()}:{os.getpid()}:{run_id}"


class Lease:
    """A held lease on one cell; see the module docstring. Create with :func:`try_acquire`."""

    def __init__(self, output: Output, key: str, generation: int, owner: str, ttl_s: float) -> None:
        self.output, self.key, self.generation, self.owner, self.ttl_s = output, key, generation, owner, ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{key[:8]}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return f"{self.generation:06d}.json"

    def _write(self, released: bool) -> None:
        state = {"owner": self.owner, "heartbeat": time.time(), "ttl_s": self.ttl_s, "released": released}
        self.output.write_text(json.dumps(state), LEASES, self.key, self.name)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self._write(released=False)
            except OSError as exc:  # a missed heartbeat is retried; only expiry loses the lease
                log.warning("cell %s: heartbeat failed: %s", self.key, exc)

    def held(self) -> bool:
        """Whether this lease is still the current one (no other run took the cell over)."""
        current = current_lease(self.output, self.key)
        return current is not None and current.generation == self.generation and current.owner == self.owner

    def release(self) -> None:
        """Stop the heartbeat and mark the lease released (when it is still ours)."""
        self._stop.set()
        self._thread.join()
        if self.held():
            self._write(released=True)


def current_lease(output: Output, key: str) -> LeaseState | None:
    """The highest-generation lease of ``key``, or None when the cell was never leased.

    A lease file that cannot be read yet (being written) counts as fresh and held.
    """
    names = [n for n in output.list(LEASES, key) if n.endswith(".json") and n[:-5].isdigit()]
    if not names:
        return None
    name = max(names, key=lambda n: int(n[:-5]))
    generation = int(name[:-5])
    try:
        data = json.loads(output.read_text(LEASES, key, name))
        return LeaseState(generation, data["owner"], float(data["heartbeat"]), float(data["ttl_s"]), data["released"])
    except (OSError, ValueError, KeyError):
        return LeaseState(generation, "(being written)", time.time(), float("inf"), False)


def try_acquire(output: Output, key: str, owner: str, ttl_s: float) -> Lease | LeaseState:
    """Take the lease of ``key`` when it is free; else the :class:`LeaseState` holding it.

    Returns
    -------
    Lease or LeaseState
        A held :class:`Lease` (heartbeat running), or the other run's current lease.
    """
    while True:
        current = current_lease(output, key)
        if current is not None and not current.free(time.time()):
            return current
        generation = 0 if current is None else current.generation + 1
        if current is not None and not current.released:
            log.warning("cell %s: taking over the expired lease of %s", key, current.owner)
        state = {"owner": owner, "heartbeat": time.time(), "ttl_s": ttl_s, "released": False}
        if output.create_exclusive(json.dumps(state), LEASES, key, f"{generation:06d}.json"):
            return Lease(output, key, generation, owner, ttl_s)
