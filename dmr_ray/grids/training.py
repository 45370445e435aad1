"""Paired training of the GRIDS surrogate (the default; grids.md §2 describes the original's
unpaired adversarial phase 3, not built here).

On matching cells, one Adam loop fits all parts jointly on log1p-normalised RNA y:

    loss = MSE(dec_rna(enc_rna(y)), y)                  RNA autoencoder
         + MSE(dec_rna(atac2rna(enc_atac(x))), y)        ATAC → RNA prediction
         + latent_weight · MSE(atac2rna(enc_atac(x)), enc_rna(y))   latent alignment
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn.functional import mse_loss

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.grids.surrogate import Surrogate


def log_normalise(counts: sp.csr_matrix, normalise_to: float) -> np.ndarray:
    """``float32 [n_cells, n_genes]`` = log1p(count / cell total · normalise_to); empty cells stay 0."""
    totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(normalise_to, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(counts.toarray() * scale[:, None]).astype(np.float32)


@dataclass(frozen=True)
class TrainingOptions:
    """Paired training settings.

    Attributes
    ----------
    steps, batch_size
        Adam steps and cells per minibatch (drawn with a seeded shuffle, epoch by epoch).
    learning_rate, grad_clip
        Adam step size and gradient-norm clip (1.0, as the original).
    latent_weight
        Weight of the latent alignment term.
    start_at_mean
        Set the RNA decoder's output bias to the training cells' mean expression first, so the
        decoder starts at the mean rather than at 0 (turn off to continue training a model).
    threads
        torch CPU threads while training (minibatches of ~100 cells gain nothing from more).
    seed
        Seeds the minibatch order (the initial weights are seeded when the model is built).
    """

    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 1e-3
    grad_clip: float = 1.0
    latent_weight: float = 1.0
    start_at_mean: bool = True
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise InputError(f"training {name} must be an integer >= 1, got {value!r}")
        if not (self.learning_rate > 0 and self.grad_clip > 0 and self.latent_weight >= 0):
            raise InputError("training learning_rate and grad_clip must be > 0 and latent_weight >= 0")


@dataclass(frozen=True)
class TrainingHistory:
    """``float64 [steps]`` total, prediction and reconstruction losses per step."""

    loss: np.ndarray
    prediction: np.ndarray
    reconstruction: np.ndarray


def train_paired(model: Surrogate, atac: sp.csr_matrix, rna: np.ndarray, options: TrainingOptions) -> TrainingHistory:
    """Fit ``model`` in place on paired cells.

    Parameters
    ----------
    atac
        ``[n_cells, n_peaks]`` binary accessibility (CSR).
    rna
        ``float32 [n_cells, n_genes]`` log1p-normalised expression of the same cells.

    Raises
    ------
    InputError
        If the shapes disagree with each other or with the model, or there are fewer than 2 cells.
    """
    n_cells = atac.shape[0]
    if rna.shape != (n_cells, model.config.n_genes) or atac.shape[1] != model.config.n_peaks or n_cells < 2:
        raise InputError(
            f"training data atac {atac.shape} and rna {rna.shape} do not fit a surrogate of "
            f"{model.config.n_peaks} peaks and {model.config.n_genes} genes (need >= 2 cells)"
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        return _adam(model, atac, rna, options)
    finally:
        torch.set_num_threads(threads)


def _adam(model: Surrogate, atac: sp.csr_matrix, rna: np.ndarray, options: TrainingOptions) -> TrainingHistory:
    n_cells = atac.shape[0]
    rng = np.random.default_rng(options.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.learning_rate, betas=(0.9, 0.99))
    batch = min(options.batch_size, n_cells)
    order, cursor = rng.permutation(n_cells), 0
    history = np.zeros((3, options.steps))
    if options.start_at_mean:
        with torch.no_grad():
            model.rna_output.bias.copy_(torch.as_tensor(rna.mean(axis=0)))
    model.train()
    for step in range(options.steps):
        if cursor + batch > n_cells:
            order, cursor = rng.permutation(n_cells), 0
        rows = np.sort(order[cursor : cursor + batch])
        cursor += batch
        x = torch.as_tensor(atac[rows].toarray(), dtype=torch.float32)
        y = torch.as_tensor(rna[rows])
        z_rna = model.rna_encoder(y)
        z_translated = model.atac_to_rna(model.atac_encoder(x))
        reconstruction = mse_loss(model.rna_decoder(z_rna), y)
        prediction = mse_loss(model.rna_decoder(z_translated), y)
        loss = reconstruction + prediction + options.latent_weight * mse_loss(z_translated, z_rna.detach())
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        optimiser.step()
        history[:, step] = loss.item(), prediction.item(), reconstruction.item()
    model.eval()
    return TrainingHistory(loss=history[0], prediction=history[1], reconstruction=history[2])
