"""The expression-model attribution benchmark as a pipeline of stages (``dmr-ray attribution benchmark``).

Stages, each recorded in ``DIR/.dmr_ray/stages/`` (:mod:`dmr_ray.stage`):

1. ``simulation``: the hierarchical LDA data set (:func:`dmr_ray.sim.lda.simulate`), written to
   ``DIR/simulation/`` and memory-mapped by the workers. Its identity is the simulation's
   configuration and seed.
2. ``seeds`` (resumable): one engine chunk per training seed (:class:`~dmr_ray.attribution.task.SeedTask`),
   run with :func:`~dmr_ray.engine.run_task` in process or on Ray actors. Each seed's
   classifier and method results are kept in ``DIR/seeds/`` with the digests of their
   identities; a rerun computes only the parts whose identity changed (nothing at all for
   the same configuration), and more seeds add chunks without touching the finished ones.
3. ``summary``: ``summary.json`` (:func:`~dmr_ray.attribution.tables.summarise`),
   ``summary.md`` (the original's README tables) and the figures ``agreement.png`` and
   ``gap_curves.png``.

Only dmr_ray's own outputs are ever removed (a changed simulation removes ``simulation/``
and ``seeds/``); ``--overwrite`` starts afresh.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dmr_ray._atomic import write_atomic, write_text_atomic
from dmr_ray.attribution.config import KIND, AttributionConfig
from dmr_ray.attribution.figures import agreement_figure, gap_curve_figure
from dmr_ray.attribution.simdata import write_simulation
from dmr_ray.attribution.tables import markdown, summarise
from dmr_ray.attribution.task import SeedTask, read_record
from dmr_ray.engine import run_task
from dmr_ray.sim.lda import simulate
from dmr_ray.stage import AuditDirectory, Stage

log = logging.getLogger(__name__)

SIMULATION = "simulation"
SEEDS = "seeds"
SUMMARY = "summary.json"
TABLE = "summary.md"
FIGURES = ("agreement.png", "gap_curves.png")
FIGURE_DPI = 150


@dataclass(frozen=True)
class BenchmarkResult:
    """What a run of the benchmark did.

    Attributes
    ----------
    out
        The benchmark directory.
    summary
        Its ``summary.json``.
    computed
        Parts computed by this run, counted over seeds: ``classifier`` and method names
        (empty when everything was reused).
    stages_run
        Names of the stages that ran (rather than being reused).
    """

    out: Path
    summary: Path
    computed: dict[str, int]
    stages_run: tuple[str, ...]


def run_benchmark(config: AttributionConfig, *, overwrite: bool = False) -> BenchmarkResult:
    """Run (or resume) the benchmark ``config`` describes; see the module docstring.

    Raises
    ------
    ResumeConflictError
        ``out`` is not a dmr_ray directory of this kind (or ``overwrite`` is refused).
    ChunkFailedError, StalledRunError, EngineError
        From the engine; finished seeds are kept.
    """
    audit = AuditDirectory.claim(Path(config.out), KIND, overwrite=overwrite)
    out = audit.root
    ran: list[str] = []
    computed: Counter[str] = Counter()

    def run(stage: Stage, func: Callable[[], str]) -> str:
        result = audit.run(stage, func)
        log.info("%s: %s (%.1f s)", stage.title, result.summary, result.seconds)
        if result.ran:
            ran.append(stage.name)
        return stage.digest

    lda = config.simulation.lda_config()
    simulation = Stage(SIMULATION, {"config": dataclasses.asdict(lda), "seed": config.simulation.seed}, (SIMULATION,))
    simulation_digest = run(simulation, lambda: _simulate(config, out / SIMULATION))
    task = SeedTask(config, out / SIMULATION, out / SEEDS, simulation_digest)
    seeds = Stage(SEEDS, {SIMULATION: simulation_digest}, (SEEDS,), resumable=True)
    run(seeds, lambda: _seeds(config, task, computed))
    records = [read_record(task.directory, seed) for seed in config.seed_list]
    identity = {
        "records": [
            {"classifier": r["classifier"]["digest"], **{m: r["methods"][m]["digest"] for m in config.methods}}
            for r in records
        ],
        "methods": list(config.methods),
        "gaps": config.gaps.enabled,
    }
    run(Stage("summary", identity, (SUMMARY, TABLE, *FIGURES)), lambda: _summary(config, records, out))
    return BenchmarkResult(out, out / SUMMARY, dict(computed), tuple(ran))


def _simulate(config: AttributionConfig, directory: Path) -> str:
    simulation = simulate(config.simulation.lda_config(), seed=config.simulation.seed)
    data = write_simulation(simulation, directory)
    return f"{config.simulation.name}: {data.x.shape[0]} samples × {data.x.shape[1]} genes, {data.n_classes} classes"


def _seeds(config: AttributionConfig, task: SeedTask, computed: Counter[str]) -> str:
    task.directory.mkdir(parents=True, exist_ok=True)
    pending = task.pending()
    if not pending:
        return f"{task.n_chunks} seeds, all finished"
    result = run_task(task, config.engine)
    for value in result.values.values():
        computed.update(value["computed"])
    parts = ", ".join(f"{name} ×{count}" for name, count in computed.items())
    return f"{result.computed} of {task.n_chunks} seeds computed ({parts})"


def _summary(config: AttributionConfig, records: list[dict], out: Path) -> str:
    summary = summarise(config, records)
    write_text_atomic(out / SUMMARY, json.dumps(summary, indent=1))
    write_text_atomic(out / TABLE, markdown(summary))
    for name, figure in zip(FIGURES, (agreement_figure(summary), gap_curve_figure(summary)), strict=True):
        write_atomic(out / name, partial(figure.savefig, format="png", dpi=FIGURE_DPI))
    return f"{len(records)} seeds × {len(config.methods)} methods summarised"
