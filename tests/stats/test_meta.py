"""Tests of the meta-analysis against metafor 3.8-1 (rma.uni) and its defining properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dmr_ray.errors import InputError
from dmr_ray.stats import meta
from dmr_ray.stats.meta import METHODS, meta_analysis, meta_analysis_batched

# reference-file key -> MetaResult field
FIELDS = {"est": "estimate", "se": "se", "tau2": "tau2", "lo": "ci_low", "hi": "ci_high", "QE": "q", "I2": "i2"}

# deep_mr.md section 16 (R 4.2.2, metafor 3.8-1)
Y16 = [0.10, 0.30, 0.35, 0.65, 0.45, 0.15]
V16 = [0.03, 0.02, 0.05, 0.01, 0.04, 0.02]
TABLE16 = {
    "FE": (0.3919161677, 0.0599400899, 0.0),
    "DL": (0.3455187743, 0.1019838345, 0.0367645028),
    "REML": (0.3472387826, 0.0973658478, 0.0314812049),
    "PM": (0.3509364541, 0.0897643389, 0.0234148190),
    "HS": (0.3500535916, 0.0913574690, 0.0250394421),
    "ML": (0.3504467144, 0.0906336084, 0.0242968916),
    "HE": (0.3603152524, 0.0777545509, 0.0123333333),
}


def _close(got, want, rel=1e-6, abs_=1e-12):
    return got == pytest.approx(want, rel=rel, abs=abs_)


@pytest.mark.parametrize("method", METHODS)
def test_reference_cases(reference, method):
    for case in reference["meta"]:
        se = np.sqrt(case["vi"])
        for test, key in (("z", method), ("knha", f"{method}_knha")):
            if key not in case:
                continue
            res = meta_analysis(case["yi"], se, method, test)
            for field, want in case[key].items():
                got = getattr(res, FIELDS[field])
                assert _close(got, want), (case["id"], key, field, got, want)


@pytest.mark.parametrize("method", METHODS)
def test_section16_table(method):
    est, se, tau2 = TABLE16[method]
    res = meta_analysis(Y16, np.sqrt(V16), method)
    assert res.estimate == pytest.approx(est, abs=1e-9)
    assert res.se == pytest.approx(se, abs=1e-9)
    assert res.tau2 == pytest.approx(tau2, abs=1e-9)
    assert res.tau == pytest.approx(np.sqrt(tau2), abs=1e-6)


def test_section16_heterogeneity_and_knha():
    dl = meta_analysis(Y16, np.sqrt(V16), "DL")
    assert dl.q == pytest.approx(12.9693113772, abs=1e-9)
    assert dl.i2 == pytest.approx(61.447452, abs=1e-6)
    assert dl.i2 == pytest.approx(100 * (dl.q - 5) / dl.q, rel=1e-12)
    knha = meta_analysis(Y16, np.sqrt(V16), "DL", "knha")
    assert knha.se == pytest.approx(0.0881757207, abs=1e-9)
    assert (knha.ci_low, knha.ci_high) == pytest.approx((0.1188558683, 0.5721816804), abs=1e-9)
    assert knha.test == "knha"
    reml = meta_analysis(Y16, np.sqrt(V16), "REML", "knha")
    assert reml.se == pytest.approx(0.0887137511, abs=1e-9)


def test_prediction_interval_follows_predict_rma():
    from scipy import stats

    res = meta_analysis(Y16, np.sqrt(V16), "REML", "knha")
    half = stats.t.ppf(0.975, 5) * np.sqrt(res.se**2 + res.tau2)
    assert (res.pi_low, res.pi_high) == pytest.approx((res.estimate - half, res.estimate + half))
    fe = meta_analysis(Y16, np.sqrt(V16), "FE")
    assert (fe.pi_low, fe.pi_high) == pytest.approx((fe.ci_low, fe.ci_high))


def test_statsmodels_pitfall_is_clipped():
    """statsmodels' unclipped DL gives tau2 = -0.0499 and SE 0.00408 here."""
    res = meta_analysis([0.30, 0.31, 0.29, 0.30], np.sqrt([0.05] * 4), "DL")
    assert res.tau2 == 0.0
    assert res.se == pytest.approx(0.1118, abs=5e-5)
    assert res.i2 == 0.0 and res.h2 == 1.0


def test_single_study():
    res = meta_analysis([0.4], [0.2], "REML", "knha")
    assert (res.estimate, res.se) == pytest.approx((0.4, 0.2), rel=1e-14)
    assert (res.tau2, res.k) == (0.0, 1)
    assert (res.q, res.q_p, res.i2, res.h2) == (0.0, 1.0, 0.0, 1.0)
    assert res.test == "z" and res.converged
    assert res.ci_low == pytest.approx(0.4 - 1.959963985 * 0.2)
    assert res.notes and "k = 1" in res.notes[0]


def test_pm_root_beyond_tau2_max_is_flagged():
    res = meta_analysis([0.0, 0.0, 0.0, 1e4], [0.1] * 4, "PM")
    assert not res.converged and np.isnan(res.estimate) and np.isnan(res.tau2)
    assert any("tau2.max" in note for note in res.notes)


def test_fisher_scoring_non_convergence_is_flagged(monkeypatch):
    monkeypatch.setattr(meta, "MAXITER", 1)
    res = meta_analysis(Y16, np.sqrt(V16), "REML")
    assert not res.converged and any("did not converge" in note for note in res.notes)


@pytest.mark.parametrize(
    ("y", "se", "match"),
    [
        ([0.1, np.nan, 0.2], [0.1, 0.1, 0.1], "estimate at index 1"),
        ([0.1, 0.2, 0.3], [0.1, 0.0, 0.1], "standard error at index 1"),
        ([0.1, 0.2, 0.3], [0.1, 0.1, -0.2], "standard error at index 2"),
        ([0.1, 0.2, 0.3], [np.nan, 0.1, 0.1], "standard error at index 0"),
        ([], [], "k = 0"),
        ([0.1, 0.2], [0.1], "equal length"),
    ],
)
def test_bad_input_raises(y, se, match):
    with pytest.raises(InputError, match=match):
        meta_analysis(y, se)


def test_bad_options_raise():
    with pytest.raises(InputError, match="method"):
        meta_analysis(Y16, np.sqrt(V16), "EB")
    with pytest.raises(InputError, match="test"):
        meta_analysis(Y16, np.sqrt(V16), "DL", "t")
    with pytest.raises(InputError, match="alpha"):
        meta_analysis(Y16, np.sqrt(V16), "DL", alpha=1.5)


def test_batched_bad_value_names_group_and_index():
    y = np.zeros((3, 4))
    se = np.ones((3, 4))
    se[2, 3] = 0.0
    with pytest.raises(InputError, match=r"\(2, 3\)"):
        meta_analysis_batched(y, se, np.ones((3, 4), bool))


def test_batched_empty_group_is_nan():
    y = np.array([[0.1, 0.2, 0.3], [np.nan, np.nan, np.nan]])
    se = np.array([[0.1, 0.2, 0.1], [np.nan, np.nan, np.nan]])
    mask = np.array([[True, True, True], [False, False, False]])
    res = meta_analysis_batched(y, se, mask, "REML")
    assert res.k.tolist() == [3, 0]
    assert np.isnan(res.estimate[1]) and not res.converged[1] and np.isfinite(res.estimate[0])


# ------------------------------------------------------------------- properties

studies = st.integers(1, 10).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(-3, 3, allow_nan=False), min_size=k, max_size=k),
        st.lists(st.floats(0.02, 2.0, allow_nan=False), min_size=k, max_size=k),
    )
)
methods = st.sampled_from(METHODS)
tests = st.sampled_from(("z", "knha"))


@settings(max_examples=60, deadline=None)
@given(studies, methods, tests)
def test_tau2_non_negative_and_intervals_ordered(data, method, test):
    res = meta_analysis(*data, method, test)
    assert res.tau2 >= 0.0
    # metafor's own Fisher scoring can oscillate (e.g. y = 8 x 0.0 and 2.0, se 1 and 0.5);
    # only the iterative estimators may report non-convergence, and they must say so.
    assert res.converged or (method in ("REML", "ML", "PM") and res.notes)
    assert res.ci_low <= res.estimate <= res.ci_high
    assert res.pi_low <= res.ci_low + 1e-12 and res.ci_high <= res.pi_high + 1e-12
    assert 0.0 <= res.i2 <= 100.0 and 0.0 <= res.p_value <= 1.0


@settings(max_examples=60, deadline=None)
@given(studies, methods, tests, st.randoms(use_true_random=False))
def test_invariant_to_study_order(data, method, test, rnd):
    y, se = data
    order = list(range(len(y)))
    rnd.shuffle(order)
    a = meta_analysis(y, se, method, test)
    b = meta_analysis([y[i] for i in order], [se[i] for i in order], method, test)
    for name in ("estimate", "se", "tau2", "q", "i2", "pi_low"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-7, abs=1e-9), name


@settings(max_examples=60, deadline=None)
@given(studies)
def test_fixed_effect_closed_form(data):
    y, se = (np.asarray(a) for a in data)
    w = se**-2.0
    mu = (w * y).sum() / w.sum()
    res = meta_analysis(y, se, "FE")
    assert res.estimate == pytest.approx(mu, rel=1e-12, abs=1e-12)
    assert res.se == pytest.approx(w.sum() ** -0.5, rel=1e-12)
    assert res.q == pytest.approx((w * (y - mu) ** 2).sum(), rel=1e-9, abs=1e-12)
    assert res.tau2 == 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.0, 10.0) | st.just(0.0),
    st.floats(-1e6, 1e6, allow_nan=False) | st.floats(-1e-300, 0.0),
)
@example(tau2=2.2250738585e-313, adj=-3.001746473628473e-302)  # halving ends among subnormals
def test_step_halving_matches_metafor_loop(tau2, adj):
    expected = adj
    while tau2 + expected < 0:
        expected /= 2
    got = meta._halve_into_range(np.array([tau2]), np.array([adj]))[0]
    assert tau2 + got == tau2 + expected


@settings(max_examples=30, deadline=None)
@given(st.lists(studies, min_size=1, max_size=6), methods, tests)
def test_batched_equals_scalar(groups, method, test):
    k_max = max(len(y) for y, _ in groups) + 1
    y = np.full((len(groups), k_max), np.nan)
    se = np.full((len(groups), k_max), -1.0)
    mask = np.zeros((len(groups), k_max), dtype=bool)
    for g, (yg, sg) in enumerate(groups):
        y[g, : len(yg)], se[g, : len(yg)], mask[g, : len(yg)] = yg, sg, True
    batch = meta_analysis_batched(y, se, mask, method, test)
    for g, (yg, sg) in enumerate(groups):
        one = meta_analysis(yg, sg, method, test)
        got = batch.result(g)
        assert got.notes == one.notes and got.test == one.test and got.k == one.k
        for name in (
            "estimate",
            "se",
            "ci_low",
            "ci_high",
            "p_value",
            "tau2",
            "q",
            "q_p",
            "i2",
            "h2",
            "pi_low",
            "pi_high",
        ):
            assert getattr(got, name) == pytest.approx(getattr(one, name), rel=1e-9, abs=1e-12)


def test_reml_that_oscillates_as_in_metafor_is_reported_not_hidden():
    # metafor's rma(method="REML") stops with "Fisher scoring algorithm did not converge" here.
    res = meta_analysis([0.0] * 8 + [2.0], [1.0] * 8 + [0.5], "REML")
    assert not res.converged and any("did not converge" in note for note in res.notes)
