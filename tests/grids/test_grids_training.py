"""log1p normalisation and training-option checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dmr_ray.errors import InputError
from dmr_ray.grids.training import TrainingOptions, dense_rows, log_normalise, minibatches


def test_log_normalise_rescales_each_cell_to_the_same_total():
    counts = sp.csr_matrix(np.array([[1, 3, 0], [10, 30, 0], [0, 0, 0]], dtype=np.float32))
    y = log_normalise(counts, 1e4)
    np.testing.assert_allclose(np.expm1(y[:2]).sum(axis=1), 1e4, rtol=1e-5)
    np.testing.assert_allclose(y[0], y[1], rtol=1e-6)  # same proportions, same profile
    assert (y[2] == 0).all() and y.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"batch_size": 2.5},
        {"threads": 0},
        {"learning_rate": 0.0},
        {"latent_weight": -1.0},
        {"pairing": "both"},
        {"pretrain_steps": 0},
        {"discriminator_every": 0},
        {"discriminator_learning_rate": 0.0},
        {"rna_divisor": 0.0},
        {"adversarial_weight": -0.5},
    ],
)
def test_bad_training_options(kwargs):
    with pytest.raises(InputError, match="training"):
        TrainingOptions(**kwargs)


def test_minibatches_cover_every_cell_once_per_epoch_in_sorted_batches():
    batches = minibatches(10, 3, np.random.default_rng(0))
    epoch = [next(batches) for _ in range(3)]  # 3 full batches; the 10th cell waits for the next shuffle
    assert all(len(b) == 3 and (np.diff(b) > 0).all() for b in epoch)
    assert len(np.unique(np.concatenate(epoch))) == 9
    assert len(next(minibatches(2, 128, np.random.default_rng(0)))) == 2


def test_dense_rows_equals_toarray():
    m = sp.random(7, 50, density=0.2, format="csr", random_state=np.random.default_rng(1), dtype=np.float32)
    rows = np.array([5, 0, 5, 3])
    np.testing.assert_array_equal(dense_rows(m, rows).numpy(), m[rows].toarray())
