"""Where the simulation's unplanted TAL1 → GATA dependence comes from: the model's layout.

The simulator plants GATA → TAL1 and nothing back (the oracle's GATA count does not move when
the TAL1 motif is broken), yet the trained ensemble's GATA output does. This script trains the
same data three ways, side by side, and measures on held-out pair sequences:

* ``reverse``: the model's own reverse effect, the slope through the origin of Δ GATA on
  Δ TAL1 over every substitution of the TAL1-motif span (planted 0);
* ``forward``: the model's forward local effect over the GATA-motif span, and ``truth`` the
  oracle's (:func:`dmr_ray.sim.tf_coop.local_true_effects`, in the sequence's context).

Layouts: ``shared`` (the original's ``CountsRegressor``: GATA and TAL1 read the same dense
layers), ``separate`` (``small_cnn(heads="separate")``: shared convolutions, a dense tower per
task) and ``single`` (two single-task models, nothing shared). Optionally the pairs are laid out
with the outcome motif first in half of them (``--swap``), which removes the position cue that
a TAL1 motif late in a sequence carries about a GATA motif before it.

Usage::

    python benchmarks/reverse_leak.py --seeds 1 2 --members 3 [--scenario none] [--swap]

Prints one JSON object per seed and layout, then the medians over seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from dmr_ray.demo import subset_simulation
from dmr_ray.experiments.model_truth import span_slope
from dmr_ray.experiments.simulation import SCENARIOS
from dmr_ray.ism.exact import saturation_mutagenesis
from dmr_ray.models.architectures import small_cnn
from dmr_ray.models.training import train_ensemble
from dmr_ray.sim import simulate_tf_coop
from dmr_ray.sim.tf_coop import EXPOSURE_MOTIF, OUTCOME_MOTIF, TFCoopData, _observe, local_true_effects

N_TRAIN, N_TEST_PAIRS, EPOCHS, BATCH, LR = 4000, 64, 25, 100, 3e-3
GATA, TAL1 = 0, 1


class Averaged(torch.nn.Module):
    """Ensemble mean of models each returning ``[batch, k]``; outputs concatenated per model
    group first (``groups``: lists of members whose outputs are concatenated, then averaged)."""

    def __init__(self, groups: list[list[torch.nn.Module]]):
        super().__init__()
        self.groups = torch.nn.ModuleList(torch.nn.ModuleList(g) for g in groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_member = [torch.cat([m(x) for m in members], dim=1) for members in zip(*self.groups, strict=True)]
        return torch.stack(per_member).mean(dim=0)


def train(layout: str, tokens: np.ndarray, labels: np.ndarray, members: int, seed: int) -> torch.nn.Module:
    """The ``[batch, 2]`` ensemble mean of ``members`` models in ``layout``."""

    def fit(factory: Callable[[int], torch.nn.Module], y: np.ndarray) -> list[torch.nn.Module]:
        return train_ensemble(factory, tokens, y, members, seed=seed, epochs=EPOCHS, batch_size=BATCH, lr=LR)

    if layout == "single":
        return Averaged(
            [fit(lambda _: small_cnn(length=tokens.shape[1], n_tasks=1), labels[:, [t]]) for t in (GATA, TAL1)]
        )
    heads = "separate" if layout == "separate" else "shared"
    return Averaged([fit(lambda _: small_cnn(length=tokens.shape[1], n_tasks=2, heads=heads), labels)])


def swapped(sim: TFCoopData, rng: np.random.Generator) -> TFCoopData:
    """``sim`` with half its pairs re-laid as outcome motif first (same instances, same gap),
    counted again by the oracle with fresh Poisson labels."""
    tokens = sim.tokens.copy()
    exposure, outcome = sim.exposure_start.copy(), sim.outcome_start.copy()
    k_exp, k_out = EXPOSURE_MOTIF.length, OUTCOME_MOTIF.length
    for row in np.flatnonzero(sim.is_pair & (rng.random(len(tokens)) < 0.5)):
        e, o = exposure[row], outcome[row]
        gata, tal1 = sim.tokens[row, e : e + k_exp].copy(), sim.tokens[row, o : o + k_out].copy()
        tokens[row, e : e + k_out] = tal1
        tokens[row, o + k_out - k_exp : o + k_out] = gata
        exposure[row], outcome[row] = o + k_out - k_exp, e
    q, expected, labels = _observe(tokens, sim.random_confounder, sim.params, rng)
    return replace(
        sim, tokens=tokens, labels=labels, expected_counts=expected, occupancy=q,
        exposure_start=exposure, outcome_start=outcome,
    )  # fmt: skip


def measure(model: torch.nn.Module, test: TFCoopData) -> dict[str, float]:
    """Median forward and mean reverse span slopes of ``model`` on the pairs of ``test``."""
    model.eval()
    beta = saturation_mutagenesis(model, test.tokens).beta  # [n, L, 3, 2]
    forward = [
        span_slope(b, int(e), EXPOSURE_MOTIF.length, GATA, TAL1) for b, e in zip(beta, test.exposure_start, strict=True)
    ]
    reverse = [
        span_slope(b, int(o), OUTCOME_MOTIF.length, TAL1, GATA) for b, o in zip(beta, test.outcome_start, strict=True)
    ]
    return {
        "reverse_mean": float(np.nanmean(reverse)),
        "reverse_median": float(np.nanmedian(reverse)),
        "forward_median": float(np.nanmedian(forward)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--scenario", choices=tuple(SCENARIOS), default="none")
    parser.add_argument("--effect", type=float, default=0.5)
    parser.add_argument("--layouts", nargs="+", default=["shared", "separate", "single"])
    parser.add_argument("--swap", action="store_true", help="outcome motif first in half of the pairs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[dict[str, float]]] = {layout: [] for layout in args.layouts}
    for seed in args.seeds:
        sim = simulate_tf_coop(
            N_TRAIN + 8 * N_TEST_PAIRS, alpha=100.0, effect=args.effect, seed=seed, **SCENARIOS[args.scenario]
        )
        if args.swap:
            sim = swapped(sim, np.random.default_rng([seed, 1]))
        rows = np.arange(N_TRAIN, len(sim.tokens))
        test_rows = rows[sim.is_pair[rows]][:N_TEST_PAIRS]
        test = subset_simulation(sim, test_rows)
        truth = float(np.nanmedian(local_true_effects(test, context="sequence")))
        for layout in args.layouts:
            start = time.perf_counter()
            model = train(layout, sim.tokens[:N_TRAIN], sim.labels[:N_TRAIN], args.members, seed)
            row = {"seed": seed, "layout": layout, "truth_forward_median": truth, **measure(model, test)}
            row["seconds"] = round(time.perf_counter() - start, 1)
            results[layout].append(row)
            print(json.dumps(row), flush=True)
    summary = {
        layout: {k: float(np.median([r[k] for r in rows])) for k in ("reverse_mean", "forward_median")}
        for layout, rows in results.items()
    }
    print(json.dumps({"scenario": args.scenario, "swap": args.swap, "median_over_seeds": summary}))


if __name__ == "__main__":
    main()
