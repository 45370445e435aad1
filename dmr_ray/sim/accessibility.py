"""A DeepSEA-style multi-task simulation: TF binding tasks and a DNase-like accessibility task.

Generative process (one sequence at a time, every draw from one seeded generator):

* i.i.d. background (``A .27, C .23, G .23, T .27``, :data:`~dmr_ray.sim.motifs.BACKGROUND`),
  length ``L``;
* for each TF k of :data:`TF_MOTIFS` independently, with probability ``motif_prob`` an
  instance is embedded at a uniform start that overlaps no motif placed before it (forward
  strand). Instances are sampled (:meth:`~dmr_ray.sim.motifs.Motif.sample`) from the JASPAR
  matrix raised to the power ``sharpness`` and renormalised: at 1 a third of the sampled
  instances score below chance windows of the background, at 2 (the default) nearly all are
  strong sites, as the summits of ChIP-seq peaks are; occupancy is always scored with the
  JASPAR matrix itself;
* occupancy ``q_k`` of every TF: the Zhao–Stormo occupancy of
  :func:`~dmr_ray.sim.motifs.occupancy` with a binding threshold ``μ`` (``binding_score``):
  every window's site probability is ``s_w = 1 / (1 + exp(E_w + μ))``, so a window whose
  log-odds score ``−E_w`` equals ``μ`` is half bound (JASPAR matrices carry far less
  information than the stand-ins, and at ``μ = 0`` chance windows of 200 bp would bind every
  short motif); ``q_k = 1 − Π_w (1 − s_w)``;
* TF binding task k (a ChIP-seq peak call): ``p_k = ε + (1 − 2ε) q_k`` with peak-calling
  error ``ε``; the label is ``Bernoulli(p_k)``;
* accessibility task (a DNase-seq peak call): ``p_acc = σ(γ₀ + Σ_k w_k q_k)``, with the
  closed-chromatin log-odds ``γ₀`` and each TF's opening strength ``w_k``; the label is
  ``Bernoulli(p_acc)``.

The planted causal graph is therefore TF k → accessibility (for ``w_k ≠ 0``) and nothing
else: accessibility feeds back into no TF, and no TF affects another.

Planted truth, on the scale of the model outputs (probabilities of a peak):

* **TF k → accessibility**, per sequence: the controlled, path-specific oracle effect. For
  every single substitution s of the sequence (3 L of them) the oracle gives
  ``Δx_s = p_k(q_k(s)) − p_k(q_k)`` and ``Δy_s = σ(η + w_k (q_k(s) − q_k)) − σ(η)``, with
  ``η = γ₀ + Σ_j w_j q_j`` of the reference: the change of accessibility carried by TF k's
  occupancy alone, the other TFs held at their reference occupancy. The local truth is the
  slope through the origin ``Σ Δx Δy / Σ Δx²`` (as the TF-cooperativity truth, deep_mr.md §9,
  but over every substitution so that it is defined for every sequence; on a sequence that
  carries TF k's motif the motif's substitutions dominate it). ``w_k = 0`` gives 0.
* **accessibility → TF k** and **TF j → TF k**: 0 exactly. No TF's binding probability
  depends on accessibility or on another TF, so no intervention on those outputs moves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.sim.jaspar import JASPAR_RELEASE, jaspar_motif
from dmr_ray.sim.motifs import BACKGROUND, Motif, occupancy

ACCESSIBILITY = "DNase"
"""Name of the accessibility task (the last output)."""

_TRUTH_CHUNK = 16
"""Sequences per block of the oracle truth (3 L mutants each)."""


@dataclass(frozen=True)
class TFMotif:
    """One simulated transcription factor.

    Attributes
    ----------
    name
        Task name.
    matrix_id
        Versioned JASPAR matrix ID (release :data:`~dmr_ray.sim.jaspar.JASPAR_RELEASE`).
    opening
        ``w_k``: how much its occupancy raises the accessibility log-odds (0: it binds but
        does not open chromatin).
    """

    name: str
    matrix_id: str
    opening: float

    @property
    def motif(self) -> Motif:
        """The JASPAR matrix as a :class:`~dmr_ray.sim.motifs.Motif` named :attr:`name`."""
        return jaspar_motif(self.matrix_id, name=self.name)


TF_MOTIFS: tuple[TFMotif, ...] = (
    TFMotif("CTCF", "MA0139.2", 1.0),
    TFMotif("FOXA1", "MA0148.5", 3.0),
    TFMotif("HNF4A", "MA0114.5", 2.0),
    TFMotif("CEBPA", "MA0102.5", 0.0),
)
"""The default TFs: FOXA1 a strong opener (a pioneer factor), HNF4A a moderate one, CTCF a weak
one, CEBPA binds without opening (its planted effect on accessibility is 0, a built-in null)."""


@dataclass(frozen=True)
class AccessibilityParams:
    """Parameters of the simulation; validated on construction.

    Attributes
    ----------
    length
        Sequence length L.
    tfs
        The TFs, in output order (accessibility comes last).
    motif_prob
        Probability that each TF's motif is embedded in a sequence (independently per TF).
    binding_score
        ``μ``: the log-odds score (nats) at which a window is half bound.
    sharpness
        Power applied to the matrix that samples the embedded instances (1: the matrix itself).
    peak_error
        ``ε``: probability of a false TF peak call on an unbound sequence (and of a missed
        call on a bound one).
    closed_logit
        ``γ₀``: accessibility log-odds with no TF bound.

    Raises
    ------
    InputError
        Naming the parameter, for a non-finite value, a probability outside its range, no TF,
        repeated names, or a length too short to hold every motif.
    """

    length: int = 100
    tfs: tuple[TFMotif, ...] = TF_MOTIFS
    motif_prob: float = 0.35
    binding_score: float = 7.0
    sharpness: float = 2.0
    peak_error: float = 0.02
    closed_logit: float = -2.0
    motifs: tuple[Motif, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("binding_score", "closed_logit"):
            value = getattr(self, name)
            if not isinstance(value, Real) or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value!r}")
        if not isinstance(self.sharpness, Real) or not 0 < self.sharpness < math.inf:
            raise InputError(f"sharpness must be a positive number, got {self.sharpness!r}")
        if not isinstance(self.motif_prob, Real) or not 0.0 <= self.motif_prob <= 1.0:
            raise InputError(f"motif_prob must be a probability in [0, 1], got {self.motif_prob!r}")
        if not isinstance(self.peak_error, Real) or not 0.0 <= self.peak_error < 0.5:
            raise InputError(f"peak_error must lie in [0, 0.5), got {self.peak_error!r}")
        names = [tf.name for tf in self.tfs]
        if not names or len(set(names)) != len(names) or ACCESSIBILITY in names:
            raise InputError(f"tfs: need at least one TF, unique names and none called {ACCESSIBILITY!r}, got {names}")
        for tf in self.tfs:
            if not isinstance(tf.opening, Real) or not math.isfinite(tf.opening):
                raise InputError(f"tfs: opening of {tf.name} must be a finite number, got {tf.opening!r}")
        object.__setattr__(self, "motifs", tuple(tf.motif for tf in self.tfs))
        needed = sum(m.length for m in self.motifs)
        if not is_int(self.length) or self.length < needed:
            raise InputError(f"length must be an integer >= {needed} (every motif side by side), got {self.length!r}")

    @property
    def task_names(self) -> tuple[str, ...]:
        """The outputs: every TF, then :data:`ACCESSIBILITY`."""
        return (*(tf.name for tf in self.tfs), ACCESSIBILITY)

    @property
    def openings(self) -> np.ndarray:
        """``float64 [K]``: ``w_k`` of each TF."""
        return np.array([tf.opening for tf in self.tfs], dtype=np.float64)

    def describe(self) -> dict:
        """JSON-able parameters (the matrices named by ID and release)."""
        return {
            "length": self.length,
            "tfs": [
                {"name": tf.name, "jaspar": tf.matrix_id, "release": JASPAR_RELEASE, "opening": tf.opening}
                for tf in self.tfs
            ],
            "motif_prob": self.motif_prob,
            "binding_score": self.binding_score,
            "sharpness": self.sharpness,
            "peak_error": self.peak_error,
            "closed_logit": self.closed_logit,
        }


@dataclass(frozen=True)
class AccessibilityData:
    """One simulated data set.

    Attributes
    ----------
    tokens
        ``uint8 [n, L]`` sequences (A=0 C=1 G=2 T=3).
    labels
        ``float32 [n, K + 1]`` 0/1 peak calls: each TF, then accessibility.
    probabilities
        ``float64 [n, K + 1]``: the oracle's probability of each label being 1.
    occupancy
        ``float64 [n, K]``: ``q_k``.
    motif_start
        ``int64 [n, K]``: 0-based start of the embedded instance of TF k, −1 where none.
    params
        The parameters used.
    """

    tokens: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    occupancy: np.ndarray
    motif_start: np.ndarray
    params: AccessibilityParams

    @property
    def has_motif(self) -> np.ndarray:
        """``bool [n, K]``: TF k's motif was embedded."""
        return self.motif_start >= 0


def simulate_accessibility(
    n: int, params: AccessibilityParams | None = None, *, seed: int | np.random.Generator
) -> AccessibilityData:
    """Simulate ``n`` sequences with TF binding and accessibility labels (module docstring).

    Parameters
    ----------
    n
        Number of sequences (≥ 1).
    params
        Defaults to :class:`AccessibilityParams` ().
    seed
        Seed or generator; the result is a deterministic function of it.

    Returns
    -------
    AccessibilityData

    Raises
    ------
    InputError
        For ``n < 1``.
    """
    if not is_int(n) or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}")
    params = AccessibilityParams() if params is None else params
    rng = np.random.default_rng(seed)
    tokens = rng.choice(4, size=(n, params.length), p=BACKGROUND).astype(np.uint8)
    taken = np.zeros(tokens.shape, dtype=bool)
    starts = []
    for motif in params.motifs:
        start = _free_starts(taken, motif.length, params.motif_prob, rng)
        rows = np.flatnonzero(start >= 0)
        span = start[rows, None] + np.arange(motif.length)
        sharpened = motif.probs**params.sharpness
        sampler = Motif(motif.name, sharpened / sharpened.sum(axis=1, keepdims=True))
        tokens[rows[:, None], span] = sampler.sample(n, rng)[rows]
        taken[rows[:, None], span] = True
        starts.append(start)
    q = tf_occupancy(tokens, params)
    probabilities = _probabilities(q, params)
    labels = (rng.random(probabilities.shape) < probabilities).astype(np.float32)
    return AccessibilityData(tokens, labels, probabilities, q, np.stack(starts, axis=1), params)


def tf_occupancy(tokens: np.ndarray, params: AccessibilityParams) -> np.ndarray:
    """``float64 [n, K]`` occupancy ``q_k`` of every TF with the binding threshold ``μ``.

    :func:`~dmr_ray.sim.motifs.occupancy` with the background scaled by ``exp(μ / k)`` for a
    motif of length k: that adds ``μ`` to every window energy, ``s_w = σ(−(E_w + μ))``.
    """
    columns = [
        occupancy(tokens, motif, BACKGROUND * math.exp(params.binding_score / motif.length)) for motif in params.motifs
    ]
    return np.stack(columns, axis=1)


def oracle_probabilities(tokens: np.ndarray, params: AccessibilityParams) -> np.ndarray:
    """Noiseless ``float64 [n, K + 1]`` probabilities of every label (TFs, then accessibility).

    Raises
    ------
    InputError
        If ``tokens`` is not ``[n, L]`` with values in 0..3.
    """
    return _probabilities(tf_occupancy(tokens, params), params)


def local_true_effects(tokens: np.ndarray, params: AccessibilityParams, exposure: str, outcome: str) -> np.ndarray:
    """Per-sequence planted causal effect of ``exposure`` on ``outcome`` (module docstring).

    Parameters
    ----------
    tokens
        ``[n, L]`` tokens in 0..3.
    params
        The simulation's parameters.
    exposure, outcome
        Two different task names of ``params``.

    Returns
    -------
    numpy.ndarray
        ``float64 [n]``: the path-specific oracle slope for TF → accessibility (NaN where no
        substitution changes the TF's occupancy), 0 for every other ordered pair.

    Raises
    ------
    InputError
        For an unknown task name or ``exposure == outcome``.
    """
    names = params.task_names
    for role, name in (("exposure", exposure), ("outcome", outcome)):
        if name not in names:
            raise InputError(f"{role}: {name!r} is not one of {', '.join(names)}")
    if exposure == outcome:
        raise InputError(f"exposure and outcome are both {exposure!r}")
    tokens = np.asarray(tokens)
    k = names.index(exposure)
    if outcome != ACCESSIBILITY or exposure == ACCESSIBILITY or params.tfs[k].opening == 0:
        return np.zeros(tokens.shape[0])
    truth = np.empty(tokens.shape[0])
    for start in range(0, tokens.shape[0], _TRUTH_CHUNK):
        block = tokens[start : start + _TRUTH_CHUNK]
        truth[start : start + block.shape[0]] = _path_slopes(block, k, params)
    return truth


def _probabilities(q: np.ndarray, params: AccessibilityParams) -> np.ndarray:
    eps = params.peak_error
    tf = eps + (1.0 - 2.0 * eps) * q
    accessibility = _sigmoid(params.closed_logit + q @ params.openings)
    return np.concatenate([tf, accessibility[:, None]], axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _free_starts(taken: np.ndarray, k: int, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform starts of a k-bp motif over windows free of ``taken`` (−1: not embedded or no room)."""
    n, length = taken.shape
    present = rng.random(n) < prob
    scores = rng.random((n, length - k + 1))
    covered = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(taken, axis=1)], axis=1)
    free = covered[:, k:] == covered[:, :-k]
    scores[~free] = -1.0
    return np.where(present & free.any(axis=1), scores.argmax(axis=1), -1).astype(np.int64)


def _path_slopes(tokens: np.ndarray, k: int, params: AccessibilityParams) -> np.ndarray:
    """Slope of Δ accessibility carried by TF k alone on Δ p_k, over every substitution."""
    m, length = tokens.shape
    positions = np.repeat(np.arange(length), 3)  # [3L]
    shifts = np.tile(np.arange(1, 4), length)
    mutants = np.repeat(tokens[:, None, :], 3 * length, axis=1)  # [m, 3L, L]
    mutants[:, np.arange(3 * length), positions] = (tokens[:, positions] + shifts) % 4
    motif = params.motifs[k]
    scaled = BACKGROUND * math.exp(params.binding_score / motif.length)
    q_ref = tf_occupancy(tokens, params)
    dq = occupancy(mutants.reshape(-1, length), motif, scaled).reshape(m, 3 * length) - q_ref[:, k, None]
    eta = params.closed_logit + q_ref @ params.openings
    dx = (1.0 - 2.0 * params.peak_error) * dq
    dy = _sigmoid(eta[:, None] + params.tfs[k].opening * dq) - _sigmoid(eta)[:, None]
    sxx = np.einsum("ij,ij->i", dx, dx)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, np.einsum("ij,ij->i", dx, dy) / sxx, np.nan)
