"""``dmr-ray store info``: what a sequence store or an effects store holds, as a JSON-ready dict."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from dmr_ray.store import _zarr_io as zio
from dmr_ray.store.effects import EffectsStore
from dmr_ray.store.sequences import SequenceStore

UNRECORDED = "(unrecorded)"
"""The ``committed_by`` key of chunks committed without a run id."""
_FIRST_IDS = 5


def store_info(path: str | os.PathLike[str], storage_options: zio.StorageOptions = None) -> dict[str, Any]:
    """Summary of the dmr_ray store at ``path`` (local path or fsspec URL), whichever its kind.

    Returns
    -------
    dict
        Always ``kind`` (``"sequences"`` or ``"effects"``), ``location``, ``n_seq``, ``length``,
        ``chunk_size``, ``n_chunks``, ``format_version`` and ``first_seq_ids`` (up to 5, as
        strings). A sequence store adds ``source`` and ``has_coordinates``; an effects store
        adds ``tasks``, ``chunks_complete`` (how many of the ``n_chunks`` are committed),
        ``committed_by`` (run id -> number of complete chunks it committed; chunks committed
        without a run id count under ``"(unrecorded)"``), ``identity`` (the attributes compared
        on resume: model digest, replicates, ddof, fast, precision, calibration, sequence
        store) and ``info`` (recorded, not compared: code version, job).

    Raises
    ------
    InputError
        When ``path`` holds no dmr_ray store, or an invalid one.
    """
    location = zio.normalise(path)
    kind = zio.store_kind(location, storage_options)
    store: SequenceStore | EffectsStore
    if kind == "sequences":
        store = SequenceStore(location, storage_options)
        details = {"source": store.attrs.get("source"), "has_coordinates": store.has_coordinates}
    else:
        store = EffectsStore.open(location, storage_options, mode="r")
        done = sorted(store.completed_chunks())
        runs = Counter(run or UNRECORDED for run in store.committed_by()[done].tolist())
        details = {
            "tasks": store.tasks,
            "chunks_complete": len(done),
            "committed_by": dict(sorted(runs.items())),
            "identity": store.identity,
            "info": store.info,
        }
    return {
        "kind": kind,
        "location": store.location,
        "n_seq": store.n_seq,
        "length": store.length,
        "chunk_size": store.chunk_size,
        "n_chunks": store.n_chunks,
        "format_version": store.attrs.get("format_version"),
        "first_seq_ids": [str(v) for v in store.seq_ids(0, min(_FIRST_IDS, store.n_seq))],
        **details,
    }
