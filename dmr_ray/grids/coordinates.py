"""Genomic coordinates of peaks and genes (grids.md §9): parsing names and ``var`` tables.

Peak names follow 10x Cell Ranger ARC (``chr1:10244-10510``) or Signac/ArchR
(``chr1-10244-10510``): as muon does, the first ``:`` becomes ``-`` and the name splits on
``-`` into chromosome, start and end. Gene coordinates come from ``chrom``/``start``/``end``
columns (also muon's ``Chromosome``/``Start``/``End``) or a 10x ``interval`` column.

Chromosome names are reconciled in one place, :func:`canonical_chromosome`, which every
:class:`Intervals` applies to its names: Ensembl's ``1``/``X``/``MT`` and UCSC's
``chr1``/``chrX``/``chrM`` become the UCSC names, so peaks named ``chr1:…`` and genes on
chromosome ``1`` compare equal wherever chromosomes are compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dmr_ray.errors import InputError

COLUMN_SETS = (("chrom", "start", "end"), ("Chromosome", "Start", "End"))
"""Accepted names of coordinate columns in a ``var`` table."""

MISSING = ("", "NA", "nan")
"""Interval strings that mean "no coordinates" (10x writes ``NA`` for some genes)."""


MITOCHONDRIAL = ("M", "MT")
"""Names of the mitochondrial chromosome after an optional ``chr`` prefix (UCSC ``chrM``, Ensembl ``MT``)."""


def canonical_chromosome(name: str) -> str:
    """The UCSC name of a chromosome given in UCSC or Ensembl style.

    ``1`` and ``chr1`` give ``chr1``, ``X`` gives ``chrX``, ``MT``, ``chrMT`` and ``chrM`` give
    ``chrM`` (the ``chr`` prefix in any case). Other contigs (``GL000194.1``,
    ``chrUn_KI270302v1``) and ``""`` (no coordinates) are returned unchanged.
    """
    rest = name[3:] if name[:3].lower() == "chr" else name
    if rest.upper() in MITOCHONDRIAL:
        return "chrM"
    if rest.isdigit() or rest.upper() in ("X", "Y"):
        return "chr" + rest.upper()
    return name


def canonical_chromosomes(chrom: np.ndarray | Sequence[str]) -> np.ndarray:
    """``str [n]``: :func:`canonical_chromosome` of every name (computed once per distinct name)."""
    names, inverse = np.unique(np.asarray(chrom, dtype=str), return_inverse=True)
    canonical = np.asarray([canonical_chromosome(str(n)) for n in names], dtype=str)
    return canonical[inverse.reshape(-1)] if len(names) else np.asarray(chrom, dtype=str)


@dataclass(frozen=True)
class Intervals:
    """Genomic intervals, one per feature.

    Attributes
    ----------
    chrom
        ``str [n]`` chromosome names, made canonical (:func:`canonical_chromosome`) on
        construction; ``""`` where a feature has no coordinates.
    start, end
        ``int64 [n]`` as given (BED-like); ``-1`` where a feature has no coordinates.
    """

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "chrom", canonical_chromosomes(self.chrom))

    def __len__(self) -> int:
        return len(self.chrom)

    @property
    def known(self) -> np.ndarray:
        """``bool [n]``: which features have coordinates."""
        return self.chrom != ""


def parse_interval(name: str) -> tuple[str, int, int]:
    """``chr:start-end`` or ``chr-start-end`` → ``(chrom, start, end)``.

    Raises
    ------
    InputError
        If the name does not have three parts, the positions are not integers or end < start.
    """
    parts = str(name).replace(":", "-", 1).split("-")
    if len(parts) != 3 or not parts[0]:
        raise InputError(f"cannot parse {name!r} as chr:start-end or chr-start-end")
    try:
        start, end = int(parts[1]), int(parts[2])
    except ValueError:
        raise InputError(f"cannot parse {name!r} as chr:start-end or chr-start-end: non-integer positions") from None
    if start < 0 or end < start:
        raise InputError(f"interval {name!r} has start {start} and end {end}; need 0 <= start <= end")
    return parts[0], start, end


def intervals_from_names(names: Sequence[str], *, what: str, allow_missing: bool = False) -> Intervals:
    """Parse every name with :func:`parse_interval`; ``what`` names the table in errors.

    With ``allow_missing``, names in :data:`MISSING` give a feature without coordinates.
    """
    chrom, start, end = [], [], []
    for i, name in enumerate(names):
        if allow_missing and (name is None or str(name) in MISSING):
            c, s, e = "", -1, -1
        else:
            try:
                c, s, e = parse_interval(name)
            except InputError as err:
                raise InputError(f"{what}[{i}]: {err}") from None
        chrom.append(c)
        start.append(s)
        end.append(e)
    return Intervals(np.asarray(chrom, dtype=str), np.asarray(start, np.int64), np.asarray(end, np.int64))


def intervals_from_table(var: pd.DataFrame, *, what: str) -> Intervals | None:
    """Coordinates from ``chrom``/``start``/``end`` (or ``Chromosome``/``Start``/``End``) columns.

    Returns ``None`` when the table has no such columns. Rows with a missing chromosome have no
    coordinates; other missing or non-integer positions are an :class:`InputError`.
    """
    for names in COLUMN_SETS:
        if set(names) <= set(var.columns):
            break
    else:
        return None
    chrom_col, start_col, end_col = names
    chrom = var[chrom_col].astype(object).where(var[chrom_col].notna(), "").astype(str).to_numpy()
    known = chrom != ""
    positions = []
    for col in (start_col, end_col):
        values = pd.to_numeric(var[col], errors="coerce").to_numpy(dtype=float)
        bad = known & ~(np.isfinite(values) & (values == np.round(values)))
        if bad.any():
            raise InputError(f"{what} column {col!r} is not an integer at row {int(np.flatnonzero(bad)[0])}")
        positions.append(np.where(known, values, -1).astype(np.int64))
    start, end = positions
    wrong = known & ((start < 0) | (end < start))
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise InputError(f"{what} row {row} has start {start[row]} and end {end[row]}; need 0 <= start <= end")
    return Intervals(chrom, start, end)
