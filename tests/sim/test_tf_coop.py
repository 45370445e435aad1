"""The GATA → TAL1 cooperativity simulation and its ground truth."""

from __future__ import annotations

import numpy as np
import pytest

import dmr_ray.sim as sim
from dmr_ray.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def data():
    return sim.simulate_tf_coop(8000, seed=7, confounder_motif=True, confounder_prob=0.5)


def test_shapes_and_dtypes(data):
    n, length = 8000, 100
    assert data.tokens.shape == (n, length) and data.tokens.dtype == np.uint8
    assert data.tokens.max() <= 3
    assert data.labels.shape == (n, 2) and data.labels.dtype == np.float32
    assert data.expected_counts.shape == (n, 2) and data.occupancy.shape == (n, 3)
    for flag in (data.has_exposure, data.has_outcome, data.has_confounder, data.random_confounder):
        assert flag.shape == (n,) and flag.dtype == bool
    counts = (data.labels.astype(np.float64) / 2) ** 2 - 0.375
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)  # Anscombe of integer counts


def test_reproducible_with_seed():
    a, b, c = (sim.simulate_tf_coop(300, seed=s) for s in (1, 1, 2))
    for field in ("tokens", "labels", "expected_counts", "exposure_start", "outcome_start"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.tokens, c.tokens)


def test_class_frequencies_match_the_design(data):
    exposure_only = data.has_exposure & ~data.has_outcome
    outcome_only = data.has_outcome & ~data.has_exposure
    neither = ~data.has_exposure & ~data.has_outcome
    for share in (exposure_only, outcome_only, data.is_pair, neither):
        assert share.mean() == pytest.approx(0.25, abs=0.02)
    assert data.has_confounder.mean() == pytest.approx(0.5, abs=0.03)
    assert data.random_confounder.mean() == pytest.approx(0.5, abs=0.03)


def test_layout_pairs_are_ordered_spaced_and_confounder_does_not_overlap(data):
    pair = data.is_pair
    gap = data.outcome_start[pair] - (data.exposure_start[pair] + sim.EXPOSURE_MOTIF.length)
    assert gap.min() >= max(data.params.motif_lengths)
    assert (data.outcome_start[pair] + sim.OUTCOME_MOTIF.length).max() <= 100
    conf, k_conf = data.has_confounder, sim.CONFOUNDER_MOTIF.length
    for start, k in ((data.exposure_start, sim.EXPOSURE_MOTIF.length), (data.outcome_start, sim.OUTCOME_MOTIF.length)):
        both = conf & (start >= 0)
        apart = (data.confounder_start[both] + k_conf <= start[both]) | (start[both] + k <= data.confounder_start[both])
        assert apart.all()
    q_exp = data.occupancy[:, 0]
    assert np.median(q_exp[data.has_exposure]) > 0.99
    assert np.median(q_exp[~data.has_exposure]) < 0.01


def test_expected_counts_follow_the_formula_with_separate_taus():
    d = sim.simulate_tf_coop(500, seed=3, beta=40.0, confounder_motif=True, confounder_prob=0.5, tau1=5.0, tau2=60.0)
    q_exp, q_out, q_conf = d.occupancy.T
    b = d.random_confounder.astype(float)
    np.testing.assert_allclose(d.expected_counts[:, 0], 1 + 100.0 * q_exp + 20.0 * q_conf + 5.0 * b)
    np.testing.assert_allclose(d.expected_counts[:, 1], 1 + 40.0 * q_exp * q_out + 30.0 * q_conf + 60.0 * b)
    np.testing.assert_allclose(d.occupancy[:, 1], sim.occupancy(d.tokens, sim.OUTCOME_MOTIF))


def test_random_confounder_changes_only_counts():
    plain = sim.simulate_tf_coop(400, seed=5)
    confounded = sim.simulate_tf_coop(400, seed=5, confounder_prob=0.5)
    np.testing.assert_array_equal(plain.tokens, confounded.tokens)
    np.testing.assert_allclose(sim.oracle_counts(plain.tokens, plain.params), plain.expected_counts)
    shift = confounded.expected_counts - plain.expected_counts
    np.testing.assert_allclose(shift, 25.0 * confounded.random_confounder[:, None] * np.ones((1, 2)))


def test_beta_and_effect():
    assert sim.simulate_tf_coop(5, seed=0).params.beta == 100.0
    assert sim.simulate_tf_coop(5, seed=0, alpha=80.0, effect=2.5).params.beta == 200.0
    assert sim.simulate_tf_coop(5, seed=0, beta=7.0).params.beta == 7.0


def test_planted_effect_sets_the_local_truths():
    null = sim.simulate_tf_coop(600, seed=11, effect=0.0)
    truth = sim.local_true_effects(null)
    assert np.array_equal(np.isfinite(truth), null.is_pair)
    np.testing.assert_allclose(truth[null.is_pair], 0.0, atol=1e-12)

    strong = sim.simulate_tf_coop(600, seed=11, effect=5.0)
    truth = sim.local_true_effects(strong)
    assert np.all(truth[strong.is_pair] > 0)
    # First-order derivation (deep_mr.md §9): slope ≈ (β q_out/α) √(c_exp + 3/8) / √(c_out + 3/8).
    p, c, q = strong.params, strong.expected_counts, strong.occupancy
    approx = (p.beta * q[:, 1] / p.alpha) * sim.anscombe(c[:, 0]) / sim.anscombe(c[:, 1])
    assert np.median(truth[strong.is_pair] / approx[strong.is_pair]) == pytest.approx(1.0, abs=0.02)
    weak = sim.simulate_tf_coop(600, seed=11, effect=1.0)
    assert sim.global_true_effect(strong) > sim.global_true_effect(weak) > 0


def test_truth_ignores_confounders_and_can_use_other_params(data):
    truth = sim.local_true_effects(data)
    assert np.isfinite(truth[data.is_pair]).all() and np.isnan(truth[~data.is_pair]).all()
    doubled = sim.TFCoopParams(alpha=100.0, beta=200.0)
    assert sim.global_true_effect(data, doubled) > sim.global_true_effect(data)


def test_global_truth_needs_pairs():
    with pytest.raises(InputError, match="no pair"):
        sim.global_true_effect(sim.simulate_tf_coop(50, seed=0, motif_prob=0.0))


def test_oracle_rejects_n_tokens():
    with pytest.raises(InputError):
        sim.oracle_counts(np.full((1, 100), 4, dtype=np.uint8), sim.TFCoopParams())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"motif_prob": 1.5}, "motif_prob"),
        ({"confounder_prob": -0.1}, "confounder_prob"),
        ({"confounder_motif_prob": 2}, "confounder_motif_prob"),
        ({"alpha": float("nan")}, "alpha"),
        ({"tau2": float("inf")}, "tau2"),
        ({"length": 25}, "length"),
        ({"length": 35, "confounder_motif": True}, "length"),
        ({"beta": 1.0, "effect": 1.0}, "beta"),
        ({"effect": float("nan")}, "effect"),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        sim.simulate_tf_coop(10, seed=0, **kwargs)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_n(n):
    with pytest.raises(ConfigError, match="n must"):
        sim.simulate_tf_coop(n, seed=0)


def test_confounder_motif_switch_changes_only_the_confounder():
    plain = sim.simulate_tf_coop(2000, seed=4)
    conf = sim.simulate_tf_coop(2000, seed=4, confounder_motif=True)
    for field in ("has_exposure", "has_outcome", "random_confounder"):
        np.testing.assert_array_equal(getattr(plain, field), getattr(conf, field))
    assert not plain.has_confounder.any() and not plain.occupancy[:, 2].any()
    assert conf.has_confounder.mean() == pytest.approx(0.5, abs=0.04)
    # Only pairs change their layout (the confounder widens the gap's range); the other rows
    # keep their motif starts, and without an embedded confounder their whole sequence.
    single = ~plain.is_pair
    np.testing.assert_array_equal(plain.exposure_start[single], conf.exposure_start[single])
    np.testing.assert_array_equal(plain.outcome_start[single], conf.outcome_start[single])
    same = single & ~conf.has_confounder
    np.testing.assert_array_equal(plain.tokens[same], conf.tokens[same])
    np.testing.assert_array_equal(plain.occupancy[same, :2], conf.occupancy[same, :2])
    shift = conf.expected_counts[same] - plain.expected_counts[same]
    q_conf = conf.occupancy[same, 2]
    np.testing.assert_allclose(shift, np.stack([20.0 * q_conf, 30.0 * q_conf], axis=1), atol=1e-12)
    assert not np.array_equal(plain.tokens[single & conf.has_confounder], conf.tokens[single & conf.has_confounder])
    q_embedded = conf.occupancy[conf.has_confounder, 2]
    assert np.median(q_embedded) > 0.99 and np.median(conf.occupancy[~conf.has_confounder, 2]) < 0.05


@pytest.mark.parametrize("p", [0.0, 0.75, 1.0])
def test_confounder_motif_frequency_follows_its_probability(p):
    d = sim.simulate_tf_coop(3000, seed=8, confounder_motif=True, confounder_motif_prob=p)
    assert d.has_confounder.mean() == pytest.approx(p, abs=0.03)


def _one_pair(tokens: np.ndarray, exposure_start: int, outcome_start: int, params: sim.TFCoopParams) -> sim.TFCoopData:
    """A one-sequence data set holding a pair at the given starts (only what the truth reads)."""
    flag = np.array([True])
    return sim.TFCoopData(
        tokens=tokens[None],
        labels=np.zeros((1, 2), np.float32),
        expected_counts=np.zeros((1, 2)),
        occupancy=np.zeros((1, 3)),
        has_exposure=flag,
        has_outcome=flag,
        has_confounder=~flag,
        random_confounder=~flag,
        exposure_start=np.array([exposure_start]),
        outcome_start=np.array([outcome_start]),
        confounder_start=np.array([-1]),
        params=params,
    )


def _consensus(motif: sim.Motif) -> np.ndarray:
    return np.array(["ACGT".index(c) for c in motif.consensus], dtype=np.uint8)


def _hand_checkable_pair(with_sox2: bool) -> tuple[np.ndarray, list[float], float]:
    """Consensus GATA3 at 2 and TAL1::TCF3 at 18 (and Sox2 at 32) in a TC repeat that binds none.

    Returns the tokens, the exposure occupancy after each of the span's substitutions and the
    reference's. A substitution of base b at exposure position j turns the single site's energy
    E into E + e[j, b] − e[j, consensus_j] and q = 1/(1 + exp(E)).
    """
    gata, tal1, sox2 = sim.EXPOSURE_MOTIF, sim.OUTCOME_MOTIF, sim.CONFOUNDER_MOTIF
    tokens = np.array([3, 1] * 22, dtype=np.uint8)
    for motif in (gata, tal1, sox2):
        assert sim.occupancy(tokens[None], motif)[0] < 1e-6
    site = _consensus(gata)
    tokens[2 : 2 + gata.length] = site
    tokens[18 : 18 + tal1.length] = _consensus(tal1)
    if with_sox2:
        tokens[32 : 32 + sox2.length] = _consensus(sox2)
        assert sim.occupancy(tokens[None], sox2)[0] > 0.999
    energies = gata.energies()
    e_ref = energies[np.arange(gata.length), site].sum()
    q = [
        1.0 / (1.0 + np.exp(e_ref - energies[j, site[j]] + energies[j, b]))
        for j in range(gata.length)
        for b in range(4)
        if b != site[j]
    ]
    return tokens, q, 1.0 / (1.0 + np.exp(e_ref))


def _a(c):
    return 2.0 * np.sqrt(np.asarray(c) + 0.375)


@pytest.mark.parametrize("beta", [100.0, 50.0, 0.0])
def test_truth_on_a_hand_checkable_pair(beta):
    """The outcome site is saturated (q_out = 1), so the oracle gives c_exp = 1 + α q and
    c_out = 1 + β q; the slope through the origin of ΔA(c_out) on ΔA(c_exp), A(c) = 2√(c + 3/8),
    follows by hand; with β = α it is exactly 1. Without confounders both contexts agree."""
    tokens, q, q_ref = _hand_checkable_pair(with_sox2=False)
    d_exp = _a(1 + 100.0 * np.array(q)) - _a(1 + 100.0 * q_ref)
    d_out = _a(1 + beta * np.array(q)) - _a(1 + beta * q_ref)
    by_hand = (d_exp * d_out).sum() / (d_exp**2).sum()
    pair = _one_pair(tokens, 2, 18, sim.TFCoopParams(alpha=100.0, beta=beta))
    truth = sim.local_true_effects(pair)[0]
    assert truth == pytest.approx(by_hand, rel=1e-4, abs=1e-9)
    assert sim.local_true_effects(pair, context="sequence")[0] == truth
    if beta == 100.0:
        assert truth == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("p_b", [0.0, 0.5, 1.0])
def test_sequence_context_truth_on_a_hand_checkable_pair(p_b):
    """A saturated Sox2 site (q_conf = 1) adds η and ν to the counts and b adds τ₁ and τ₂ with
    probability p_b: by hand f = Σ_b P(b) A(c(b)) with c_exp = 1 + α q + η + τ₁ b and
    c_out = 1 + β q + ν + τ₂ b. The original's truth ignores both, so it is the slope of the
    pair without them."""
    params = sim.TFCoopParams(
        alpha=100.0, beta=300.0, eta=20.0, nu=30.0, tau1=40.0, tau2=60.0, confounder_motif=True, confounder_prob=p_b
    )
    tokens, q, q_ref = _hand_checkable_pair(with_sox2=True)
    q = np.array(q)

    def f(q_exp, beta, eta, nu, probability):
        return sum(
            w * np.stack([_a(1 + 100.0 * q_exp + eta + 40.0 * b), _a(1 + beta * q_exp + nu + 60.0 * b)])
            for b, w in ((0, 1 - probability), (1, probability))
        )

    def slope(delta):
        return (delta[0] * delta[1]).sum() / (delta[0] ** 2).sum()

    pair = _one_pair(tokens, 2, 18, params)
    in_context = slope(f(q, 300.0, 20.0, 30.0, p_b) - f(q_ref, 300.0, 20.0, 30.0, p_b)[:, None])
    unconfounded = slope(f(q, 300.0, 0.0, 0.0, 0.0) - f(q_ref, 300.0, 0.0, 0.0, 0.0)[:, None])
    assert sim.local_true_effects(pair, context="sequence")[0] == pytest.approx(in_context, rel=1e-4)
    assert sim.local_true_effects(pair)[0] == pytest.approx(unconfounded, rel=1e-4)
    assert abs(in_context / unconfounded - 1) > 0.01  # the context matters on the Anscombe scale


def test_unknown_truth_context_is_refused(data):
    with pytest.raises(InputError, match="context"):
        sim.local_true_effects(data, context="confounded")
