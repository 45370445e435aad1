"""Variant augmentation of the TF-cooperativity simulation (the original's
``--variant_augmentation_percentage``), with τ₁ and τ₂ kept apart (deep_mr.md §13 #15)."""

from __future__ import annotations

import numpy as np
import pytest

import dmr_ray.sim as sim
from dmr_ray.errors import ConfigError


@pytest.fixture(scope="module")
def source():
    return sim.simulate_tf_coop(2000, seed=21, confounder_motif=True, confounder_prob=0.5, tau1=5.0, tau2=60.0)


@pytest.fixture(scope="module")
def variants(source):
    return sim.augment_variants(source, 0.25, seed=3)


def test_a_quarter_of_the_sequences_get_one_point_mutation(source, variants):
    parent, position, data = variants.parent, variants.position, variants.data
    assert parent.size == 500 and np.unique(parent).size == 500 and np.all(np.diff(parent) > 0)
    assert data.tokens.shape == (500, 100) and data.labels.shape == (500, 2)
    changed = data.tokens != source.tokens[parent]
    assert np.array_equal(changed.sum(axis=1), np.ones(500))
    assert np.array_equal(changed.argmax(axis=1), position)
    for field in ("has_exposure", "has_outcome", "has_confounder", "exposure_start", "outcome_start"):
        np.testing.assert_array_equal(getattr(data, field), getattr(source, field)[parent])


def test_mutations_fall_inside_an_embedded_motif_when_there_is_one(source, variants):
    parent, position = variants.parent, variants.position
    inside = np.zeros((parent.size, 3), dtype=bool)
    motifs = (sim.EXPOSURE_MOTIF, sim.OUTCOME_MOTIF, sim.CONFOUNDER_MOTIF)
    starts = (source.exposure_start, source.outcome_start, source.confounder_start)
    for i, (motif, start) in enumerate(zip(motifs, starts, strict=True)):
        s = start[parent]
        inside[:, i] = (s >= 0) & (position >= s) & (position < s + motif.length)
    has_motif = (np.stack(starts, axis=1)[parent] >= 0).any(axis=1)
    assert inside[has_motif].any(axis=1).all()
    assert not has_motif.all() and not inside[~has_motif].any()
    # A pair parent's mutation lands in either motif, about half each.
    pair_only = source.is_pair[parent] & ~source.has_confounder[parent]
    assert inside[pair_only, 0].mean() == pytest.approx(0.5, abs=0.2)
    assert inside[pair_only, :2].any(axis=1).all()


def test_variant_counts_use_tau1_and_tau2_separately(variants):
    data = variants.data
    q_exp, q_out, q_conf = data.occupancy.T
    np.testing.assert_allclose(data.occupancy[:, 1], sim.occupancy(data.tokens, sim.OUTCOME_MOTIF))
    b = data.random_confounder.astype(float)
    assert b.mean() == pytest.approx(0.5, abs=0.07)
    np.testing.assert_allclose(data.expected_counts[:, 0], 1 + 100.0 * q_exp + 20.0 * q_conf + 5.0 * b)
    np.testing.assert_allclose(data.expected_counts[:, 1], 1 + 100.0 * q_exp * q_out + 30.0 * q_conf + 60.0 * b)
    counts = (data.labels.astype(np.float64) / 2) ** 2 - 0.375
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)


def test_mutations_inside_the_exposure_motif_lower_its_occupancy(source, variants):
    hit = variants.data.has_exposure & (variants.position >= variants.data.exposure_start)
    hit &= variants.position < variants.data.exposure_start + sim.EXPOSURE_MOTIF.length
    before = source.occupancy[variants.parent[hit], 0]
    after = variants.data.occupancy[hit, 0]
    assert hit.sum() > 50 and np.mean(after < before - 0.1) > 0.5


def test_reproducible_from_a_seed(source, variants):
    again = sim.augment_variants(source, 0.25, seed=3)
    other = sim.augment_variants(source, 0.25, seed=4)
    for field in ("tokens", "labels", "random_confounder"):
        np.testing.assert_array_equal(getattr(again.data, field), getattr(variants.data, field))
    np.testing.assert_array_equal(again.position, variants.position)
    assert not np.array_equal(other.parent, variants.parent)


def test_zero_fraction_gives_no_variants(source):
    none = sim.augment_variants(source, 0.0, seed=0)
    assert none.parent.size == 0 and none.data.tokens.shape == (0, 100)


@pytest.mark.parametrize("fraction", [1.5, -0.1, "0.25", True, float("nan")])
def test_bad_fraction_is_named(source, fraction):
    with pytest.raises(ConfigError, match="fraction"):
        sim.augment_variants(source, fraction, seed=0)
