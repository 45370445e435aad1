"""``grids run``: the configuration's bad values are one-line errors naming the field; a run on a
small simulated multiome writes the seed's tables, GRIDS lowers the gene more than Random, and a
rerun resumes (an unchanged configuration reruns nothing, a new method reruns only what it changes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dmr_ray.config import config_from_dict, load_config
from dmr_ray.config.commands import CommandGroup
from dmr_ray.errors import ConfigError
from dmr_ray.grids.config import METHODS, GridsConfig
from dmr_ray.grids.run_cli import add_run

BASE = {"kind": "grids", "data": "m.h5mu", "out": "o", "tasks": [{"cell_type": "VIP", "gene": "GAD1", "L": 10}]}


def test_a_minimal_config_resolves_paths_and_reads_single_values_as_one_point_grids(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({**BASE, "data": {"rna": "r.h5ad", "atac": "a.h5ad"}, "search": {"k": [16, 32]}}))
    config = load_config(path)
    assert isinstance(config, GridsConfig)
    assert (config.data.rna, config.data.atac) == (tmp_path / "r.h5ad", tmp_path / "a.h5ad")
    assert config.storage_path == str(tmp_path / "o" / "tune")
    assert config.search.grid() == {"k": [16, 32], "steps": [None], "restarts": [1], "seed": [0], "mode": ["improved"]}
    assert config.search.n_configs == 2 and config.tasks[0].name == "VIP__GAD1"


def test_the_methods_are_grids_and_the_baselines() -> None:
    from dmr_ray.grids.baselines import BASELINES

    assert set(METHODS) == {"grids", *BASELINES}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"search": {"k": [16, 0]}}, "search.k: must be >= 1, got 0"),
        ({"search": {"restarts": []}}, "search.restarts: an empty list"),
        ({"search": {"mode": ["improved", "fast"]}}, "search.mode[1]: Input should be 'improved' or 'faithful'"),
        ({"methods": ["grids", "magic"]}, "methods: unknown method(s) ['magic']"),
        ({"methods": ["random"]}, "methods: must include 'grids'"),
        ({"tasks": []}, "tasks: no tasks"),
        ({"tasks": [{"cell_type": "A", "gene": "G", "L": 0}]}, "tasks[0].L: Input should be greater than 0"),
        ({"tasks": [{"cell_type": "A", "gene": "G"}]}, "tasks[0].L: field required"),
        ({"tasks": [{"cell_type": "A", "gene": "G", "L": 2, "direction": "left"}]}, "tasks[0].direction"),
        ({"tasks": [{"cell_type": "A", "gene": "G", "L": 2}] * 2}, "tasks: [1] (A, G) repeats task [0]"),
        ({"tune": {"shards": -1}}, "tune.shards: Input should be greater than or equal to 0"),
        ({"engine": {"actors": 2}}, "engine.actors: a GRIDS run sizes its shard pools by tune.shards"),
        ({"serach": {}}, "serach: unknown field (did you mean 'search'?)"),
        ({"training": {"architecture": {"widht": 3}}}, "training.architecture: unknown surrogate setting(s) ['widht']"),
        ({"training": {"architecture": "huge"}}, "training.architecture: unknown architecture 'huge'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_field(patch: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({**BASE, **patch}, source="g.yaml")
    text = str(caught.value)
    assert text.startswith("g.yaml: invalid configuration: ") and message in text and "\n" not in text


def test_grids_run_is_a_command_of_the_grids_group() -> None:
    parser = argparse.ArgumentParser()
    add_run(CommandGroup(parser.add_subparsers(dest="command")))
    args = parser.parse_args(["run", "g.yaml", "--overwrite"])
    assert args.config == Path("g.yaml") and args.overwrite


def test_a_run_writes_the_tables_and_resumes(ray_local, tmp_path: Path) -> None:
    from dmr_ray.grids.pipeline import run_grids
    from dmr_ray.grids.simulate import SimulationOptions, write_simulation

    small = SimulationOptions(n_cells=160, n_cell_types=2, n_genes=4, n_targets=1, n_background=24, n_markers=2)
    truth = write_simulation(tmp_path / "data.h5mu", tmp_path / "truth.json", small)
    gene = truth.genes[0].gene
    config = {
        **BASE,
        "data": "data.h5mu",
        "truth": "truth.json",
        "tasks": [{"cell_type": truth.genes[0].cell_types[0], "gene": gene, "L": 3}],
        "methods": ["random", "grids"],
        "search": {"k": 4, "steps": 8},
        "training": {"steps": 300, "architecture": "small"},
        "engine": {"stall_timeout_s": 120},
    }
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(config))
    first = run_grids(load_config(path), echo=lambda line: None)
    out = tmp_path / "o"
    task = json.loads(next(out.glob("*/result.json")).read_text())
    assert task["best_config"] == {"k": 4, "steps": 8, "restarts": 1, "seed": 0, "mode": "improved"}
    grids = task["methods"]["grids"]["metrics"]
    assert grids["recovery"]["groups_recovered"] in ([True], [False])  # (300 steps is too few to learn the OR)
    random = task["methods"]["random"]["metrics"]["expression_change"]
    assert grids["expression_change"]["avg_delta"] < random["avg_delta"] < 0.5
    rows = pd.read_parquet(out / "summary.parquet")
    assert sorted(rows["method"]) == ["grids", "random"] and set(rows["gene"]) == {gene}
    summary = (out / "summary.md").read_text()
    assert "| L | Cell type | Random | GRIDS |" in summary and "| 3 | Avg. |" in summary
    assert "| GRIDS | " in summary.split("planted groups recovered")[1] and summary.count("data:image/png") == 0
    assert (out / "summary.html").read_text().count("data:image/png;base64") == 2
    assert len(first.lines) == 3  # tune, methods, summary (the surrogate stage is reported by grids-search's helper)

    again = run_grids(load_config(path), echo=lambda line: None)
    assert all("reused" in line for line in again.lines)
    path.write_text(yaml.safe_dump({**config, "methods": ["random", "saliency", "grids"]}))
    changed = run_grids(load_config(path), echo=lambda line: None)
    assert ["reused" in line for line in changed.lines] == [True, False, False]
    assert "saliency" in set(pd.read_parquet(out / "summary.parquet")["method"])
