"""Fast ISM on SmallCNN with separate dense towers per task (``heads="separate"``) against
the exact path: ensembles, MC dropout, a folded linear tail, output selection, ``"auto"``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fast import L, _randomize_norms, _tokens, assert_matches_exact, both

from dmr_ray.ism import fast as ism_fast
from dmr_ray.ism import rules as ism_rules
from dmr_ray.models.architectures import small_cnn
from dmr_ray.models.heads import OutputSelector, OutputSpec
from dmr_ray.uncertainty import EnsemblePredictor, MCDropoutPredictor
from dmr_ray.uncertainty.predictors import as_predictor


def _towers(seed: int, **kwargs) -> torch.nn.Module:
    """test_fast's small_cnn (random batch-norm statistics) with one tower per task."""
    torch.manual_seed(seed)
    options = {"length": L, "filters": 4, "kernel": 3, "n_conv": 3, "n_dense": 2, "hidden": 8, "n_tasks": 2, **kwargs}
    return _randomize_norms(small_cnn(heads="separate", **options))


def _runner(predictor, tokens):
    with torch.inference_mode():
        path = ism_fast.fast_path(as_predictor(predictor), torch.from_numpy(tokens), True, None)
    return next(iter(path.runners.values()))


def test_ensemble_of_towers_matches_exact_with_one_boundary_per_tower():
    predictor = EnsemblePredictor([_towers(i, n_tasks=3) for i in range(2)])
    tokens = _tokens()
    fast, exact = both(predictor, tokens)
    assert_matches_exact(fast, exact)
    boundaries = [s.rule for s in _runner(predictor, tokens).plan.steps if isinstance(s.rule, ism_rules.FlattenLinear)]
    assert len(boundaries) == 3


def test_mc_dropout_in_towers_and_convolutions_keeps_the_shared_masks():
    predictor = MCDropoutPredictor(_towers(5, dropout=0.3, conv_dropout=0.3), passes=4, seed=3)
    fast, exact = both(predictor, _tokens(seed=1))
    assert_matches_exact(fast, exact)
    assert (fast.se[np.isfinite(fast.se)] > 0).mean() > 0.5


def test_linear_towers_are_folded_into_the_tail():
    """With ``n_dense=0`` every tower is flatten + linear: the concatenated tail is folded."""
    predictor = EnsemblePredictor([_towers(i, n_dense=0) for i in range(2)])
    tokens = _tokens(seed=2)
    assert _runner(predictor, tokens).tail is not None
    assert_matches_exact(*both(predictor, tokens))


def test_selected_and_pooled_tasks_of_towers():
    tasks = OutputSelector([OutputSpec(name="second", index=1), OutputSpec(name="pooled", index=[0, 2], reduce="mean")])
    predictor = EnsemblePredictor([_towers(i, n_tasks=3) for i in range(2)], tasks)
    fast, exact = both(predictor, _tokens(seed=3))
    assert fast.beta.shape[-1] == 2
    assert_matches_exact(fast, exact)


@pytest.mark.parametrize("heads", ["shared", "separate"])
def test_auto_takes_the_fast_path_for_the_simulation_model(heads):
    """The simulation's size (100 bp, 15 filters, two hidden layers of 30), with MC dropout."""
    torch.manual_seed(0)
    model = small_cnn(dropout=0.1, conv_dropout=0.1, heads=heads).eval()
    predictor = MCDropoutPredictor(model, passes=2, input_length=100)
    with torch.inference_mode():
        path = ism_fast.plan_fast_path(predictor, 100, "auto", None)
    assert path is not None and path.work_ratio < ism_fast.AUTO_MAX_WORK_RATIO
