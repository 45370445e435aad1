"""Feature agreement on hand-built rankings."""

from __future__ import annotations

import numpy as np
import pytest

from dmr_ray.attribution.metrics import feature_agreement, top_k
from dmr_ray.errors import InputError


def test_local_and_global_agreement_by_hand():
    truth = np.zeros((2, 6), dtype=bool)
    truth[0, [0, 1, 2]] = True  # k = 3
    truth[1, [5]] = True  # k = 1
    attributions = np.array(
        [
            [9, 8, 0, 7, 0, 0],  # top-3 {0, 1, 3}: 2/3
            [9, 0, 8, 7, 0, 0],  # {0, 2, 3}: 2/3
            [0, 9, 8, 7, 0, 0],  # {1, 2, 3}: 2/3
            [0, 0, 0, 0, 1, 2],  # top-1 {5}: 1
            [0, 0, 0, 0, 2, 1],  # {4}: 0
            [0, 0, 0, 0, 3, 1],  # {4}: 0
        ],
        dtype=float,
    )
    groups = np.array([0, 0, 0, 1, 1, 1])
    fa = feature_agreement(attributions, groups, truth)
    np.testing.assert_allclose(fa.local, [2 / 3, 2 / 3, 2 / 3, 1, 0, 0])
    np.testing.assert_allclose(fa.local_per_group, [2 / 3, 1 / 3])
    # group 0 counts: gene 3 ×3, genes 0, 1, 2 ×2 each → consensus 3 and two true genes: 2/3;
    # group 1: gene 4 twice, gene 5 once → consensus {4}: 0
    np.testing.assert_allclose(fa.global_per_group, [2 / 3, 0.0])
    assert fa.local_mean == pytest.approx(0.5)
    assert fa.global_mean == pytest.approx(1 / 3)


def test_global_agreement_can_beat_local():
    # each sample ranks its own false gene first and one of the two true genes (alternately) next
    rng = np.random.default_rng(0)
    truth = np.zeros((1, 50), dtype=bool)
    truth[0, :2] = True
    attributions = np.zeros((20, 50))
    attributions[np.arange(20), np.arange(20) % 2] = 2.0
    attributions[np.arange(20), rng.choice(np.arange(2, 50), 20, replace=False)] = 3.0
    fa = feature_agreement(attributions, np.zeros(20, dtype=int), truth)
    assert fa.local_mean == pytest.approx(0.5) and fa.global_mean == 1.0


def test_ties_are_not_broken_in_favour_of_low_gene_indices():
    # a saturated model: every attribution exactly 0; class 0's true genes are genes 0 … 9
    truth = np.zeros((10, 1000), dtype=bool)
    for g in range(10):
        truth[g, 10 * g : 10 * g + 10] = True
    groups = np.repeat(np.arange(10), 20)
    fa = feature_agreement(np.zeros((200, 1000)), groups, truth, seed=1)
    assert fa.local_per_group[0] < 0.2 and fa.global_per_group[0] < 0.2  # chance is 10 / 1000
    assert fa.local_mean < 0.05


def test_top_k_is_stable_and_bad_input_is_refused():
    np.testing.assert_array_equal(top_k(np.array([[1.0, 3.0, 3.0, 0.0]]), 2), [[1, 2]])
    with pytest.raises(InputError, match="no true gene"):
        feature_agreement(np.ones((1, 3)), np.array([0]), np.zeros((1, 3), dtype=bool))
    with pytest.raises(InputError, match="groups"):
        feature_agreement(np.ones((1, 3)), np.array([1]), np.ones((1, 3), dtype=bool))
