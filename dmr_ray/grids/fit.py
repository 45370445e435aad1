"""From a :class:`~dmr_ray.grids.data.Multiome` to a trained surrogate and its held-out accuracy."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dmr_ray.attribution.data import Split, train_test_split
from dmr_ray.errors import InputError
from dmr_ray.grids.accuracy import SurrogateAccuracy, heldout_accuracy
from dmr_ray.grids.data import Multiome
from dmr_ray.grids.surrogate import Surrogate, SurrogateConfig, chromosome_blocks, names_digest, predict
from dmr_ray.grids.training import TrainingHistory, TrainingOptions, log_normalise, train_paired
from dmr_ray.grids.unpaired import UnpairedHistory, train_unpaired


@dataclass(frozen=True)
class FittedSurrogate:
    """A surrogate trained on some cells of a multiome and scored on the others.

    Attributes
    ----------
    model
        The trained :class:`Surrogate`, in eval mode.
    split
        Cell indices used for training (``train``) and held out (``test``).
    history
        Losses per training step (:class:`TrainingHistory` when paired, :class:`UnpairedHistory`
        when unpaired; both have ``loss``, the main loss per step).
    accuracy
        Held-out accuracy in log1p-normalised units.
    """

    model: Surrogate
    split: Split
    history: TrainingHistory | UnpairedHistory
    accuracy: SurrogateAccuracy


def surrogate_config(data: Multiome, **architecture: Any) -> tuple[SurrogateConfig, np.ndarray]:
    """The config for ``data``'s peaks and genes (``architecture`` overrides widths) and each peak's block."""
    chromosomes, block = chromosome_blocks(data.peaks.chrom)
    config = SurrogateConfig(
        n_peaks=len(data.peak_names),
        n_genes=len(data.gene_names),
        chromosomes=chromosomes,
        peak_digest=names_digest(data.peak_names),
        gene_digest=names_digest(data.gene_names),
    )
    try:
        return replace(config, **architecture), block
    except TypeError as err:
        raise InputError(f"surrogate architecture: {err}") from None


def check_matches(model: Surrogate, data: Multiome) -> None:
    """:class:`InputError` unless ``model`` was built for exactly ``data``'s peaks and genes, in order."""
    for what, names, digest in (
        ("peaks", data.peak_names, model.config.peak_digest),
        ("genes", data.gene_names, model.config.gene_digest),
    ):
        if names_digest(names) != digest:
            raise InputError(f"the surrogate was trained on other {what} than this data set's {len(names)} {what}")


def fit_surrogate(
    data: Multiome,
    options: TrainingOptions,
    *,
    heldout_fraction: float = 0.2,
    split_seed: int = 2023,
    model_seed: int = 0,
    **architecture: Any,
) -> FittedSurrogate:
    """Train a surrogate on some cells of ``data`` and score it on held-out cells.

    ``options.pairing`` chooses paired training (default) or the original's unpaired adversarial
    alignment, which sees the training cells' ATAC and RNA in independent orders and uses their
    cell types.

    Parameters
    ----------
    data
        The multiome (all cell types).
    options
        Training settings.
    heldout_fraction, split_seed
        Fraction of cells held out, and the seed of the split.
    model_seed
        Seeds the initial weights.
    architecture
        :class:`SurrogateConfig` fields to override (``embed_dim``, ``rna_hidden``, ...).
    """
    config, block = surrogate_config(data, **architecture)
    model = Surrogate(config, block, seed=model_seed)
    split = train_test_split(len(data.cells), test_fraction=heldout_fraction, seed=split_seed)
    rna = log_normalise(data.rna, config.normalise_to)
    atac, train = data.atac[split.train], rna[split.train]
    if options.pairing == "unpaired":
        history: TrainingHistory | UnpairedHistory = train_unpaired(
            model, atac, train, data.cell_types[split.train], options
        )
    else:
        history = train_paired(model, atac, train, options)
    test = np.sort(split.test)
    accuracy = heldout_accuracy(predict(model, data.atac[test]), rna[test], data.cell_types[test])
    return FittedSurrogate(model=model, split=split, history=history, accuracy=accuracy)
