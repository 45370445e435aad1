"""Reference one-hots and single-base mutants, built on the model's device from tokens.

Mutants are enumerated, never materialised as a whole: mutant ``m`` of a batch is the
substitution ``m % 3`` at the ``m // 3``-th non-N position (row-major over sequences and
positions). Substitution slot ``k`` at a reference base ``b`` is the ``k``-th base of ACGT
after removing ``b``: ``alt = k + (k >= b)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dmr_ray.alphabet import N_TOKEN, check_tokens
from dmr_ray.errors import InputError

N_ALT = 3


def as_token_tensor(tokens: np.ndarray | torch.Tensor, input_length: int | None = None) -> torch.Tensor:
    """Validate ``uint8 [n, L]`` tokens and return them as a CPU tensor.

    Raises
    ------
    InputError
        On a wrong type, dtype or shape, values outside 0..4, or ``L != input_length``.
    """
    if isinstance(tokens, torch.Tensor):
        array = tokens.detach().cpu().numpy()
    elif isinstance(tokens, np.ndarray):
        array = tokens
    else:
        raise InputError(f"tokens: expected a numpy array or torch tensor, got {type(tokens).__name__}")
    if array.dtype != np.uint8:
        raise InputError(f"tokens: dtype must be uint8 (A=0 C=1 G=2 T=3 N=4), got {array.dtype}")
    if array.ndim != 2 or 0 in array.shape:
        raise InputError(f"tokens: shape must be [n_sequences, length] with both > 0, got {list(array.shape)}")
    check_tokens(array)
    if input_length is not None and array.shape[1] != input_length:
        raise InputError(f"tokens: length {array.shape[1]} does not match the model's input_length {input_length}")
    return torch.from_numpy(np.ascontiguousarray(array))


def alt_alleles(tokens: np.ndarray) -> np.ndarray:
    """The alternative allele of each substitution slot: ``uint8 [n, L, 3]`` (N positions: 4)."""
    tokens = np.asarray(tokens)
    slots = np.arange(N_ALT, dtype=np.uint8)
    alt = slots + (slots >= tokens[..., None])
    return np.where(tokens[..., None] == N_TOKEN, N_TOKEN, alt).astype(np.uint8)


def reference_onehot(tokens: torch.Tensor) -> torch.Tensor:
    """``float32 [n, 4, L]`` one-hot of ``uint8 [n, L]`` tokens, on their device (N: zeros)."""
    table = torch.eye(N_TOKEN + 1, N_TOKEN, device=tokens.device)
    return table[tokens.long()].transpose(1, 2).contiguous()


@dataclass(frozen=True)
class MutantSites:
    """Where the mutants of one sub-batch sit: sequence, position, slot and alt token (``long [B]``)."""

    seq: torch.Tensor
    pos: torch.Tensor
    slot: torch.Tensor
    alt: torch.Tensor


class MutantPlan:
    """All substitutions of the non-N positions of ``tokens`` (on the compute device).

    Parameters
    ----------
    tokens
        ``uint8 [n, L]`` on the compute device.
    """

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens
        self.length = tokens.shape[1]
        self.valid = tokens != N_TOKEN
        self._sites = torch.nonzero(self.valid.reshape(-1)).squeeze(1)
        self.n_mutants = N_ALT * int(self._sites.numel())

    def sites(self, start: int, stop: int) -> MutantSites:
        """The mutants ``start .. stop-1``."""
        m = torch.arange(start, stop, device=self.tokens.device)
        flat = self._sites[m // N_ALT]
        slot = m % N_ALT
        ref = self.tokens.reshape(-1)[flat].long()
        return MutantSites(seq=flat // self.length, pos=flat % self.length, slot=slot, alt=slot + (slot >= ref))


def build_mutants(reference: torch.Tensor, sites: MutantSites) -> torch.Tensor:
    """One-hot mutants ``[B, 4, L]`` from reference one-hots ``[n, 4, L]`` (same device)."""
    mutants = reference.index_select(0, sites.seq)
    rows = torch.arange(mutants.shape[0], device=mutants.device)
    mutants[rows, :, sites.pos] = 0
    mutants[rows, sites.alt, sites.pos] = 1
    return mutants
