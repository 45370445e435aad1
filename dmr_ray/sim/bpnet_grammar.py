"""A BPNet-style simulation: stranded ChIP-nexus-like profiles of Oct4, Sox2, Nanog and Klf4
with a planted motif grammar, its noiseless oracle and the true causal effects between the
TFs' count heads.

Motifs (JASPAR2024, :func:`dmr_ray.sim.jaspar.jaspar_motif`): the Oct4-Sox2 composite
``MA0142.1`` (Pou5f1::Sox2, 15 bp), Sox2 ``MA0143.5`` (7 bp), Nanog ``MA2339.1`` (mouse, 7 bp)
and Klf4 ``MA0039.5`` (8 bp).

Generative process, per sequence of length ``L``:

1. i.i.d. background (``A .27, C .23, G .23, T .27``, :data:`dmr_ray.sim.motifs.BACKGROUND`);
2. each of the four motifs is embedded independently with probability ``site_prob``, at a
   uniform position that overlaps no other embedded motif, on a random strand; instances are
   drawn from the matrix sharpened to the power ``sharpness`` (strong, consensus-like sites,
   as in ChIP-nexus peaks);
3. every window of either strand gets a site probability ``s_w = 1 / (1 + exp(μ − S_w))``
   from its log-odds score ``S_w = Σ_j log(pwm[j, x] / background[x])`` (the original
   matrix, not the sharpened one) with ``μ = max score − affinity_margin``; a motif's
   occupancy is ``q = 1 − Π_w (1 − s_w)`` over both strands, chance sites included;
4. expected reads per TF (both strands together) are ``c_t = baseline + Σ_m R[t, m] q_m``,
   the grammar ``R`` (reads per unit occupancy; rows TFs, columns motifs)::

                 Oct4-Sox2     Sox2             Nanog   Klf4
       Oct4      own           0                0       0
       Sox2      partner       own              0       0
       Nanog     recruited     sox2_recruited   own     0
       Klf4      recruited     sox2_recruited   0       own

   Oct4 anchors the composite and Sox2 binds it as Oct4's heterodimer *partner*; Sox2 also
   binds its own motif. Nanog and Klf4 bind their own motifs and are *recruited* to bound
   Oct4-Sox2 composites and, more weakly, to bound Sox2 motifs (Avsec et al. 2021 validated
   that Sox2 enhances Nanog binding and not the reverse; Klf4 is recruited there too, so that
   Sox2 drives both), so Oct4-Sox2 presence raises their binding, while nothing Nanog or Klf4
   bind changes Oct4 or Sox2;
5. profiles: each motif's reads are spread over its windows in proportion to their site
   probability and drawn as a footprint, a Gaussian (SD ``footprint_sd``) centred
   ``footprint_shift`` bp upstream of the site centre on the + strand and downstream on the
   − strand; half of ``c_t`` falls on each strand, the baseline uniformly; observed profiles
   are Poisson per position, the strand totals their sums (so Poisson(c_t / 2)).

The count heads of a BPNet regress ``log(1 + strand total)``; the oracle count head of TF t
is its expectation ``E[log(1 + Poisson(c_t / 2))]`` (the same on both strands, so also their
mean). The **true local effect** of X on Y in a sequence (deep_mr.md §9 transposed): every
substitution inside X's *own* embedded motifs (:data:`DIRECT_SITES`, the ``own`` entries of
the grammar) is run through the oracle, and the effect is the slope through
the origin of Δ head_Y on Δ head_X. Oct4's effects on Sox2 (partner), Nanog and Klf4
(recruited) come from the composite; Sox2's on Nanog and Klf4 from its own motif (when
``sox2_recruited > 0``). Nothing else is planted (:func:`planted_pairs`): Nanog and Klf4 bind
only their own motifs, which no other TF reads, and Sox2's own motif carries no Oct4 reads, so
those effects are 0 (up to chance windows straddling a site).

Sox2's reads at the composite follow Oct4's occupancy there exactly as Nanog's and Klf4's do
(one occupancy ``q`` moves all four), so no substitution separates a "Sox2 → Oct4" effect from
Oct4's own: declaring the composite a Sox2 site as well would plant effects that no
perturbation of the sequence can identify (docs/experiments.md, BPNet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache
from numbers import Real

import numpy as np

from dmr_ray._checks import is_int
from dmr_ray.errors import ConfigError, InputError
from dmr_ray.sim.motifs import BACKGROUND, Motif

TASKS = ("Oct4", "Sox2", "Nanog", "Klf4")
"""The TFs (count heads) in output order."""

MOTIFS = ("Oct4-Sox2", "Sox2", "Nanog", "Klf4")
"""The embedded motifs, in the column order of the grammar and the site arrays."""

MATRIX_IDS = {"Oct4-Sox2": "MA0142.1", "Sox2": "MA0143.5", "Nanog": "MA2339.1", "Klf4": "MA0039.5"}
"""JASPAR2024 matrix of each motif."""

DIRECT_SITES = {"Oct4": ("Oct4-Sox2",), "Sox2": ("Sox2",), "Nanog": ("Nanog",), "Klf4": ("Klf4",)}
"""Each TF's own motifs (its ``own`` entries of the grammar): the instruments
of the true effects."""

_OS, _SOX, _NANOG, _KLF = range(4)
_TRUTH_CHUNK = 256


@dataclass(frozen=True)
class GrammarParams:
    """Parameters of the simulation; validated on construction.

    Attributes
    ----------
    length
        Sequence length L.
    site_prob
        Probability of embedding each motif (independently).
    baseline
        Expected reads per TF (both strands) with nothing bound.
    own
        Reads per unit occupancy of a TF at its own motif (Oct4 at the composite).
    partner
        Sox2 reads per unit occupancy of the composite (the heterodimer partner).
    recruited
        Nanog and Klf4 reads per unit occupancy of the composite (the planted grammar; 0
        removes it).
    sox2_recruited
        Nanog and Klf4 reads per unit occupancy of Sox2's own motif (0 removes Sox2's
        effects on them).
    sharpness
        Instances are drawn from the matrix raised to this power, renormalised (≥ 1).
    affinity_margin
        μ = (best log-odds score of the matrix) − this, in nats: a consensus site binds with
        probability ``1 / (1 + exp(−margin))``.
    footprint_shift, footprint_sd
        Offset (bp) of each strand's read peak from the site centre, and the peak's SD.

    Raises
    ------
    ConfigError
        Naming the parameter, for a non-finite or negative strength, a probability outside
        [0, 1], or a length too short to hold the four motifs apart.
    """

    length: int = 128
    site_prob: float = 0.5
    baseline: float = 2.0
    own: float = 40.0
    partner: float = 40.0
    recruited: float = 30.0
    sox2_recruited: float = 20.0
    sharpness: float = 2.0
    affinity_margin: float = 2.0
    footprint_shift: int = 5
    footprint_sd: float = 3.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{f.name} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= self.site_prob <= 1.0:
            raise ConfigError(f"site_prob must be a probability in [0, 1], got {self.site_prob!r}")
        if self.sharpness < 1.0:
            raise ConfigError(f"sharpness must be >= 1, got {self.sharpness!r}")
        if self.footprint_sd <= 0:
            raise ConfigError(f"footprint_sd must be > 0, got {self.footprint_sd!r}")
        minimum = 2 * sum(m.length for m in grammar_motifs())
        if not is_int(self.length) or self.length < minimum or not is_int(self.footprint_shift):
            raise ConfigError(
                f"length must be an integer >= {minimum} (twice the motif lengths) and footprint_shift an "
                f"integer, got {self.length!r}, {self.footprint_shift!r}"
            )

    @property
    def reads(self) -> np.ndarray:
        """The grammar ``R``: ``float64 [tasks, motifs]`` reads per unit occupancy."""
        grammar = np.diag([self.own] * 4)
        grammar[TASKS.index("Sox2"), _OS] = self.partner
        grammar[TASKS.index("Nanog"), _OS] = self.recruited
        grammar[TASKS.index("Klf4"), _OS] = self.recruited
        grammar[TASKS.index("Nanog"), _SOX] = self.sox2_recruited
        grammar[TASKS.index("Klf4"), _SOX] = self.sox2_recruited
        return grammar


@dataclass(frozen=True)
class GrammarData:
    """One simulated data set.

    Attributes
    ----------
    tokens
        ``uint8 [n, L]`` sequences (A=0 C=1 G=2 T=3).
    profiles
        ``int32 [n, tasks, 2, L]`` observed reads per position on the + and − strand.
    expected_counts
        ``float64 [n, tasks]`` expected reads ``c_t`` (both strands).
    occupancy
        ``float64 [n, motifs]`` occupancy ``q_m`` of each motif (chance sites included).
    site_start
        ``int64 [n, motifs]`` 0-based start of each embedded motif, −1 where absent.
    site_strand
        ``int8 [n, motifs]`` +1 / −1 orientation of each embedded motif, 0 where absent.
    params
        The parameters used.
    """

    tokens: np.ndarray
    profiles: np.ndarray
    expected_counts: np.ndarray
    occupancy: np.ndarray
    site_start: np.ndarray
    site_strand: np.ndarray
    params: GrammarParams

    @property
    def counts(self) -> np.ndarray:
        """``int64 [n, tasks, 2]`` observed strand totals."""
        return self.profiles.sum(axis=-1, dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        """``float32 [n, tasks]``: the count heads' targets ``log(1 + strand total)``, averaged
        over the two strands (what a spec reading ``counts`` with ``reduce: mean`` predicts)."""
        return np.log1p(self.counts).mean(axis=-1).astype(np.float32)

    @property
    def has_all_sites(self) -> np.ndarray:
        """``bool [n]``: every one of the four motifs was embedded."""
        return np.asarray((self.site_start >= 0).all(axis=1))


@cache
def grammar_motifs() -> tuple[Motif, ...]:
    """The four JASPAR2024 matrices, in :data:`MOTIFS` order."""
    from dmr_ray.sim.jaspar import jaspar_motif

    return tuple(jaspar_motif(MATRIX_IDS[name], name) for name in MOTIFS)


def site_probabilities(tokens: np.ndarray, motif: Motif, offset: float = 0.0) -> np.ndarray:
    """Per-window site probabilities on both strands.

    Parameters
    ----------
    tokens
        ``[n, L]`` tokens in 0..3, ``L >= motif.length``.
    motif
        The matrix scored.
    offset
        μ: ``s_w = 1 / (1 + exp(μ − S_w))`` with ``S_w`` the window's log-odds score
        (:meth:`Motif.energies` with the default background); ``offset = 0`` is
        :func:`dmr_ray.sim.motifs.occupancy`'s site probability.

    Returns
    -------
    numpy.ndarray
        ``float64 [n, 2, L − k + 1]``: window w read on the + strand (``[:, 0]``) and as the
        reverse complement of the same bases (``[:, 1]``).

    Raises
    ------
    InputError
        If ``tokens`` is not 2-D with values in 0..3 or is shorter than the motif.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] < motif.length:
        raise InputError(f"tokens must be [n, L] with L >= {motif.length} (motif {motif.name}), got {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() > 3):
        raise InputError("tokens for site probabilities must lie in 0..3 (A, C, G, T)")
    forward = motif.energies()
    reverse = forward[::-1, ::-1]  # the reverse complement's energies (ACGT: complement = 3 − base)
    n_windows = tokens.shape[1] - motif.length + 1
    idx = tokens.astype(np.intp)
    energy = np.zeros((tokens.shape[0], 2, n_windows))
    for j in range(motif.length):
        window = idx[:, j : j + n_windows]
        energy[:, 0] += forward[j][window]
        energy[:, 1] += reverse[j][window]
    return 1.0 / (1.0 + np.exp(offset + energy))


def binding(tokens: np.ndarray, params: GrammarParams) -> tuple[np.ndarray, list[np.ndarray]]:
    """Occupancy of each motif and where it binds.

    Returns
    -------
    occupancy : numpy.ndarray
        ``float64 [n, motifs]``: ``q = 1 − Π_w (1 − s_w)`` over both strands.
    window_weights : list of numpy.ndarray
        Per motif ``float64 [n, L − k + 1]``: ``q`` shared out over the windows in proportion
        to their site probabilities (both strands summed); each row sums to ``q``.
    """
    occupancy = np.zeros((len(tokens), len(MOTIFS)))
    weights = []
    for m, motif in enumerate(grammar_motifs()):
        s = site_probabilities(tokens, motif, affinity_offset(motif, params))
        occupancy[:, m] = -np.expm1(np.log1p(-np.minimum(s, 1 - 1e-16)).sum(axis=(1, 2)))
        per_window = s.sum(axis=1)
        total = per_window.sum(axis=1, keepdims=True)
        weights.append(
            per_window * np.divide(occupancy[:, m : m + 1], total, where=total > 0, out=np.zeros_like(total))
        )
    return occupancy, weights


def affinity_offset(motif: Motif, params: GrammarParams) -> float:
    """μ of ``motif``: its best log-odds score minus ``params.affinity_margin``."""
    return float(-motif.energies().min(axis=1).sum() - params.affinity_margin)


def expected_counts(tokens: np.ndarray, params: GrammarParams) -> np.ndarray:
    """``float64 [n, tasks]`` expected reads ``c = baseline + R q`` (both strands)."""
    occupancy, _ = binding(tokens, params)
    return params.baseline + occupancy @ params.reads.T


def expected_profiles(tokens: np.ndarray, params: GrammarParams) -> np.ndarray:
    """``float64 [n, tasks, 2, L]`` expected reads per position and strand; each strand of
    task t sums to ``c_t / 2``."""
    return _profiles(binding(tokens, params)[1], params)


def _profiles(weights: list[np.ndarray], params: GrammarParams) -> np.ndarray:
    """Expected profiles from :func:`binding`'s window weights."""
    n, length = weights[0].shape[0], params.length
    density = np.zeros((n, len(TASKS), length))  # reads at each bound site's centre
    for m, motif in enumerate(grammar_motifs()):
        centre = motif.length // 2
        density[:, :, centre : centre + weights[m].shape[1]] += (
            weights[m][:, None, :] * params.reads[:, m][None, :, None]
        )
    kernels = [
        _footprint(length, -params.footprint_shift, params.footprint_sd),
        _footprint(length, params.footprint_shift, params.footprint_sd),
    ]
    strands = [density @ kernel / 2.0 + params.baseline / (2.0 * length) for kernel in kernels]
    return np.stack(strands, axis=2)


def _footprint(length: int, shift: int, sd: float) -> np.ndarray:
    """``[L, L]``: row c is a Gaussian centred at ``c + shift``, normalised over 0..L−1."""
    pos = np.arange(length)
    kernel = np.exp(-0.5 * ((pos[None, :] - pos[:, None] - shift) / sd) ** 2)
    return kernel / kernel.sum(axis=1, keepdims=True)


def expected_log1p_poisson(rate: np.ndarray) -> np.ndarray:
    """``E[log(1 + Y)]`` for ``Y ~ Poisson(rate)``, elementwise (exact sum over the support up
    to 12 SDs above the largest rate; the tail left out is below 1e-30)."""
    rate = np.asarray(rate, dtype=np.float64)
    top = float(rate.max(initial=0.0))
    k = np.arange(int(math.ceil(top + 12.0 * math.sqrt(top) + 30.0)))
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
    flat = rate.reshape(-1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = np.where(flat > 0, k * np.log(flat) - flat - log_factorial, np.where(k == 0, 0.0, -np.inf))
    return (np.exp(log_pmf) @ np.log1p(k)).reshape(rate.shape)


def oracle_count_heads(tokens: np.ndarray, params: GrammarParams) -> np.ndarray:
    """``float64 [n, tasks]``: each TF's noiseless count head ``E[log(1 + Poisson(c_t / 2))]``."""
    return expected_log1p_poisson(expected_counts(tokens, params) / 2.0)


def simulate_bpnet_grammar(
    n: int, params: GrammarParams = GrammarParams(), *, seed: int | np.random.Generator
) -> GrammarData:
    """Simulate ``n`` sequences with stranded profiles for the four TFs.

    Parameters
    ----------
    n
        Number of sequences (≥ 1).
    params
        Grammar, layout and profile parameters.
    seed
        Seed or generator; the result is a deterministic function of it.

    Returns
    -------
    GrammarData

    Raises
    ------
    ConfigError
        For a non-positive ``n``.
    """
    if not is_int(n) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    length = params.length
    tokens = rng.choice(4, size=(n, length), p=BACKGROUND).astype(np.uint8)
    occupied = np.zeros((n, length), dtype=bool)
    starts = np.full((n, len(MOTIFS)), -1, dtype=np.int64)
    strands = np.zeros((n, len(MOTIFS)), dtype=np.int8)
    for m, motif in enumerate(grammar_motifs()):
        present = rng.random(n) < params.site_prob
        start = _free_starts(occupied, motif.length, rng)
        orientation = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
        instances = _sharpened(motif, params.sharpness).sample(n, rng)
        instances = np.where(orientation[:, None] > 0, instances, 3 - instances[:, ::-1])
        rows = np.flatnonzero(present & (start >= 0))
        span = start[rows, None] + np.arange(motif.length)
        tokens[rows[:, None], span] = instances[rows]
        occupied[rows[:, None], span] = True
        starts[rows, m] = start[rows]
        strands[rows, m] = orientation[rows]
    occupancy, weights = binding(tokens, params)
    profiles = rng.poisson(_profiles(weights, params)).astype(np.int32)
    return GrammarData(
        tokens=tokens,
        profiles=profiles,
        expected_counts=params.baseline + occupancy @ params.reads.T,
        occupancy=occupancy,
        site_start=starts,
        site_strand=strands,
        params=params,
    )


def _sharpened(motif: Motif, power: float) -> Motif:
    probs = motif.probs**power
    return Motif(motif.name, probs / probs.sum(axis=1, keepdims=True))


def _free_starts(occupied: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform start per row among windows of width ``k`` with no occupied position (−1: none)."""
    n, length = occupied.shape
    covered = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(occupied, axis=1)], axis=1)
    free = covered[:, k:] == covered[:, :-k]
    scores = np.where(free, rng.random((n, length - k + 1)), -1.0)
    return np.where(free.any(axis=1), scores.argmax(axis=1), -1).astype(np.int64)


def planted_pairs(params: GrammarParams) -> dict[tuple[str, str], bool]:
    """Whether the grammar plants a non-zero effect for each ordered pair (exposure, outcome).

    X → Y is planted when one of X's own motifs also carries reads of Y: Oct4 → Sox2
    (the composite's partner, unless ``partner`` or ``own`` is 0), Oct4 → Nanog, Klf4 (unless
    ``recruited`` is 0) and Sox2 → Nanog, Klf4 (unless ``sox2_recruited`` is 0). Nothing is
    planted from Nanog or Klf4, nor Sox2 → Oct4.
    """
    reads = params.reads
    planted = {}
    for x in TASKS:
        direct = [MOTIFS.index(m) for m in DIRECT_SITES[x]]
        for y in TASKS:
            if x != y:
                moved_x = reads[TASKS.index(x), direct] > 0
                planted[(x, y)] = bool(np.any(moved_x & (reads[TASKS.index(y), direct] > 0)))
    return planted


def local_true_effects(data: GrammarData) -> np.ndarray:
    """True local effect of every TF on every other, per sequence.

    For exposure X, every substitution inside X's own embedded motifs (:data:`DIRECT_SITES`)
    is run through :func:`oracle_count_heads`; the effect on Y is the
    slope through the origin ``Σ Δ_X Δ_Y / Σ Δ_X²``.

    Returns
    -------
    numpy.ndarray
        ``float64 [n, tasks (exposure), tasks (outcome)]``; NaN on the diagonal and where X
        has no embedded direct site.
    """
    n, _ = data.tokens.shape
    truth = np.full((n, len(TASKS), len(TASKS)), np.nan)
    for x, name in enumerate(TASKS):
        sites = [MOTIFS.index(m) for m in DIRECT_SITES[name]]
        for start in range(0, n, _TRUTH_CHUNK):
            rows = np.arange(start, min(start + _TRUTH_CHUNK, n))
            truth[rows, x] = _span_slopes(data, rows, sites, x)
        truth[:, x, x] = np.nan
    return truth


def _span_slopes(data: GrammarData, rows: np.ndarray, sites: list[int], x: int) -> np.ndarray:
    """Oracle slopes of every head on head ``x`` over substitutions in the ``sites`` spans."""
    motifs = grammar_motifs()
    tokens = data.tokens[rows]
    m, length = tokens.shape
    spans = [data.site_start[rows, s, None] + np.arange(motifs[s].length) for s in sites]
    valid = [np.repeat(data.site_start[rows, s, None] >= 0, motifs[s].length, axis=1) for s in sites]
    positions = np.repeat(np.concatenate(spans, axis=1), 3, axis=1)  # [m, 3P]
    usable = np.repeat(np.concatenate(valid, axis=1), 3, axis=1)
    positions = np.where(usable, positions, 0)
    shifts = np.tile(np.arange(1, 4), positions.shape[1] // 3)
    index = np.arange(m)[:, None]
    mutants = np.repeat(tokens[:, None, :], positions.shape[1], axis=1)
    mutants[index, np.arange(positions.shape[1])[None, :], positions] = (tokens[index, positions] + shifts) % 4
    ref = oracle_count_heads(tokens, data.params)
    mut = oracle_count_heads(mutants.reshape(-1, length), data.params).reshape(m, -1, len(TASKS))
    delta = np.where(usable[..., None], mut - ref[:, None, :], 0.0)
    sxx = np.einsum("ij,ij->i", delta[..., x], delta[..., x])
    sxy = np.einsum("ij,ijk->ik", delta[..., x], delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx[:, None] > 0, sxy / sxx[:, None], np.nan)
