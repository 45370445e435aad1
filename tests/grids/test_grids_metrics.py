"""GRIDS metrics against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from dmr_ray.errors import InputError
from dmr_ray.grids.coordinates import Intervals
from dmr_ray.grids.metrics import NO_CHROMOSOME_MB, expression_change, locality, recovery
from dmr_ray.grids.objective import Objective


class _Linear(nn.Module):
    """ŷ = [x·(1, 0.5, 0), 7]: gene 0 is linear in the first two peaks, gene 1 constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gene0 = x @ torch.tensor([1.0, 0.5, 0.0])
        return torch.stack([gene0, torch.full_like(gene0, 7.0)], dim=1)


X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32))  # ŷ_0 = 1.5, 1, 0


def test_expression_change_down_on_exp_and_expm1_scales():
    change = expression_change(_Linear(), X, Objective(0), np.array([0]))
    np.testing.assert_allclose(change.before, [1.5, 1.0, 0.0])
    np.testing.assert_allclose(change.after, [0.5, 0.0, 0.0])
    e = math.exp
    assert change.avg_delta == pytest.approx(((e(0.5) - e(1.5)) + (1 - e(1)) + 0) / 3)
    assert change.avg_delta_expm1 == pytest.approx(change.avg_delta)
    assert change.rel_delta == pytest.approx(((e(-1) - 1) + (e(-1) - 1) + 0) / 3)
    # expm1: the third cell has expm1(0) = 0 and is left out of the ratio
    expm1_ratios = [((e(0.5) - 1) - (e(1.5) - 1)) / (e(1.5) - 1), -1.0]
    assert change.rel_delta_expm1 == pytest.approx(np.mean(expm1_ratios))
    assert change.rel_delta_expm1 != pytest.approx(change.rel_delta)
    summary = change.as_dict()
    assert summary["n_cells"] == 3 and summary["mean_before"] == pytest.approx(2.5 / 3)
    json.dumps(summary, allow_nan=False)


def test_expression_change_up_and_an_unexpressed_population():
    up = expression_change(_Linear(), X, Objective(0, "up"), [1])  # opens peak 1: ŷ_0 = 1.5, 1.5, 0.5
    np.testing.assert_allclose(up.after, [1.5, 1.5, 0.5])
    assert up.avg_delta == pytest.approx((0 + (math.exp(1.5) - math.e) + (math.exp(0.5) - 1)) / 3)
    assert up.rel_delta == pytest.approx((0 + math.expm1(0.5) + math.expm1(0.5)) / 3)
    silent = expression_change(_Linear(), X[2:], Objective(0), [0])
    assert math.isnan(silent.rel_delta_expm1) and silent.as_dict()["rel_delta_expm1"] is None
    with pytest.raises(InputError):
        expression_change(_Linear(), X, Objective(0), [3])


GENE_START, GENE_END = 1_000, 2_000
PEAKS = Intervals(
    np.array(["chr1", "chr1", "chr2", "chr1", "chr1"]),
    np.array([2_000, 5_002_000, 1_000, 20_000_000, 10_002_000]),
    np.array([2_100, 5_003_000, 2_000, 20_001_000, 10_003_000]),
)  # 0 touches the gene, 1 is 5 Mb away, 2 is on another chromosome, 3 is 19.998 Mb, 4 exactly 10 Mb
GENES = Intervals(np.array(["chr1", ""]), np.array([GENE_START, -1]), np.array([GENE_END, -1]))


@pytest.mark.parametrize(
    ("selected", "expected"),
    [
        ([1, 2, 3], (False, True, 1, 5.0, 2, 2 / 3)),
        ([2, 0], (True, True, 1, 0.0, 1, 0.5)),
        ([2], (False, False, 0, NO_CHROMOSOME_MB, 0, 0.0)),
        ([3], (False, False, 0, 19.998, 1, 1.0)),
        ([4, 3], (False, True, 1, 10.0, 2, 1.0)),
    ],
)
def test_locality_on_hand_placed_intervals(selected, expected):
    result = locality(PEAKS, GENES, 0, selected)
    got = (
        result.hit,
        result.soft_hit,
        result.soft_hit_num,
        result.closest_dist_mb,
        result.inchr_num,
        result.inchr_ratio,
    )
    assert got[:3] == expected[:3] and got[4] == expected[4]
    assert got[3] == pytest.approx(expected[3]) and got[5] == pytest.approx(expected[5])
    assert json.loads(json.dumps(result.as_dict()))["hit"] is expected[0]


def test_locality_window_and_genes_without_coordinates():
    assert locality(PEAKS, GENES, 0, [1], soft_window=4_999_999).soft_hit is False
    assert set(locality(PEAKS, GENES, 1, [0, 1]).as_dict().values()) == {None}
    with pytest.raises(InputError, match="repeated"):
        locality(PEAKS, GENES, 0, [1, 1])
    with pytest.raises(InputError, match="gene"):
        locality(PEAKS, GENES, 2, [1])


def test_recovery_of_planted_groups():
    result = recovery(np.array([1, 2, 5, 9]), [[1, 2], [5, 6, 7]])
    assert result.groups_recovered == (True, False) and result.n_groups_recovered == 1
    assert result.planted_found == pytest.approx(3 / 5) and result.precision == pytest.approx(3 / 4)
    assert result.as_dict() == {
        "groups_recovered": [True, False],
        "n_groups_recovered": 1,
        "planted_found": 0.6,
        "precision": 0.75,
    }
    with pytest.raises(InputError):
        recovery([1], [[]])
