"""Reading multiome inputs: the happy paths and every malformed-input error."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dmr_ray.errors import InputError
from dmr_ray.grids.coordinates import Intervals, canonical_chromosome
from dmr_ray.grids.data import read_multiome
from dmr_ray.grids.perturb import peaks_near_tss
from dmr_ray.grids.surrogate import chromosome_blocks

CELLS = [f"c{i}" for i in range(6)]
PEAKS = ["chr1:100-200", "chr1-300-450", "chr2:50-60"]


def _rna(cells=CELLS, counts=None, var=None) -> ad.AnnData:
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, (len(cells), 3)).astype(np.float32) if counts is None else counts
    if var is None:
        columns = {"chrom": ["chr1", "chr1", "chr2"], "start": [150, 1000, 10], "end": [900, 2000, 40]}
        var = pd.DataFrame({**columns, "strand": ["+", "-", "+"]}, index=["G1", "G2", "G3"])
    obs = pd.DataFrame({"cell_type": ["A", "B"] * (len(cells) // 2)}, index=cells)
    return ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var)


def _atac(cells=CELLS, peaks=PEAKS, values=None) -> ad.AnnData:
    x = np.tile([3, 0, 1], (len(cells), 1)).astype(np.float32) if values is None else values
    x[:, 0] = np.arange(len(cells)) % 2 * 2  # counts 0/2 in peak 0, distinct per cell
    return ad.AnnData(X=sp.csr_matrix(x), obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=peaks))


def _write_mudata(path, rna, atac):
    md.MuData({"rna": rna, "atac": atac}).write(path)
    return path


def test_mudata_round_trip_binarises_atac_and_parses_coordinates(tmp_path):
    rna, atac = _rna(), _atac()
    data = read_multiome(_write_mudata(tmp_path / "d.h5mu", rna, atac), target_gene="G2")
    assert data.atac.dtype == np.uint8 and sp.isspmatrix_csr(data.atac)
    np.testing.assert_array_equal(data.atac.toarray(), (atac.X.toarray() > 0).astype(np.uint8))
    np.testing.assert_array_equal(data.rna.toarray(), rna.X.toarray())
    assert data.peaks.chrom.tolist() == ["chr1", "chr1", "chr2"]
    assert data.peaks.start.tolist() == [100, 300, 50] and data.peaks.end.tolist() == [200, 450, 60]
    assert data.gene_strand.tolist() == [1, -1, 1]
    assert data.cell_types.tolist() == ["A", "B"] * 3
    assert data.gene_index("G2") == 1


def test_h5ad_pair_with_shuffled_atac_cells_and_10x_intervals(tmp_path):
    var = pd.DataFrame({"interval": ["chr1:150-900", "NA", "chr2:10-40"]}, index=["G1", "G2", "G3"])
    rna = _rna(var=var)
    order = np.random.default_rng(1).permutation(len(CELLS))
    atac = _atac()[order]
    rna.write_h5ad(tmp_path / "rna.h5ad")
    atac.write_h5ad(tmp_path / "atac.h5ad")
    data = read_multiome((tmp_path / "rna.h5ad", tmp_path / "atac.h5ad"), target_gene="G3")
    assert data.cells.tolist() == CELLS
    np.testing.assert_array_equal(data.atac[:, 0].toarray().ravel(), np.arange(len(CELLS)) % 2)
    assert data.genes.known.tolist() == [True, False, True]
    with pytest.raises(InputError, match="'G2' has no coordinates"):
        read_multiome((tmp_path / "rna.h5ad", tmp_path / "atac.h5ad"), target_gene="G2")


def test_peak_coordinates_from_var_columns(tmp_path):
    atac = _atac(peaks=["p0", "p1", "p2"])
    atac.var = pd.DataFrame({"chrom": ["chr3"] * 3, "start": [1, 5, 9], "end": [2, 6, 10]}, index=["p0", "p1", "p2"])
    data = read_multiome(_write_mudata(tmp_path / "d.h5mu", _rna(), atac))
    assert data.peaks.chrom.tolist() == ["chr3"] * 3 and data.peaks.start.tolist() == [1, 5, 9]


@pytest.mark.parametrize(
    ("rna", "atac", "kwargs", "message"),
    [
        (_rna(), _atac(peaks=["chr1:100-200", "chr1_300_450", "chr2:50-60"]), {}, r"atac peak names\[1\]"),
        (_rna(), _atac(peaks=["chr1:100-200", "chr1:x-450", "chr2:50-60"]), {}, "non-integer"),
        (_rna(), _atac(), {"cell_type_key": "celltype"}, "no cell-type column 'celltype'"),
        (_rna(), _atac(cells=CELLS[:5] + ["other"]), {}, "cells do not match"),
        (_rna(), _atac(), {"target_gene": "NOPE"}, "target gene 'NOPE' is not among"),
        (_rna(counts=np.full((6, 3), 0.5, np.float32)), _atac(), {}, "not raw counts"),
        (_rna(counts=np.full((6, 3), -1.0, np.float32)), _atac(), {}, "not raw counts"),
        (_rna(var=pd.DataFrame(index=["G1", "G2", "G3"])), _atac(), {}, "no gene coordinates"),
    ],
)
def test_malformed_input_is_an_input_error(tmp_path, rna, atac, kwargs, message):
    path = _write_mudata(tmp_path / "bad.h5mu", rna, atac)
    with pytest.raises(InputError, match=message):
        read_multiome(path, **kwargs)


def test_missing_file_and_missing_modality(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_multiome(tmp_path / "absent.h5mu")
    md.MuData({"rna": _rna()}).write(tmp_path / "rna_only.h5mu")
    with pytest.raises(InputError, match=r"modality \['atac'\] missing"):
        read_multiome(tmp_path / "rna_only.h5mu")


def test_files_that_are_not_multiome_are_input_errors(tmp_path):
    (tmp_path / "text.h5mu").write_text("not hdf5")
    with pytest.raises(InputError, match="cannot be read"):
        read_multiome(tmp_path / "text.h5mu")
    _rna().write_h5ad(tmp_path / "rna.h5ad")
    with pytest.raises(InputError, match="cannot be read"):
        read_multiome(tmp_path / "rna.h5ad")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("1", "chr1"),
        ("chr1", "chr1"),
        ("Chr22", "chr22"),
        ("x", "chrX"),
        ("chrY", "chrY"),
        ("MT", "chrM"),
        ("chrMT", "chrM"),
        ("chrM", "chrM"),
        ("M", "chrM"),
        ("GL000194.1", "GL000194.1"),
        ("chrUn_KI270302v1", "chrUn_KI270302v1"),
        ("", ""),
    ],
)
def test_canonical_chromosome(name, canonical):
    assert canonical_chromosome(name) == canonical


def test_ensembl_genes_meet_ucsc_peaks(tmp_path):
    """Peaks named chr1:…/chrM:… and genes on Ensembl's 1/MT: one chromosome naming everywhere."""
    var = pd.DataFrame(
        {"chrom": ["1", "MT", "2"], "start": [150, 10, 10], "end": [900, 40, 40], "strand": ["+", "+", "-"]},
        index=["G1", "G2", "G3"],
    )
    atac = _atac(peaks=["chr1:100-200", "chrM-20-30", "2:50-60"])
    data = read_multiome(_write_mudata(tmp_path / "d.h5mu", _rna(var=var), atac))
    assert data.genes.chrom.tolist() == ["chr1", "chrM", "chr2"]
    assert data.peaks.chrom.tolist() == ["chr1", "chrM", "chr2"]
    assert peaks_near_tss(data.peaks, data.genes, data.gene_strand, 0, window=100).tolist() == [0]
    assert peaks_near_tss(data.peaks, data.genes, data.gene_strand, 1, window=10).tolist() == [1]
    assert peaks_near_tss(data.peaks, data.genes, data.gene_strand, 2, window=20).tolist() == [2]
    names, block = chromosome_blocks(np.array(["1", "chr1", "chr10", "X", "MT", "2"]))
    assert names == ("chr1", "chr10", "chr2", "chrM", "chrX") and block.tolist() == [0, 0, 1, 4, 3, 2]
    direct = Intervals(np.array(["chr3", "3"]), np.array([1, 1]), np.array([2, 2]))
    assert direct.chrom[0] == direct.chrom[1] == "chr3"
