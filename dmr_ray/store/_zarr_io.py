"""Zarr plumbing shared by the sequence and effects stores.

Locations are local paths or fsspec URLs (``s3://``, ``gs://``, ``memory://`` ...);
``file://`` URLs are turned into local paths so that Zarr's ``LocalStore`` (atomic
per-object writes) is used. Stores are built in a hidden temporary sibling and published
only when complete (:func:`staged`). Every store carries a :data:`MARKER` attribute naming its
kind, and a writer replaces only a store of its own kind that dmr_ray wrote
(:func:`existing_store`, :func:`check_target`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import fsspec
import numpy as np
import zarr
from zarr.core import sync as zarr_sync

from dmr_ray.errors import InputError

StorageOptions = Mapping[str, Any] | None
Mode = Literal["r", "r+", "a", "w", "w-"]

KINDS = {"sequences": "a sequence store", "effects": "an effects store"}
"""The kinds of store dmr_ray writes, with their names in messages."""
MARKER = "dmr_ray"
"""Group attribute that marks a store dmr_ray wrote: ``{"dmr_ray": {"kind": ..., "format": 1}}``."""
MARKER_FORMAT = 1
_LEGACY_FORMATS = {"dmr_ray.sequences": "sequences", "dmr_ray.effects": "effects"}
_LISTED = 5
_SETTLE_TIMEOUT_S = 60.0


def normalise(location: str | os.PathLike[str]) -> str:
    """Return ``location`` as an absolute local path, or unchanged if it is a non-file URL."""
    text = os.fspath(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return text.rstrip("/")
    return os.path.abspath(text)


def is_url(location: str) -> bool:
    """Whether a normalised location is a (non-local) fsspec URL."""
    return "://" in location


def _fs(location: str, storage_options: StorageOptions) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(location, **dict(storage_options or {}))


def exists(location: str, storage_options: StorageOptions = None) -> bool:
    """Whether anything (file or folder) is at a normalised location."""
    if not is_url(location):
        return os.path.lexists(location)
    fs, path = _fs(location, storage_options)
    return fs.exists(path)


def remove(location: str, storage_options: StorageOptions = None) -> None:
    """Delete whatever is at a normalised location (no error if there is nothing)."""
    if not is_url(location):
        if os.path.isdir(location) and not os.path.islink(location):
            shutil.rmtree(location, ignore_errors=True)
        elif os.path.lexists(location):
            os.remove(location)
        return
    fs, path = _fs(location, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def marker(kind: str) -> dict[str, Any]:
    """The attribute that marks a group as a dmr_ray store of ``kind`` (a key of :data:`KINDS`)."""
    return {MARKER: {"kind": kind, "format": MARKER_FORMAT}}


def kind_of(attrs: Mapping[str, Any]) -> str | None:
    """The kind of dmr_ray store a group's attributes describe, or None.

    Stores written before the :data:`MARKER` attribute existed are recognised by their
    ``format`` attribute (``dmr_ray.sequences``, ``dmr_ray.effects``).
    """
    mark = attrs.get(MARKER)
    if isinstance(mark, Mapping) and mark.get("kind") in KINDS:
        return str(mark["kind"])
    return _LEGACY_FORMATS.get(str(attrs.get("format")))


def _entries(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """Names of the entries directly under ``path`` (sorted)."""
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _group_attrs(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
    """Attributes of the Zarr v3 group at ``path``, or None when there is none."""
    try:
        with fs.open(f"{path}/zarr.json", "rb") as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    attrs = meta.get("attributes")
    return dict(attrs) if isinstance(attrs, dict) else {}


def store_kind(location: str, storage_options: StorageOptions = None) -> str:
    """The kind (a key of :data:`KINDS`) of the dmr_ray store at a normalised location.

    Raises
    ------
    InputError
        Naming the location and what it holds when that is not a dmr_ray store (nothing,
        a file, a directory of other files, a Zarr group dmr_ray did not write).
    """
    fs, path = _fs(location, storage_options)
    fs.invalidate_cache(path)
    attrs = _group_attrs(fs, path)
    kind = None if attrs is None else kind_of(attrs)
    if kind is not None:
        return kind
    if attrs is not None:
        holds = "holds a Zarr group that dmr_ray did not write"
    elif fs.isfile(path):
        holds = "is a file"
    elif fs.isdir(path):
        names = _entries(fs, path)
        holds = f"is a directory holding {_listing(names)}" if names else "is an empty directory"
    else:
        holds = "does not exist"
    raise InputError(f"{location}: {holds}, not a dmr_ray store")


def existing_store(location: str, kind: str, storage_options: StorageOptions = None) -> bool:
    """Whether a dmr_ray store of ``kind`` that dmr_ray may replace is at a normalised location.

    Returns False when nothing (or an empty directory) is there. Reads only metadata and
    listings; creates and deletes nothing.

    Raises
    ------
    InputError
        Naming the location and what it holds when it is anything else: a file, a directory
        or Zarr group that dmr_ray did not write, a store of the other kind, or a store
        that also holds files dmr_ray did not write. Such a location is never replaced.
    """
    if not exists(location, storage_options):
        return False
    fs, path = _fs(location, storage_options)
    fs.invalidate_cache(path)
    if fs.isdir(path) and not _entries(fs, path):
        return False
    refuse = f"; dmr_ray replaces only {KINDS[kind]} that it wrote, so choose another path"
    try:
        found = store_kind(location, storage_options)
    except InputError as err:
        raise InputError(f"{err}{refuse}") from None
    if found != kind:
        raise InputError(f"{location}: holds {KINDS[found]}, not {KINDS[kind]}{refuse}")
    foreign = [n for n in _entries(fs, path) if n != "zarr.json" and not fs.isfile(f"{path}/{n}/zarr.json")]
    if foreign:
        extra = _listing(foreign)
        raise InputError(f"{location}: holds {KINDS[kind]} and also {extra}, not written by dmr_ray{refuse}")
    return True


def check_target(location: str, kind: str, *, overwrite: bool, storage_options: StorageOptions = None) -> None:
    """Check that a store of ``kind`` may be written at a normalised location (nothing is written).

    Raises
    ------
    InputError
        As :func:`existing_store`, or when a store of ``kind`` is there and ``overwrite`` is off.
    """
    if existing_store(location, kind, storage_options) and not overwrite:
        raise InputError(
            f"{location}: {KINDS[kind]} already exists here; pass --overwrite (overwrite=True) to replace it"
        )


def open_group(location: str, mode: Mode, storage_options: StorageOptions = None) -> zarr.Group:
    """Open the Zarr group at a normalised location; a missing or unreadable one is an :class:`InputError`."""
    options = dict(storage_options) if storage_options and is_url(location) else None
    try:
        return zarr.open_group(location, mode=mode, storage_options=options)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{location}: not a readable Zarr group ({type(err).__name__}: {err})") from err


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int``; anything but a positive integer is an :class:`InputError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def read_header(group: zarr.Group, location: str, fmt: str, version: int) -> dict[str, Any]:
    """The group's attributes, after checking its ``format`` and ``format_version``."""
    attrs = dict(group.attrs)
    if attrs.get("format") != fmt:
        raise InputError(f"{location}: not a {fmt} store (attribute 'format' is {attrs.get('format')!r})")
    if attrs.get("format_version") != version:
        raise InputError(f"{location}: unsupported format_version {attrs.get('format_version')!r} (expected {version})")
    return attrs


def chunk_size_of(attrs: Mapping[str, Any], array: zarr.Array, location: str) -> int:
    """The ``chunk_size`` attribute, checked against the first-axis chunking of ``array``."""
    if attrs.get("chunk_size") != array.chunks[0]:
        raise InputError(
            f"{location}: attribute 'chunk_size' is {attrs.get('chunk_size')!r} but array "
            f"{array.basename!r} is chunked by {array.chunks[0]}"
        )
    return int(array.chunks[0])


def require_array(group: zarr.Group, name: str, location: str, shape: tuple[int | None, ...]) -> zarr.Array:
    """Return array ``name`` of ``group``, checking it exists and matches ``shape`` (``None`` = any size)."""
    try:
        array = group[name]
    except KeyError:
        raise InputError(f"{location}: array {name!r} is missing") from None
    if not isinstance(array, zarr.Array):
        raise InputError(f"{location}: {name!r} is a group, expected an array")
    got = tuple(array.shape)
    if len(got) != len(shape) or any(want not in (None, size) for want, size in zip(shape, got, strict=True)):
        expected = tuple("any" if want is None else want for want in shape)
        raise InputError(f"{location}: array {name!r} has shape {got}, expected {expected}")
    return array


def require_dtype(array: zarr.Array, location: str, allowed: tuple[str, ...]) -> None:
    """Check that ``array`` has a dtype in ``allowed`` (``"string"`` stands for any string dtype)."""
    dtype = np.dtype(array.dtype)
    name = "string" if dtype.kind in "TUO" else dtype.name
    if name not in allowed:
        raise InputError(
            f"{location}: array {array.basename!r} has dtype {dtype}, expected one of {', '.join(allowed)}"
        )


def create_vector(group: zarr.Group, name: str, values: np.ndarray, chunk: int) -> None:
    """Write a 1-D array of strings or ``int64`` (identifiers, labels, coordinates)."""
    data = values if values.dtype.kind == "i" else values.astype(object)
    dtype = np.int64 if values.dtype.kind == "i" else str
    array = group.create_array(name, shape=values.shape, dtype=dtype, chunks=(max(1, chunk),))
    if values.size:
        array[:] = data


def read_vector(array: zarr.Array, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Read a 1-D array written by :func:`create_vector` as ``int64`` or fixed-width unicode."""
    values = np.asarray(array[start:stop])
    if values.dtype.kind == "i":
        return values.astype(np.int64, copy=False)
    return np.array(values.tolist(), dtype=str)


def _sibling(location: str, tag: str) -> str:
    head, sep, name = location.rpartition("/")
    return f"{head}{sep}.{name}.{tag}-{uuid.uuid4().hex[:12]}"


def _publish_local(tmp: str, out: str) -> None:
    old = None
    if os.path.lexists(out):
        old = _sibling(out, "old")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        remove(old)


def _publish_remote(tmp: str, out: str, storage_options: StorageOptions) -> None:
    # Object stores have no atomic rename: copy every object but the root zarr.json, then
    # that one, so the target opens as a group only once everything else is in place.
    fs, tmp_path = _fs(tmp, storage_options)
    _, out_path = _fs(out, storage_options)
    if fs.exists(out_path):
        fs.rm(out_path, recursive=True)
    root_meta = f"{tmp_path}/zarr.json"
    files = sorted(fs.find(tmp_path), key=lambda f: f == root_meta)
    for src in files:
        fs.copy(src, out_path + src[len(tmp_path) :])
    fs.rm(tmp_path, recursive=True)


def settle_io(timeout: float = _SETTLE_TIMEOUT_S) -> None:
    """Wait until the writes running on Zarr's IO thread have finished.

    Zarr runs its IO on an event loop in a thread of its own. A Ctrl-C reaches the main
    thread while it waits for a write there, and that write goes on: it would recreate
    files in a temporary store just removed. Called before such a cleanup.
    """
    loop = zarr_sync.loop[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def others() -> None:
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    asyncio.run_coroutine_threadsafe(others(), loop).result(timeout + 1)


@contextmanager
def staged(out: str, *, kind: str, overwrite: bool, storage_options: StorageOptions = None) -> Iterator[str]:
    """Yield a temporary sibling of ``out`` to build into; publish it at ``out`` on success.

    Parameters
    ----------
    out
        Normalised target location.
    kind
        The kind of store being built (a key of :data:`KINDS`); the caller marks it with
        :func:`marker`.
    overwrite
        Replace a store of ``kind`` that dmr_ray wrote at ``out``; otherwise an existing
        ``out`` is an :class:`InputError`. Anything else at ``out`` is never replaced
        (:func:`check_target`): the error is raised before anything is created or deleted.
    storage_options
        fsspec options for URLs.

    Yields
    ------
    str
        The temporary location. On any exception, Ctrl-C (``KeyboardInterrupt``) included,
        it is removed (after Zarr's writes in flight have finished) and the exception is
        re-raised; ``out`` is untouched.
    """
    check_target(out, kind, overwrite=overwrite, storage_options=storage_options)
    tmp = _sibling(out, "tmp")
    try:
        yield tmp
        if is_url(out):
            _publish_remote(tmp, out, storage_options)
        else:
            _publish_local(tmp, out)
    except BaseException:
        settle_io()
        remove(tmp, storage_options)
        raise


class LazyGroup:
    """A Zarr group location that opens on first use; pickles as its location only.

    Parameters
    ----------
    location
        Normalised local path or URL.
    mode
        Zarr open mode (``"r"`` or ``"r+"``).
    storage_options
        fsspec options for URLs.
    """

    def __init__(self, location: str, mode: Mode, storage_options: StorageOptions = None) -> None:
        self.location = location
        self.mode = mode
        self.storage_options = dict(storage_options) if storage_options else None
        self._group: zarr.Group | None = None

    @property
    def group(self) -> zarr.Group:
        """The open group (opened on first access in each process)."""
        if self._group is None:
            self._group = open_group(self.location, self.mode, self.storage_options)
        return self._group

    def __getitem__(self, name: str) -> zarr.Array:
        item = self.group[name]
        if not isinstance(item, zarr.Array):
            raise InputError(f"{self.location}: {name!r} is a group, expected an array")
        return item

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "mode": self.mode, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.location, self.mode, self.storage_options = state["location"], state["mode"], state["storage_options"]
        self._group = None


class RowStore:
    """Base of the stores: a lazily opened group whose arrays are chunked along rows (sequences).

    Subclasses set ``_root`` (:class:`LazyGroup`), ``_attrs``, ``n_seq`` and ``chunk_size``,
    and store identifiers in a ``seq_id`` array.
    """

    _root: LazyGroup
    _attrs: dict[str, Any]
    n_seq: int
    chunk_size: int

    @property
    def location(self) -> str:
        """The normalised local path or URL."""
        return self._root.location

    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of the group attributes."""
        return dict(self._attrs)

    @property
    def n_chunks(self) -> int:
        """Number of row chunks (the last one may be short)."""
        return -(-self.n_seq // self.chunk_size)

    def chunk_bounds(self, i: int) -> tuple[int, int]:
        """``(start, stop)`` rows of chunk ``i``."""
        if not 0 <= i < self.n_chunks:
            raise IndexError(f"chunk index {i} out of range 0..{self.n_chunks - 1}")
        start = i * self.chunk_size
        return start, min(start + self.chunk_size, self.n_seq)

    def seq_ids(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Identifiers of rows ``start:stop`` (``int64`` or unicode)."""
        start, stop = self._span(start, stop)
        return read_vector(self._root["seq_id"], start, stop)

    def _span(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.n_seq if stop is None else stop
        if not 0 <= start <= stop <= self.n_seq:
            raise IndexError(f"row range {start}..{stop} is not within 0..{self.n_seq}")
        return start, stop
