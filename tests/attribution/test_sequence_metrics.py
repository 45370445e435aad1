"""Per-sequence AUROC / AUPRC against hand-computed values and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dmr_ray.attribution.sequence_metrics import auroc, average_precision, average_ranks, per_sequence, spread
from dmr_ray.errors import InputError


def test_perfect_reversed_and_tied_rankings() -> None:
    y = np.array([True, True, False, False, False])
    assert auroc(np.array([5.0, 4, 3, 2, 1]), y) == 1.0
    assert auroc(np.array([1.0, 2, 3, 4, 5]), y) == 0.0
    assert auroc(np.ones(5), y) == 0.5
    assert average_precision(np.array([5.0, 4, 3, 2, 1]), y) == 1.0


def test_average_precision_by_hand() -> None:
    # Ranked: pos, neg, pos, neg -> precision 1 at recall 1/2, 2/3 at recall 1: AP = (1 + 2/3) / 2.
    y = np.array([True, False, True, False])
    assert average_precision(np.array([4.0, 3, 2, 1]), y) == pytest.approx((1 + 2 / 3) / 2)
    # All tied: one threshold, precision 2/4 at recall 1.
    assert average_precision(np.zeros(4), y) == pytest.approx(0.5)
    # A tie between a positive and a negative at the top: both enter together (precision 1/2).
    y3 = np.array([True, False, True])
    assert average_precision(np.array([2.0, 2.0, 1.0]), y3) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_average_ranks_share_ties() -> None:
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])


def test_random_cases_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(2, 60))
        y = rng.random(m) < rng.uniform(0.1, 0.9)
        if y.all() or not y.any():
            continue
        s = rng.integers(0, 5, m).astype(float) if rng.random() < 0.5 else rng.normal(size=m)  # ties half the time
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_per_sequence_leaves_out_non_finite_and_undefined_rows() -> None:
    scores = np.array([[3.0, np.nan, 1.0, 0.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    positives = np.array([[True, True, False, False], [True, False, True, False], [False] * 4])
    roc, prc = per_sequence(scores, positives)
    assert roc[0] == 1.0 and prc[0] == 1.0  # the NaN position (a positive) is left out
    assert roc[1] == pytest.approx(roc_auc_score(positives[1], scores[1]))
    assert np.isnan(roc[2]) and np.isnan(prc[2])
    with pytest.raises(InputError, match="positives bool"):
        per_sequence(scores, positives.astype(int))


def test_spread_is_mean_over_sequences_then_over_replicates() -> None:
    values = np.array([[1.0, 0.5, np.nan], [0.8, 0.3, 0.2]])
    s = spread(values)
    np.testing.assert_allclose(s.per_replicate, [0.75, 0.55])
    assert s.mean == pytest.approx(0.65) and s.sd == pytest.approx(0.1) and s.n_sequences == 2
