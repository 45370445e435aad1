"""The BPNet-style grammar simulator: reproducibility, occupancy, profiles and the planted truth."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from dmr_ray.demo import subset_simulation
from dmr_ray.errors import ConfigError
from dmr_ray.sim import bpnet_grammar as bg
from dmr_ray.sim.motifs import occupancy

PARAMS = bg.GrammarParams(length=100, affinity_margin=1.0, sharpness=3.0)


@pytest.fixture(scope="module")
def data() -> bg.GrammarData:
    return simulate_all_sites(PARAMS, seed=7)


def simulate_all_sites(params: bg.GrammarParams, seed: int) -> bg.GrammarData:
    """Sequences holding all four motifs (every motif embedded)."""
    return bg.simulate_bpnet_grammar(40, replace(params, site_prob=1.0), seed=seed)


def test_reproducible_from_a_seed() -> None:
    a = bg.simulate_bpnet_grammar(30, PARAMS, seed=3)
    b = bg.simulate_bpnet_grammar(30, PARAMS, seed=3)
    c = bg.simulate_bpnet_grammar(30, PARAMS, seed=4)
    for name in ("tokens", "profiles", "site_start", "site_strand"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.tokens, c.tokens)


def test_sites_are_embedded_apart_and_found(data) -> None:
    motifs = bg.grammar_motifs()
    assert data.has_all_sites.all()
    for row in range(len(data.tokens)):
        spans = sorted((data.site_start[row, m], data.site_start[row, m] + motifs[m].length) for m in range(4))
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))
    # a consensus-like embedded site binds: median occupancy of each motif well above chance
    assert (np.median(data.occupancy, axis=0) > 0.5).all()


def test_forward_site_probabilities_match_occupancy() -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 4, size=(5, 30)).astype(np.uint8)
    motif = bg.grammar_motifs()[1]
    s = bg.site_probabilities(tokens, motif)
    np.testing.assert_allclose(1 - np.prod(1 - s[:, 0], axis=1), occupancy(tokens, motif), rtol=1e-12)
    # the reverse strand is the forward strand of the reverse complement, windows reversed
    reverse = bg.site_probabilities(3 - tokens[:, ::-1], motif)
    np.testing.assert_allclose(s[:, 1], reverse[:, 0, ::-1], rtol=1e-12)


def test_expected_profiles_put_half_the_reads_on_each_strand(data) -> None:
    profiles = bg.expected_profiles(data.tokens[:5], PARAMS)
    counts = bg.expected_counts(data.tokens[:5], PARAMS)
    np.testing.assert_allclose(profiles.sum(axis=-1), np.repeat(counts[..., None] / 2, 2, axis=-1), rtol=1e-10)
    # the + strand peaks upstream of the Oct4-Sox2 site centre, the - strand downstream
    centre = data.site_start[0, 0] + bg.grammar_motifs()[0].length // 2
    oct4 = profiles[0, 0]
    assert oct4[0].argmax() < centre < oct4[1].argmax()


def test_expected_log1p_poisson_against_a_direct_sum() -> None:
    rates = np.array([0.0, 0.3, 4.0, 55.0])
    k = np.arange(400)
    direct = [
        sum(math.exp(j * math.log(r) - r - math.lgamma(j + 1)) * math.log1p(j) for j in k) if r else 0.0 for r in rates
    ]
    np.testing.assert_allclose(bg.expected_log1p_poisson(rates), direct, rtol=1e-10, atol=1e-14)


def _destroy(data: bg.GrammarData, motif: str) -> np.ndarray:
    """Tokens with every base of ``motif``'s embedded site replaced by a non-binding run of its complement."""
    tokens = data.tokens.copy()
    m = bg.MOTIFS.index(motif)
    k = bg.grammar_motifs()[m].length
    rows = np.arange(len(tokens))[:, None]
    span = data.site_start[:, m, None] + np.arange(k)
    tokens[rows, span] = (tokens[rows, span] + 2) % 4
    return tokens


def test_oct4_sox2_raises_the_others_and_nothing_raises_oct4_or_sox2(data) -> None:
    before = bg.expected_counts(data.tokens, PARAMS)
    composite_gone = bg.expected_counts(_destroy(data, "Oct4-Sox2"), PARAMS)
    lost = before - composite_gone
    bound = data.occupancy[:, 0] > 0.5
    assert (lost[bound][:, [2, 3]] > 5).all()  # Nanog, Klf4 lose recruited reads
    for motif in ("Nanog", "Klf4"):
        after = bg.expected_counts(_destroy(data, motif), PARAMS)
        np.testing.assert_allclose(after[:, 0], before[:, 0], atol=0.05)  # Oct4 unchanged (up to straddling windows)
        # Sox2 moves 20x less than a recruited TF loses: only chance Sox2 windows (7 bp) that
        # the replaced bases form (TTTTGTTT for the Klf4 site) move it
        assert np.median(np.abs(after[:, 1] - before[:, 1])) < 0.25


def test_sox2_motif_recruits_nanog_and_klf4_but_not_oct4(data) -> None:
    destroyed = _destroy(data, "Sox2")
    lost = bg.expected_counts(data.tokens, PARAMS) - bg.expected_counts(destroyed, PARAMS)
    q_lost = data.occupancy[:, 1] - bg.binding(destroyed, PARAMS)[0][:, 1]
    assert np.median(q_lost) > 0.4  # the destroyed sites bound
    # Nanog and Klf4 lose sox2_recruited reads per unit of Sox2 occupancy lost, Sox2 its own 40
    # (in the median: in some rows the replaced bases form chance Nanog or Klf4 windows)
    for tf, per_unit in [(1, PARAMS.own), (2, PARAMS.sox2_recruited), (3, PARAMS.sox2_recruited)]:
        assert np.median(np.abs(lost[:, tf] - per_unit * q_lost)) < 0.05, bg.TASKS[tf]
    np.testing.assert_allclose(lost[:, 0], 0.0, atol=0.05)  # Oct4 reads no Sox2 motif


def test_local_truth_is_planted_one_way(data) -> None:
    truth = bg.local_true_effects(data)
    o, s, n, k = (bg.TASKS.index(t) for t in ("Oct4", "Sox2", "Nanog", "Klf4"))
    for x, y in [(o, s), (o, n), (o, k), (s, n), (s, k)]:
        bound = data.occupancy[:, bg.MOTIFS.index(bg.DIRECT_SITES[bg.TASKS[x]][0])] > 0.5
        assert (truth[bound, x, y] > 0.05).all(), (bg.TASKS[x], bg.TASKS[y])
    for x, y in [(s, o)] + [(x, y) for x in (n, k) for y in range(4) if y != x]:
        assert np.nanmax(np.abs(truth[:, x, y])) < 0.02, (bg.TASKS[x], bg.TASKS[y])  # chance windows only
    assert np.isnan(truth[:, o, o]).all()
    planted = {pair for pair, yes in bg.planted_pairs(PARAMS).items() if yes}
    assert planted == {("Oct4", "Sox2"), ("Oct4", "Nanog"), ("Oct4", "Klf4"), ("Sox2", "Nanog"), ("Sox2", "Klf4")}


def test_without_recruitment_nothing_reaches_nanog_or_klf4() -> None:
    params = replace(PARAMS, recruited=0.0, sox2_recruited=0.0)
    data = simulate_all_sites(params, seed=7)
    truth = bg.local_true_effects(subset_simulation(data, np.arange(10)))
    assert np.nanmax(np.abs(truth[:, :2, 2:])) < 0.02
    planted = bg.planted_pairs(params)
    assert not planted[("Oct4", "Nanog")] and not planted[("Sox2", "Klf4")] and planted[("Oct4", "Sox2")]
    assert bg.planted_pairs(replace(PARAMS, sox2_recruited=0.0))[("Oct4", "Nanog")]


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ConfigError, match="recruited"):
        bg.GrammarParams(recruited=-1.0)
    with pytest.raises(ConfigError, match="sox2_recruited"):
        bg.GrammarParams(sox2_recruited=float("nan"))
    with pytest.raises(ConfigError, match="length"):
        bg.GrammarParams(length=20)
