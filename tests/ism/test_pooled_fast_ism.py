"""PooledCNN (convolutions, mean and max over positions, dense layers): its pooling by hand,
and fast ISM against the exact path."""

from __future__ import annotations

import pytest
import torch
from test_fast import L, _tokens, assert_matches_exact, both

from dmr_ray.errors import InputError
from dmr_ray.models.architectures import MeanMaxPool, pooled_cnn
from dmr_ray.uncertainty import EnsemblePredictor


def test_mean_max_pool_by_hand() -> None:
    h = torch.tensor([[[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]]])
    assert torch.equal(MeanMaxPool()(h), torch.tensor([[2.0, 1.0, 3.0, 4.0]]))


def test_shape_and_a_too_short_input_is_refused() -> None:
    model = pooled_cnn(length=30, filters=4, kernel=5, hidden=8, n_tasks=3)
    assert model(torch.zeros(2, 4, 30)).shape == (2, 3)
    with pytest.raises(InputError, match="too short"):
        pooled_cnn(length=4, kernel=5)


def test_ensemble_matches_exact_ism() -> None:
    torch.manual_seed(0)
    predictor = EnsemblePredictor([pooled_cnn(length=L, filters=4, kernel=3, hidden=8).eval() for _ in range(2)])
    fast, exact = both(predictor, _tokens())
    assert_matches_exact(fast, exact)
