"""A synthetic multiome with planted redundant regulation: ground truth for GRIDS (grids.md §9).

Cells of a few cell types have binary ATAC peaks and RNA counts. Each *target* gene has

* a **redundant OR-group** of peaks near its TSS: in a cell type where the gene is expressed it
  stays on while ANY member is open, and goes off only when the whole group is closed. Members
  open independently, so every member is sometimes the only open one (a surrogate can learn
  the OR), yet removing any single member rarely changes anything;
* **single-peak activators** nearby, each multiplying the expression of an "on" gene by a
  smaller factor (what single-peak rankings find);

plus cell-type marker peaks (so the cell type is visible in the ATAC), background peaks,
non-target genes with cell-type-specific means, per-cell library sizes and log-normal noise
under Poisson counts. Everything is drawn from one seeded generator.

The defaults make single-peak rankings and GRIDS disagree: a group member is the only open one
in 0.65 · 0.35² ≈ 8 % of the expressing cells, so removing it alone lowers the gene (log1p
scale, off = 1/30 of on) by ≈ 0.27 on average, less than removing one activator
(0.9 · log 1.45 ≈ 0.33); removing the whole group switches the gene off in ≈ 96 % of them.

The data is a MuData (``rna`` counts, ``atac`` 0/1, ``obs["cell_type"]``, peaks named
``chrN:start-end``, gene coordinates in ``rna.var`` chrom/start/end/strand) that
:func:`~dmr_ray.grids.data.read_multiome` reads back; the truth is :class:`Truth`
(``truth.json``, peaks by name).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dmr_ray import __version__
from dmr_ray._atomic import write_atomic, write_text_atomic
from dmr_ray._checks import is_int
from dmr_ray.errors import InputError

KIND = "dmr_ray.grids.simulate"
"""Marks files written here (``uns["dmr_ray"]["kind"]`` of the ``.h5mu``, ``"kind"`` of ``truth.json``)."""

CHROMOSOME_LENGTH = 20_000_000
PEAK_WIDTH = 500
BIN = 1_000
"""Peaks sit one per 1 kb bin, so they never overlap."""


@dataclass(frozen=True)
class SimulationOptions:
    """Sizes and effect sizes of the synthetic multiome.

    Attributes
    ----------
    n_cells
        Cells, split as evenly as possible over the cell types.
    n_cell_types
        Cell types, named T1, T2, ...
    n_chromosomes
        Chromosomes chr1, chr2, ... of 20 Mb each.
    n_genes
        Genes in total (G1, G2, ...); the first n_targets carry planted regulation.
    n_targets
        Target genes with an OR-group and activators.
    group_size
        Peaks in each target's redundant OR-group (within 20 kb of its TSS).
    n_activators
        Single-peak activators of each target (within 200 kb of its TSS).
    n_markers
        Marker peaks per cell type.
    marker_open
        Probability that a marker is open in its cell type (5 % in the others). Weak markers
        keep the cell type from explaining a target so well that a surrogate ignores its group.
    n_background
        Background peaks, open with a peak-specific probability in every cell.
    group_open
        Probability that a group member is open in a cell type expressing the gene (10 % elsewhere).
    activator_open
        Probability that an activator is open (any cell type).
    on_count
        Expected count of a target that is on, before activators and library size.
    off_count
        Expected count of a target that is off.
    activator_fold
        Fold change of an "on" target per open activator.
    noise
        Standard deviation of the log-normal noise on every expected count.
    seed
        Seeds everything.
    """

    n_cells: int = 600
    n_cell_types: int = 3
    n_chromosomes: int = 3
    n_genes: int = 10
    n_targets: int = 3
    group_size: int = 3
    n_activators: int = 3
    n_markers: int = 8
    n_background: int = 40
    marker_open: float = 0.25
    group_open: float = 0.65
    activator_open: float = 0.9
    on_count: float = 30.0
    off_count: float = 1.0
    activator_fold: float = 1.45
    noise: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        minimum = {"n_cells": 2, "n_cell_types": 1, "n_chromosomes": 1, "n_genes": 1, "group_size": 1}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.type == "int" and (not is_int(value) or value < minimum.get(spec.name, 0)):
                raise InputError(
                    f"simulation {spec.name} must be an integer >= {minimum.get(spec.name, 0)}, got {value!r}"
                )
        if self.n_targets > self.n_genes:
            raise InputError(f"simulation n_targets ({self.n_targets}) exceeds n_genes ({self.n_genes})")
        if self.n_cells < self.n_cell_types:
            raise InputError(f"simulation n_cells ({self.n_cells}) is below n_cell_types ({self.n_cell_types})")
        for name in ("group_open", "activator_open", "marker_open"):
            if not 0 < getattr(self, name) < 1:
                raise InputError(f"simulation {name} must be in (0, 1), got {getattr(self, name)!r}")
        if not (self.on_count > 0 and self.off_count >= 0 and self.activator_fold > 0 and self.noise >= 0):
            raise InputError("simulation on_count and activator_fold must be > 0, off_count and noise >= 0")


@dataclass(frozen=True)
class PlantedGene:
    """The planted regulation of one target gene (peaks by name).

    Attributes
    ----------
    gene
        The gene's name.
    groups
        Its redundant OR-groups (one per gene here): the gene is off only when a whole group is closed.
    activators
        Single peaks that each raise it when it is on.
    cell_types
        The cell types where it is expressed (elsewhere it is off whatever the peaks).
    """

    gene: str
    groups: tuple[tuple[str, ...], ...]
    activators: tuple[str, ...]
    cell_types: tuple[str, ...]


@dataclass(frozen=True)
class Truth:
    """Ground truth of a simulation: the planted genes and the options that made it."""

    genes: tuple[PlantedGene, ...]
    options: SimulationOptions

    def planted(self, gene: str) -> PlantedGene:
        """The planted regulation of ``gene``; :class:`InputError` if it has none."""
        for planted in self.genes:
            if planted.gene == gene:
                return planted
        raise InputError(
            f"the truth has no planted regulation for gene {gene!r}; it has {[g.gene for g in self.genes]}"
        )

    def group_indices(self, gene: str, peak_names: np.ndarray) -> list[list[int]]:
        """The OR-groups of ``gene`` as column indices into ``peak_names``."""
        position = {name: i for i, name in enumerate(np.asarray(peak_names, dtype=str))}
        missing = [p for group in self.planted(gene).groups for p in group if p not in position]
        if missing:
            raise InputError(f"the truth's peaks {missing[:3]} are not among the data's {len(position)} peaks")
        return [[position[p] for p in group] for group in self.planted(gene).groups]

    def to_json(self) -> str:
        """``truth.json``: the planted genes by name and the simulation options."""
        genes = [
            {"gene": g.gene, "groups": [list(x) for x in g.groups], "activators": list(g.activators),
             "cell_types": list(g.cell_types)}
            for g in self.genes
        ]  # fmt: skip
        options = {f.name: getattr(self.options, f.name) for f in fields(self.options)}
        document = {"kind": KIND, "code_version": __version__, "options": options, "genes": genes}
        return json.dumps(document, indent=2) + "\n"


def read_truth(path: str | Path) -> Truth:
    """Read a ``truth.json`` written by :func:`write_simulation`.

    Raises
    ------
    InputError
        If the file is missing or is not a dmr_ray simulation truth.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such truth file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("kind") != KIND:
            raise ValueError(f"kind is {document.get('kind')!r}, not {KIND!r}")
        genes = tuple(
            PlantedGene(
                gene=str(g["gene"]),
                groups=tuple(tuple(map(str, group)) for group in g["groups"]),
                activators=tuple(map(str, g["activators"])),
                cell_types=tuple(map(str, g["cell_types"])),
            )
            for g in document["genes"]
        )
        return Truth(genes=genes, options=SimulationOptions(**document["options"]))
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise InputError(f"{path}: not a GRIDS simulation truth: {err}") from None


@dataclass(frozen=True)
class _Layout:
    """Where peaks and genes sit, and which peaks play which part (indices into the sorted peaks)."""

    peaks: pd.DataFrame  # chrom, start, end; sorted by chromosome number and start
    genes: pd.DataFrame  # chrom, start, end, strand
    groups: list[np.ndarray]  # per target: its OR-group
    activators: list[np.ndarray]  # per target
    markers: list[np.ndarray]  # per cell type
    background: np.ndarray


def _layout(options: SimulationOptions, rng: np.random.Generator) -> _Layout:
    o = options
    n_bins = CHROMOSOME_LENGTH // BIN
    taken: list[set[int]] = [set() for _ in range(o.n_chromosomes)]
    chrom_of: list[int] = []
    bin_of: list[int] = []

    def place(chrom: int, low: int, high: int, n: int) -> np.ndarray:
        """``n`` free bins of chromosome ``chrom`` in [low, high) (indices of new peaks)."""
        free = np.setdiff1d(np.arange(max(low, 0), min(high, n_bins)), np.fromiter(taken[chrom], np.int64))
        chosen = rng.choice(free, size=n, replace=False)
        taken[chrom].update(int(b) for b in chosen)
        chrom_of.extend([chrom] * n)
        bin_of.extend(int(b) for b in chosen)
        return np.arange(len(bin_of) - n, len(bin_of))

    gene_chrom = np.arange(o.n_genes) % o.n_chromosomes
    tss_bin = rng.integers(n_bins // 20, n_bins - n_bins // 20, size=o.n_genes)
    body = rng.integers(10, 50, size=o.n_genes) * BIN
    groups, activators = [], []
    for t in range(o.n_targets):
        c, b = int(gene_chrom[t]), int(tss_bin[t])
        groups.append(place(c, b - 20, b + 20, o.group_size))
        activators.append(place(c, b - 200, b + 200, o.n_activators))
    markers = [place(int(rng.integers(o.n_chromosomes)), 0, n_bins, o.n_markers) for _ in range(o.n_cell_types)]
    background = np.asarray(
        [place(int(rng.integers(o.n_chromosomes)), 0, n_bins, 1)[0] for _ in range(o.n_background)], np.int64
    )

    # Sort peaks by position; remap every role to the sorted order.
    chrom_arr, start = np.asarray(chrom_of), np.asarray(bin_of) * BIN + (BIN - PEAK_WIDTH) // 2
    order = np.lexsort((start, chrom_arr))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    names = np.asarray([f"chr{c + 1}" for c in chrom_arr])
    peaks = pd.DataFrame({"chrom": names[order], "start": start[order], "end": start[order] + PEAK_WIDTH})
    genes = pd.DataFrame(
        {
            "chrom": [f"chr{c + 1}" for c in gene_chrom],
            "start": tss_bin * BIN,
            "end": tss_bin * BIN + body,
            "strand": "+",
        }
    )
    return _Layout(
        peaks=peaks,
        genes=genes,
        groups=[np.sort(rank[g]) for g in groups],
        activators=[np.sort(rank[a]) for a in activators],
        markers=[np.sort(rank[m]) for m in markers],
        background=np.sort(rank[background]),
    )


def simulate_multiome(options: SimulationOptions | None = None) -> tuple[Any, Truth]:
    """Draw a synthetic multiome and its planted truth.

    Parameters
    ----------
    options
        Sizes, effects and the seed (defaults: 900 cells of 3 types, 24 genes of which 3 are
        targets, 192 peaks on 3 chromosomes).

    Returns
    -------
    mudata.MuData, Truth
        Modalities ``rna`` (``float32`` counts ``[n_cells, n_genes]``, var chrom/start/end/strand)
        and ``atac`` (``float32`` 0/1 ``[n_cells, n_peaks]``, var chrom/start/end, peaks named
        ``chrN:start-end``), ``obs["cell_type"]`` in both and in the MuData; ``uns["dmr_ray"]``
        marks the data as this simulator's.
    """
    import anndata as ad
    import mudata as md

    o = options or SimulationOptions()
    rng = np.random.default_rng(o.seed)
    layout = _layout(o, rng)
    n_peaks = len(layout.peaks)
    type_names = np.asarray([f"T{k + 1}" for k in range(o.n_cell_types)])
    cell_type = np.arange(o.n_cells) % o.n_cell_types
    expressed = [np.asarray([t % o.n_cell_types, (t + 1) % o.n_cell_types]) for t in range(o.n_targets)]

    # Accessibility: one open probability per cell and peak.
    open_p = np.zeros((o.n_cells, n_peaks))
    open_p[:, layout.background] = rng.uniform(0.05, 0.4, size=len(layout.background))
    for k, marker in enumerate(layout.markers):
        open_p[:, marker] = np.where(cell_type == k, o.marker_open, 0.05)[:, None]
    for t in range(o.n_targets):
        on_type = np.isin(cell_type, expressed[t])
        open_p[:, layout.groups[t]] = np.where(on_type, o.group_open, 0.1)[:, None]
        open_p[:, layout.activators[t]] = o.activator_open
    atac = (rng.random((o.n_cells, n_peaks)) < open_p).astype(np.float32)

    # Expression: cell-type means for every gene, the planted logic for the targets.
    log_mean = rng.normal(np.log(10.0), 0.8, size=(o.n_cell_types, o.n_genes))[cell_type]
    for t in range(o.n_targets):
        on = np.isin(cell_type, expressed[t]) & (atac[:, layout.groups[t]] > 0).any(axis=1)
        boost = atac[:, layout.activators[t]].sum(axis=1) * np.log(o.activator_fold)
        log_mean[:, t] = np.where(on, np.log(o.on_count) + boost, np.log(max(o.off_count, 1e-12)))
    library = rng.lognormal(0.0, 0.25, size=(o.n_cells, 1))
    mean = library * np.exp(log_mean + rng.normal(0.0, o.noise, size=log_mean.shape))
    counts = rng.poisson(mean).astype(np.float32)

    cells = [f"cell{i}" for i in range(o.n_cells)]
    obs = pd.DataFrame({"cell_type": pd.Categorical(type_names[cell_type])}, index=cells)
    gene_names = [f"G{g + 1}" for g in range(o.n_genes)]
    peak_names = [f"{c}:{s}-{e}" for c, s, e in layout.peaks.itertuples(index=False)]
    rna = ad.AnnData(X=sp.csr_matrix(counts), obs=obs.copy(), var=layout.genes.set_axis(gene_names))
    atac_ad = ad.AnnData(X=sp.csr_matrix(atac), obs=obs.copy(), var=layout.peaks.set_axis(peak_names))
    with _quiet_mudata():
        mdata = md.MuData({"rna": rna, "atac": atac_ad})
    mdata.obs["cell_type"] = obs["cell_type"]
    mdata.uns["dmr_ray"] = {"kind": KIND, "code_version": __version__, "seed": o.seed}

    names = np.asarray(peak_names)
    truth = Truth(
        genes=tuple(
            PlantedGene(
                gene=gene_names[t],
                groups=(tuple(names[layout.groups[t]].tolist()),),
                activators=tuple(names[layout.activators[t]].tolist()),
                cell_types=tuple(type_names[np.sort(expressed[t])].tolist()),
            )
            for t in range(o.n_targets)
        ),
        options=o,
    )
    return mdata, truth


def write_simulation(
    out: str | Path,
    truth_path: str | Path | None = None,
    options: SimulationOptions | None = None,
    *,
    overwrite: bool = False,
) -> Truth:
    """Simulate and write ``out`` (``.h5mu``) and, when given, ``truth_path`` (JSON), each atomically.

    Raises
    ------
    InputError
        Before writing anything, if a target exists and ``overwrite`` is not set, or exists but
        was not written by this simulator (never replaced), or its directory is missing.
    """
    out = Path(out)
    targets = [(out, _is_simulated_h5mu)]
    if truth_path is not None:
        targets.append((Path(truth_path), _is_truth_json))
    if truth_path is not None and Path(truth_path).resolve() == out.resolve():
        raise InputError(f"{out}: the data and the truth cannot be the same file")
    for path, ours in targets:
        _check_writable(path, ours, overwrite)
    mdata, truth = simulate_multiome(options)
    with _quiet_mudata():
        write_atomic(out, lambda tmp: mdata.write(tmp))
    if truth_path is not None:
        write_text_atomic(truth_path, truth.to_json())
    return truth


@contextmanager
def _quiet_mudata() -> Iterator[None]:
    """Silence mudata 0.3's notice that ``update()`` will stop pulling obs columns (we set ours explicitly)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="mudata")
        yield


def _check_writable(path: Path, ours: Any, overwrite: bool) -> None:
    if not path.parent.is_dir():
        raise InputError(f"{path}: directory {path.parent} does not exist")
    if not path.exists():
        return
    if not overwrite:
        raise InputError(f"{path}: exists; pass overwrite (--overwrite) to replace an earlier simulation")
    if not ours(path):
        raise InputError(f"{path}: exists and was not written by the dmr_ray simulator; refusing to replace it")


def _is_simulated_h5mu(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            kind = f["uns/dmr_ray/kind"][()]
    except (OSError, KeyError, TypeError):
        return False
    return (kind.decode() if isinstance(kind, bytes) else str(kind)) == KIND


def _is_truth_json(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False
