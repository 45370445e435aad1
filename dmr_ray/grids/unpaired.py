"""Unpaired adversarial training of the GRIDS surrogate: the original's three phases (grids.md §2).

1. ATAC autoencoder: the surrogate's chromosome encoder and a :class:`ChromosomeDecoder` of
   peak logits, focal BCE on balanced entries (every open peak and a Bernoulli(#open/#closed)
   sample of closed ones).
2. RNA autoencoder: the surrogate's RNA encoder and decoder, masked MSE with the same
   balancing (expressed: above 1e-4).
3. Translators: ``atac2rna`` (the surrogate's) and a training-only ``rna2atac``, aligned on
   ATAC and RNA minibatches shuffled independently (the pairing is never used) by cycle losses
   and cell-type-conditional discriminators; only the translators are stepped, the
   discriminators every ``discriminator_every`` steps. The autoencoders stay in train mode, so
   their BatchNorm statistics keep updating, as in the original.

With z_a = enc_atac(x_a), z_r = enc_rna(y_r), a2r = atac2rna(z_a), r2a = rna2atac(z_r),
cyc_a = rna2atac(a2r), cyc_r = atac2rna(r2a) and λ1…λ4 the option's weights:

    recon = λ1·(|z_r − cyc_r|/λ2 + |z_a − cyc_a|) + maskedMSE(dec_rna(cyc_r), y_r)/λ2
            + focalBCE(dec_atac(cyc_a), x_a)
    gen   = BCE(D_r(a2r|t_a), 1) + BCE(D_a(cyc_a|t_a), 1) + BCE(D_a(r2a|t_r), 1) + BCE(D_r(cyc_r|t_r), 1)
    G     = recon + λ3·gen
    D     = λ4·[BCE(D_r(z_r|t_r), 1) + BCE(D_r(a2r|t_a), 0) + BCE(D_a(z_a|t_a), 1) + BCE(D_a(r2a|t_r), 0)]

(|·| the mean absolute difference, BCE with logits, t the cells' type indices). The decoder,
``rna2atac`` and the discriminators are not part of the saved surrogate, whose forward path
(enc_atac → atac2rna → dec_rna) is all a search needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, l1_loss

from dmr_ray.errors import InputError
from dmr_ray.grids.layers import AffineMixture, ChromosomeDecoder, ConditionalDiscriminator
from dmr_ray.grids.surrogate import Surrogate
from dmr_ray.grids.training import (
    TrainingOptions,
    adam,
    dense_rows,
    descend,
    minibatches,
    start_decoder_at_mean,
    torch_threads,
)

EXPRESSED = 1e-4
"""Log-normalised expression above which an RNA entry counts as positive in the masked MSE."""


@dataclass(frozen=True)
class UnpairedHistory:
    """Losses per step of the three phases.

    Attributes
    ----------
    atac_autoencoder, rna_autoencoder
        ``float64 [pretrain_steps]`` focal BCE and masked MSE of phases 1 and 2.
    loss
        ``float64 [steps]`` the translators' loss G of phase 3.
    reconstruction, adversarial
        ``float64 [steps]`` its parts recon and gen.
    discriminator
        ``float64 [steps]`` the discriminators' loss D, NaN on steps without a discriminator step.
    """

    atac_autoencoder: np.ndarray
    rna_autoencoder: np.ndarray
    loss: np.ndarray
    reconstruction: np.ndarray
    adversarial: np.ndarray
    discriminator: np.ndarray


class UnpairedModules(nn.Module):
    """The training-only modules: ATAC decoder, ``rna2atac`` and the two discriminators."""

    def __init__(self, model: Surrogate, n_types: int, *, seed: int = 0):
        super().__init__()
        c = model.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            block = model.atac_encoder.peak_block
            self.atac_decoder = ChromosomeDecoder(block, len(c.chromosomes), c.embed_dim, c.block_dim, c.latent_dim)
            self.rna_to_atac = AffineMixture(c.latent_dim, c.n_experts, c.translator_layers, c.gate_hidden)
            self.atac_discriminator = ConditionalDiscriminator(c.latent_dim, n_types)
            self.rna_discriminator = ConditionalDiscriminator(c.latent_dim, n_types)


def balanced_entries(positive: np.ndarray, n_entries: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Every positive entry and a Bernoulli(#positive/#negative) sample of the negative ones.

    Parameters
    ----------
    positive
        ``int64 [n_pos]`` ascending flat indices of the positive entries among ``n_entries``.

    Returns
    -------
    ``int64 [n_pos + n_sampled]`` flat indices (positives first) and ``n_pos``.
    """
    n_negative = n_entries - len(positive)
    rate = min(1.0, len(positive) / n_negative) if n_negative else 0.0
    rank = np.sort(rng.choice(n_negative, size=rng.binomial(n_negative, rate), replace=False))
    # the rank-th negative sits after the positives p_t with p_t − t (negatives before p_t) <= rank
    negative = rank + np.searchsorted(positive - np.arange(len(positive)), rank, side="right")
    return np.concatenate([positive, negative]).astype(np.int64), len(positive)


def focal_bce(logits: torch.Tensor, n_positive: int, gamma: float) -> torch.Tensor:
    """Mean focal BCE with logits over entries whose first ``n_positive`` are positive, the rest negative."""
    if logits.numel() == 0:
        return logits.sum()
    target = torch.zeros_like(logits)
    target[:n_positive] = 1.0
    bce = binary_cross_entropy_with_logits(logits, target, reduction="none")
    return ((1.0 - torch.exp(-bce)) ** gamma * bce).mean()


def atac_reconstruction(
    decoder: ChromosomeDecoder, z: torch.Tensor, atac: sp.csr_matrix, gamma: float, rng: np.random.Generator
) -> torch.Tensor:
    """Focal BCE of ``decoder(z)`` against the binary rows ``atac [batch, n_peaks]`` on balanced entries."""
    atac = sp.csr_matrix(atac)
    atac.sort_indices()
    n_peaks = atac.shape[1]
    cell = np.repeat(np.arange(atac.shape[0]), np.diff(atac.indptr))
    kept, n_positive = balanced_entries(cell * n_peaks + atac.indices, atac.shape[0] * n_peaks, rng)
    cells, peaks = (torch.as_tensor(a) for a in np.divmod(kept, n_peaks))
    return focal_bce(decoder(z, cells, peaks), n_positive, gamma)


def masked_mse(predicted: torch.Tensor, observed: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """MSE over the expressed entries of ``observed [batch, n_genes]`` and a balanced sample of the others."""
    positive = np.flatnonzero(observed.detach().numpy().ravel() > EXPRESSED)
    kept, _ = balanced_entries(positive, observed.numel(), rng)
    index = torch.as_tensor(kept)
    return ((predicted.reshape(-1)[index] - observed.reshape(-1)[index]) ** 2).mean()


def train_unpaired(
    model: Surrogate,
    atac: sp.csr_matrix,
    rna: np.ndarray,
    cell_types: np.ndarray,
    options: TrainingOptions,
    *,
    rna_cell_types: np.ndarray | None = None,
) -> UnpairedHistory:
    """Fit ``model`` in place by the three unpaired phases.

    Parameters
    ----------
    atac
        ``[n_atac, n_peaks]`` binary accessibility (CSR).
    rna
        ``float32 [n_rna, n_genes]`` log1p-normalised expression.
    cell_types
        ``str [n_atac]`` the ATAC cells' types (also the RNA cells' unless ``rna_cell_types``).
    options
        ``steps`` translator steps, ``pretrain_steps`` per autoencoder, the loss weights.
    rna_cell_types
        ``str [n_rna]`` when the RNA cells are not the ATAC cells.

    Raises
    ------
    InputError
        If the tables do not fit the model or their labels, or a side has fewer than 2 cells.
    """
    rna_types = np.asarray(cell_types if rna_cell_types is None else rna_cell_types, dtype=str)
    n_atac, n_rna, c = atac.shape[0], rna.shape[0], model.config
    if (
        atac.shape[1] != c.n_peaks
        or rna.shape[1:] != (c.n_genes,)
        or min(n_atac, n_rna) < 2
        or (len(cell_types), len(rna_types)) != (n_atac, n_rna)
    ):
        raise InputError(
            f"unpaired training data atac {atac.shape} with {len(cell_types)} cell types and rna {rna.shape} with "
            f"{len(rna_types)} do not fit a surrogate of {c.n_peaks} peaks and {c.n_genes} genes "
            "(need >= 2 cells on each side and one cell type per cell)"
        )
    types, labels = np.unique(np.concatenate([np.asarray(cell_types, dtype=str), rna_types]), return_inverse=True)
    atac_labels, rna_labels = torch.as_tensor(labels[:n_atac]), torch.as_tensor(labels[n_atac:])
    rng = np.random.default_rng(options.seed)
    with torch_threads(options.threads):
        extra = UnpairedModules(model, len(types), seed=options.seed)
        model.train()
        extra.train()
        atac_loss = train_atac_autoencoder(model, extra.atac_decoder, atac, options, rng)
        rna_loss = train_rna_autoencoder(model, rna, options, rng)
        phase3 = train_translators(model, extra, (atac, atac_labels), (rna, rna_labels), options, rng)
        model.eval()
    return UnpairedHistory(atac_loss, rna_loss, *phase3)


def train_atac_autoencoder(
    model: Surrogate,
    decoder: ChromosomeDecoder,
    atac: sp.csr_matrix,
    options: TrainingOptions,
    rng: np.random.Generator,
) -> np.ndarray:
    """Phase 1: the chromosome encoder and ``decoder``; ``float64 [pretrain_steps]`` focal BCE per step."""
    parameters = [*model.atac_encoder.parameters(), *decoder.parameters()]
    optimiser = adam(parameters, options.learning_rate)
    batches = minibatches(atac.shape[0], options.batch_size, rng)
    losses = np.zeros(options.pretrain_steps or options.steps)
    for step in range(len(losses)):
        rows = next(batches)
        z = model.atac_encoder(dense_rows(atac, rows))
        loss = atac_reconstruction(decoder, z, atac[rows], options.focal_gamma, rng)
        descend(optimiser, loss, options.grad_clip)
        losses[step] = loss.item()
    return losses


def train_rna_autoencoder(
    model: Surrogate, rna: np.ndarray, options: TrainingOptions, rng: np.random.Generator
) -> np.ndarray:
    """Phase 2: the RNA encoder and decoder; ``float64 [pretrain_steps]`` masked MSE per step."""
    if options.start_at_mean:
        start_decoder_at_mean(model, rna)
    optimiser = adam([*model.rna_encoder.parameters(), *model.rna_decoder.parameters()], options.learning_rate)
    batches = minibatches(rna.shape[0], options.batch_size, rng)
    losses = np.zeros(options.pretrain_steps or options.steps)
    for step in range(len(losses)):
        y = torch.as_tensor(rna[next(batches)])
        loss = masked_mse(model.rna_decoder(model.rna_encoder(y)), y, rng)
        descend(optimiser, loss, options.grad_clip)
        losses[step] = loss.item()
    return losses


def train_translators(
    model: Surrogate,
    extra: UnpairedModules,
    atac: tuple[sp.csr_matrix, torch.Tensor],
    rna: tuple[np.ndarray, torch.Tensor],
    options: TrainingOptions,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Phase 3: ``atac2rna`` and ``rna2atac`` against the discriminators, on unpaired minibatches.

    ``atac`` and ``rna`` are each a table with its cells' ``int64`` type labels. Returns
    ``float64 [steps]`` G, recon, gen and D (NaN where the discriminators did not step).
    """
    o = options
    translators = [*model.atac_to_rna.parameters(), *extra.rna_to_atac.parameters()]
    discriminators = [*extra.atac_discriminator.parameters(), *extra.rna_discriminator.parameters()]
    optimiser, critic = adam(translators, o.learning_rate), adam(discriminators, o.discriminator_learning_rate)
    atac_batches, rna_batches = (minibatches(t[0].shape[0], o.batch_size, rng) for t in (atac, rna))
    history = np.full((4, o.steps), np.nan)
    autoencoders = (model.atac_encoder, model.rna_encoder, model.rna_decoder, extra.atac_decoder)
    frozen = [p for module in autoencoders for p in module.parameters()]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for step in range(o.steps):
            a_rows, r_rows = next(atac_batches), next(rna_batches)
            x_a, t_a = atac[0][a_rows], atac[1][a_rows]
            y_r, t_r = torch.as_tensor(rna[0][r_rows]), rna[1][r_rows]
            z_a, z_r = model.atac_encoder(dense_rows(x_a, np.arange(len(a_rows)))), model.rna_encoder(y_r)
            a2r, r2a = model.atac_to_rna(z_a), extra.rna_to_atac(z_r)
            cyc_a, cyc_r = extra.rna_to_atac(a2r), model.atac_to_rna(r2a)
            recon = (
                o.cycle_weight * (l1_loss(cyc_r, z_r) / o.rna_divisor + l1_loss(cyc_a, z_a))
                + masked_mse(model.rna_decoder(cyc_r), y_r, rng) / o.rna_divisor
                + atac_reconstruction(extra.atac_decoder, cyc_a, x_a, o.focal_gamma, rng)
            )
            d_a, d_r = extra.atac_discriminator, extra.rna_discriminator
            gen = _bce(d_r(a2r, t_a), 1) + _bce(d_a(cyc_a, t_a), 1) + _bce(d_a(r2a, t_r), 1) + _bce(d_r(cyc_r, t_r), 1)
            loss = recon + o.adversarial_weight * gen
            descend(optimiser, loss, o.grad_clip)
            history[:3, step] = loss.item(), recon.item(), gen.item()
            if step % o.discriminator_every == 0:
                a2r, r2a = a2r.detach(), r2a.detach()
                critic_loss = o.discriminator_weight * (
                    _bce(d_r(z_r, t_r), 1) + _bce(d_r(a2r, t_a), 0) + _bce(d_a(z_a, t_a), 1) + _bce(d_a(r2a, t_r), 0)
                )
                descend(critic, critic_loss, o.grad_clip)
                history[3, step] = critic_loss.item()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return history[0], history[1], history[2], history[3]


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean BCE with logits against a constant ``target`` (1: real, 0: translated)."""
    return binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))
