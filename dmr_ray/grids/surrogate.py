"""The ATAC→RNA surrogate F̂ of GRIDS (grids.md §2) and its safe storage.

F̂(x) = clamp(dec_rna(atac2rna(enc_atac(x))), min=0): per-peak embeddings summed per
chromosome (:class:`~dmr_ray.grids.layers.ChromosomeEncoder`), a latent translator
(:class:`~dmr_ray.grids.layers.AffineMixture`) and the decoder of an RNA autoencoder, in
log1p-normalised expression units. Saved as ``surrogate.safetensors`` (tensors only) beside
``surrogate.json`` (the :class:`SurrogateConfig`); loading builds the module from the JSON and
loads the tensors strictly, so no pickled code is ever run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import cast

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dmr_ray._atomic import write_atomic, write_text_atomic
from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.grids.coordinates import canonical_chromosomes
from dmr_ray.grids.layers import AffineMixture, ChromosomeEncoder, dense_stack

WEIGHTS = "surrogate.safetensors"
CONFIG = "surrogate.json"


def names_digest(names: Iterable[str]) -> str:
    """sha256 of the names joined by newlines: ties a surrogate to its peaks or genes."""
    return hashlib.sha256("\n".join(map(str, names)).encode()).hexdigest()


@dataclass(frozen=True)
class SurrogateConfig:
    """Everything that determines the surrogate's architecture (the JSON beside its weights).

    Attributes
    ----------
    n_peaks, n_genes
        Input and output sizes.
    chromosomes
        Names of the chromosome blocks, in block order (sorted, as in the original).
    peak_digest, gene_digest
        :func:`names_digest` of the peak and gene names it was trained on.
    embed_dim, block_dim, latent_dim
        Peak-embedding width (16), per-chromosome block width (32), latent width (20).
    rna_hidden
        Widths of the RNA encoder's hidden layers (640, 320); the decoder mirrors them.
    n_experts, translator_layers, gate_hidden
        The translator's expert bank (9), depth (3) and gate width (128).
    normalise_to
        Counts per cell before ``log1p`` (1e4; the original uses 1e5).
    """

    n_peaks: int
    n_genes: int
    chromosomes: tuple[str, ...]
    peak_digest: str
    gene_digest: str
    embed_dim: int = 16
    block_dim: int = 32
    latent_dim: int = 20
    rna_hidden: tuple[int, ...] = (640, 320)
    n_experts: int = 9
    translator_layers: int = 3
    gate_hidden: int = 128
    normalise_to: float = 1e4

    def __post_init__(self) -> None:
        sizes = {f.name: getattr(self, f.name) for f in fields(self) if f.type == "int"}
        sizes.update({f"rna_hidden[{i}]": n for i, n in enumerate(self.rna_hidden)})
        for name, value in sizes.items():
            if not is_int(value) or value < 1:
                raise InputError(f"surrogate config {name} must be an integer >= 1, got {value!r}")
        if not self.chromosomes:
            raise InputError("surrogate config needs at least one chromosome")
        if not self.normalise_to > 0:
            raise InputError(f"surrogate config normalise_to must be > 0, got {self.normalise_to!r}")


def chromosome_blocks(chrom: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Sorted canonical chromosome names (``chr1``, ``chr10``, …) and ``int64 [n_peaks]`` block of every peak.

    Names are made canonical first (:func:`~dmr_ray.grids.coordinates.canonical_chromosomes`),
    so ``1`` and ``chr1`` are one block.
    """
    names, block = np.unique(canonical_chromosomes(chrom), return_inverse=True)
    return tuple(names.tolist()), block.astype(np.int64)


class Surrogate(nn.Module):
    """F̂: ATAC ``[batch, n_peaks]`` → predicted log1p-normalised RNA ``[batch, n_genes]``.

    Parameters
    ----------
    config
        The architecture.
    peak_block
        ``int64 [n_peaks]`` chromosome block of every peak (:func:`chromosome_blocks`).
    seed
        Seeds the initial weights.
    """

    def __init__(self, config: SurrogateConfig, peak_block: np.ndarray | torch.Tensor, *, seed: int = 0):
        super().__init__()
        block = torch.as_tensor(np.asarray(peak_block), dtype=torch.int64)
        n_blocks = len(config.chromosomes)
        if block.shape != (config.n_peaks,) or (len(block) and (block.min() < 0 or block.max() >= n_blocks)):
            raise InputError(f"peak_block must be {config.n_peaks} block indices in [0, {n_blocks})")
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            c = config
            self.atac_encoder = ChromosomeEncoder(block, len(c.chromosomes), c.embed_dim, c.block_dim, c.latent_dim)
            widths = [c.n_genes, *c.rna_hidden]
            self.rna_encoder = nn.Sequential(dense_stack(widths), nn.Linear(widths[-1], c.latent_dim))
            self.rna_decoder = nn.Sequential(
                dense_stack([c.latent_dim, *widths[:0:-1]]), nn.Linear(widths[1], c.n_genes)
            )
            self.atac_to_rna = AffineMixture(c.latent_dim, c.n_experts, c.translator_layers, c.gate_hidden)

    @property
    def rna_output(self) -> nn.Linear:
        """The RNA decoder's last layer, ``Linear(rna_hidden[0] → n_genes)``."""
        return cast(nn.Linear, self.rna_decoder[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, n_peaks]`` → ``ŷ [batch, n_genes]`` = clamp(dec_rna(atac2rna(enc_atac(x))), min=0)."""
        return self.rna_decoder(self.atac_to_rna(self.atac_encoder(x))).clamp(min=0)


def predict(model: Surrogate, atac: sp.csr_matrix | np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """``float32 [n_cells, n_genes]`` predictions in eval mode, densifying ``batch_size`` cells at a time."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, atac.shape[0], batch_size):
            rows = atac[start : start + batch_size]
            dense = rows.toarray() if isinstance(rows, sp.spmatrix | sp.sparray) else np.asarray(rows)
            out.append(model(torch.as_tensor(dense, dtype=torch.float32)).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.n_genes), np.float32)


def save_surrogate(model: Surrogate, directory: str | Path) -> None:
    """Write ``surrogate.safetensors`` and ``surrogate.json`` into ``directory`` (created), each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    write_atomic(directory / WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    write_text_atomic(directory / CONFIG, json.dumps(asdict(model.config), indent=2) + "\n")


def load_surrogate(directory: str | Path) -> Surrogate:
    """The surrogate saved in ``directory``, in eval mode.

    Raises
    ------
    InputError
        If a file is missing, the JSON is not a valid config, or the tensors do not fit it.
    """
    directory = Path(directory)
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise InputError(f"{directory}: no {name}; not a saved GRIDS surrogate")
    try:
        raw = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
        config = SurrogateConfig(
            **{**raw, "chromosomes": tuple(raw["chromosomes"]), "rna_hidden": tuple(raw["rna_hidden"])}
        )
    except (ValueError, TypeError, KeyError) as err:
        raise InputError(f"{directory / CONFIG}: not a surrogate config: {err}") from None
    state = load_file(str(directory / WEIGHTS))
    if "atac_encoder.peak_block" not in state:
        raise InputError(f"{directory / WEIGHTS}: no atac_encoder.peak_block tensor")
    model = Surrogate(config, state["atac_encoder.peak_block"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InputError(f"{directory / WEIGHTS}: tensors do not match {CONFIG}: {err}") from None
    return model.eval()
