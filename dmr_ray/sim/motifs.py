"""Position probability matrices and PWM occupancy for the simulators.

A :class:`Motif` is a position probability matrix (rows in ``ACGT`` order, every entry in
(0, 1)); the simulators load theirs from a packaged JASPAR release
(:mod:`dmr_ray.sim.jaspar`). The same matrices sample the motif instances and score
occupancy, for the simulation and the ground truth alike (deep_mr.md §13 #13).

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


@dataclass(frozen=True)
class Motif:
    """A position probability matrix.

    Attributes
    ----------
    name
        Short name (JASPAR's name for a JASPAR matrix, e.g. ``"GATA3"``).
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

    @property
    def information_content(self) -> float:
        """Total information content in bits against a uniform background, ``Σ_j (2 + Σ_b p log₂ p)``."""
        return float((2.0 + (self.probs * np.log2(self.probs)).sum(axis=1)).sum())

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
