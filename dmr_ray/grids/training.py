"""Training of the GRIDS surrogate: paired (supervised, the default) or the original's unpaired
adversarial alignment (:mod:`dmr_ray.grids.unpaired`, grids.md §2), and the helpers both share.

Paired training fits all parts jointly on matching cells with one Adam loop on log1p-normalised
RNA y:

    loss = MSE(dec_rna(enc_rna(y)), y)                  RNA autoencoder
         + MSE(dec_rna(atac2rna(enc_atac(x))), y)        ATAC → RNA prediction
         + latent_weight · MSE(atac2rna(enc_atac(x)), enc_rna(y))   latent alignment
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
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
    """Surrogate training settings.

    Attributes
    ----------
    steps, batch_size
        Adam steps (of the translators' phase when unpaired) and cells per minibatch (drawn with
        a seeded shuffle, epoch by epoch).
    learning_rate, grad_clip
        Adam step size (of every phase when unpaired) and gradient-norm clip (1.0, as the original).
    latent_weight
        Weight of the latent alignment term (paired).
    start_at_mean
        Set the RNA decoder's output bias to the training cells' mean expression first, so the
        decoder starts at the mean rather than at 0 (turn off to continue training a model).
    threads
        torch CPU threads while training (minibatches of ~100 cells gain nothing from more).
    seed
        Seeds the minibatch order and the sampled negatives (the initial weights are seeded
        when the model is built).
    pairing
        ``paired``: supervised on matching cells. ``unpaired``: the original's three phases
        (ATAC autoencoder, RNA autoencoder, then translators aligned by cycle losses and
        cell-type-conditional discriminators on independently shuffled ATAC and RNA cells).
    pretrain_steps
        Steps of each autoencoder phase when unpaired (default: ``steps``).
    discriminator_every
        Unpaired: the discriminators take one step every this many translator steps (5).
    discriminator_learning_rate
        Unpaired: the discriminators' Adam step size (1e-4).
    cycle_weight, rna_divisor, adversarial_weight, discriminator_weight
        Unpaired loss weights λ1 = 1, λ2 = 5, λ3 = 0.5 and λ4 = 0.5 of grids.md §2.
    focal_gamma
        Unpaired: the exponent γ of the focal loss on ATAC peaks (2).
    """

    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 1e-3
    grad_clip: float = 1.0
    latent_weight: float = 1.0
    start_at_mean: bool = True
    threads: int = 1
    seed: int = 0
    pairing: Literal["paired", "unpaired"] = "paired"
    pretrain_steps: int | None = None
    discriminator_every: int = 5
    discriminator_learning_rate: float = 1e-4
    cycle_weight: float = 1.0
    rna_divisor: float = 5.0
    adversarial_weight: float = 0.5
    discriminator_weight: float = 0.5
    focal_gamma: float = 2.0

    def __post_init__(self) -> None:
        counts = {name: getattr(self, name) for name in ("steps", "batch_size", "threads", "discriminator_every")}
        if self.pretrain_steps is not None:
            counts["pretrain_steps"] = self.pretrain_steps
        for name, value in counts.items():
            if not is_int(value) or value < 1:
                raise InputError(f"training {name} must be an integer >= 1, got {value!r}")
        if not (self.learning_rate > 0 and self.grad_clip > 0 and self.latent_weight >= 0):
            raise InputError("training learning_rate and grad_clip must be > 0 and latent_weight >= 0")
        if self.pairing not in ("paired", "unpaired"):
            raise InputError(f"training pairing must be 'paired' or 'unpaired', got {self.pairing!r}")
        weights = ("cycle_weight", "adversarial_weight", "discriminator_weight", "focal_gamma")
        if not (self.discriminator_learning_rate > 0 and self.rna_divisor > 0):
            raise InputError("training discriminator_learning_rate and rna_divisor must be > 0")
        if not all(getattr(self, name) >= 0 for name in weights):
            raise InputError(f"training {', '.join(weights)} must be >= 0")


@dataclass(frozen=True)
class TrainingHistory:
    """``float64 [steps]`` total, prediction and reconstruction losses per step."""

    loss: np.ndarray
    prediction: np.ndarray
    reconstruction: np.ndarray


def minibatches(n_cells: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless sorted row indices of ``min(batch_size, n_cells)`` cells, a fresh shuffle each epoch."""
    batch = min(batch_size, n_cells)
    while True:
        order = rng.permutation(n_cells)
        for start in range(0, n_cells - batch + 1, batch):
            yield np.sort(order[start : start + batch])


def dense_rows(atac: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    """``float32 [len(rows), n_peaks]``: the rows of a sparse matrix, densified once in float32 (no copy to torch)."""
    return torch.from_numpy(atac[rows].astype(np.float32).toarray())


def adam(parameters: Iterable[nn.Parameter], learning_rate: float) -> torch.optim.Adam:
    """Adam with the original's betas (0.9, 0.99), in torch's fused CPU kernel."""
    return torch.optim.Adam(list(parameters), lr=learning_rate, betas=(0.9, 0.99), fused=True)


def descend(optimiser: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """One step of ``optimiser`` on ``loss``, the gradient of its parameters clipped to norm ``grad_clip``."""
    optimiser.zero_grad()
    loss.backward()
    parameters = [p for group in optimiser.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(parameters, grad_clip, foreach=True)
    optimiser.step()


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads, restoring the previous number after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_training_data(model: Surrogate, atac: sp.csr_matrix, rna: np.ndarray) -> None:
    """:class:`InputError` unless ``atac`` and ``rna`` hold the same >= 2 cells and fit ``model``."""
    n_cells = atac.shape[0]
    if rna.shape != (n_cells, model.config.n_genes) or atac.shape[1] != model.config.n_peaks or n_cells < 2:
        raise InputError(
            f"training data atac {atac.shape} and rna {rna.shape} do not fit a surrogate of "
            f"{model.config.n_peaks} peaks and {model.config.n_genes} genes (need >= 2 cells)"
        )


def start_decoder_at_mean(model: Surrogate, rna: np.ndarray) -> None:
    """Set the RNA decoder's output bias to the cells' mean expression."""
    with torch.no_grad():
        model.rna_output.bias.copy_(torch.as_tensor(rna.mean(axis=0)))


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
    check_training_data(model, atac, rna)
    with torch_threads(options.threads):
        return _adam(model, atac, rna, options)


def _adam(model: Surrogate, atac: sp.csr_matrix, rna: np.ndarray, options: TrainingOptions) -> TrainingHistory:
    batches = minibatches(atac.shape[0], options.batch_size, np.random.default_rng(options.seed))
    optimiser = adam(model.parameters(), options.learning_rate)
    history = np.zeros((3, options.steps))
    if options.start_at_mean:
        start_decoder_at_mean(model, rna)
    model.train()
    for step in range(options.steps):
        rows = next(batches)
        x = dense_rows(atac, rows)
        y = torch.as_tensor(rna[rows])
        z_rna = model.rna_encoder(y)
        z_translated = model.atac_to_rna(model.atac_encoder(x))
        reconstruction = mse_loss(model.rna_decoder(z_rna), y)
        prediction = mse_loss(model.rna_decoder(z_translated), y)
        loss = reconstruction + prediction + options.latent_weight * mse_loss(z_translated, z_rna.detach())
        descend(optimiser, loss, options.grad_clip)
        history[:, step] = loss.item(), prediction.item(), reconstruction.item()
    model.eval()
    return TrainingHistory(loss=history[0], prediction=history[1], reconstruction=history[2])
