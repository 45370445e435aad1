"""The model's own local effects on the truth's substitutions (experiments.model_truth)."""

from __future__ import annotations

import math

import numpy as np

from dmr_ray.experiments.model_truth import MotifSpans, model_local_effects, span_slope


def test_span_slope_is_the_least_squares_slope_through_the_origin() -> None:
    rng = np.random.default_rng(0)
    beta = rng.normal(size=(20, 3, 2))
    beta[5:9, :, 1] = 0.7 * beta[5:9, :, 0]  # exposure span: outcome = 0.7 x exposure
    beta[6, 1, 0] = np.nan  # a non-finite substitution is left out
    assert math.isclose(span_slope(beta, 5, 4, 0, 1), 0.7, rel_tol=1e-12)
    bx, by = beta[12:15, :, 1].ravel(), beta[12:15, :, 0].ravel()
    assert math.isclose(span_slope(beta, 12, 3, 1, 0), float(bx @ by / (bx @ bx)), rel_tol=1e-12)
    assert math.isnan(span_slope(beta, -1, 4, 0, 1))  # motif absent
    assert math.isnan(span_slope(np.zeros((20, 3, 2)), 0, 4, 0, 1))  # no exposure change


def test_model_local_effects_reads_each_sequence_at_its_own_spans() -> None:
    beta = np.zeros((2, 30, 3, 2))
    beta[0, 2:8, :, 0] = 1.0
    beta[0, 2:8, :, 1] = 0.5  # forward 0.5 in sequence a
    beta[0, 20:26, :, 1] = 2.0  # reverse 0: the outcome motif moves only the outcome
    beta[1, 10:16, :, 0] = -1.0
    beta[1, 10:16, :, 1] = -3.0  # forward 3 in sequence b, which has no outcome motif
    spans = {"a": MotifSpans(2, 6, 20, 6), "b": MotifSpans(10, 6, -1, 6)}
    learned = model_local_effects(beta, np.array(["a", "b"]), spans)
    assert learned["a"] == (0.5, 0.0)
    assert learned["b"][0] == 3.0 and math.isnan(learned["b"][1])
    assert model_local_effects(beta, np.array(["a", "b"]), {"a": spans["a"]}).keys() == {"a"}
