"""log1p normalisation and training-option checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dmr_ray.errors import InputError
from dmr_ray.grids.training import TrainingOptions, log_normalise


def test_log_normalise_rescales_each_cell_to_the_same_total():
    counts = sp.csr_matrix(np.array([[1, 3, 0], [10, 30, 0], [0, 0, 0]], dtype=np.float32))
    y = log_normalise(counts, 1e4)
    np.testing.assert_allclose(np.expm1(y[:2]).sum(axis=1), 1e4, rtol=1e-5)
    np.testing.assert_allclose(y[0], y[1], rtol=1e-6)  # same proportions, same profile
    assert (y[2] == 0).all() and y.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs", [{"steps": 0}, {"batch_size": 2.5}, {"threads": 0}, {"learning_rate": 0.0}, {"latent_weight": -1.0}]
)
def test_bad_training_options(kwargs):
    with pytest.raises(InputError, match="training"):
        TrainingOptions(**kwargs)
