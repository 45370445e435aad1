"""The surrogate on a small synthetic multiome with a planted peak → gene dependence."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dmr_ray.attribution.data import train_test_split
from dmr_ray.errors import InputError
from dmr_ray.grids.accuracy import heldout_accuracy
from dmr_ray.grids.perturb import perturb
from dmr_ray.grids.surrogate import (
    Surrogate,
    SurrogateConfig,
    chromosome_blocks,
    load_surrogate,
    names_digest,
    predict,
    save_surrogate,
)
from dmr_ray.grids.training import TrainingOptions, log_normalise, train_paired
from dmr_ray.grids.unpaired import UnpairedHistory

N_CELLS, N_PEAKS, N_GENES = 600, 48, 20
TARGET = 0
ENHANCERS = np.array([5, 17, 30])  # planted: the target's rate grows with each open enhancer


def _synthetic(seed: int):
    """Accessibility, counts and cell types with gene 0 driven by the ENHANCERS peaks and gene 1 by peak 40."""
    rng = np.random.default_rng(seed)
    cell_types = np.where(np.arange(N_CELLS) % 2 == 0, "A", "B")
    open_p = np.where(cell_types[:, None] == "A", 0.35, 0.55)
    atac = (rng.random((N_CELLS, N_PEAKS)) < open_p).astype(np.uint8)
    rate = np.full((N_CELLS, N_GENES), 8.0)
    rate[:, TARGET] = 4.0 + 30.0 * atac[:, ENHANCERS].sum(axis=1)
    rate[:, 1] = 4.0 + 40.0 * atac[:, 40]
    counts = rng.poisson(rate).astype(np.float32)
    return sp.csr_matrix(atac), sp.csr_matrix(counts), cell_types


def _config(chromosomes, **kw) -> SurrogateConfig:
    small = dict(embed_dim=4, block_dim=8, latent_dim=8, rna_hidden=(32, 16), n_experts=3, gate_hidden=16)
    names = [f"p{j}" for j in range(N_PEAKS)], [f"g{i}" for i in range(N_GENES)]
    return SurrogateConfig(N_PEAKS, N_GENES, chromosomes, names_digest(names[0]), names_digest(names[1]), **small, **kw)


@pytest.fixture(scope="module")
def trained():
    atac, counts, cell_types = _synthetic(seed=3)
    chroms = np.array(["chr1"] * 16 + ["chr2"] * 16 + ["chrX"] * 16)
    chromosomes, block = chromosome_blocks(chroms)
    model = Surrogate(_config(chromosomes, translator_layers=2), block, seed=1)
    rna = log_normalise(counts, model.config.normalise_to)
    split = train_test_split(N_CELLS, test_fraction=0.25, seed=2)
    history = train_paired(
        model, atac[split.train], rna[split.train], TrainingOptions(steps=400, learning_rate=3e-3, seed=4)
    )
    return model, atac[split.test], rna[split.test], cell_types[split.test], history


def test_training_reduces_the_loss_and_predicts_held_out_cells(trained):
    model, atac, rna, cell_types, history = trained
    assert history.loss[-50:].mean() < 0.5 * history.loss[:10].mean()
    accuracy = heldout_accuracy(predict(model, atac), rna, cell_types)
    assert accuracy.gene_correlation[TARGET] > 0.7 and accuracy.gene_correlation[1] > 0.7
    assert accuracy.cell_types.tolist() == ["A", "B"]
    # the planted genes are the only ones that differ by cell type; their means are recovered
    target_gap = np.diff(accuracy.predicted_means[:, TARGET])[0], np.diff(accuracy.observed_means[:, TARGET])[0]
    assert target_gap[1] > 0.2 and abs(target_gap[0] - target_gap[1]) < 0.5 * target_gap[1]


def test_removing_planted_enhancers_lowers_the_target_and_unrelated_peaks_do_not(trained):
    model, atac, *_ = trained
    x = torch.as_tensor(atac.toarray(), dtype=torch.float32)
    with torch.no_grad():
        base = model(x)[:, TARGET].mean().item()
        removed = model(perturb(x, ENHANCERS, 0.0))[:, TARGET].mean().item()
        unrelated = np.setdiff1d(np.arange(N_PEAKS), np.r_[ENHANCERS, 40])
        controls = [
            model(perturb(x, np.random.default_rng(s).choice(unrelated, 3, replace=False), 0.0))[:, TARGET]
            .mean()
            .item()
            for s in range(5)
        ]
    drop = base - removed
    assert drop > 1.0  # log1p units: the planted rate falls from ≈ 1 + 25·1.4 to 1
    assert max(abs(base - c) for c in controls) < 0.2 * drop
    # sparse and dense operators agree through the surrogate
    np.testing.assert_allclose(predict(model, perturb(atac, ENHANCERS, 0.0))[:, TARGET].mean(), removed, rtol=1e-5)


def test_save_and_load_round_trip(trained, tmp_path):
    model, atac, *_ = trained
    save_surrogate(model, tmp_path / "s")
    assert json.loads((tmp_path / "s" / "surrogate.json").read_text())["n_peaks"] == N_PEAKS
    loaded = load_surrogate(tmp_path / "s")
    assert loaded.config == model.config
    np.testing.assert_array_equal(predict(loaded, atac), predict(model, atac))


def test_load_refuses_missing_or_mismatched_files(trained, tmp_path):
    model, *_ = trained
    with pytest.raises(InputError, match="not a saved GRIDS surrogate"):
        load_surrogate(tmp_path)
    save_surrogate(model, tmp_path / "s")
    raw = json.loads((tmp_path / "s" / "surrogate.json").read_text())
    (tmp_path / "s" / "surrogate.json").write_text(json.dumps({**raw, "latent_dim": 9}))
    with pytest.raises(InputError, match="do not match"):
        load_surrogate(tmp_path / "s")
    (tmp_path / "s" / "surrogate.json").write_text(json.dumps({**raw, "n_genes": 0}))
    with pytest.raises(InputError, match="n_genes must be an integer >= 1"):
        load_surrogate(tmp_path / "s")


def test_chromosome_sums_are_the_embedding_lookup(trained):
    model, atac, *_ = trained
    encoder = model.atac_encoder
    x = atac[:7].toarray()
    looked_up = encoder.embedding[np.arange(N_PEAKS)[None, :], torch.as_tensor(x, dtype=torch.int64)]  # [7, d, E]
    expected = torch.stack([looked_up[:, encoder.peak_block == c].sum(dim=1) for c in range(encoder.n_blocks)], dim=1)
    got = encoder.chromosome_sums(torch.as_tensor(x, dtype=torch.float32))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_fit_from_a_multiome_file_ties_the_model_to_its_peaks_and_genes(tmp_path):
    import anndata as ad
    import mudata as md
    import pandas as pd

    from dmr_ray.grids.data import read_multiome
    from dmr_ray.grids.fit import check_matches, fit_surrogate

    atac, counts, cell_types = _synthetic(seed=5)
    cells = [f"cell{i}" for i in range(N_CELLS)]
    peaks = [f"chr{1 + j // 16}:{1000 * j}-{1000 * j + 500}" for j in range(N_PEAKS)]
    genes = pd.DataFrame({"interval": [f"chr1:{10_000 * i}-{10_000 * i + 900}" for i in range(N_GENES)]})
    genes.index = [f"g{i}" for i in range(N_GENES)]
    rna = ad.AnnData(counts, obs=pd.DataFrame({"cell_type": cell_types}, index=cells), var=genes)
    accessibility = ad.AnnData(atac, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=peaks))
    md.MuData({"rna": rna, "atac": accessibility}).write(tmp_path / "m.h5mu")
    data = read_multiome(tmp_path / "m.h5mu", target_gene="g0")
    small = dict(embed_dim=4, block_dim=8, latent_dim=8, rna_hidden=(32, 16), n_experts=3, gate_hidden=16)
    fitted = fit_surrogate(data, TrainingOptions(steps=30, seed=0), heldout_fraction=0.25, **small)
    assert fitted.model.config.chromosomes == ("chr1", "chr2", "chr3")
    assert len(fitted.split.test) == N_CELLS // 4 and not set(fitted.split.test) & set(fitted.split.train)
    assert fitted.accuracy.gene_correlation.shape == (N_GENES,)
    assert fitted.accuracy.predicted_means.shape == (2, N_GENES)
    check_matches(fitted.model, data)
    with pytest.raises(InputError, match="other peaks"):
        check_matches(fitted.model, dataclasses.replace(data, peak_names=data.peak_names[::-1]))
    with pytest.raises(InputError, match="surrogate architecture"):
        fit_surrogate(data, TrainingOptions(steps=1), hidden=3)
    unpaired = fit_surrogate(data, TrainingOptions(steps=3, pretrain_steps=2, pairing="unpaired"), **small)
    assert isinstance(unpaired.history, UnpairedHistory) and unpaired.history.loss.shape == (3,)
    assert unpaired.history.atac_autoencoder.shape == (2,) and np.isfinite(unpaired.history.loss).all()


def _per_block_sums(encoder, x: torch.Tensor) -> torch.Tensor:
    """The first implementation's chromosome sums: one gather of each block's peaks per block."""
    closed, delta = encoder.embedding[:, 0], encoder.embedding[:, 1] - encoder.embedding[:, 0]
    sums = []
    for c in range(encoder.n_blocks):
        members = torch.nonzero(encoder.peak_block == c).ravel()
        sums.append(closed[members].sum(dim=0) + x[:, members] @ delta[members])
    return torch.stack(sums, dim=1)


@pytest.mark.parametrize(
    ("chroms", "gathered"),
    [
        (["chr1"] * 20 + ["chr2"] * 20 + ["chrX"] * 8, False),  # sorted: runs are the blocks, no copy of x
        (["chr2"] * 10 + ["chr1"] * 12 + ["chr2"] * 10 + ["chrX"] * 16, False),  # block 1 in two runs
        ([f"chr{1 + j % 3}" for j in range(N_PEAKS)], True),  # interleaved: gathered into block order first
    ],
)
def test_run_wise_forward_equals_the_per_block_reference(chroms, gathered):
    chromosomes, block = chromosome_blocks(np.array(chroms))
    model = Surrogate(_config(chromosomes), block, seed=7).train()
    encoder = model.atac_encoder
    assert (encoder.order is not None) == gathered and len(encoder.run_sizes) == (4 if chroms[0] == "chr2" else 3)
    x = torch.tensor(np.random.default_rng(8).random((9, N_PEAKS)), dtype=torch.float32, requires_grad=True)
    got = encoder.chromosome_sums(x)
    expected = _per_block_sums(encoder, x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(got)
    grads = [torch.autograd.grad((h * weights).sum(), (x, encoder.embedding)) for h in (got, expected)]
    for g, e in zip(*grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the whole surrogate on a fixed seed, eval mode
        model.eval()
        reference = model.rna_decoder(model.atac_to_rna(encoder.blocks(_per_block_sums(encoder, x)))).clamp(min=0)
        torch.testing.assert_close(model(x), reference, rtol=1e-5, atol=1e-5)
