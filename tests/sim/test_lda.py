"""The hierarchical LDA expression simulation: proportions, supports, ground truth, reproducibility."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dmr_ray.errors import ConfigError, InputError
from dmr_ray.sim.lda import PRESETS, LDAConfig, draw_beta, simulate

# SIMU1 scaled down: 6 classes × 40 samples, 150 disjoint pathways of 10 genes, 5 over-expressed each.
SMALL = LDAConfig("small", n_samples=240, n_genes=1500, n_pathways=150, n_subclasses=6, pathways_per_class=5)
SMALL_OVERLAP = dataclasses.replace(SMALL, name="small-overlap", n_pathways=300, overlapping=True)


@pytest.fixture(scope="module")
def small():
    return simulate(SMALL, seed=3)


def test_shapes_cpm_and_balance(small):
    n, g = SMALL.n_samples, SMALL.n_genes
    assert small.x.shape == (n, g) and small.x.dtype == np.float32
    np.testing.assert_allclose(small.x.sum(axis=1, dtype=np.float64), 1e6, rtol=1e-6)
    counts = small.x.astype(np.float64) * SMALL.n_reads / 1e6
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-2)  # CPM of integer read counts
    assert np.bincount(small.y).tolist() == [40] * 6
    assert small.theta.shape == (n, SMALL.n_pathways)


def test_over_expressed_pathways_take_a_larger_share(small):
    own = np.arange(SMALL.n_subclasses * 5).reshape(SMALL.n_subclasses, 5)
    # reads landing in each pathway's (disjoint) genes
    share = small.x.reshape(SMALL.n_samples, SMALL.n_pathways, 10).sum(axis=2) / 1e6
    for c in range(SMALL.n_subclasses):
        mine = share[small.y == c]
        assert mine[:, own[c]].mean() > 1.5 * np.delete(mine, own[c], axis=1).mean()


def test_theta_matches_dirichlet_means(small):
    alpha = small.alpha
    assert set(np.unique(alpha)) == {4.0, 8.0}
    for c in range(SMALL.n_subclasses):
        mean = small.theta[small.y == c].mean(axis=0)
        expected = alpha[c] / alpha[c].sum()
        # sd of a class mean of 40 Dirichlet draws ≈ sqrt(E(1−E)/(α₀+1)/40) ≈ 4e-4
        np.testing.assert_allclose(mean, expected, atol=2.5e-3)
        own = slice(5 * c, 5 * c + 5)
        assert mean[own].mean() > 1.5 * np.delete(mean, np.r_[own]).mean()


def test_disjoint_supports_partition_the_genes(small):
    support = small.beta.toarray() != 0
    assert (support.sum(axis=1) == 10).all() and (support.sum(axis=0) == 1).all()
    np.testing.assert_allclose(small.beta.sum(axis=1), 1.0)


def test_overlapping_supports():
    beta = draw_beta(SMALL_OVERLAP, np.random.default_rng(0))
    support = beta.toarray() != 0
    sizes = support.sum(axis=1)
    assert sizes.min() >= 1
    assert abs(sizes.mean() - 10) < 1.0  # Binomial(1500, 1/150) per pathway, 300 pathways
    assert (support.sum(axis=0) > 1).any()  # some gene belongs to several pathways
    uncovered = (support.sum(axis=0) == 0).mean()
    assert abs(uncovered - np.exp(-2)) < 0.04  # ≈ e^{−K m / G} of the genes join no pathway


def test_ground_truth_sizes(small):
    # 5 pathways × 10 genes per class: the SIMU1 formula (37 × 10 = 370)
    assert small.truth.shape == (6, SMALL.n_genes)
    assert (small.truth.sum(axis=1) == SMALL.pathways_per_class * SMALL.genes_per_pathway).all()
    assert not (small.truth.sum(axis=0) > 1).any()  # disjoint classes
    np.testing.assert_array_equal(small.truth, small.subclass_truth)
    assert (PRESETS["SIMU1"].pathways_per_class * PRESETS["SIMU1"].genes_per_pathway) == 370


def test_ground_truth_pathways_pass_the_validity_check():
    sim = simulate(SMALL_OVERLAP, n_samples=6, seed=1)
    support = sim.beta.toarray()
    for s in range(SMALL.n_subclasses):
        genes = sim.subclass_truth[s]
        union = (support[5 * s : 5 * s + 5] != 0).any(axis=0)
        np.testing.assert_array_equal(genes, union)
    for k in range(SMALL.n_subclasses * 5):
        row = support[k][support[k] != 0]
        assert row.min() >= 0.1 / row.size


def test_invalid_draws_are_redrawn_then_reported():
    # a concentration this low makes small weights common: re-draws fix them ...
    loose = dataclasses.replace(SMALL, gene_concentration=0.5, max_redraws=500)
    beta = draw_beta(loose, np.random.default_rng(0)).toarray()
    truth_rows = beta[:30]
    assert (truth_rows[truth_rows != 0] >= 0.01).all()
    assert (beta[30:][beta[30:] != 0] < 0.01).any()  # background pathways are not checked
    # ... and when they cannot, the error says what to change
    with pytest.raises(ConfigError, match="re-draws"):
        draw_beta(dataclasses.replace(SMALL, gene_concentration=0.05, max_redraws=2), np.random.default_rng(0))


def test_two_class_truth_includes_the_other_class():
    two = LDAConfig("two", n_samples=8, n_genes=400, n_pathways=40, n_subclasses=2, pathways_per_class=5)
    sim = simulate(two, seed=0)
    assert (sim.truth.sum(axis=1) == 100).all()  # own 50 + the other class's 50 (SimuA: 10,000)
    np.testing.assert_array_equal(sim.truth[0], sim.truth[1])


def test_subclasses_are_regrouped():
    sub = LDAConfig("sub", 40, 400, 40, 4, 5, regroup=True)
    sim = simulate(sub, seed=0)
    assert sim.config.n_classes == 2
    np.testing.assert_array_equal(sim.y, (sim.subclass == 3).astype(int))
    assert np.bincount(sim.y).tolist() == [30, 10]  # SimuB: 900 / 300
    # per-sub-class truth: own 50 genes + the other class's sub-class pathways
    assert sim.subclass_truth[:3].sum(axis=1).tolist() == [100, 100, 100]
    assert sim.subclass_truth[3].sum() == 200
    np.testing.assert_array_equal(sim.sample_truth(np.array([0, 39])), sim.subclass_truth[[0, 3]])
    np.testing.assert_array_equal(sim.truth[0], sim.subclass_truth[:3].any(axis=0))


def test_reproducible_with_seed():
    a, b, c = (simulate(SMALL, n_samples=30, seed=s) for s in (5, 5, 6))
    for field in ("x", "y", "theta", "truth"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(a.beta.toarray(), b.beta.toarray())
    assert not np.array_equal(a.x, c.x) and not np.array_equal(a.beta.toarray(), c.beta.toarray())
    # the pathways do not depend on how many samples are drawn
    np.testing.assert_array_equal(a.beta.toarray(), simulate(SMALL, n_samples=12, seed=5).beta.toarray())


def test_presets_and_bad_input():
    assert set(PRESETS) == {"SIMU1", "SIMU2", "SimuA", "SimuB", "SimuC"}
    assert [PRESETS[n].n_classes for n in PRESETS] == [33, 33, 2, 2, 2]
    with pytest.raises(InputError, match="SIMU1"):
        simulate("SIMU3", seed=0)
    with pytest.raises(ConfigError, match="n_genes"):
        LDAConfig("bad", 10, 100, 20, 2, 2)
    with pytest.raises(ConfigError, match="exceeds n_pathways"):
        LDAConfig("bad", 10, 100, 10, 3, 4)
    with pytest.raises(ConfigError, match="n_samples"):
        simulate(SMALL, n_samples=3, seed=0)
