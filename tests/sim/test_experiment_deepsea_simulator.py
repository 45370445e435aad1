"""The DeepSEA-style accessibility simulator: seeds, motif frequencies, planted truth, no reverse path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dmr_ray.errors import InputError
from dmr_ray.sim.accessibility import (
    ACCESSIBILITY,
    TF_MOTIFS,
    AccessibilityParams,
    TFMotif,
    local_true_effects,
    oracle_probabilities,
    simulate_accessibility,
)

PARAMS = AccessibilityParams()


@pytest.fixture(scope="module")
def sim():
    return simulate_accessibility(3000, PARAMS, seed=7)


def test_reproducible_from_seed(sim) -> None:
    again = simulate_accessibility(3000, PARAMS, seed=7)
    for field in ("tokens", "labels", "probabilities", "motif_start"):
        np.testing.assert_array_equal(getattr(sim, field), getattr(again, field))
    other = simulate_accessibility(3000, PARAMS, seed=8)
    assert not np.array_equal(sim.tokens, other.tokens)


def test_motifs_embedded_at_their_rate_without_overlap(sim) -> None:
    assert sim.labels.shape == (3000, len(TF_MOTIFS) + 1) and set(np.unique(sim.labels)) == {0.0, 1.0}
    np.testing.assert_allclose(sim.has_motif.mean(axis=0), PARAMS.motif_prob, atol=0.04)
    lengths = np.array([m.length for m in PARAMS.motifs])
    for row in np.flatnonzero(sim.has_motif.sum(axis=1) >= 2)[:200]:
        present = np.flatnonzero(sim.has_motif[row])
        spans = sorted((sim.motif_start[row, k], sim.motif_start[row, k] + lengths[k]) for k in present)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))
    # An embedded site binds far more often than chance windows of the background.
    for k in range(len(TF_MOTIFS)):
        carriers = sim.occupancy[sim.has_motif[:, k], k]
        others = sim.occupancy[~sim.has_motif[:, k], k]
        assert np.median(carriers) > 0.5 > 0.1 > np.median(others)


def test_planted_dependence_present_and_nothing_feeds_back(sim) -> None:
    # Accessibility is opened by the openers' motifs and not by CEBPA's (opening 0).
    access = sim.labels[:, -1]
    for k, tf in enumerate(TF_MOTIFS):
        gap = access[sim.has_motif[:, k]].mean() - access[~sim.has_motif[:, k]].mean()
        assert (gap > 0.1) if tf.opening >= 2 else (abs(gap) < 0.06 if tf.opening == 0 else gap > 0.03), tf.name
    # Change the accessibility mechanism only: every TF probability and label stays the same draw.
    closed = dataclasses.replace(PARAMS, tfs=tuple(dataclasses.replace(tf, opening=0.0) for tf in TF_MOTIFS))
    unopened = simulate_accessibility(3000, closed, seed=7)
    np.testing.assert_array_equal(unopened.labels[:, :-1], sim.labels[:, :-1])
    np.testing.assert_array_equal(unopened.probabilities[:, :-1], sim.probabilities[:, :-1])
    assert np.ptp(unopened.probabilities[:, -1]) == 0.0  # no TF opens: one accessibility for all
    assert not np.array_equal(unopened.labels[:, -1], sim.labels[:, -1])


def test_truth_is_the_brute_force_oracle_slope() -> None:
    # With one opener the whole change of accessibility goes through its occupancy, so the
    # path-specific truth equals the slope of the full oracle over every substitution.
    params = AccessibilityParams(length=60, tfs=(TFMotif("FOXA1", "MA0148.5", 3.0), TFMotif("CEBPA", "MA0102.5", 0.0)))
    data = simulate_accessibility(40, params, seed=3)
    rows = np.flatnonzero(data.has_motif[:, 0])[:3]
    truth = local_true_effects(data.tokens[rows], params, "FOXA1", ACCESSIBILITY)
    for value, tokens in zip(truth, data.tokens[rows], strict=True):
        mutants = []
        for i in range(params.length):
            for shift in (1, 2, 3):
                mutant = tokens.copy()
                mutant[i] = (mutant[i] + shift) % 4
                mutants.append(mutant)
        ref = oracle_probabilities(tokens[None], params)[0]
        delta = oracle_probabilities(np.array(mutants), params) - ref
        expected = (delta[:, 0] @ delta[:, 2]) / (delta[:, 0] @ delta[:, 0])
        assert value == pytest.approx(expected, rel=1e-9)
        assert value > 0.1
    for exposure, outcome in (("CEBPA", ACCESSIBILITY), (ACCESSIBILITY, "FOXA1"), ("FOXA1", "CEBPA")):
        assert not local_true_effects(data.tokens[rows], params, exposure, outcome).any()


def test_bad_parameters_are_one_clear_error() -> None:
    with pytest.raises(InputError, match="motif_prob"):
        AccessibilityParams(motif_prob=1.5)
    with pytest.raises(InputError, match="length"):
        AccessibilityParams(length=20)
    with pytest.raises(InputError, match="exposure"):
        local_true_effects(np.zeros((1, 200), np.uint8), PARAMS, "GATA", ACCESSIBILITY)
