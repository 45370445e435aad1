"""One GRIDS task in process (run_search, result.json) and the grids simulate|digits|search commands."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from dmr_ray.cli import build_parser, main
from dmr_ray.errors import InputError
from dmr_ray.grids.data import read_multiome
from dmr_ray.grids.search import ARCHITECTURES, SearchOptions, read_result, run_search, split_cells
from dmr_ray.grids.simulate import SimulationOptions, write_simulation
from dmr_ray.grids.surrogate import load_surrogate
from dmr_ray.grids.training import TrainingOptions

SIM = SimulationOptions()  # the default simulation: the README path
SMALL_NET = ARCHITECTURES["small"]
QUICK = SearchOptions(methods=("grids", "random", "saliency"), steps=6)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiome")
    truth = write_simulation(root / "d.h5mu", root / "truth.json", SIM)
    return root, truth


def _search(root, out, **kwargs):
    args = {
        "truth": root / "truth.json",
        "options": QUICK,
        "training": TrainingOptions(steps=20),
        "architecture": SMALL_NET,
    }
    return run_search(root / "d.h5mu", "T1", "G1", 3, out=out, **{**args, **kwargs})


def test_result_layout_reuse_and_a_given_surrogate(simulated, tmp_path):
    torch.set_num_threads(1)
    root, truth = simulated
    result = _search(root, tmp_path / "run")
    assert result == read_result(tmp_path / "run" / "result.json")
    task = result["task"]
    assert (task["cell_type"], task["gene"], task["L"], task["seeds"]) == ("T1", "G1", 3, {"search": 0, "split": 2023})
    assert sum(task["cells"].values()) == 200 and task["cells"]["search"] == 140
    assert task["surrogate"]["trained_here"] and "mean_gene_correlation" in task["surrogate"]["heldout_accuracy"]
    data = read_multiome(root / "d.h5mu")
    assert set(result["methods"]) == {"grids", "random", "saliency"}
    for entry in result["methods"].values():
        assert (
            entry["selected_peaks"] == [data.peak_names[j] for j in entry["selected"]] and len(entry["selected"]) == 3
        )
        assert set(entry["metrics"]) == {"expression_change", "locality", "recovery"}
        assert entry["metrics"]["expression_change"]["n_cells"] == 40 and entry["seconds"] >= 0
    # an unchanged rerun reuses result.json; the saved surrogate serves another run
    stamp = (tmp_path / "run" / "result.json").stat().st_mtime_ns
    _search(root, tmp_path / "run")
    assert (tmp_path / "run" / "result.json").stat().st_mtime_ns == stamp
    model = load_surrogate(tmp_path / "run" / "surrogate")
    again = _search(root, tmp_path / "given", surrogate=tmp_path / "run" / "surrogate")
    assert not again["task"]["surrogate"]["trained_here"] and not (tmp_path / "given" / "surrogate").exists()
    assert again["methods"]["saliency"]["selected"] == result["methods"]["saliency"]["selected"]
    assert model.config.n_peaks == len(data.peak_names)


def test_on_the_default_simulation_grids_recovers_the_group_and_beats_every_baseline(simulated, tmp_path):
    """The README path: G1 in T1, every default method, a small surrogate trained 1000 steps.

    At L = 3 GRIDS selects exactly G1's OR-group; Saliency and SmoothGrad take activators or a
    single member and lower G1 less; IG and FIMAP find the same group (the best 3-set), so GRIDS
    ties them. At L = 4 GRIDS adds a planted activator and beats every baseline.
    """
    torch.set_num_threads(1)
    root, _ = simulated
    methods = _search(root, tmp_path, training=TrainingOptions(steps=1000), options=SearchOptions())["methods"]
    assert set(methods) == {"grids", "random", "saliency", "smoothgrad", "integrated_gradients", "fimap"}
    assert methods["grids"]["metrics"]["recovery"]["groups_recovered"] == [True]
    assert methods["saliency"]["metrics"]["recovery"]["groups_recovered"] == [False]
    delta = {name: entry["metrics"]["expression_change"]["avg_delta"] for name, entry in methods.items()}
    assert delta["grids"] < 1.2 * delta["saliency"] < 0 and delta["grids"] < 1.2 * delta["smoothgrad"]
    assert delta["grids"] < delta["random"]
    assert all(delta["grids"] <= delta[name] + 1e-6 for name in ("integrated_gradients", "fimap"))
    assert methods["grids"]["metrics"]["expression_change"]["rel_delta"] < -0.5

    four = run_search(root / "d.h5mu", "T1", "G1", 4, out=tmp_path / "L4", truth=root / "truth.json",
                      surrogate=tmp_path / "surrogate")["methods"]  # fmt: skip
    delta = {name: entry["metrics"]["expression_change"]["avg_delta"] for name, entry in four.items()}
    assert four["grids"]["metrics"]["recovery"]["groups_recovered"] == [True]
    assert all(delta["grids"] < delta[name] for name in four if name != "grids"), delta


def test_split_is_the_originals_random_split(simulated):
    root, _ = simulated
    data = read_multiome(root / "d.h5mu")
    cells = split_cells(data, "T2")
    members = np.flatnonzero(data.cell_types == "T2")
    parts = torch.utils.data.random_split(range(len(members)), [0.7, 0.1, 0.2], torch.Generator().manual_seed(2023))
    for ours, theirs in zip((cells.search, cells.eval, cells.test), parts, strict=True):
        np.testing.assert_array_equal(ours, np.sort(members[list(theirs.indices)]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gene": "NOPE"}, "target gene 'NOPE' is not among"),
        ({"cell_type": "T9"}, "cell type 'T9' is not in the data"),
        ({"L": 0}, "L must be an integer >= 1"),
        ({"options": SearchOptions(methods=("grids", "oracle"))}, "from"),
    ],
)
def test_bad_inputs_fail_before_any_output(simulated, tmp_path, change, message):
    root, _ = simulated
    args = {"gene": "G1", "cell_type": "T1", "L": 3, **change}
    with pytest.raises(InputError, match=message):
        run_search(root / "d.h5mu", args["cell_type"], args["gene"], args["L"], out=tmp_path / "o",
                   options=args.get("options"))  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_refuses_an_output_directory_it_did_not_write(simulated, tmp_path):
    root, _ = simulated
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not written by dmr_ray"):
        _search(root, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_commands_parse_and_help(capsys):
    for command in ("simulate", "digits", "search"):
        with pytest.raises(SystemExit) as exit_:
            main(["grids", command, "--help"])
        assert exit_.value.code == 0 and "example:" in capsys.readouterr().out
    args = build_parser().parse_args(
        ["grids", "search", "--data", "d.h5mu", "--cell-type", "T1", "--gene", "G1", "--L", "4", "--out", "o",
         "--methods", "grids", "saliency", "--steps", "8", "--train-steps", "50", "--seed", "2",
         "--architecture", "small"]
    )  # fmt: skip
    assert (args.L, args.methods, args.search_steps, args.steps, args.search_seed) == (
        4,
        ["grids", "saliency"],
        8,
        50,
        2,
    )
    args = build_parser().parse_args(["grids", "digits", "--out", "d", "--L", "5", "--steps", "30"])
    assert (args.L, args.steps) == (5, 30)


def test_simulate_command_writes_and_refuses(tmp_path, capsys):
    out = tmp_path / "d.h5mu"
    argv = ["grids", "simulate", "--out", str(out), "--truth", str(tmp_path / "t.json"), "--n-cells", "60",
            "--n-background", "5", "--seed", "2"]  # fmt: skip
    assert main(argv) == 0 and "planted targets: G1" in capsys.readouterr().out
    # anndata/mudata's routine INFO lines ("storing 'chrom' as categorical") stay out of the way
    assert all(logging.getLogger(name).level == logging.WARNING for name in ("anndata", "mudata"))
    assert json.loads((tmp_path / "t.json").read_text())["options"]["n_cells"] == 60
    assert main(argv) == 2 and "exists; pass overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
