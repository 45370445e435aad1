"""The perturbation operator x' = x + 1[j ∈ r](p − x) and the peaks near a TSS, on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dmr_ray.errors import InputError
from dmr_ray.grids.coordinates import Intervals
from dmr_ray.grids.perturb import peaks_near_tss, perturb

X = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=np.uint8)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.0, [[0, 0, 1, 0], [0, 1, 1, 0], [0, 1, 0, 0]]),
        (1.0, [[1, 0, 1, 1], [1, 1, 1, 1], [1, 1, 0, 1]]),
    ],
)
def test_operator_on_dense_and_sparse(p, expected):
    r = [0, 3, 3]  # a repeated member acts once
    dense = perturb(torch.tensor(X, dtype=torch.float32), r, p)
    np.testing.assert_array_equal(dense.numpy(), expected)
    sparse = perturb(sp.csr_matrix(X), np.array(r), p)
    assert sp.isspmatrix_csr(sparse) and sparse.dtype == np.uint8
    np.testing.assert_array_equal(sparse.toarray(), expected)
    assert sparse.nnz == int(np.count_nonzero(expected))


def test_operator_leaves_input_untouched_and_passes_gradients_elsewhere():
    x = torch.tensor(X, dtype=torch.float32, requires_grad=True)
    perturb(x, [1], 0.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.tile([1, 0, 1, 1], (3, 1)))
    np.testing.assert_array_equal(x.detach().numpy(), X)
    assert torch.equal(perturb(x, [], 0.0), x)


def test_operator_rejects_out_of_range_peaks():
    with pytest.raises(InputError, match="peak indices"):
        perturb(torch.zeros(2, 4), [4])


def test_peaks_near_tss_respects_strand_chromosome_and_window():
    peaks = Intervals(
        np.array(["chr1", "chr1", "chr1", "chr2", "chr1"]),
        np.array([100, 500, 2000, 100, 980]),
        np.array([200, 600, 2100, 200, 1000]),
    )
    genes = Intervals(np.array(["chr1", "chr1", ""]), np.array([150, 1000, -1]), np.array([900, 1500, -1]))
    strand = np.array([1, -1, 0])
    assert peaks_near_tss(peaks, genes, strand, 0, 0).tolist() == [0]  # TSS 150 inside peak 0
    assert peaks_near_tss(peaks, genes, strand, 0, 350).tolist() == [0, 1]  # peak 1 is 350 bp away
    assert peaks_near_tss(peaks, genes, strand, 1, 500).tolist() == [2, 4]  # minus strand: TSS at 1500
    with pytest.raises(InputError, match="no coordinates"):
        peaks_near_tss(peaks, genes, strand, 2, 10)
    with pytest.raises(InputError, match="window"):
        peaks_near_tss(peaks, genes, strand, 0, -1)
