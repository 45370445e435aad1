"""Scalar MR estimators against R (MendelianRandomization 0.10.0) and their invariances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import special

from dmr_ray.errors import InputError, InsufficientInstrumentsError
from dmr_ray.stats import mr
from dmr_ray.stats._common import r_rnorm
from dmr_ray.stats.density import r_density

RTOL = 1e-8  # deterministic values (README: 1e-8 relative)
P_RTOL = 1e-6  # R's Egger p is 2 * (1 - pnorm(|z|)), which cancels at p ~ 1e-9
ROBUST_RTOL = 1e-4

FIELDS = {
    "est": "estimate",
    "se": "se",
    "lo": "ci_low",
    "hi": "ci_high",
    "p": "p_value",
    "q": "q",
    "rse": "rse",
    "int": "intercept",
    "se_int": "intercept_se",
    "p_int": "intercept_p",
    "i2gx": "i2_gx",
}

DETERMINISTIC = {
    "ivw_default": (mr.ivw, {}),
    "ivw_fixed": (mr.ivw, {"model": "fixed"}),
    "ivw_random": (mr.ivw, {"model": "random"}),
    "ivw_delta": (mr.ivw, {"weights": "delta"}),
    "ivw_penalized": (mr.ivw, {"penalized": True}),
    "egger": (mr.egger, {}),
    "egger_t": (mr.egger, {"distribution": "t-dist"}),
}
# Bootstraps replay R's set.seed(314159265) stream, so their SEs match R's to rounding too.
BOOTSTRAPPED = {
    "median_weighted": (mr.weighted_median, {}),
    "median_simple": (mr.weighted_median, {"weighting": "simple"}),
    "median_penalized": (mr.weighted_median, {"weighting": "penalized"}),
    "mbe_weighted_delta": (mr.mbe, {}),
    "mbe_weighted_simple": (mr.mbe, {"stderror": "simple"}),
    "mbe_unweighted": (mr.mbe, {"weighting": "unweighted"}),
    "mbe_phi05": (mr.mbe, {"phi": 0.5}),
}


def _args(case: dict) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(case[k], dtype=float) for k in ("bx", "bxse", "by", "byse"))


def _check(result: mr.MRResult, expected: dict, rtol: float = RTOL, atol: float = 1e-300) -> None:
    for key, value in expected.items():
        if key == "model":
            assert result.model == value
            continue
        got = getattr(result, FIELDS[key])
        tol = P_RTOL if key.startswith("p") else rtol
        assert got == pytest.approx(value, rel=tol, abs=atol), key


@pytest.mark.parametrize("key", list(DETERMINISTIC) + list(BOOTSTRAPPED))
def test_reference_cases(reference, key):
    func, options = {**DETERMINISTIC, **BOOTSTRAPPED}[key]
    for case in reference["mr"]:
        result = func(*_args(case), **options)
        assert result.n_instruments == case["J"]
        _check(result, case[key])


def test_reference_robust_egger(reference):
    pytest.importorskip("dmr_ray.stats.lmrob")
    for case in reference["mr"]:
        result = mr.egger(*_args(case), robust=True, seed=1)
        _check(result, case["egger_robust"], rtol=ROBUST_RTOL)


def test_bootstrap_with_other_streams_is_within_monte_carlo_error(reference):
    case = reference["mr"][0]
    gen = np.random.default_rng(2024)
    median = mr.weighted_median(*_args(case), seed=gen)
    mode = mr.mbe(*_args(case), seed=gen)
    assert median.se == pytest.approx(case["median_weighted"]["se"], rel=0.05)
    assert mode.se == pytest.approx(case["mbe_weighted_delta"]["se"], rel=0.08)
    assert median.estimate == pytest.approx(case["median_weighted"]["est"], rel=RTOL)


# --------------------------------------------------------------------------- LDL-c -> CHD
# cran/MendelianRandomization R/1Data.R (Waterworth et al. 2010); values: deep_mr.md section 16.

LDLC = [0.026, -0.044, -0.038, -0.023, -0.017, -0.031, -0.018, 0.046, 0.059, 0.004, 0.011,
        -0.005, 0.004, 0.022, -0.005, -0.002, -0.002, 0.004, 0.011, 0.009, -0.011, -0.003,
        -0.012, 0.0003, -0.015, -0.008, 0.009, -0.036]  # fmt: skip
LDLCSE = [0.004, 0.004, 0.004, 0.003, 0.003, 0.006, 0.004, 0.007, 0.004, 0.003, 0.004, 0.005,
          0.005, 0.005, 0.004, 0.004, 0.003, 0.004, 0.004, 0.003, 0.004, 0.003, 0.004, 0.003,
          0.003, 0.004, 0.003, 0.007]  # fmt: skip
CHD = [0.0677, -0.1625, -0.1054, -0.0619, -0.0834, -0.1278, -0.0408, 0.0770, 0.1570, -0.0305,
       0.0100, 0.1823, -0.0408, 0.1989, 0.0100, 0.0488, 0.0100, -0.0408, -0.0305, -0.0408,
       -0.0202, -0.0619, 0.0296, 0.0677, -0.0726, -0.0726, 0.0000, 0.0198]  # fmt: skip
CHDSE = [0.0286, 0.0300, 0.0310, 0.0243, 0.0222, 0.0667, 0.0373, 0.0543, 0.0306, 0.0236,
         0.0277, 0.0403, 0.0344, 0.0335, 0.0378, 0.0292, 0.0253, 0.0319, 0.0316, 0.0241,
         0.0285, 0.0217, 0.0298, 0.0239, 0.0220, 0.0246, 0.0255, 0.0647]  # fmt: skip
LDL = (LDLC, LDLCSE, CHD, CHDSE)
LDL_R = [  # (function, options, expected) from R 4.2.2, rounded to 10 decimal places
    (mr.ivw, {}, {"est": 2.8342139389, "se": 0.5297994886, "rse": 1.9199770981, "q": 99.5304255485}),
    (mr.ivw, {"model": "fixed"}, {"est": 2.8342139389, "se": 0.2759405251}),
    (mr.ivw, {"weights": "delta"}, {"est": 2.6645858267, "se": 0.3530645972}),
    (mr.egger, {}, {"est": 3.2528901319, "se": 0.7701291614, "int": -0.0114606657,
                    "se_int": 0.0151883205, "i2gx": 0.9193653883, "lo": 1.7434647122,
                    "hi": 4.7623155517}),
    (mr.weighted_median, {}, {"est": 2.6828834649, "se": 0.4189064698}),
    (mr.weighted_median, {"weighting": "simple"}, {"est": 1.7551383399, "se": 0.7399760512}),
    (mr.mbe, {}, {"est": 2.9463005721, "se": 1.0048348435}),
    (mr.mbe, {"stderror": "simple"}, {"est": 2.9463005721, "se": 0.3670215341}),
]  # fmt: skip


@pytest.mark.parametrize("func, options, expected", LDL_R)
def test_ldl_example(func, options, expected):
    _check(func(*LDL, **options), expected, rtol=1e-9, atol=5.1e-11)


def test_ldl_mbe_bandwidth_and_grid():
    # deep_mr.md section 16: mr_mbe() on ldlc/chdlodds uses bw 2.3660508761 and the grid
    # [-43.5581526283, 232.7648192950]; the density's maximum is at 2.9463005721.
    bx, bxse, by, byse = (np.asarray(a) for a in LDL)
    theta = by / bx
    se = np.sqrt(byse**2 / bx**2 + by**2 * bxse**2 / bx**4)
    w = se**-2 / np.sum(se**-2)
    bw = 0.9 * min(np.std(theta, ddof=1), 1.4826 * np.median(np.abs(theta - np.median(theta)))) / 28**0.2
    assert bw == pytest.approx(2.3660508761, abs=1e-10)
    d = r_density(theta, bw, w)
    assert d.x[0] == pytest.approx(-43.5581526283, abs=1e-10)
    assert d.x[-1] == pytest.approx(232.7648192950, abs=1e-10)
    assert d.x[np.argmax(d.y)] == pytest.approx(2.9463005721, abs=1e-10)


def test_ldl_robust_egger():
    pytest.importorskip("dmr_ray.stats.lmrob")
    result = mr.egger(*LDL, robust=True, seed=1)
    _check(result, {"est": 3.2560170114, "se": 0.6238948475, "rse": 1.4979645126}, rtol=ROBUST_RTOL)


def test_r_normal_stream():
    # R: set.seed(42); rnorm(5) and set.seed(123); rnorm(3)
    assert r_rnorm(42, 5) == pytest.approx([1.37095845, -0.56469817, 0.36312841, 0.63286260, 0.40426832], rel=1e-7)
    assert r_rnorm(123, 3) == pytest.approx([-0.56047565, -0.23017749, 1.55870831], rel=1e-7)


def test_r_normal_stream_cache(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from dmr_ray.stats import _common

    monkeypatch.setattr(_common, "_streams", type(_common._streams)())
    fresh = _common._r_rnorm(7, 5000)
    first = r_rnorm(7, 5000)
    assert np.array_equal(first, fresh) and not first.flags.writeable
    assert np.array_equal(r_rnorm(7, 100), fresh[:100])  # a prefix of the cached stream
    assert np.array_equal(r_rnorm(7, 9000)[:5000], fresh)  # a longer request replaces it
    assert r_rnorm(7, 5000).base is r_rnorm(7, 9000).base
    with pytest.raises(ValueError):
        r_rnorm(7, 10)[0] = 1.0
    with ThreadPoolExecutor(4) as pool:  # concurrent callers all get R's stream
        for got in pool.map(lambda s: r_rnorm(s, 3000), [11, 12, 11, 12, 13, 11]):
            assert got.size == 3000
    assert np.array_equal(r_rnorm(12, 3000), _common._r_rnorm(12, 3000))
    # Least recently used streams go once the cache holds more than its budget.
    monkeypatch.setattr(_common, "_STREAM_CACHE_BYTES", 3 * 8 * 3000)
    r_rnorm(14, 3000)
    r_rnorm(15, 3000)
    assert sum(a.nbytes for a in _common._streams.values()) <= _common._STREAM_CACHE_BYTES
    assert 7 not in _common._streams and 15 in _common._streams


# --------------------------------------------------------------------------- IVW details


def test_single_instrument_ivw_is_the_ratio_estimate():
    result = mr.ivw([0.5], [0.1], [0.2], [0.05], distribution="t-dist")
    assert result.estimate == pytest.approx(0.4)
    assert result.se == pytest.approx(0.1)
    assert result.p_value == pytest.approx(2 * special.ndtr(-4.0))
    assert result.rse == 1.0 and np.isnan(result.q)
    delta = mr.ivw([0.5], [0.1], [0.2], [0.05], weights="delta")
    assert delta.se == pytest.approx(np.sqrt(0.05**2 / 0.25 + 0.04 * 0.01 / 0.5**4))


def test_model_default_switches_at_four_instruments():
    bx, bxse, by, byse = (np.asarray(a[:4]) for a in LDL)
    assert mr.ivw(bx[:3], bxse[:3], by[:3], byse[:3]).model == "fixed"
    assert mr.ivw(bx, bxse, by, byse).model == "random"


def test_penalized_fits_have_no_heterogeneity_statistic():
    assert mr.ivw(*LDL, penalized=True).q is None
    assert mr.egger(*LDL, penalized=True).q is None


def test_egger_t_interval_is_never_narrower_than_normal():
    normal, t = mr.egger(*LDL), mr.egger(*LDL, distribution="t-dist")
    assert t.ci_low <= normal.ci_low and t.ci_high >= normal.ci_high


def test_cochran_q_and_i_squared():
    bx, _, by, byse = (np.asarray(a) for a in LDL)
    het = mr.cochran_q(by / bx, byse / np.abs(bx))
    assert het.q == pytest.approx(mr.ivw(*LDL).q, rel=1e-12)
    assert het.df == 27
    assert het.i2 == pytest.approx((het.q - 27) / het.q)
    assert mr.i_squared(10.0, 20) == 0.0 and mr.i_squared(0.0, 3) == 0.0
    with pytest.raises(InsufficientInstrumentsError):
        mr.cochran_q([1.0], [0.1])
    with pytest.raises(InputError, match=r"se\[1\]"):
        mr.cochran_q([1.0, 2.0], [0.1, 0.0])


# --------------------------------------------------------------------------- bad input


GOOD = ([0.1, -0.2, 0.3, 0.4], [0.01, 0.02, 0.01, 0.02], [0.05, -0.1, 0.2, 0.1], [0.02, 0.02, 0.03, 0.02])


@pytest.mark.parametrize(
    "column, index, value, pattern",
    [
        (1, 2, 0.0, r"bxse\[2\]"),
        (3, 1, -0.1, r"byse\[1\]"),
        (3, 3, np.nan, r"byse\[3\]"),
        (2, 0, np.nan, r"by\[0\]"),
        (0, 3, np.inf, r"bx\[3\]"),
        (0, 1, 0.0, r"bx\[1\].*instrument"),
    ],
)
@pytest.mark.parametrize("func", [mr.ivw, mr.egger, mr.weighted_median, mr.mbe, mr.steiger])
def test_bad_values_name_the_index(func, column, index, value, pattern):
    args = [list(a) for a in GOOD]
    args[column][index] = value
    with pytest.raises(InputError, match=pattern):
        func(*args)


def test_shape_errors():
    with pytest.raises(InputError, match="shape"):
        mr.ivw([0.1, 0.2], [0.01], [0.1, 0.2], [0.1, 0.1])
    with pytest.raises(InputError, match="1-dimensional"):
        mr.ivw([[0.1, 0.2]], [[0.1, 0.1]], [[0.1, 0.2]], [[0.1, 0.1]])


@pytest.mark.parametrize(
    "func, minimum", [(mr.ivw, 1), (mr.egger, 3), (mr.weighted_median, 3), (mr.mbe, 2), (mr.steiger, 2)]
)
def test_too_few_instruments(func, minimum):
    args = [a[: minimum - 1] for a in GOOD]
    with pytest.raises(InsufficientInstrumentsError, match=str(minimum)):
        func(*args)


def test_bad_options():
    with pytest.raises(InputError, match="model"):
        mr.ivw(*GOOD, model="mixed")
    with pytest.raises(InputError, match="weighting"):
        mr.weighted_median(*GOOD, weighting="median")
    with pytest.raises(InputError, match="phi"):
        mr.mbe(*GOOD, phi=0.0)
    with pytest.raises(InputError, match="iterations"):
        mr.mbe(*GOOD, iterations=1)
    with pytest.raises(TypeError):
        mr.egger(*GOOD, model="fixed")


def test_degenerate_inputs_raise():
    with pytest.raises(InputError, match="spread"):
        mr.egger([0.1, -0.1, 0.1], [0.01] * 3, [0.1, 0.2, 0.3], [0.01] * 3)
    with pytest.raises(InputError, match="spread"):
        mr.mbe([0.1, 0.2, 0.3], [0.01] * 3, [0.1, 0.2, 0.31], [0.01] * 3)


# --------------------------------------------------------------------------- invariances


@st.composite
def instruments(draw, min_size: int = 3, max_size: int = 12):
    j = draw(st.integers(min_size, max_size))
    mag = st.floats(0.05, 2.0)
    bx = [draw(mag) * draw(st.sampled_from([-1.0, 1.0])) for _ in range(j)]
    by = draw(st.lists(st.floats(-2.0, 2.0), min_size=j, max_size=j))
    bxse = draw(st.lists(st.floats(0.01, 0.5), min_size=j, max_size=j))
    byse = draw(st.lists(st.floats(0.01, 1.0), min_size=j, max_size=j))
    assume(j == 1 or np.unique(np.abs(bx)).size > 1)  # MR-Egger needs a slope to fit
    return tuple(np.array(a) for a in (bx, bxse, by, byse))


FAST = {"iterations": 20}
PROPERTY = settings(max_examples=40, deadline=None)


@PROPERTY
@given(instruments(min_size=1))
def test_ivw_closed_form(data):
    bx, bxse, by, byse = data
    w = byse**-2
    est = np.sum(w * bx * by) / np.sum(w * bx * bx)
    fixed = mr.ivw(*data, model="fixed")
    assert fixed.estimate == pytest.approx(est, rel=1e-10)
    assert fixed.se == pytest.approx(1 / np.sqrt(np.sum(w * bx * bx)), rel=1e-10)
    if bx.size > 1:
        q = np.sum(w * (by - est * bx) ** 2)
        assert fixed.q == pytest.approx(q, rel=1e-8, abs=1e-12)
        random = mr.ivw(*data, model="random")
        assert random.se == pytest.approx(fixed.se * max(1.0, np.sqrt(q / (bx.size - 1))), rel=1e-10)


@PROPERTY
@given(instruments(), st.randoms(use_true_random=False))
def test_estimates_do_not_depend_on_instrument_order(data, rnd):
    order = list(range(data[0].size))
    rnd.shuffle(order)
    shuffled = tuple(a[order] for a in data)
    theta = data[2] / data[0]
    assume(np.unique(theta).size == theta.size)
    for func, options in ((mr.ivw, {}), (mr.egger, {}), (mr.weighted_median, FAST)):
        a, b = func(*data, **options), func(*shuffled, **options)
        assert b.estimate == pytest.approx(a.estimate, rel=1e-9, abs=1e-12)
    for func in (mr.ivw, mr.egger):
        assert func(*shuffled).se == pytest.approx(func(*data).se, rel=1e-9)


@PROPERTY
@given(instruments(), st.sampled_from([2.0, 0.5, -4.0, -0.25]), st.floats(0.1, 10.0))
def test_estimates_scale_with_the_outcome(data, power_of_two, c):
    bx, bxse, by, byse = data
    assume(np.unique(by / bx).size == bx.size)  # MBE needs mad > 0
    for factor in (power_of_two, c):
        scaled = (bx, bxse, by * factor, byse * abs(factor))
        for func in (mr.ivw, mr.egger):
            a, b = func(*data), func(*scaled)
            assert b.estimate == pytest.approx(a.estimate * factor, rel=1e-9, abs=1e-12)
            assert b.se == pytest.approx(a.se * abs(factor), rel=1e-9)
        a, b = mr.weighted_median(*data, **FAST), mr.weighted_median(*scaled, **FAST)
        assert b.estimate == pytest.approx(a.estimate * factor, rel=1e-9, abs=1e-12)
        if factor > 0:  # the same draws then give scaled replicates
            assert b.se == pytest.approx(a.se * factor, rel=1e-9)
    # Powers of two scale every floating-point step exactly, the density grid included.
    if power_of_two > 0:
        scaled = (bx, bxse, by * power_of_two, byse * power_of_two)
        a, b = mr.mbe(*data, **FAST), mr.mbe(*scaled, **FAST)
        assert b.estimate == a.estimate * power_of_two
        assert b.se == a.se * power_of_two


@PROPERTY
@given(instruments(), st.data())
def test_egger_ignores_joint_sign_flips(data, draw):
    bx, bxse, by, byse = data
    flip = np.array(draw.draw(st.lists(st.booleans(), min_size=bx.size, max_size=bx.size)))
    sign = np.where(flip, -1.0, 1.0)
    flipped = (bx * sign, bxse, by * sign, byse)
    assert mr.egger(*flipped) == mr.egger(*data)
    assert mr.ivw(*flipped).estimate == pytest.approx(mr.ivw(*data).estimate, rel=1e-10, abs=1e-12)
    assert mr.weighted_median(*flipped, **FAST).estimate == mr.weighted_median(*data, **FAST).estimate


def test_stats_imports_neither_torch_nor_ray():
    import subprocess
    import sys

    code = (
        "import sys, dmr_ray.stats, dmr_ray.stats.mr, dmr_ray.stats.batched, dmr_ray.stats.density; "
        "assert not {'torch', 'ray'} & set(sys.modules), sorted({'torch', 'ray'} & set(sys.modules))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
