"""FASTA/BED input: parse BED intervals, plan fixed-length windows, extract their tokens.

BED is 0-based and half-open; columns are separated by tabs or spaces; ``#``, ``track`` and
``browser`` lines are skipped; column 4 (name) and column 6 (strand) are optional.
Every error names the file, the 1-based line and the value at fault.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import fsspec
import numpy as np
import pyfaidx

from dmr_ray.alphabet import encode, reverse_complement
from dmr_ray.errors import InputError

STRANDS = ("+", "-", ".")
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_HEADER = 14
_FEXTRA = 4
_BGZF_SUFFIXES = (".gz", ".bgz")


@dataclass(frozen=True)
class BedIntervals:
    """Parsed BED intervals, one entry per data line.

    Attributes
    ----------
    path
        The BED file, for messages.
    chrom, start, end, strand
        Columns 1, 2, 3 and 6 (``"."`` where absent).
    name
        Column 4 per line, ``None`` where absent or ``"."``.
    line
        1-based line number of each interval in the file.
    """

    path: str
    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    strand: np.ndarray
    name: tuple[str | None, ...]
    line: np.ndarray

    def __len__(self) -> int:
        return len(self.line)

    def at(self, i: int) -> str:
        """``'<path>, line <n>'`` for interval ``i``."""
        return f"{self.path}, line {int(self.line[i])}"

    def label(self, i: int) -> str:
        """``'chrom:start-end'`` of interval ``i``."""
        return f"{self.chrom[i]}:{int(self.start[i])}-{int(self.end[i])}"


@dataclass(frozen=True)
class Windows:
    """Fixed-length windows to extract; ``seq_id`` is unique."""

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    strand: np.ndarray
    seq_id: np.ndarray

    @property
    def length(self) -> int:
        """Window length in bp (all windows share it)."""
        return int(self.end[0] - self.start[0])


def read_bed(path: str | os.PathLike[str]) -> BedIntervals:
    """Parse a BED file (plain or compressed, local or fsspec URL).

    Raises
    ------
    InputError
        Missing or empty file, too few columns, non-integer or negative coordinates,
        ``start >= end`` or a strand other than ``+``, ``-``, ``.``.
    """
    path = os.fspath(path)
    rows: list[tuple[str, int, int, str, str | None, int]] = []
    try:
        with fsspec.open(path, "rt", compression="infer") as handle:
            for number, text in enumerate(handle, start=1):
                row = _parse_bed_line(text, f"{path}, line {number}")
                if row is not None:
                    rows.append((*row, number))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read BED file ({err})") from err
    if not rows:
        raise InputError(f"{path}: BED file has no intervals (it is empty or only comments/headers)")
    chrom, start, end, strand, name, line = zip(*rows, strict=True)
    return BedIntervals(
        path=path,
        chrom=np.array(chrom, dtype=str),
        start=np.array(start, dtype=np.int64),
        end=np.array(end, dtype=np.int64),
        strand=np.array(strand, dtype=str),
        name=tuple(name),
        line=np.array(line, dtype=np.int64),
    )


def _parse_bed_line(text: str, where: str) -> tuple[str, int, int, str, str | None] | None:
    fields = text.split()
    if not fields or fields[0].startswith("#") or fields[0] in ("track", "browser"):
        return None
    if len(fields) < 3:
        raise InputError(f"{where}: expected at least 3 columns (chrom, start, end), got {text.strip()!r}")
    chrom, start, end = fields[0], _bed_int(fields[1], "start", where), _bed_int(fields[2], "end", where)
    if start < 0:
        raise InputError(f"{where}: start must be >= 0, got {start}")
    if start >= end:
        raise InputError(f"{where}: start must be < end, got start={start} end={end}")
    name = fields[3] if len(fields) > 3 and fields[3] != "." else None
    strand = fields[5] if len(fields) > 5 else "."
    if strand not in STRANDS:
        raise InputError(f"{where}: strand (column 6) must be '+', '-' or '.', got {strand!r}")
    return chrom, start, end, strand, name


def _bed_int(value: str, column: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{where}: {column} is not an integer, got {value!r}") from None


def _gzip_kind(path: str) -> str | None:
    """``"bgzf"`` for a bgzip (BGZF) file, ``"gzip"`` for another gzip file, else None.

    A BGZF block is a gzip member whose header has the extra-field flag and a ``BC``
    subfield (SAM specification, section 4.1). An unreadable file gives None (pyfaidx
    reports it).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_GZIP_HEADER)
    except OSError:
        return None
    if head[:2] != _GZIP_MAGIC:
        return None
    return "bgzf" if len(head) == _GZIP_HEADER and head[3] & _FEXTRA and head[12:14] == b"BC" else "gzip"


def open_fasta(path: str | os.PathLike[str]) -> pyfaidx.Fasta:
    """Open (and if needed index) a local FASTA file, plain or bgzip-compressed.

    pyfaidx writes its index ``<fasta>.fai`` (and ``<fasta>.gzi`` for bgzip) beside the file
    if missing. Reading bgzip needs Biopython (``Bio.bgzf``).

    Raises
    ------
    InputError
        One line naming the file: empty or malformed, a record name used twice, plain gzip
        (recompress with bgzip), or bgzip without Biopython.
    """
    path = os.fspath(path)
    compressed = _gzip_kind(path)
    if compressed == "gzip":
        raise InputError(
            f"{path}: compressed with plain gzip, which cannot be read by position; recompress it with bgzip "
            f"(gunzip -c {path} | bgzip > {path.removesuffix('.gz')}.bgz)"
        )
    if compressed == "bgzf" and not path.lower().endswith(_BGZF_SUFFIXES):
        raise InputError(f"{path}: bgzip-compressed, so its name must end in .gz or .bgz")
    try:
        fasta = pyfaidx.Fasta(path, as_raw=True, sequence_always_upper=False)
    except ImportError as err:
        raise InputError(f"{path}: reading a bgzip-compressed FASTA needs Biopython ({err})") from err
    except ValueError as err:
        duplicate = re.fullmatch(r'Duplicate key "(.*)"', str(err))
        if duplicate is None:
            raise
        raise InputError(
            f"{path}: FASTA record name {duplicate.group(1)!r} is used more than once; record names "
            "(the first word of each '>' line) must be unique"
        ) from None
    except (pyfaidx.FastaIndexingError, pyfaidx.IndexNotFoundError, OSError) as err:
        raise InputError(f"{path}: cannot read FASTA ({err})") from err
    if not fasta.keys() or all(len(fasta[key]) == 0 for key in fasta.keys()):
        raise InputError(f"{path}: FASTA file holds no sequence")
    return fasta


def chrom_lengths(fasta: pyfaidx.Fasta) -> dict[str, int]:
    """Sequence lengths by record name, in FASTA order."""
    return {key: len(fasta[key]) for key in fasta.keys()}


def check_intervals(bed: BedIntervals, lengths: Mapping[str, int], fasta_path: str) -> np.ndarray:
    """Check every interval's chromosome exists and the interval fits on it; return chromosome lengths."""
    known = set(lengths)
    unknown = [i for i, chrom in enumerate(bed.chrom) if chrom not in known]
    if unknown:
        i = unknown[0]
        names = ", ".join(list(lengths)[:10]) + (", ..." if len(lengths) > 10 else "")
        raise InputError(f"{bed.at(i)}: chromosome {str(bed.chrom[i])!r} is not in FASTA {fasta_path} (it has {names})")
    sizes = np.array([lengths[chrom] for chrom in bed.chrom], dtype=np.int64)
    past = np.flatnonzero(bed.end > sizes)
    if past.size:
        i = int(past[0])
        raise InputError(
            f"{bed.at(i)}: interval {bed.label(i)} runs past the end of {bed.chrom[i]} "
            f"(length {int(sizes[i])} in {fasta_path})"
        )
    return sizes


def common_length(bed: BedIntervals) -> int:
    """The one length all intervals share; ragged lengths raise :class:`InputError`."""
    widths = bed.end - bed.start
    differ = np.flatnonzero(widths != widths[0])
    if differ.size:
        i = int(differ[0])
        raise InputError(
            f"{bed.path}: interval lengths are ragged ({bed.at(0)} is {int(widths[0])} bp, "
            f"line {int(bed.line[i])} is {int(widths[i])} bp); pass --length to cut fixed-length "
            "windows centred on each interval"
        )
    return int(widths[0])


def centred_windows(bed: BedIntervals, sizes: np.ndarray, length: int) -> Windows:
    """Windows of ``length`` bp centred on each interval (centre ``(start + end) // 2``).

    Raises
    ------
    InputError
        A window that runs off its chromosome; names the BED line, window and chromosome length.
    """
    start = (bed.start + bed.end) // 2 - length // 2
    end = start + length
    off = np.flatnonzero((start < 0) | (end > sizes))
    if off.size:
        i = int(off[0])
        raise InputError(
            f"{bed.at(i)}: the {length} bp window {bed.chrom[i]}:{int(start[i])}-{int(end[i])} centred on "
            f"interval {bed.label(i)} runs off {bed.chrom[i]} (length {int(sizes[i])})"
        )
    return Windows(bed.chrom, start, end, bed.strand, _interval_ids(bed))


def _interval_ids(bed: BedIntervals) -> np.ndarray:
    """Names when every line has one and they are unique; else ``chrom:start-end``, repeats suffixed ``#k``."""
    if all(bed.name) and len(set(bed.name)) == len(bed.name):
        return np.array(bed.name, dtype=str)
    ids: list[str] = []
    seen: set[str] = set()
    for i in range(len(bed)):
        base = candidate = bed.label(i)
        k = 1
        while candidate in seen:
            k += 1
            candidate = f"{base}#{k}"
        seen.add(candidate)
        ids.append(candidate)
    return np.array(ids, dtype=str)


def sampled_windows(bed: BedIntervals, lengths: Mapping[str, int], length: int, n: int, seed: int) -> Windows:
    """Sample ``n`` distinct windows whose centres are uniform over the union of the intervals.

    A centre ``c`` gives the window ``[c - length // 2, c - length // 2 + length)``; only
    centres whose window lies wholly on the chromosome are eligible. Windows come back in
    FASTA chromosome order, then by position; strand is ``"."``.

    Raises
    ------
    InputError
        If ``n`` is not positive or exceeds the number of eligible centres.
    """
    if n < 1:
        raise InputError(f"sample must be a positive number of windows, got {n}")
    half = length // 2
    order = np.argsort(bed.chrom, kind="stable")
    names, first = np.unique(bed.chrom[order], return_index=True)
    groups = dict(zip(names.tolist(), np.split(order, first[1:]), strict=True))
    chroms, lows, highs = [], [], []
    for chrom in (c for c in lengths if c in groups):
        rows = groups[chrom]
        for low, high in _merge(bed.start[rows], bed.end[rows]):
            low, high = max(low, half), min(high, lengths[chrom] - length + half + 1)
            if low < high:
                chroms.append(chrom)
                lows.append(low)
                highs.append(high)
    counts = np.array(highs, dtype=np.int64) - np.array(lows, dtype=np.int64)
    total = int(counts.sum())
    if n > total:
        raise InputError(
            f"{bed.path}: cannot sample {n} distinct {length} bp windows; the intervals hold only "
            f"{total} eligible window centres"
        )
    picks = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    block = np.searchsorted(offsets, picks, side="right") - 1
    centre = np.array(lows, dtype=np.int64)[block] + picks - offsets[block]
    window_chrom = np.array(chroms, dtype=str)[block]
    start = centre - half
    end = start + length
    seq_id = np.array([f"{c}:{s}-{e}" for c, s, e in zip(window_chrom, start, end, strict=True)], dtype=str)
    return Windows(window_chrom, start, end, np.full(n, ".", dtype=str), seq_id)


def _merge(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """Union of half-open intervals as sorted, disjoint ``(start, end)`` pairs."""
    merged: list[list[int]] = []
    for s, e in sorted(zip(starts.tolist(), ends.tolist(), strict=True)):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def window_tokens(
    fasta: pyfaidx.Fasta, windows: Windows, block: int, *, reverse_complement_minus: bool = False
) -> Iterator[np.ndarray]:
    """Yield the windows' tokens in blocks of ``block`` rows (``uint8 [rows, length]``).

    Minus-strand windows are reverse-complemented when ``reverse_complement_minus`` is set.
    A symbol outside ``ACGTN`` raises :class:`InputError` naming the record and position.
    """
    length = windows.length
    for first in range(0, len(windows.seq_id), block):
        rows = range(first, min(first + block, len(windows.seq_id)))
        out = np.empty((len(rows), length), dtype=np.uint8)
        for k, i in enumerate(rows):
            chrom, start = str(windows.chrom[i]), int(windows.start[i])
            tokens = encode(fasta[chrom][start : start + length], record=chrom, offset=start)
            if reverse_complement_minus and windows.strand[i] == "-":
                tokens = reverse_complement(tokens)
            out[k] = tokens
        yield out
