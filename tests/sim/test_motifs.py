"""Stand-in motifs and PWM occupancy."""

from __future__ import annotations

import numpy as np
import pytest

from dmr_ray.alphabet import encode
from dmr_ray.errors import InputError
from dmr_ray.sim.motifs import BACKGROUND, GATA, SOX2, TAL1, occupancy


@pytest.mark.parametrize(("motif", "core"), [(GATA, "AGATAA"), (TAL1, "CAGCTG"), (SOX2, "CTTTGT")])
def test_stand_in_matrices_are_proper_distributions_with_the_intended_core(motif, core):
    assert motif.probs.shape == (motif.length, 4)
    np.testing.assert_allclose(motif.probs.sum(axis=1), 1.0)
    assert np.all((motif.probs > 0) & (motif.probs < 1))
    assert core in motif.consensus


def test_sampled_instances_follow_the_matrix():
    draws = GATA.sample(20_000, np.random.default_rng(0))
    assert draws.shape == (20_000, GATA.length) and draws.dtype == np.uint8
    freqs = np.stack([np.bincount(draws[:, j], minlength=4) for j in range(GATA.length)]) / 20_000
    np.testing.assert_allclose(freqs, GATA.probs, atol=0.015)


def _reference_occupancy(seq: np.ndarray, probs: np.ndarray) -> float:
    """Direct loop over windows: q = 1 − Π_w (1 − 1/(1 + exp(E_w)))."""
    k = probs.shape[0]
    unbound = 1.0
    for w in range(seq.size - k + 1):
        energy = sum(-np.log(probs[j, seq[w + j]] / BACKGROUND[seq[w + j]]) for j in range(k))
        unbound *= 1.0 - 1.0 / (1.0 + np.exp(energy))
    return 1.0 - unbound


def test_occupancy_matches_a_direct_window_loop():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 4, size=(6, 40)).astype(np.uint8)
    tokens[0, 5:15] = encode(TAL1.consensus)
    tokens[1, 30:40] = encode(TAL1.consensus)
    expected = [_reference_occupancy(t, TAL1.probs) for t in tokens]
    np.testing.assert_allclose(occupancy(tokens, TAL1), expected, rtol=1e-10, atol=1e-14)


def test_occupancy_is_monotone_in_motif_strength():
    background = encode("TC" * 20)  # no chance site for GATA
    site = encode(GATA.consensus)
    core = GATA.consensus.index("AGATAA")
    flank_mismatch, core_mismatch, two_core = site.copy(), site.copy(), site.copy()
    flank_mismatch[8] = 0  # G -> A at a weak position (p 0.90 -> 0.10)
    core_mismatch[core + 1] = (site[core + 1] + 1) % 4
    two_core[[core + 1, core + 3]] = (site[[core + 1, core + 3]] + 1) % 4
    rows = []
    for variant in (site, flank_mismatch, core_mismatch, two_core):
        seq = background.copy()
        seq[15 : 15 + GATA.length] = variant
        rows.append(seq)
    rows.append(background)
    q = occupancy(np.stack(rows), GATA)
    assert q[0] > 0.99
    assert np.all(np.diff(q) < 0), q
    assert q[-1] < 1e-3


def test_occupancy_rejects_n_and_bad_shapes():
    with pytest.raises(InputError, match="0..3"):
        occupancy(np.full((2, 30), 4, dtype=np.uint8), GATA)
    with pytest.raises(InputError, match=r"\[n, L\]"):
        occupancy(np.zeros(30, dtype=np.uint8), GATA)
    with pytest.raises(InputError, match="L >= 10"):
        occupancy(np.zeros((1, 5), dtype=np.uint8), GATA)
