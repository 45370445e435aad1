"""Hierarchical latent Dirichlet allocation (LDA) simulation of gene expression with known biomarkers.

The simulation of Bontonou et al. (arXiv 2303.11336; ``../shared/methods/attribution.md`` §1):

* pathway → gene distributions ``β_k``: disjoint supports of ``genes_per_pathway`` genes
  (pathway k owns genes ``[m k, m k + m)``), or overlapping supports in which each gene joins
  each pathway independently with probability ``genes_per_pathway / n_genes`` (a pathway with
  no gene is re-drawn, so every pathway has at least one). Weights on the support are
  ``Dirichlet(gene_concentration)``. Pathways over-expressed by some sub-class ("ground-truth
  pathways") must give every gene of theirs a weight of at least
  ``min_weight_fraction / |support|``; a failing pathway's weights are re-drawn, at most
  ``max_redraws`` times (the reference code crashed on this re-draw);
* sub-class → pathway prior ``α_s = scale · (1, …, 1, gap, …, gap, 1, …)`` with ``gap`` on the
  sub-class's own pathways ``{P s, …, P s + P − 1}``: concentration 4 for background pathways
  and 8 for over-expressed ones;
* sample of sub-class s: ``θ ~ Dir(α_s)`` and read counts ``~ Multinomial(N, Σ_k θ_k β_k)``
  (the same law as drawing reads per pathway, then genes, and much faster), converted to counts
  per million. Sub-classes are balanced: ``n_samples // n_subclasses`` samples each;
* with ``regroup`` (SimuB/C), sub-classes ``0 … S − 2`` become class 0 and the last one class 1,
  as the reference loader does.

Ground truth (``get_informative_variables`` of the reference): a sub-class's truth is the genes
of its own pathways; when the final task has 2 classes it also includes the genes of the other
class's sub-classes' pathways (10,000 genes for SimuA). Sub-class data is evaluated against
``subclass_truth[subclass[i]]``; ``truth`` holds the union over each class's sub-classes.

Random streams: the pathways come from one child of ``seed`` and the samples from another, so
``n_samples`` does not change ``β``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
import scipy.sparse as sp

from dmr_ray._checks import is_int
from dmr_ray.errors import ConfigError, InputError

_BLOCK_ELEMENTS = 1 << 22  # rows × genes per multinomial block: 32 MiB of int64 counts


@dataclass(frozen=True)
class LDAConfig:
    """Parameters of one hierarchical LDA simulation; validated on construction.

    Attributes
    ----------
    name
        Label of the configuration (a preset's name, or anything for a custom one).
    n_samples
        Requested number of samples; each sub-class gets ``n_samples // n_subclasses``.
    n_genes
        Number of genes G (for disjoint pathways, exactly ``genes_per_pathway · n_pathways``).
    n_pathways
        Number of pathways K (LDA topics).
    n_subclasses
        Number of generative classes S (the final classes unless ``regroup``).
    pathways_per_class
        Over-expressed pathways P per sub-class; ``P · S ≤ K``.
    genes_per_pathway
        Support size of a disjoint pathway; expected support size of an overlapping one.
    overlapping
        Overlapping (SIMU2) rather than disjoint (SIMU1, SimuA/B/C) pathway supports.
    regroup
        Map sub-classes ``0 … S − 2`` to class 0 and the last one to class 1.
    n_reads
        Reads N per sample.
    background, class_gap, concentration_scale
        Prior of sub-class s on pathway k: ``concentration_scale · (class_gap if k is one of
        s's pathways else background)``.
    gene_concentration
        Symmetric Dirichlet concentration of the gene weights on a pathway's support.
    min_weight_fraction
        A ground-truth pathway needs every gene weight ``≥ min_weight_fraction / |support|``.
    max_redraws
        Re-draws allowed for an invalid ground-truth pathway or an empty overlapping support.

    Raises
    ------
    ConfigError
        Naming the field, for a non-positive size, a non-finite or non-positive
        concentration, ``P · S > K``, a disjoint layout whose genes do not add up, a
        membership probability above 1, or ``regroup`` with fewer than 2 sub-classes.
    """

    name: str
    n_samples: int
    n_genes: int
    n_pathways: int
    n_subclasses: int
    pathways_per_class: int
    genes_per_pathway: int = 10
    overlapping: bool = False
    regroup: bool = False
    n_reads: int = 1_500_000
    background: float = 1.0
    class_gap: float = 2.0
    concentration_scale: float = 4.0
    gene_concentration: float = 5.0
    min_weight_fraction: float = 0.1
    max_redraws: int = 100

    def __post_init__(self) -> None:
        for field in ("n_genes", "n_pathways", "n_subclasses", "pathways_per_class", "genes_per_pathway", "n_reads"):
            value = getattr(self, field)
            if not is_int(value) or value < 1:
                raise ConfigError(f"{self.name}: {field} must be an integer >= 1, got {value!r}")
        if not is_int(self.max_redraws) or self.max_redraws < 0:
            raise ConfigError(f"{self.name}: max_redraws must be an integer >= 0, got {self.max_redraws!r}")
        if not is_int(self.n_samples) or self.n_samples < self.n_subclasses:
            raise ConfigError(
                f"{self.name}: n_samples must be an integer >= n_subclasses ({self.n_subclasses}), "
                f"got {self.n_samples!r}"
            )
        for field in ("background", "class_gap", "concentration_scale", "gene_concentration"):
            value = getattr(self, field)
            if not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{self.name}: {field} must be a finite number > 0, got {value!r}")
        if not isinstance(self.min_weight_fraction, Real) or not 0 <= self.min_weight_fraction < 1:
            raise ConfigError(f"{self.name}: min_weight_fraction must lie in [0, 1), got {self.min_weight_fraction!r}")
        if self.pathways_per_class * self.n_subclasses > self.n_pathways:
            raise ConfigError(
                f"{self.name}: pathways_per_class · n_subclasses = "
                f"{self.pathways_per_class * self.n_subclasses} exceeds n_pathways = {self.n_pathways}"
            )
        if self.overlapping and self.genes_per_pathway > self.n_genes:
            raise ConfigError(
                f"{self.name}: genes_per_pathway ({self.genes_per_pathway}) exceeds n_genes ({self.n_genes})"
            )
        if not self.overlapping and self.n_genes != self.genes_per_pathway * self.n_pathways:
            raise ConfigError(
                f"{self.name}: disjoint pathways need n_genes = genes_per_pathway · n_pathways = "
                f"{self.genes_per_pathway * self.n_pathways}, got {self.n_genes}"
            )
        if self.regroup and self.n_subclasses < 2:
            raise ConfigError(f"{self.name}: regroup needs n_subclasses >= 2, got {self.n_subclasses}")

    @property
    def n_classes(self) -> int:
        """Number of classes of the task: 2 with ``regroup``, else ``n_subclasses``."""
        return 2 if self.regroup else self.n_subclasses

    @property
    def samples_per_subclass(self) -> int:
        """``n_samples // n_subclasses``, the balanced size of every sub-class."""
        return self.n_samples // self.n_subclasses

    def class_of_subclass(self) -> np.ndarray:
        """``int64 [n_subclasses]``: the class each sub-class belongs to."""
        subclasses = np.arange(self.n_subclasses)
        return (subclasses == self.n_subclasses - 1).astype(np.int64) if self.regroup else subclasses

    def alpha(self) -> np.ndarray:
        """``float64 [n_subclasses, n_pathways]``: the Dirichlet priors ``α_s`` on pathway proportions."""
        own = own_pathways(self)
        alpha = np.full((self.n_subclasses, self.n_pathways), float(self.background))
        alpha[np.arange(self.n_subclasses)[:, None], own] = float(self.class_gap)
        return alpha * float(self.concentration_scale)


def own_pathways(config: LDAConfig) -> np.ndarray:
    """``int64 [n_subclasses, pathways_per_class]``: pathways over-expressed by each sub-class."""
    p = config.pathways_per_class
    return np.arange(config.n_subclasses * p, dtype=np.int64).reshape(config.n_subclasses, p)


PRESETS: dict[str, LDAConfig] = {
    "SIMU1": LDAConfig("SIMU1", 9900, 15_000, 1500, 33, 37),
    "SIMU2": LDAConfig("SIMU2", 9900, 15_000, 3000, 33, 37, overlapping=True),
    "SimuA": LDAConfig("SimuA", 1200, 50_000, 5000, 2, 500),
    "SimuB": LDAConfig("SimuB", 1200, 50_000, 5000, 4, 500, regroup=True),
    "SimuC": LDAConfig("SimuC", 1200, 50_000, 5000, 6, 500, regroup=True),
}
"""The reference's simulations (attribution.md §1 table)."""


@dataclass(frozen=True)
class LDASimulation:
    """One simulated expression data set with its generative parameters and ground truth.

    Attributes
    ----------
    x
        ``float32 [n_samples, n_genes]`` counts per million; every row sums to 10⁶.
    y
        ``int64 [n_samples]`` class labels (after regrouping).
    subclass
        ``int64 [n_samples]`` generative sub-class (equal to ``y`` without regrouping).
    truth
        ``bool [n_classes, n_genes]``: class c's informative genes (union over its sub-classes).
    subclass_truth
        ``bool [n_subclasses, n_genes]``: each sub-class's informative genes, the per-sample truth.
    beta
        ``scipy.sparse.csr_array [n_pathways, n_genes]`` pathway gene weights; rows sum to 1
        and the stored entries are each pathway's support.
    alpha
        ``float64 [n_subclasses, n_pathways]`` Dirichlet priors on pathway proportions.
    theta
        ``float32 [n_samples, n_pathways]`` drawn pathway proportions.
    config
        The configuration simulated (with the ``n_samples`` requested).
    """

    x: np.ndarray
    y: np.ndarray
    subclass: np.ndarray
    truth: np.ndarray
    subclass_truth: np.ndarray
    beta: sp.csr_array
    alpha: np.ndarray
    theta: np.ndarray
    config: LDAConfig

    def sample_truth(self, index: np.ndarray) -> np.ndarray:
        """``bool [len(index), n_genes]``: the informative genes of the given samples."""
        return self.subclass_truth[self.subclass[np.asarray(index)]]


def preset(name: str) -> LDAConfig:
    """The preset configuration called ``name`` (SIMU1, SIMU2, SimuA, SimuB or SimuC).

    Raises
    ------
    InputError
        For an unknown name, listing the known ones.
    """
    if name not in PRESETS:
        raise InputError(f"unknown LDA simulation {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def simulate(
    name_or_config: str | LDAConfig,
    n_samples: int | None = None,
    *,
    seed: int | np.random.Generator,
) -> LDASimulation:
    """Simulate a hierarchical LDA expression data set.

    Parameters
    ----------
    name_or_config
        A preset's name (:data:`PRESETS`) or an :class:`LDAConfig`.
    n_samples
        Overrides the configuration's sample count (each sub-class gets ``n_samples // S``).
    seed
        Seed or generator; one child stream draws the pathways, another the samples.

    Returns
    -------
    LDASimulation
        Samples ordered by sub-class.

    Raises
    ------
    InputError
        For an unknown preset name.
    ConfigError
        For an invalid configuration, or a ground-truth pathway (or overlapping support) still
        invalid after ``max_redraws`` re-draws.
    """
    config = preset(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if n_samples is not None:
        config = dataclasses.replace(config, n_samples=n_samples)
    pathway_rng, sample_rng = np.random.default_rng(seed).spawn(2)
    beta = draw_beta(config, pathway_rng)
    alpha = config.alpha()
    x, theta = _draw_samples(config, beta, alpha, sample_rng)
    subclass = np.repeat(np.arange(config.n_subclasses, dtype=np.int64), config.samples_per_subclass)
    subclass_truth = informative_genes(config, beta)
    class_of = config.class_of_subclass()
    truth = np.zeros((config.n_classes, config.n_genes), dtype=bool)
    np.logical_or.at(truth, class_of, subclass_truth)
    return LDASimulation(
        x=x,
        y=class_of[subclass],
        subclass=subclass,
        truth=truth,
        subclass_truth=subclass_truth,
        beta=beta,
        alpha=alpha,
        theta=theta,
        config=config,
    )


def draw_beta(config: LDAConfig, rng: np.random.Generator) -> sp.csr_array:
    """Draw the pathway → gene distributions.

    Returns
    -------
    scipy.sparse.csr_array
        ``[n_pathways, n_genes]``, rows summing to 1, column indices sorted within a row.
    """
    k, m = config.n_pathways, config.genes_per_pathway
    if config.overlapping:
        indptr, indices = _overlapping_supports(config, rng)
    else:
        indptr, indices = np.arange(k + 1, dtype=np.int64) * m, np.arange(config.n_genes, dtype=np.int64)
    sizes = np.diff(indptr)
    row = np.repeat(np.arange(k), sizes)
    weights = _dirichlet_rows(rng.gamma(config.gene_concentration, size=indices.size), indptr)
    threshold = config.min_weight_fraction / sizes
    candidates = own_pathways(config).ravel()
    for attempt in range(config.max_redraws + 1):
        low = np.zeros(k, dtype=bool)
        np.logical_or.at(low, row, weights < threshold[row])
        invalid = candidates[low[candidates]]
        if invalid.size == 0:
            return sp.csr_array((weights, indices, indptr), shape=(k, config.n_genes))
        if attempt == config.max_redraws:
            break
        redraw = np.isin(row, invalid)
        fresh = np.zeros_like(weights)
        fresh[redraw] = rng.gamma(config.gene_concentration, size=int(redraw.sum()))
        weights = np.where(redraw, _dirichlet_rows(fresh, indptr), weights)
    raise ConfigError(
        f"{config.name}: ground-truth pathway {int(invalid[0])} (and {invalid.size - 1} more) still has a gene "
        f"weight below min_weight_fraction / support = {config.min_weight_fraction} / "
        f"{int(sizes[invalid[0]])} after {config.max_redraws} re-draws (gene_concentration "
        f"{config.gene_concentration}); raise gene_concentration or max_redraws, or lower min_weight_fraction"
    )


def _dirichlet_rows(gammas: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Normalise gamma draws within each CSR row (an all-zero row stays zero)."""
    sums = np.add.reduceat(gammas, indptr[:-1])
    return gammas / np.repeat(np.where(sums > 0, sums, 1.0), np.diff(indptr))


def _overlapping_supports(config: LDAConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``indptr``, ``indices`` of supports where each gene joins each pathway with p = m / G.

    A support's size is Binomial(G, p) (re-drawn while 0) and its genes a uniform subset of that
    size, which is the law of independent memberships conditioned on a non-empty support.
    """
    p = config.genes_per_pathway / config.n_genes
    sizes = rng.binomial(config.n_genes, p, size=config.n_pathways)
    for _ in range(config.max_redraws):
        empty = sizes == 0
        if not empty.any():
            break
        sizes[empty] = rng.binomial(config.n_genes, p, size=int(empty.sum()))
    else:
        if (sizes == 0).any():
            raise ConfigError(
                f"{config.name}: a pathway support is still empty after {config.max_redraws} re-draws "
                f"(membership probability {p:.3g}); raise genes_per_pathway"
            )
    indices = np.concatenate([np.sort(rng.choice(config.n_genes, size=s, replace=False)) for s in sizes])
    indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return indptr, indices.astype(np.int64)


def informative_genes(config: LDAConfig, beta: sp.csr_array) -> np.ndarray:
    """``bool [n_subclasses, n_genes]``: each sub-class's ground-truth genes (§1.5 rules).

    A sub-class's own pathways' genes; with 2 final classes, also the genes of every pathway of
    the other class's sub-classes.
    """
    support = sp.csr_array(beta != 0)
    own = np.zeros((config.n_subclasses, config.n_genes), dtype=bool)
    for s, pathways in enumerate(own_pathways(config)):
        own[s, support[pathways].indices] = True
    if config.n_classes != 2:
        return own
    class_of = config.class_of_subclass()
    other = np.zeros((2, config.n_genes), dtype=bool)
    np.logical_or.at(other, 1 - class_of, own)  # other[c]: genes of the sub-classes not in class c
    return own | other[class_of]


def _draw_samples(
    config: LDAConfig, beta: sp.csr_array, alpha: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw θ and CPM for every sub-class, in blocks that bound the int64 count buffer."""
    per = config.samples_per_subclass
    n, g = per * config.n_subclasses, config.n_genes
    x = np.empty((n, g), dtype=np.float32)
    theta = np.empty((n, config.n_pathways), dtype=np.float32)
    block = max(1, _BLOCK_ELEMENTS // g)
    beta_t = beta.T.tocsr()
    for s in range(config.n_subclasses):
        for start in range(s * per, (s + 1) * per, block):
            stop = min(start + block, (s + 1) * per)
            proportions = rng.dirichlet(alpha[s], size=stop - start)
            mixed = np.asarray(beta_t @ proportions.T).T  # Σ_k θ_k β_k, [rows, genes]
            mixed /= mixed.sum(axis=1, keepdims=True)
            counts = rng.multinomial(config.n_reads, mixed)
            np.multiply(counts, 1e6 / config.n_reads, out=x[start:stop], casting="unsafe")
            theta[start:stop] = proportions
    return x, theta
