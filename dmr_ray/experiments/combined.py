"""The simulation experiment across scenarios: one table and one set of figures.

:func:`combine_simulation_summaries` reads the ``summary.json`` (and the rounds' ``round.json``,
for the local estimates) of several ``dmr-ray experiment simulation`` directories, typically
one per scenario, and writes into ``out``:

    .dmr_ray/experiment.json   marks the directory (``{"experiment": "simulation-summary"}``)
    summary.json               ``experiments`` (directory, scenario, size, seed, rounds),
                               ``table`` (a row per scenario × method), ``seed_table``, ``figures``
    summary.md                 the same tables and the figures
    *.png                      :func:`dmr_ray.experiments.plots.write_experiment_figures`
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dmr_ray._atomic import write_text_atomic
from dmr_ray.errors import InputError

IDENTITY = {"experiment": "simulation-summary"}


def load_experiment(directory: Path) -> dict[str, Any]:
    """An experiment's ``summary.json`` with its ``per_round`` rows read from ``round.json`` where present.

    Raises
    ------
    InputError
        ``directory`` holds no simulation experiment summary.
    """
    from dmr_ray.experiments.simulation import round_file

    path = directory / "summary.json"
    if not path.is_file():
        raise InputError(f"{directory}: no summary.json; run dmr-ray experiment simulation --out {directory} first")
    summary = json.loads(path.read_text())
    if summary.get("experiment") != "simulation":
        raise InputError(f"{path} is not the summary of a dmr_ray simulation experiment")
    rows = [
        json.loads(round_file(directory, row["round"]).read_text())
        if round_file(directory, row["round"]).is_file()
        else row
        for row in summary["per_round"]
    ]
    return {**summary, "per_round": rows}


def combine_simulation_summaries(directories: Sequence[Path], out: Path) -> dict[str, Any]:
    """Write the table and figures of the experiments in ``directories`` into ``out``; returns the summary.

    Experiments are ordered by scenario (none, sequence, random, both), then as given.

    Raises
    ------
    InputError
        No directory, one without a summary, the same experiment (scenario, size, seed) twice,
        experiments with different methods, or an ``out`` that is neither empty nor a
        directory this function wrote — before anything is written.
    """
    from dmr_ray.experiments.directory import claim_experiment_directory
    from dmr_ray.experiments.plots import write_experiment_figures
    from dmr_ray.experiments.simulation import SCENARIOS
    from dmr_ray.experiments.tables import methods_of, score_markdown, score_rows, seed_table_markdown, seed_table_rows

    if not directories:
        raise InputError("directories: give at least one simulation experiment directory")
    loaded = [(Path(d), load_experiment(Path(d))) for d in directories]
    order = list(SCENARIOS)
    loaded.sort(key=lambda item: order.index(item[1]["scenario"]) if item[1]["scenario"] in order else len(order))
    seen: dict[tuple[Any, ...], Path] = {}
    for directory, summary in loaded:
        key = (summary["scenario"], summary["size"], summary["seed"])
        if key in seen:
            raise InputError(f"{directory} and {seen[key]} hold the same experiment {key}; give each once")
        seen[key] = directory
        if methods_of(summary) != methods_of(loaded[0][1]):
            raise InputError(
                f"{directory} has methods {methods_of(summary)}, {loaded[0][0]} has {methods_of(loaded[0][1])}; "
                "combine experiments run with the same methods"
            )
    claim_experiment_directory(out, IDENTITY, (), overwrite=False)
    summaries = [summary for _, summary in loaded]
    result: dict[str, Any] = {
        **IDENTITY,
        "experiments": [
            {"directory": str(d), **{k: s[k] for k in ("scenario", "size", "seed", "rounds")}} for d, s in loaded
        ],
        "table": score_rows(summaries),
        "seed_table": seed_table_rows(summaries),
        "figures": [path.name for path in write_experiment_figures(summaries, out)],
    }
    write_text_atomic(out / "summary.json", json.dumps(result, indent=1))
    lines = [
        "# Simulation experiment across scenarios",
        "",
        *(
            f"* `{e['directory']}`: scenario {e['scenario']}, {e['rounds']} rounds, size {e['size']}, seed {e['seed']}"
            for e in result["experiments"]
        ),  # fmt: skip
        "",
        "Scores per scenario and method:",
        "",
        score_markdown(result["table"]),
        "In the original's layout (deep_mr.md §9; global CE as mean ± SD over rounds, r = their correlation):",
        "",
        seed_table_markdown(result["seed_table"]),
        "Figures:",
        "",
        *(f"![{name}]({name})" for name in result["figures"]),
    ]
    write_text_atomic(out / "summary.md", "\n".join(lines) + "\n")
    return result
