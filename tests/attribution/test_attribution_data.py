"""The attribution study's split and z-score."""

from __future__ import annotations

import numpy as np
import pytest

from dmr_ray.attribution.data import fit_standardizer, train_test_split
from dmr_ray.errors import InputError
from dmr_ray.sim.lda import LDAConfig, simulate


def test_split_is_a_seeded_partition():
    a, b, c = (train_test_split(100, seed=s) for s in (43, 43, 44))
    assert a.test.size == 40 and a.train.size == 60
    np.testing.assert_array_equal(np.sort(np.concatenate([a.train, a.test])), np.arange(100))
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)
    with pytest.raises(InputError, match="empty"):
        train_test_split(3, test_fraction=0.1, seed=0)


def test_zscore_uses_training_statistics_and_survives_constant_genes():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, size=(50, 4))
    train[:, 2] = 0.0  # a never-expressed gene
    test = rng.normal(7.0, 2.0, size=(30, 4))
    z = fit_standardizer(train)
    with np.errstate(all="raise"):  # no 0/0 anywhere
        z_train, z_test = z.transform(train), z.transform(test)
    assert z_train.dtype == np.float32 and np.isfinite(z_test).all()
    np.testing.assert_allclose(z_train[:, [0, 1, 3]].mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z_train[:, [0, 1, 3]].std(axis=0), 1.0, rtol=1e-5)
    assert (z_train[:, 2] == 0).all()
    assert z_test[:, 0].mean() > 0.5  # shifted test data stays shifted: no test statistics used
    dropped = fit_standardizer(train, drop_constant=True)
    assert dropped.n_features == 3
    np.testing.assert_array_equal(dropped.transform(test), z_test[:, [0, 1, 3]])
    with pytest.raises(InputError, match="shape"):
        z.transform(test[:, :3])


def test_never_expressed_simu2_genes_are_guarded():
    overlap = LDAConfig("overlap", 40, 600, 120, 4, 5, overlapping=True)
    x = simulate(overlap, seed=0).x
    never = (x == 0).all(axis=0)
    assert never.any()  # ≈ e^-2 of the genes join no pathway
    with np.errstate(all="raise"):
        z = fit_standardizer(x[:30])
        assert np.isfinite(z.transform(x[30:])).all()
    assert fit_standardizer(x[:30], drop_constant=True).n_features <= (~never).sum()
