"""The synthetic multiome: the planted logic holds in the written data, seeds reproduce, names parse back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dmr_ray.errors import InputError
from dmr_ray.grids.coordinates import parse_interval
from dmr_ray.grids.data import read_multiome
from dmr_ray.grids.simulate import SimulationOptions, read_truth, simulate_multiome, write_simulation

SMALL = SimulationOptions(n_cells=600, n_genes=10, n_background=40, seed=3)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    truth = write_simulation(root / "d.h5mu", root / "truth.json", SMALL)
    return root, truth, read_multiome(root / "d.h5mu", target_gene=truth.genes[0].gene)


def test_gene_is_off_exactly_when_its_whole_group_is_closed(written):
    _, truth, data = written
    counts = data.rna.toarray()
    for planted in truth.genes:
        gene = data.gene_index(planted.gene)
        (group,) = truth.group_indices(planted.gene, data.peak_names)
        expressing = np.isin(data.cell_types, planted.cell_types)
        any_open = data.atac[:, group].toarray().any(axis=1)
        on = counts[expressing & any_open, gene]
        off = counts[expressing & ~any_open, gene]
        elsewhere = counts[~expressing, gene]
        assert len(off) >= 5 and len(on) >= 100  # both states are seen
        assert np.mean(on >= 8) > 0.99 and np.mean(off <= 5) > 0.98 and np.mean(elsewhere <= 5) > 0.98
        # every member is sometimes the only open one among the expressing cells
        alone = data.atac[expressing][:, group].toarray()
        assert (alone[alone.sum(axis=1) == 1].sum(axis=0) > 0).all()


def test_activators_raise_an_on_gene_and_peaks_sit_near_its_tss(written):
    _, truth, data = written
    planted = truth.genes[0]
    gene = data.gene_index(planted.gene)
    (group,) = truth.group_indices(planted.gene, data.peak_names)
    activators = [int(np.flatnonzero(data.peak_names == a)[0]) for a in planted.activators]
    normalised = np.log1p(data.rna.toarray() / data.rna.sum(axis=1).A * 1e4)[:, gene]
    on = np.isin(data.cell_types, planted.cell_types) & data.atac[:, group].toarray().any(axis=1)
    n_open = data.atac[:, activators].toarray().sum(axis=1)
    assert normalised[on & (n_open == 3)].mean() > normalised[on & (n_open <= 1)].mean() + 0.5
    tss = data.genes.start[gene]
    for j in (*group, *activators):
        assert data.peaks.chrom[j] == data.genes.chrom[gene] and abs(data.peaks.start[j] - tss) <= 200_000


def test_names_parse_back_and_truth_round_trips(written):
    root, truth, data = written
    for name, chrom, start, end in zip(
        data.peak_names, data.peaks.chrom, data.peaks.start, data.peaks.end, strict=True
    ):
        assert parse_interval(name) == (chrom, start, end)
    assert data.genes.known.all() and (data.gene_strand == 1).all()
    assert sorted(set(data.cell_types)) == ["T1", "T2", "T3"]
    assert read_truth(root / "truth.json") == truth
    assert len(set(data.peak_names)) == len(data.peak_names) == 3 * (3 + 3) + 3 * 8 + 40


def test_same_seed_same_data_other_seed_other_data():
    a, truth_a = simulate_multiome(SMALL)
    b, truth_b = simulate_multiome(SMALL)
    c, truth_c = simulate_multiome(SimulationOptions(**{**SMALL.__dict__, "seed": 4}))
    assert truth_a == truth_b and truth_a != truth_c
    for mod in ("rna", "atac"):
        assert (a[mod].X != b[mod].X).nnz == 0
        assert (a[mod].X != c[mod].X).nnz > 0


def test_refuses_to_replace_files_it_did_not_write(tmp_path):
    foreign = tmp_path / "mine.h5mu"
    foreign.write_text("precious")
    with pytest.raises(InputError, match="exists; pass overwrite"):
        write_simulation(foreign, options=SMALL)
    with pytest.raises(InputError, match="not written by the dmr_ray simulator"):
        write_simulation(foreign, options=SMALL, overwrite=True)
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(InputError, match="not written by the dmr_ray simulator"):
        write_simulation(tmp_path / "new.h5mu", truth, SMALL, overwrite=True)
    assert foreign.read_text() == "precious" and not (tmp_path / "new.h5mu").exists()
    # its own outputs are replaced with overwrite
    write_simulation(tmp_path / "new.h5mu", tmp_path / "t.json", SMALL)
    write_simulation(
        tmp_path / "new.h5mu", tmp_path / "t.json", SimulationOptions(n_cells=30, n_background=5), overwrite=True
    )
    assert read_truth(tmp_path / "t.json").options.n_cells == 30


@pytest.mark.parametrize("kwargs", [{"n_cells": 1}, {"group_open": 1.0}, {"n_targets": 30}, {"seed": 1.5}])
def test_bad_options(kwargs):
    with pytest.raises(InputError, match="simulation"):
        SimulationOptions(**kwargs)
