"""Unpaired adversarial training of the surrogate (grids.md §2, phases 1–3) on tiny planted data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from dmr_ray.errors import InputError
from dmr_ray.grids.accuracy import heldout_accuracy
from dmr_ray.grids.layers import ConditionalDiscriminator
from dmr_ray.grids.surrogate import (
    Surrogate,
    SurrogateConfig,
    chromosome_blocks,
    load_surrogate,
    predict,
    save_surrogate,
)
from dmr_ray.grids.training import TrainingOptions, log_normalise, torch_threads
from dmr_ray.grids.unpaired import (
    UnpairedModules,
    balanced_entries,
    focal_bce,
    train_atac_autoencoder,
    train_rna_autoencoder,
    train_translators,
    train_unpaired,
)

N_CELLS, N_PEAKS, N_GENES, N_TYPES = 300, 48, 18, 3
SMALL = dict(embed_dim=4, block_dim=8, latent_dim=8, rna_hidden=(32, 16), n_experts=3, gate_hidden=16)


def _planted(seed: int):
    """Three cell types, each opening its own 8 peaks (one chromosome each) and expressing its own 4 genes."""
    rng = np.random.default_rng(seed)
    types = np.arange(N_CELLS) % N_TYPES
    open_p = np.full((N_CELLS, N_PEAKS), 0.2)
    rate = np.full((N_CELLS, N_GENES), 3.0)
    for t in range(N_TYPES):
        open_p[types == t, 16 * t : 16 * t + 8] = 0.8
        rate[types == t, 6 * t : 6 * t + 4] = 30.0
    atac = sp.csr_matrix((rng.random((N_CELLS, N_PEAKS)) < open_p).astype(np.uint8))
    rna = log_normalise(sp.csr_matrix(rng.poisson(rate).astype(np.float32)), 1e4)
    chromosomes, block = chromosome_blocks(np.array([f"chr{1 + j // 16}" for j in range(N_PEAKS)]))
    model = Surrogate(SurrogateConfig(N_PEAKS, N_GENES, chromosomes, "", "", **SMALL), block, seed=seed)
    return model, atac, rna, types


def test_balanced_entries_keep_every_positive_and_a_fair_sample_of_negatives():
    rng = np.random.default_rng(0)
    n_entries = 200
    positive = np.sort(rng.choice(n_entries, 30, replace=False))
    negatives = np.setdiff1d(np.arange(n_entries), positive)
    counts, hits = [], np.zeros(n_entries)
    for _ in range(400):
        kept, n_positive = balanced_entries(positive, n_entries, rng)
        assert n_positive == 30 and kept[:30].tolist() == positive.tolist()
        sampled = kept[30:]
        assert len(np.unique(sampled)) == len(sampled) and np.isin(sampled, negatives).all()
        counts.append(len(sampled))
        hits[sampled] += 1
    # Bernoulli(30/170) per negative: 30 expected per draw, every negative about equally often
    assert abs(np.mean(counts) - 30) < 1.0
    rate = hits[negatives] / 400
    assert abs(rate.mean() - 30 / 170) < 0.01 and rate.min() > 0.08 and rate.max() < 0.3
    assert hits[positive].sum() == 0


def test_focal_bce_is_bce_at_gamma_zero_and_down_weights_easy_entries():
    logits = torch.tensor([4.0, -0.5, -4.0, 0.3, 2.0])
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
    plain = binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(focal_bce(logits, 2, gamma=0.0), plain)
    bce = binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.sigmoid(torch.where(target > 0, logits, -logits))
    torch.testing.assert_close(focal_bce(logits, 2, gamma=2.0), ((1 - p_true) ** 2 * bce).mean())


def test_discriminator_scores_each_cell_by_its_own_type():
    torch.manual_seed(0)
    discriminator = ConditionalDiscriminator(6, n_types=4).eval()
    z = torch.randn(5, 6)
    labels = torch.tensor([0, 3, 3, 1, 2])
    out = discriminator(z, labels)
    torch.testing.assert_close(out, discriminator.net(z)[torch.arange(5), labels])
    assert not torch.allclose(out, discriminator(z, torch.tensor([1, 0, 2, 3, 0])))
    out.sum().backward()  # only the output rows of the types present receive a gradient
    last = discriminator.net[-1]
    assert last.weight.grad is not None
    assert last.weight.grad.abs().sum(dim=1).nonzero().ravel().tolist() == [0, 1, 2, 3]
    discriminator.zero_grad()
    discriminator(z[:2], labels[:2]).sum().backward()
    assert last.weight.grad.abs().sum(dim=1).nonzero().ravel().tolist() == [0, 3]


def test_unpaired_training_runs_with_finite_losses_and_saves_only_the_forward_path(tmp_path):
    model, atac, rna, types = _planted(seed=1)
    options = TrainingOptions(steps=12, pretrain_steps=4, batch_size=32, pairing="unpaired", seed=0)
    history = train_unpaired(model, atac, rna, np.array(["A", "B", "C"])[types], options)
    for losses in (history.atac_autoencoder, history.rna_autoencoder):
        assert losses.shape == (4,) and np.isfinite(losses).all()
    for losses in (history.loss, history.reconstruction, history.adversarial):
        assert losses.shape == (12,) and np.isfinite(losses).all()
    assert np.flatnonzero(np.isfinite(history.discriminator)).tolist() == [0, 5, 10]  # every 5th step
    assert not model.training and all(p.requires_grad for p in model.parameters())
    save_surrogate(model, tmp_path / "s")
    loaded = load_surrogate(tmp_path / "s")
    assert set(loaded.state_dict()) == set(model.state_dict())
    np.testing.assert_array_equal(predict(loaded, atac[:20]), predict(model, atac[:20]))
    with pytest.raises(InputError, match="one cell type per cell"):
        train_unpaired(model, atac, rna, types[:10].astype(str), options)


def test_trained_translators_predict_held_out_cells_better_than_untrained_ones():
    model, atac, rna, types = _planted(seed=0)
    labels = torch.as_tensor(types)
    train, test = np.arange(N_CELLS) < 225, np.arange(N_CELLS) >= 225
    options = TrainingOptions(
        steps=250,
        pretrain_steps=150,
        batch_size=64,
        learning_rate=3e-3,
        pairing="unpaired",
        discriminator_every=1,
        discriminator_learning_rate=3e-3,
    )
    rng = np.random.default_rng(0)
    extra = UnpairedModules(model, N_TYPES, seed=0)
    rows = np.flatnonzero(train)  # the ATAC side sees the cells in another order than the RNA side
    shuffled = np.random.default_rng(1).permutation(rows)
    with torch_threads(1):
        model.train()
        extra.train()
        train_atac_autoencoder(model, extra.atac_decoder, atac[train], options, rng)
        train_rna_autoencoder(model, rna[train], options, rng)
        untrained = heldout_accuracy(predict(model, atac[test]), rna[test], types[test].astype(str))
        model.train()
        history = train_translators(
            model, extra, (atac[shuffled], labels[shuffled]), (rna[rows], labels[rows]), options, rng
        )
    trained = heldout_accuracy(predict(model, atac[test]), rna[test], types[test].astype(str))
    assert np.isfinite(np.c_[history]).all()
    assert trained.mean_gene_correlation > untrained.mean_gene_correlation + 0.1
    assert trained.cell_type_mean_correlation > 0.6 > untrained.cell_type_mean_correlation
