"""The sequence store (``sequences.zarr``): build it, open it, read it by range or chunk.

Layout (Zarr v3 group):

- ``tokens`` ``uint8 [n_seq, length]`` (A=0 C=1 G=2 T=3 N=4), chunks ``(chunk_size, length)``;
- ``seq_id`` ``[n_seq]`` strings or ``int64``, unique;
- optional coordinates ``chrom`` (str), ``start``, ``end`` (``int64``, 0-based half-open),
  ``strand`` (``+``, ``-`` or ``.``);
- attributes ``format``, ``format_version``, ``alphabet`` (token i is ``alphabet[i]``),
  ``length``, ``chunk_size``, ``source``, ``has_coordinates`` and ``dmr_ray`` (the store
  marker ``{"kind": "sequences", "format": 1}``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dmr_ray.alphabet import ALPHABET, N_TOKEN, check_tokens, onehot_to_tokens
from dmr_ray.errors import InputError
from dmr_ray.store import _zarr_io as zio
from dmr_ray.store import fasta_bed

KIND = "sequences"
FORMAT = "dmr_ray.sequences"
FORMAT_VERSION = 1
TARGET_CHUNK_BYTES = 1 << 20
MIN_CHUNKS = 8
_COORDINATES = ("chrom", "start", "end", "strand")


@dataclass(frozen=True)
class Coordinates:
    """Genomic coordinates of stored sequences (0-based, half-open)."""

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    strand: np.ndarray


def default_chunk_size(n_seq: int, length: int) -> int:
    """Sequences per chunk: about 1 MiB of tokens, but at least :data:`MIN_CHUNKS` chunks.

    ``ceil(2**20 / length)`` sequences (1,049 at 1 kb) keep each chunk object near the
    efficient size for Zarr; small stores are split into at least 8 chunks so that several
    workers get work. The result is at least 1.
    """
    return max(1, min(math.ceil(TARGET_CHUNK_BYTES / length), math.ceil(n_seq / MIN_CHUNKS)))


def as_seq_ids(seq_ids: Any, n_seq: int, what: str = "seq_ids") -> np.ndarray:
    """Validate identifiers: 1-D, ``n_seq`` long, strings or integers, unique.

    Returns
    -------
    numpy.ndarray
        ``int64`` (``arange(n_seq)`` when ``seq_ids`` is None) or fixed-width unicode.
    """
    if seq_ids is None:
        return np.arange(n_seq, dtype=np.int64)
    ids = np.asarray(seq_ids)
    if ids.dtype.kind == "O" and all(isinstance(v, str) for v in ids.ravel()):
        ids = ids.astype(str)
    if ids.dtype.kind == "T":
        ids = np.array(ids.tolist(), dtype=str)
    if ids.ndim != 1 or len(ids) != n_seq:
        raise InputError(f"{what}: expected {n_seq} identifiers in a 1-D array, got shape {ids.shape}")
    if ids.dtype.kind in "iu":
        ids = ids.astype(np.int64)
    elif ids.dtype.kind != "U":
        raise InputError(f"{what}: identifiers must be strings or integers, got dtype {ids.dtype}")
    values, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = int(np.argmax(counts > 1))
        rows = np.flatnonzero(ids == values[dup])[:3].tolist()
        raise InputError(f"{what}: identifier {values[dup].item()!r} is not unique (rows {rows})")
    return ids


def _as_coordinates(coords: Coordinates | Mapping[str, Any], n_seq: int) -> Coordinates:
    if not isinstance(coords, Coordinates):
        missing = {"chrom", "start", "end"} - set(coords)
        if missing:
            raise InputError(f"coords: missing {sorted(missing)} (need chrom, start, end; strand optional)")
        coords = Coordinates(coords["chrom"], coords["start"], coords["end"], coords.get("strand", "."))
    strand = np.broadcast_to(np.asarray(coords.strand, dtype=str), (n_seq,))
    chrom, start, end = (np.asarray(v) for v in (coords.chrom, coords.start, coords.end))
    for name, value in zip(_COORDINATES, (chrom, start, end, strand), strict=True):
        if value.shape != (n_seq,):
            raise InputError(f"coords.{name}: expected shape ({n_seq},), got {value.shape}")
    if start.dtype.kind not in "iu" or end.dtype.kind not in "iu":
        raise InputError(f"coords: start and end must be integers, got {start.dtype} and {end.dtype}")
    bad = np.flatnonzero((start < 0) | (start >= end))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"coords: row {i} needs 0 <= start < end, got start={start[i]} end={end[i]}")
    odd = np.flatnonzero(~np.isin(strand, fasta_bed.STRANDS))
    if odd.size:
        raise InputError(f"coords.strand: row {int(odd[0])} is {str(strand[odd[0]])!r}, expected '+', '-' or '.'")
    return Coordinates(chrom.astype(str), start.astype(np.int64), end.astype(np.int64), strand.copy())


class SequenceStore(zio.RowStore):
    """A read-only handle on a ``sequences.zarr`` group (local path or fsspec URL).

    Opening validates the layout; data are read only on request. Pickles as its location
    (and a few numbers), so Ray workers can receive it and open the store themselves.

    Parameters
    ----------
    location
        Local path, ``file://`` URL or other fsspec URL.
    storage_options
        fsspec options for URLs (credentials, endpoints).
    """

    def __init__(self, location: str | os.PathLike[str], storage_options: zio.StorageOptions = None) -> None:
        self._root = zio.LazyGroup(zio.normalise(location), "r", storage_options)
        group, where = self._root.group, self.location
        attrs = zio.read_header(group, where, FORMAT, FORMAT_VERSION)
        if attrs.get("alphabet") != ALPHABET + "N":
            raise InputError(f"{where}: attribute 'alphabet' is {attrs.get('alphabet')!r}, expected 'ACGTN'")
        length = zio.positive_int(attrs.get("length"), f"{where}: attribute 'length'")
        tokens = zio.require_array(group, "tokens", where, (None, length))
        zio.require_dtype(tokens, where, ("uint8",))
        chunk_size = zio.chunk_size_of(attrs, tokens, where)
        n_seq = tokens.shape[0]
        zio.require_dtype(zio.require_array(group, "seq_id", where, (n_seq,)), where, ("string", "int64"))
        if attrs.get("has_coordinates"):
            for name, dtype in zip(_COORDINATES, ("string", "int64", "int64", "string"), strict=True):
                zio.require_dtype(zio.require_array(group, name, where, (n_seq,)), where, (dtype,))
        self._attrs = attrs
        self.n_seq, self.length, self.chunk_size = n_seq, length, chunk_size

    @property
    def has_coordinates(self) -> bool:
        """Whether ``chrom``/``start``/``end``/``strand`` are stored."""
        return bool(self._attrs.get("has_coordinates"))

    def read(self, start: int = 0, stop: int | None = None, *, validate: bool = False) -> np.ndarray:
        """Tokens of rows ``start:stop`` as ``uint8 [stop - start, length]``.

        With ``validate``, a value outside 0..4 raises :class:`InputError` naming the store,
        the array and the row.
        """
        start, stop = self._span(start, stop)
        tokens = np.asarray(self._root["tokens"][start:stop], dtype=np.uint8)
        if validate:
            check_tokens(tokens, f"{self.location}: array 'tokens'", first_row=start)
        return tokens

    def read_chunk(self, i: int, *, validate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, seq_ids)`` of chunk ``i``."""
        start, stop = self.chunk_bounds(i)
        return self.read(start, stop, validate=validate), self.seq_ids(start, stop)

    def coordinates(self, start: int = 0, stop: int | None = None) -> Coordinates | None:
        """Coordinates of rows ``start:stop``, or None when the store has none."""
        if not self.has_coordinates:
            return None
        start, stop = self._span(start, stop)
        return Coordinates(*(zio.read_vector(self._root[name], start, stop) for name in _COORDINATES))

    def __repr__(self) -> str:
        return (
            f"SequenceStore({self.location!r}, n_seq={self.n_seq}, length={self.length}, chunk_size={self.chunk_size})"
        )


def open_sequence_store(
    path_or_url: str | os.PathLike[str], storage_options: zio.StorageOptions = None
) -> SequenceStore:
    """Open and validate a sequence store at a local path or fsspec URL (see :class:`SequenceStore`)."""
    return SequenceStore(path_or_url, storage_options)


def _write(
    out: str | os.PathLike[str],
    *,
    blocks: Iterable[np.ndarray],
    shape: tuple[int, int],
    seq_ids: np.ndarray,
    coords: Coordinates | None,
    source: str,
    chunk_size: int,
    overwrite: bool,
    storage_options: zio.StorageOptions,
) -> SequenceStore:
    """Stream ``blocks`` of ``chunk_size`` rows into a staged group and publish it at ``out``."""
    location = zio.normalise(out)
    with zio.staged(location, kind=KIND, overwrite=overwrite, storage_options=storage_options) as tmp:
        group = zio.open_group(tmp, "w", storage_options)
        tokens = group.create_array(
            "tokens", shape=shape, dtype=np.uint8, chunks=(chunk_size, shape[1]), fill_value=N_TOKEN
        )
        zio.create_vector(group, "seq_id", seq_ids, chunk_size)
        if coords is not None:
            for name in _COORDINATES:
                zio.create_vector(group, name, getattr(coords, name), chunk_size)
        row = 0
        for block in blocks:
            tokens[row : row + len(block)] = block
            row += len(block)
        group.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "alphabet": ALPHABET + "N",
                "length": shape[1],
                "chunk_size": chunk_size,
                "source": source,
                "has_coordinates": coords is not None,
                **zio.marker(KIND),
            }
        )
    return SequenceStore(location, storage_options)


def _resolve_chunk_size(chunk_size: int | None, n_seq: int, length: int) -> int:
    if chunk_size is None:
        return default_chunk_size(n_seq, length)
    return zio.positive_int(chunk_size, "chunk_size")


def write_sequence_store(
    out: str | os.PathLike[str],
    tokens: np.ndarray,
    seq_ids: Any = None,
    coords: Coordinates | Mapping[str, Any] | None = None,
    *,
    source: str = "arrays",
    chunk_size: int | None = None,
    overwrite: bool = False,
    storage_options: zio.StorageOptions = None,
) -> SequenceStore:
    """Write tokens (and identifiers, coordinates) as a sequence store.

    Parameters
    ----------
    out
        Target local path or fsspec URL. The store is built in a hidden temporary sibling
        and moved into place only when complete.
    tokens
        Integer array ``[n_seq, length]`` with values 0..4.
    seq_ids
        Unique strings or integers, one per row; default ``0..n_seq-1``.
    coords
        :class:`Coordinates` or a mapping with ``chrom``, ``start``, ``end`` and optional
        ``strand`` (default ``"."``).
    source
        Free-text description recorded in the attributes.
    chunk_size
        Sequences per chunk; default :func:`default_chunk_size`.
    overwrite
        Replace a sequence store that dmr_ray wrote at ``out``. Anything else there (a
        directory of other files, an effects store) is never replaced: it is an
        :class:`InputError` raised before anything is written.
    storage_options
        fsspec options for URLs.

    Returns
    -------
    SequenceStore
        The published store.

    Raises
    ------
    InputError
        Wrong shape or values, duplicate identifiers, bad coordinates, ``out`` exists
        without ``overwrite``, or ``out`` holds something other than a sequence store.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or 0 in tokens.shape:
        raise InputError(f"tokens must be a non-empty 2-D array [n_seq, length], got shape {tokens.shape}")
    if tokens.dtype.kind not in "iu":
        raise InputError(f"tokens must be integers 0..{N_TOKEN}, got dtype {tokens.dtype}")
    check_tokens(tokens)
    n_seq, length = tokens.shape
    ids = as_seq_ids(seq_ids, n_seq)
    coordinates = None if coords is None else _as_coordinates(coords, n_seq)
    chunk = _resolve_chunk_size(chunk_size, n_seq, length)
    tokens = tokens.astype(np.uint8, copy=False)
    return _write(
        out,
        blocks=(tokens[i : i + chunk] for i in range(0, n_seq, chunk)),
        shape=(n_seq, length),
        seq_ids=ids,
        coords=coordinates,
        source=source,
        chunk_size=chunk,
        overwrite=overwrite,
        storage_options=storage_options,
    )


def build_from_arrays(
    array: np.ndarray,
    out: str | os.PathLike[str],
    seq_ids: Any = None,
    *,
    layout: Literal["NCL", "NLC"] | None = None,
    **kwargs: Any,
) -> SequenceStore:
    """Build a store from tokens ``[n, L]`` or one-hot ``[n, 4, L]`` / ``[n, L, 4]``.

    Parameters
    ----------
    array
        Tokens (integers 0..4) or a one-hot array; all-zero one-hot positions become N.
    out
        Target location.
    seq_ids
        As in :func:`write_sequence_store`.
    layout
        One-hot layout; needed only when it is ambiguous (``L == 4``).
    **kwargs
        Passed to :func:`write_sequence_store` (``coords``, ``source``, ``chunk_size``,
        ``overwrite``, ``storage_options``).
    """
    array = np.asarray(array)
    if array.ndim == 3:
        if layout is None:
            channels_first, channels_last = array.shape[1] == len(ALPHABET), array.shape[2] == len(ALPHABET)
            if channels_first == channels_last:
                raise InputError(
                    f"cannot tell the one-hot layout of an array of shape {array.shape}; "
                    "pass layout='NCL' or layout='NLC'"
                )
            layout = "NCL" if channels_first else "NLC"
        array = onehot_to_tokens(array, layout=layout)
    elif array.ndim != 2:
        raise InputError(
            f"expected tokens [n, L] or one-hot [n, 4, L] / [n, L, 4], got an array of shape {array.shape}"
        )
    return write_sequence_store(out, array, seq_ids, **kwargs)


def build_from_fasta_bed(
    fasta: str | os.PathLike[str],
    bed: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    length: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    reverse_complement_minus: bool = False,
    chunk_size: int | None = None,
    overwrite: bool = False,
    storage_options: zio.StorageOptions = None,
) -> SequenceStore:
    """Build a store of fixed-length windows from a FASTA file and BED intervals.

    Parameters
    ----------
    fasta
        Local FASTA file (indexed by pyfaidx; a ``.fai`` is written beside it if missing).
    bed
        BED file (local or fsspec URL, optionally compressed).
    out
        Target location of the store.
    length
        Window length. Each window is ``[c - length // 2, c - length // 2 + length)`` with
        centre ``c = (start + end) // 2``. When None, all intervals must share one length and
        are taken as they are.
    sample
        If given, sample this many distinct windows with centres drawn uniformly over the
        union of the intervals instead of one window per interval.
    seed
        Seed for ``sample``.
    reverse_complement_minus
        Reverse-complement windows on ``-`` strand intervals. Off by default: sequences are
        stored on the forward strand and the strand is kept as a coordinate.
    chunk_size, overwrite, storage_options
        As in :func:`write_sequence_store`.

    Returns
    -------
    SequenceStore
        The published store; ``seq_id`` is the BED name when every line has a unique one,
        else ``chrom:start-end`` of the interval (``#2``, ``#3``... on repeats); sampled
        windows are named ``chrom:start-end`` of the window.

    Raises
    ------
    InputError
        Empty or malformed FASTA/BED, unknown chromosome, an interval or window off a
        chromosome end, ragged lengths without ``length``, a non-ACGTN symbol. Nothing is
        left at ``out`` when the build fails.
    """
    zio.check_target(zio.normalise(out), KIND, overwrite=overwrite, storage_options=storage_options)
    intervals = fasta_bed.read_bed(bed)
    genome = fasta_bed.open_fasta(fasta)
    try:
        lengths = fasta_bed.chrom_lengths(genome)
        sizes = fasta_bed.check_intervals(intervals, lengths, os.fspath(fasta))
        if length is None:
            length = fasta_bed.common_length(intervals)
        length = zio.positive_int(length, "length")
        if sample is None:
            windows = fasta_bed.centred_windows(intervals, sizes, length)
        else:
            windows = fasta_bed.sampled_windows(intervals, lengths, length, sample, seed)
        n_seq = len(windows.seq_id)
        chunk = _resolve_chunk_size(chunk_size, n_seq, length)
        source = f"fasta+bed: fasta={zio.normalise(fasta)} bed={zio.normalise(bed)} length={length}"
        if sample is not None:
            source += f" sample={sample} seed={seed}"
        if reverse_complement_minus:
            source += " reverse_complement_minus=True"
        return _write(
            out,
            blocks=fasta_bed.window_tokens(genome, windows, chunk, reverse_complement_minus=reverse_complement_minus),
            shape=(n_seq, length),
            seq_ids=windows.seq_id,
            coords=Coordinates(windows.chrom, windows.start, windows.end, windows.strand),
            source=source,
            chunk_size=chunk,
            overwrite=overwrite,
            storage_options=storage_options,
        )
    finally:
        genome.close()
