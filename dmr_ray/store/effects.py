"""The effects store (``effects.zarr``): ISM output written chunk by chunk, resumable.

Layout (Zarr v3 group), ``T`` = number of tasks:

- ``beta``, ``se`` ``float32 [n_seq, length, 3, T]``, chunks ``(chunk_size, length, 3, T)``;
  alt alleles in ACGT order skipping the reference base; NaN where nothing was written;
- ``ref_mean``, ``ref_se`` ``float32 [n_seq, T]``, chunks ``(chunk_size, T)``;
- ``seq_id`` ``[n_seq]`` and ``tasks`` ``[T]`` (names);
- ``complete`` ``bool [n_chunks]`` with chunks of 1: the completion manifest. Chunk ``i`` is
  present only when ``complete[i]`` is set, which :meth:`EffectsStore.write_chunk` does last;
- ``committed_by`` string ``[n_chunks]`` with chunks of 1: the identifier of the run that
  committed each chunk (empty if none), so a resumed run can be audited;
- attributes ``format``, ``format_version``, ``chunk_size``, ``dmr_ray`` (the store marker
  ``{"kind": "effects", "format": 1}``), the caller's identity
  attributes (compared on resume; their names are listed in ``identity_keys``) and
  informational ones (recorded, not compared). :data:`REQUIRED_ATTRS` must be among them.

Every chunk of every array is its own object and nothing shared is written after
creation, so processes may write different chunks concurrently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import zarr

from dmr_ray.errors import InputError, ResumeConflictError
from dmr_ray.store import _zarr_io as zio
from dmr_ray.store.sequences import SequenceStore, as_seq_ids

KIND = "effects"
FORMAT = "dmr_ray.effects"
FORMAT_VERSION = 1
REQUIRED_ATTRS = (
    "model_digest",
    "replicate_kind",
    "replicate_count",
    "calibration",
    "ddof",
    "code_version",
    "sequence_store",
)
_RESERVED = ("format", "format_version", "chunk_size", "identity_keys", zio.MARKER)
_DATA = ("beta", "se", "ref_mean", "ref_se")
_MANIFEST = ("complete", "committed_by")
_N_ALT = 3
_ABSENT = "<absent>"


def _jsonable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` as they will read back from Zarr (JSON round trip; numpy scalars allowed)."""

    def default(value: Any) -> Any:
        if isinstance(value, np.generic | np.ndarray):
            return value.tolist()
        raise TypeError(type(value).__name__)

    out = {}
    for key, value in attrs.items():
        try:
            out[str(key)] = json.loads(json.dumps(value, default=default))
        except (TypeError, ValueError) as err:
            raise InputError(f"effects attribute {key!r}: value {value!r} is not JSON-serialisable ({err})") from err
    return out


def _as_tasks(tasks: Sequence[str]) -> np.ndarray:
    names = np.asarray(list(tasks), dtype=object)
    if names.size == 0 or not all(isinstance(t, str) and t for t in names):
        raise InputError(f"tasks must be a non-empty list of non-empty names, got {list(tasks)!r}")
    if len(set(names)) != len(names):
        raise InputError(f"task names must be unique, got {list(tasks)!r}")
    return names.astype(str)


class EffectsStore(zio.RowStore):
    """A handle on an ``effects.zarr`` group; use :meth:`create` or :meth:`open`.

    Pickles as its location and a few small attributes, so Ray workers can receive it and
    write their chunks themselves.
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        storage_options: zio.StorageOptions = None,
        mode: Literal["r", "r+"] = "r+",
    ) -> None:
        self._root = zio.LazyGroup(zio.normalise(location), mode, storage_options)
        group, where = self._root.group, self.location
        attrs = zio.read_header(group, where, FORMAT, FORMAT_VERSION)
        beta = zio.require_array(group, "beta", where, (None, None, _N_ALT, None))
        n_seq, length, _, n_tasks = beta.shape
        for name in _DATA:
            shape = beta.shape if name in ("beta", "se") else (n_seq, n_tasks)
            zio.require_dtype(zio.require_array(group, name, where, shape), where, ("float32",))
        zio.require_dtype(zio.require_array(group, "seq_id", where, (n_seq,)), where, ("string", "int64"))
        tasks = zio.require_array(group, "tasks", where, (n_tasks,))
        zio.require_dtype(tasks, where, ("string",))
        self.n_seq, self.length, self.chunk_size = n_seq, length, zio.chunk_size_of(attrs, beta, where)
        complete = zio.require_array(group, "complete", where, (self.n_chunks,))
        zio.require_dtype(complete, where, ("bool",))
        zio.require_dtype(zio.require_array(group, "committed_by", where, (self.n_chunks,)), where, ("string",))
        for name in _MANIFEST:
            chunks = self._root[name].chunks
            if chunks != (1,):
                raise InputError(f"{where}: array {name!r} must have chunks (1,), got {chunks}")
        self.tasks: list[str] = zio.read_vector(tasks).tolist()
        self._attrs = attrs

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], storage_options: zio.StorageOptions = None, mode: Literal["r", "r+"] = "r+"
    ) -> EffectsStore:
        """Open and validate an existing effects store (``mode="r"`` for read-only use)."""
        return cls(path, storage_options, mode)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        seq_ids: Any,
        length: int,
        tasks: Sequence[str],
        chunk_size: int,
        attrs: Mapping[str, Any],
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        storage_options: zio.StorageOptions = None,
    ) -> EffectsStore:
        """Create an effects store, or resume the matching one already at ``path``.

        Parameters
        ----------
        path
            Local path or fsspec URL.
        seq_ids
            Identifiers of the sequences, in store order (unique strings or integers).
        length
            Sequence length in bp.
        tasks
            Output task names.
        chunk_size
            Sequences per chunk; the unit of work, of writing and of resume.
        attrs
            Identity attributes (JSON-serialisable): what the results depend on, such as
            the model digest, replicate kind and count, calibration, ddof and options.
        info
            Informational attributes, recorded at creation but not compared on resume
            (e.g. ``code_version``, the job description). Every key of
            :data:`REQUIRED_ATTRS` must be in ``attrs`` or ``info``.
        overwrite
            Replace an existing effects store and start fresh. Only an effects store that
            dmr_ray wrote is ever replaced; anything else at ``path`` is an :class:`InputError`.
        storage_options
            fsspec options for URLs.

        Returns
        -------
        EffectsStore
            The new store, or the existing one when its identity matches (resume).

        Raises
        ------
        ResumeConflictError
            An existing store differs in ``attrs``, shape, tasks, chunk size or seq_ids;
            the message names each differing key with its old and new value.
        InputError
            Invalid arguments, or something other than an effects store written by dmr_ray
            (a sequence store, a directory of other files) is at ``path``, with or without
            ``overwrite``; raised before anything is created or deleted.
        """
        identity, notes = _jsonable(attrs), _jsonable(info or {})
        missing = [key for key in REQUIRED_ATTRS if key not in identity and key not in notes]
        reserved = [key for key in _RESERVED if key in identity or key in notes]
        both = sorted(set(identity) & set(notes))
        if missing or reserved or both:
            raise InputError(
                f"effects attrs: missing keys {missing}, reserved keys {reserved}, keys in both attrs and info {both}"
            )
        length, chunk_size = zio.positive_int(length, "length"), zio.positive_int(chunk_size, "chunk_size")
        ids = as_seq_ids(np.asarray(seq_ids), np.size(seq_ids))
        if not len(ids):
            raise InputError("seq_ids: an effects store needs at least one sequence")
        names = _as_tasks(tasks)
        location = zio.normalise(path)
        if zio.existing_store(location, KIND, storage_options) and not overwrite:
            existing = cls._existing(location, storage_options)
            existing._check_identity(identity, ids, length, names.tolist(), chunk_size)
            return existing
        with zio.staged(location, kind=KIND, overwrite=True, storage_options=storage_options) as tmp:
            group = _create_arrays(tmp, storage_options, ids, length, names, chunk_size)
            header = {"format": FORMAT, "format_version": FORMAT_VERSION, "chunk_size": chunk_size, **zio.marker(KIND)}
            group.attrs.update({**header, "identity_keys": sorted(identity), **identity, **notes})
        return cls(location, storage_options)

    @classmethod
    def create_for(
        cls,
        sequences: SequenceStore,
        path: str | os.PathLike[str],
        *,
        tasks: Sequence[str],
        attrs: Mapping[str, Any],
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        storage_options: zio.StorageOptions = None,
    ) -> EffectsStore:
        """:meth:`create` with seq_ids, length and chunk size mirrored from a sequence store.

        ``attrs["sequence_store"]`` is set to the sequence store's location.
        """
        return cls.create(
            path,
            seq_ids=sequences.seq_ids(),
            length=sequences.length,
            tasks=tasks,
            chunk_size=sequences.chunk_size,
            attrs={**attrs, "sequence_store": sequences.location},
            info=info,
            overwrite=overwrite,
            storage_options=storage_options,
        )

    @classmethod
    def _existing(cls, location: str, storage_options: zio.StorageOptions) -> EffectsStore:
        try:
            return cls(location, storage_options)
        except InputError as err:
            raise InputError(f"{err}; pass --overwrite (overwrite=True) to replace it") from err

    def _check_identity(
        self, identity: dict[str, Any], seq_ids: np.ndarray, length: int, tasks: list[str], chunk_size: int
    ) -> None:
        old = self.identity
        old.update(n_seq=self.n_seq, length=self.length, tasks=self.tasks, chunk_size=self.chunk_size)
        new = {**identity, "n_seq": len(seq_ids), "length": length, "tasks": tasks, "chunk_size": chunk_size}
        diffs = [
            f"{key}: {old.get(key, _ABSENT)!r} (existing) vs {new.get(key, _ABSENT)!r} (now)"
            for key in sorted(set(old) | set(new))
            if old.get(key, _ABSENT) != new.get(key, _ABSENT)
        ]
        if len(seq_ids) == self.n_seq:
            stored = self.seq_ids()
            same_kind = stored.dtype.kind == seq_ids.dtype.kind
            differ = np.flatnonzero(stored != seq_ids) if same_kind else [0]
            if len(differ):
                i = int(differ[0])
                diffs.append(f"seq_id: row {i} is {stored[i].item()!r} (existing) vs {seq_ids[i].item()!r} (now)")
        if diffs:
            raise ResumeConflictError(
                f"{self.location}: an effects store made with different settings is already here; "
                + "; ".join(diffs)
                + ". Pass --overwrite to start fresh, or choose another output path."
            )

    @property
    def identity(self) -> dict[str, Any]:
        """The identity attributes, compared on resume (model digest, replicates, ddof, ...)."""
        return {key: self._attrs.get(key, _ABSENT) for key in self._attrs.get("identity_keys", [])}

    @property
    def info(self) -> dict[str, Any]:
        """The informational attributes, recorded at creation and never compared (code version, job)."""
        skip = {*_RESERVED, *self._attrs.get("identity_keys", [])}
        return {key: value for key, value in self._attrs.items() if key not in skip}

    @property
    def n_tasks(self) -> int:
        """Number of output tasks."""
        return len(self.tasks)

    def write_chunk(
        self,
        i: int,
        beta: np.ndarray,
        se: np.ndarray,
        ref_mean: np.ndarray,
        ref_se: np.ndarray,
        *,
        run_id: str = "",
    ) -> None:
        """Write chunk ``i`` whole, record ``run_id`` as its committer, then mark it complete.

        The flag is cleared first and set only after every array is written, so a crash
        mid-write leaves the chunk absent. Rewriting a chunk is harmless (idempotent).

        Raises
        ------
        InputError
            An array with the wrong shape for chunk ``i`` or a non-numeric dtype.
        """
        start, stop = self.chunk_bounds(i)
        rows = stop - start
        big, small = (rows, self.length, _N_ALT, self.n_tasks), (rows, self.n_tasks)
        values = {}
        for name, value, shape in zip(_DATA, (beta, se, ref_mean, ref_se), (big, big, small, small), strict=True):
            value = np.asarray(value)
            if value.shape != shape or value.dtype.kind not in "fiu":
                raise InputError(
                    f"{self.location}: chunk {i}: {name} has shape {value.shape} and dtype {value.dtype}, "
                    f"expected shape {shape} of floats"
                )
            values[name] = value.astype(np.float32, copy=False)
        complete = self._root["complete"]
        complete[i] = False
        for name, value in values.items():
            self._root[name][start:stop] = value
        self._root["committed_by"][i] = run_id
        complete[i] = True

    def completed_chunks(self) -> set[int]:
        """Indices of chunks whose completion flag is set."""
        return set(np.flatnonzero(self._root["complete"][:]).tolist())

    def is_chunk_complete(self, i: int) -> bool:
        """Whether chunk ``i``'s completion flag is set (reads one flag only)."""
        self.chunk_bounds(i)
        return bool(self._root["complete"][i])

    def committed_by(self) -> np.ndarray:
        """Per chunk, the ``run_id`` of the run that committed it (``""`` where none did)."""
        return np.array(np.asarray(self._root["committed_by"][:]).tolist(), dtype=str)

    def missing_chunks(self) -> list[int]:
        """Indices of chunks not yet complete, ascending."""
        done = self.completed_chunks()
        return [i for i in range(self.n_chunks) if i not in done]

    @property
    def is_complete(self) -> bool:
        """Whether every chunk is complete."""
        return len(self.completed_chunks()) == self.n_chunks

    def read(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of ``beta``, ``se``, ``ref_mean``, ``ref_se`` and ``seq_id``.

        Raises
        ------
        InputError
            If a chunk overlapping the range is not complete (absent chunks are never read).
        """
        start, stop = self._span(start, stop)
        if stop > start:
            first, last = start // self.chunk_size, (stop - 1) // self.chunk_size
            flags = np.asarray(self._root["complete"][first : last + 1])
            absent = (np.flatnonzero(~flags) + first).tolist()
            if absent:
                raise InputError(
                    f"{self.location}: rows {start}..{stop} include incomplete chunks {absent[:10]}"
                    f"{' ...' if len(absent) > 10 else ''}; finish the ISM run first"
                )
        out = {name: np.asarray(self._root[name][start:stop]) for name in _DATA}
        out["seq_id"] = self.seq_ids(start, stop)
        return out

    def read_chunk(self, i: int) -> dict[str, np.ndarray]:
        """:meth:`read` of chunk ``i``."""
        return self.read(*self.chunk_bounds(i))

    def __repr__(self) -> str:
        return (
            f"EffectsStore({self.location!r}, n_seq={self.n_seq}, length={self.length}, "
            f"tasks={self.tasks}, chunk_size={self.chunk_size})"
        )


def _create_arrays(
    location: str,
    storage_options: zio.StorageOptions,
    seq_ids: np.ndarray,
    length: int,
    tasks: np.ndarray,
    chunk_size: int,
) -> zarr.Group:
    group = zio.open_group(location, "w", storage_options)
    n_seq, n_tasks = len(seq_ids), len(tasks)
    for name in _DATA:
        big = name in ("beta", "se")
        shape = (n_seq, length, _N_ALT, n_tasks) if big else (n_seq, n_tasks)
        chunks = (chunk_size, length, _N_ALT, n_tasks) if big else (chunk_size, n_tasks)
        group.create_array(name, shape=shape, dtype=np.float32, chunks=chunks, fill_value=np.nan)
    zio.create_vector(group, "seq_id", seq_ids, chunk_size)
    zio.create_vector(group, "tasks", tasks, n_tasks)
    n_chunks = -(-n_seq // chunk_size)
    group.create_array("complete", shape=(n_chunks,), dtype=bool, chunks=(1,), fill_value=False)
    group.create_array("committed_by", shape=(n_chunks,), dtype=str, chunks=(1,), fill_value="")
    return group
