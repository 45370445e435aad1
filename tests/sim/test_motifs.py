"""The simulation's JASPAR motifs and PWM occupancy."""

from __future__ import annotations

import numpy as np
import pytest

import dmr_ray.sim as sim
from dmr_ray.alphabet import encode
from dmr_ray.errors import InputError
from dmr_ray.sim.motifs import BACKGROUND, occupancy
from dmr_ray.sim.tf_coop import CONFOUNDER_MATRIX, EXPOSURE_MATRIX, OUTCOME_MATRIX

GATA, TAL1, SOX2 = sim.EXPOSURE_MOTIF, sim.OUTCOME_MOTIF, sim.CONFOUNDER_MOTIF

# The table of dmr_ray.sim.tf_coop's docstring and docs/simulation.md: ID, name, length,
# consensus, information content (bits), the core it holds, and the fraction of 100 bp
# backgrounds with occupancy > 0.5 (measured on 50,000 draws).
TABLE = [
    (GATA, EXPOSURE_MATRIX, "MA0037.2", "GATA3", 8, "AGATAAGA", 13.8, "AGATAA", 0.011),
    (TAL1, OUTCOME_MATRIX, "MA0091.2", "TAL1::TCF3", 10, "ACCATCTGTT", 13.9, "CATCTG", 0.097),
    (SOX2, CONFOUNDER_MATRIX, "MA0143.3", "Sox2", 8, "CCTTTGTT", 13.5, "CTTTGT", 0.009),
]


@pytest.fixture(scope="module")
def backgrounds():
    return np.random.default_rng(0).choice(4, size=(4000, 100), p=BACKGROUND).astype(np.uint8)


@pytest.mark.parametrize(("motif", "matrix", "matrix_id", "name", "length", "consensus", "bits", "core", "_"), TABLE)
def test_the_documented_matrices_are_in_use(motif, matrix, matrix_id, name, length, consensus, bits, core, _):
    assert matrix == matrix_id
    np.testing.assert_array_equal(motif.probs, sim.jaspar_motif(matrix_id).probs)
    assert (motif.name, motif.length, motif.consensus) == (name, length, consensus)
    assert motif.information_content == pytest.approx(bits, abs=0.05)
    assert core in motif.consensus
    assert motif.probs.shape == (length, 4)
    np.testing.assert_allclose(motif.probs.sum(axis=1), 1.0)
    assert np.all((motif.probs > 0) & (motif.probs < 1))


@pytest.mark.parametrize(("motif", "chance"), [(row[0], row[-1]) for row in TABLE])
def test_background_sequences_rarely_bind_and_sampled_instances_do(motif, chance, backgrounds):
    bound = occupancy(backgrounds, motif) > 0.5
    assert bound.mean() == pytest.approx(chance, abs=0.015)
    planted = backgrounds[:1000].copy()
    planted[:, 40 : 40 + motif.length] = motif.sample(1000, np.random.default_rng(1))
    assert (occupancy(planted, motif) > 0.5).mean() > 0.99


def test_the_newest_short_sox2_matrix_would_bind_almost_every_background(backgrounds):
    # Why MA0143.3 and not JASPAR2024's newest SOX2 version (module docstring).
    assert (occupancy(backgrounds, sim.jaspar_motif("MA0143.5")) > 0.5).mean() > 0.9


def test_embedded_motifs_do_not_raise_the_other_motifs_occupancy(backgrounds):
    rng = np.random.default_rng(2)
    motifs = (GATA, TAL1, SOX2)
    for i, planted_motif in enumerate(motifs):
        planted = backgrounds.copy()
        planted[:, 45 : 45 + planted_motif.length] = planted_motif.sample(len(planted), rng)
        for other in motifs[:i] + motifs[i + 1 :]:
            assert occupancy(planted, other).mean() <= occupancy(backgrounds, other).mean()


def test_information_content_against_a_direct_sum():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 1e-12, 1e-12]])
    p = p / p.sum(axis=1, keepdims=True)
    assert sim.Motif("toy", p).information_content == pytest.approx(0.0 + 1.0, abs=1e-9)


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
    background = encode("TC" * 20)  # no chance site for GATA3
    site = encode(GATA.consensus)
    core = GATA.consensus.index("AGATAA")
    flank_mismatch, core_mismatch, two_core = site.copy(), site.copy(), site.copy()
    flank_mismatch[6] = 0  # G -> A at a weak position (p 0.72 -> 0.28)
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
    with pytest.raises(InputError, match="L >= 8"):
        occupancy(np.zeros((1, 5), dtype=np.uint8), GATA)
