"""Single-cell multiome input for GRIDS (grids.md §9): a MuData ``.h5mu`` or two ``.h5ad`` files.

Everything is checked on read, before a caller writes anything: modalities ``rna`` (cells ×
genes, raw counts) and ``atac`` (cells × peaks, binary or counts, binarised here) over the
same cells, a cell-type column, parseable peak coordinates, gene coordinates, and the target
gene when one is named. Cells are put in the RNA table's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dmr_ray.errors import InputError
from dmr_ray.grids.coordinates import Intervals, intervals_from_names, intervals_from_table

STRANDS = {"+": 1, "-": -1}
"""``var["strand"]`` values → ``int8`` strand (anything else is 0, unknown)."""


@dataclass(frozen=True)
class Multiome:
    """Paired ATAC and RNA of the same cells.

    Attributes
    ----------
    cells
        ``str [n_cells]`` cell names (the RNA table's order).
    cell_types
        ``str [n_cells]``.
    atac
        ``scipy.sparse.csr_matrix uint8 [n_cells, n_peaks]`` of 0/1.
    rna
        ``scipy.sparse.csr_matrix float32 [n_cells, n_genes]`` raw counts.
    peak_names, gene_names
        ``str [n_peaks]``, ``str [n_genes]``.
    peaks
        :class:`Intervals` of the peaks (all known).
    genes
        :class:`Intervals` of the genes (``known`` says which have coordinates).
    gene_strand
        ``int8 [n_genes]``: +1, −1, or 0 when the table gives no strand.
    """

    cells: np.ndarray
    cell_types: np.ndarray
    atac: sp.csr_matrix
    rna: sp.csr_matrix
    peak_names: np.ndarray
    gene_names: np.ndarray
    peaks: Intervals
    genes: Intervals
    gene_strand: np.ndarray

    def gene_index(self, gene: str) -> int:
        """Column of ``gene`` in :attr:`rna`; :class:`InputError` if it is absent."""
        hits = np.flatnonzero(self.gene_names == gene)
        if len(hits) == 0:
            raise InputError(f"target gene {gene!r} is not among the {len(self.gene_names)} genes of the rna table")
        return int(hits[0])


def read_multiome(
    path: str | Path | tuple[str | Path, str | Path],
    *,
    cell_type_key: str = "cell_type",
    target_gene: str | None = None,
) -> Multiome:
    """Read a MuData ``.h5mu`` file, or a pair ``(rna.h5ad, atac.h5ad)``.

    Parameters
    ----------
    path
        The ``.h5mu`` file with modalities ``rna`` and ``atac``, or the two ``.h5ad`` files.
    cell_type_key
        ``obs`` column with the cell types (looked up in the MuData ``obs``, then ``rna``, then
        ``atac``).
    target_gene
        When given, it must be a gene of the rna table with coordinates.

    Raises
    ------
    InputError
        Naming the file and what is wrong: a missing file or modality, cells that do not match,
        a missing cell-type column, unparseable peak or gene coordinates, RNA that is not
        non-negative integer counts, ATAC with negative or non-finite values, an absent target.
    """
    import anndata as ad

    if isinstance(path, tuple):
        rna_path, atac_path = (Path(p) for p in path)
        rna, atac = (_read(p, ad.read_h5ad) for p in (rna_path, atac_path))
        obs_tables = [rna.obs, atac.obs]
        where = f"{rna_path} + {atac_path}"
    else:
        import mudata as md

        where = str(path)
        mdata = _read(Path(path), md.read_h5mu)
        missing = {"rna", "atac"} - set(mdata.mod)
        if missing:
            raise InputError(f"{where}: modality {sorted(missing)} missing; found {sorted(mdata.mod)}")
        rna, atac = mdata.mod["rna"], mdata.mod["atac"]
        obs_tables = [mdata.obs, rna.obs, atac.obs]
    cells = np.asarray(rna.obs_names, dtype=str)
    atac = atac[_match_cells(cells, np.asarray(atac.obs_names, dtype=str), where)]
    cell_types = _cell_types(obs_tables, cell_type_key, cells, where)
    peaks = intervals_from_table(atac.var, what=f"{where} atac var")
    if peaks is None:
        peaks = intervals_from_names(list(atac.var_names), what=f"{where} atac peak names")
    elif not peaks.known.all():
        raise InputError(f"{where}: atac peak {int(np.flatnonzero(~peaks.known)[0])} has no chromosome")
    genes = intervals_from_table(rna.var, what=f"{where} rna var")
    if genes is None:
        if "interval" not in rna.var.columns:
            raise InputError(f"{where}: rna var has no gene coordinates (chrom/start/end or interval columns)")
        genes = intervals_from_names(list(rna.var["interval"]), what=f"{where} rna interval", allow_missing=True)
    result = Multiome(
        cells=cells,
        cell_types=cell_types,
        atac=_binary_atac(atac.X, where),
        rna=_counts(rna.layers["counts"] if "counts" in rna.layers else rna.X, where),
        peak_names=np.asarray(atac.var_names, dtype=str),
        gene_names=np.asarray(rna.var_names, dtype=str),
        peaks=peaks,
        genes=genes,
        gene_strand=_strand(rna.var),
    )
    if target_gene is not None and not result.genes.known[result.gene_index(target_gene)]:
        raise InputError(f"{where}: target gene {target_gene!r} has no coordinates in the rna var table")
    return result


def _read(path: Path, reader: Callable[[Path], Any]) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return reader(path)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise InputError(f"{path}: cannot be read as {path.suffix or 'AnnData/MuData'}: {err}") from None


def _match_cells(cells: np.ndarray, atac_cells: np.ndarray, where: str) -> np.ndarray:
    """Rows of the ATAC table in the RNA table's cell order."""
    for name, values in (("rna", cells), ("atac", atac_cells)):
        if len(np.unique(values)) != len(values):
            raise InputError(f"{where}: {name} cell names are not unique")
    position = pd.Index(atac_cells).get_indexer(cells)
    if (position < 0).any() or len(atac_cells) != len(cells):
        only_rna = np.setdiff1d(cells, atac_cells)
        only_atac = np.setdiff1d(atac_cells, cells)
        raise InputError(
            f"{where}: rna and atac cells do not match ({len(only_rna)} only in rna, e.g. {only_rna[:3].tolist()}; "
            f"{len(only_atac)} only in atac, e.g. {only_atac[:3].tolist()})"
        )
    return position


def _cell_types(obs_tables: list[pd.DataFrame], key: str, cells: np.ndarray, where: str) -> np.ndarray:
    for obs in obs_tables:
        if key in obs.columns:
            column = obs[key].reindex(cells)
            if column.isna().any():
                empty = column.index[column.isna()][0]
                raise InputError(f"{where}: cell-type column {key!r} is empty for cell {empty!r}")
            return column.astype(str).to_numpy()
    raise InputError(f"{where}: no cell-type column {key!r} in obs (set the cell-type key)")


def _binary_atac(x: object, where: str) -> sp.csr_matrix:
    m = sp.csr_matrix(x)
    if m.nnz and (not np.isfinite(m.data).all() or (m.data < 0).any()):
        raise InputError(f"{where}: atac holds negative or non-finite values; expected binary or counts")
    m = sp.csr_matrix(m > 0, dtype=np.uint8)
    m.eliminate_zeros()
    return m


def _counts(x: object, where: str) -> sp.csr_matrix:
    m = sp.csr_matrix(x).astype(np.float32)
    data = m.data
    if data.size and not (np.isfinite(data).all() and (data >= 0).all() and (data == np.round(data)).all()):
        raise InputError(
            f"{where}: rna is not raw counts (non-negative integers); put raw counts in .X or layers['counts']"
        )
    return m


def _strand(var: pd.DataFrame) -> np.ndarray:
    if "strand" not in var.columns:
        return np.zeros(len(var), np.int8)
    return np.asarray([STRANDS.get(str(s), 0) for s in var["strand"]], np.int8)
