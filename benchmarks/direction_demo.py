"""Where the demo's reverse (TAL1 -> GATA) signal comes from (docs/direction.md).

Reads a finished ``dmr-ray demo`` directory, rebuilds the demo's simulation from its seed to
locate the motifs of every audited sequence, and prints markdown tables: which substitutions
are instruments for each direction and where they lie, what the simulator (noiseless oracle),
the calibrated ensemble, the raw ensemble and each member do to the outcome at them, the
training labels by motif class, per-member (replicate-wise) IVW slopes with a t-test over
members, and the DL-pooled Egger intercepts.

Usage::

    python -m dmr_ray.cli demo --out /tmp/dir_demo
    python benchmarks/direction_demo.py /tmp/dir_demo [SEED]   # the demo's --seed, default 0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from dmr_ray.deepmr.instruments import passes_direction, passes_filter, usable
from dmr_ray.deepmr.local import LocalMROptions
from dmr_ray.deepmr.replicates import replicate_global_effects
from dmr_ray.demo import DemoSettings
from dmr_ray.ism.mutants import alt_alleles, reference_onehot
from dmr_ray.models.spec import load_model_spec
from dmr_ray.sim import simulate_tf_coop
from dmr_ray.sim.tf_coop import anscombe, oracle_counts
from dmr_ray.stats.meta import meta_analysis
from dmr_ray.store.effects import EffectsStore
from dmr_ray.uncertainty.predictors import build_predictor

GATA, TAL1 = 0, 1
PAIRS = ((TAL1, GATA, "TAL1 → GATA"), (GATA, TAL1, "GATA → TAL1"))
LOCATIONS = ("GATA motif", "TAL1 motif", "other")


def markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A pipe table of ``frame`` (floats to ``digits`` significant digits)."""

    def cell(value: object) -> str:
        return f"{value:.{digits}g}" if isinstance(value, float | np.floating) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def mean(values: np.ndarray) -> float:
    """Mean of ``values``, NaN when empty."""
    return float(values.mean()) if values.size else float("nan")


def mutants(tokens: np.ndarray) -> np.ndarray:
    """All single substitutions, ``[n, L, 3, L]`` tokens (alt order as effects.zarr)."""
    n, length = tokens.shape
    out = np.broadcast_to(tokens[:, None, None, :], (n, length, 3, length)).copy()
    idx = np.arange(length)
    out[:, idx, :, idx] = alt_alleles(tokens).transpose(1, 0, 2)
    return out


def member_effects(demo: Path, tokens: np.ndarray) -> np.ndarray:
    """Uncalibrated per-member effects ``[R, n, L, 3, T]``."""
    torch.set_num_threads(1)
    predictor = build_predictor(load_model_spec(demo / "model/model.yaml"), device="cpu")
    n, length = tokens.shape

    def predict(t: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return predictor.predict_all(reference_onehot(torch.as_tensor(t))).double().numpy()

    ref = predict(tokens)
    mut = predict(mutants(tokens).reshape(-1, length)).reshape(len(ref), n, length, 3, -1)
    return mut - ref[:, :, None, None, :]


def shared_error(effect: np.ndarray, keep: np.ndarray) -> str:
    """How much of the members' deviations from the ensemble mean (``effect [R, n, L, 3]`` at
    the instruments ``keep``) is shared by all instruments of a member, or of a member and region."""
    deviation = (effect - effect.mean(axis=0, keepdims=True))[:, keep]
    region = np.broadcast_to(np.arange(keep.shape[0])[:, None, None], keep.shape)[keep]
    member = deviation.mean(axis=1, keepdims=True)
    member_region = np.empty_like(deviation)
    correlations = []
    for i in np.unique(region):
        block = deviation[:, region == i]
        member_region[:, region == i] = block.mean(axis=1, keepdims=True)
        if block.shape[1] > 1:
            c = np.corrcoef(block.T)
            correlations.append(np.median(c[np.triu_indices_from(c, 1)]))
    total = (deviation**2).mean()
    return (
        f"Member deviations of the oriented GATA effect: variance shares member {(member**2).mean() / total:.2f}, "
        f"member x region {((member_region - member) ** 2).mean() / total:.2f}, "
        f"instrument {((deviation - member_region) ** 2).mean() / total:.2f}; median within-region "
        f"correlation between instruments {np.median(correlations):.2f}."
    )


def replicate_audit(members: np.ndarray, se: np.ndarray, seq_ids: np.ndarray, moments: dict) -> pd.DataFrame:
    """The demo's filters, estimators and DL meta-analysis on each member's effects (the
    ensemble's SEs as weights), with inference across members."""
    options = LocalMROptions(
        tasks=("GATA", "TAL1"),
        pairs=(("GATA", "TAL1"), ("TAL1", "GATA")),
        estimators=("deepmr", "ivw", "weighted_median"),
        filter="zscore",
        threshold=1.0,
        moments_mean=tuple(moments["mean"]),
        moments_sd=tuple(moments["sd"]),
        region_width=members.shape[2],
        direction_sd=tuple(moments["reference_sd"]),
        iterations=1000,
    )
    table = replicate_global_effects(members, se, seq_ids, options).to_pandas()
    df = members.shape[0] - 1
    return pd.DataFrame(
        {
            "pair": table.exposure + " → " + table.outcome,
            "method": table.method,
            "member estimates": [" ".join(f"{v:.3f}" for v in row) for row in table.replicate_estimates],
            "mean": table.estimate,
            f"95 % CI (t{df})": [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(table.ci_low, table.ci_high, strict=True)],
            "p": table.p_value,
        }
    )


def main(demo: Path, seed: int = 0) -> None:
    """Print the tables of docs/direction.md for the demo in ``demo``."""
    effects = EffectsStore.open(str(demo / "audit/effects.zarr")).read()
    beta, se = effects["beta"].astype(np.float64), effects["se"].astype(np.float64)
    moments = json.loads((demo / "audit/instruments.json").read_text())
    settings = DemoSettings()
    total = settings.n_train + settings.n_calibration + 8 * settings.n_audit
    sim = simulate_tf_coop(total, length=settings.length, effect=settings.effect, seed=seed)
    rows = np.array([int(i[3:]) for i in effects["seq_id"].astype(str)])
    tokens = sim.tokens[rows]
    n, length = tokens.shape
    pos = np.arange(length)
    where = np.full((n, length), "other", dtype=object)
    for start, name in ((sim.exposure_start[rows], "GATA motif"), (sim.outcome_start[rows], "TAL1 motif")):
        where[(pos >= start[:, None]) & (pos < start[:, None] + 10)] = name
    where = np.repeat(where[:, :, None], 3, axis=2)
    mut = anscombe(oracle_counts(mutants(tokens).reshape(-1, length), sim.params)).reshape(n, length, 3, 2)
    oracle = mut - anscombe(oracle_counts(tokens, sim.params))[:, None, None, :]
    members = member_effects(demo, tokens)

    def select(x: int, y: int, direction: bool) -> np.ndarray:
        bx, by = beta[..., x], beta[..., y]
        keep = usable(bx, se[..., x], by, se[..., y])
        keep &= passes_filter(
            bx, se[..., x], kind="zscore", threshold=1.0, mean=moments["mean"][x], sd=moments["sd"][x]
        )
        if direction:
            keep &= passes_direction(bx, by, moments["reference_sd"][x], moments["reference_sd"][y])
        return keep

    def ivw(bx: np.ndarray, by: np.ndarray, w: np.ndarray, keep: np.ndarray) -> float:
        return float((w * bx * by)[keep].sum() / (w * bx**2)[keep].sum())

    locations = []
    for x, y, name in PAIRS:
        w = 1 / se[..., y] ** 2
        for direction in (False, True):
            keep = select(x, y, direction)
            den = (w * beta[..., x] ** 2)[keep].sum()
            for loc in LOCATIONS:
                m = keep & (where == loc)
                locations.append(
                    {
                        "pair": name,
                        "direction filter": direction,
                        "location": loc,
                        "instruments": int(m.sum()),
                        "mean abs bx": mean(np.abs(beta[..., x][m])),
                        "mean oriented by (model)": mean((np.sign(beta[..., x]) * beta[..., y])[m]),
                        "mean abs by (oracle)": mean(np.abs(oracle[..., y][m])),
                        "IVW weight share": (w * beta[..., x] ** 2)[m].sum() / den,
                    }
                )
    print("## Instruments by location\n")
    print(markdown(pd.DataFrame(locations), 4))

    keep = select(TAL1, GATA, True)
    m = keep & (where == "TAL1 motif")
    sign = np.sign(beta[..., TAL1])
    sources = {"oracle (simulator)": oracle, "calibrated ensemble (effects.zarr)": beta}
    sources["raw ensemble"] = members.mean(axis=0)
    sources.update({f"member {r}": members[r] for r in range(len(members))})
    response = [
        {
            "source": label,
            "mean abs ΔTAL1": np.abs(b[..., TAL1][m]).mean(),
            "mean oriented ΔGATA": (sign * b[..., GATA])[m].mean(),
            "share with ΔGATA of bx's sign": (np.sign(b[..., GATA][m]) == sign[m]).mean(),
        }
        for label, b in sources.items()
    ]
    print(f"\n## GATA response at the {int(m.sum())} reverse instruments in the TAL1 motif\n")
    print(markdown(pd.DataFrame(response), 3))

    print("\n" + shared_error(sign[None] * members[..., GATA], m))
    design = np.c_[np.ones(int(m.sum())), np.abs(beta[..., TAL1][m])]
    fit = np.linalg.lstsq(design, (sign * beta[..., GATA])[m], rcond=None)[0]
    print(f"\nPooled OLS over these instruments: oriented by = {fit[0]:.3f} + {fit[1]:.3f} |bx|.")

    held_out = np.arange(settings.n_train + settings.n_calibration, total)
    context = []
    for label, chosen in (
        ("pair (audited)", rows),
        ("outcome-only (held out)", held_out[sim.has_outcome[held_out] & ~sim.has_exposure[held_out]][:64]),
    ):
        effect = members.mean(axis=0) if label.startswith("pair") else member_effects(demo, sim.tokens[chosen]).mean(0)
        start = sim.outcome_start[chosen]
        core = (pos >= start[:, None] + 1) & (pos < start[:, None] + 9)  # the 8 strict TAL1 positions
        core = np.repeat(core[:, :, None], 3, axis=2)
        context.append(
            {
                "sequences": label,
                "n": chosen.size,
                "core TAL1 substitutions": int(core.sum()),
                "mean ΔTAL1": effect[..., TAL1][core].mean(),
                "mean ΔGATA": effect[..., GATA][core].mean(),
            }
        )
    print("\n## Raw-ensemble effects of TAL1-core substitutions by sequence class\n")
    print(markdown(pd.DataFrame(context), 3))

    train = np.arange(settings.n_train)
    labels = []
    for has_gata in (True, False):
        for has_tal1 in (True, False):
            sel = train[(sim.has_exposure[train] == has_gata) & (sim.has_outcome[train] == has_tal1)]
            labels.append(
                {
                    "GATA motif": has_gata,
                    "TAL1 motif": has_tal1,
                    "n": sel.size,
                    "mean GATA label": sim.labels[sel, 0].mean(),
                    "mean TAL1 label": sim.labels[sel, 1].mean(),
                }
            )
    print("\n## Training labels by motif class\n")
    print(markdown(pd.DataFrame(labels), 4))

    replicate = []
    for x, y, name in PAIRS:
        keep, w = select(x, y, True), 1 / se[..., y] ** 2
        slopes = np.array([ivw(d[..., x], d[..., y], w, keep) for d in members])
        half = stats.t.ppf(0.975, len(slopes) - 1) * slopes.std(ddof=1) / np.sqrt(len(slopes))
        t = slopes.mean() / (slopes.std(ddof=1) / np.sqrt(len(slopes)))
        replicate.append(
            {
                "pair": name,
                "ensemble IVW (pooled instruments)": ivw(beta[..., x], beta[..., y], w, keep),
                "member IVW slopes": " ".join(f"{s:.3f}" for s in slopes),
                "mean": slopes.mean(),
                "between-member SD": slopes.std(ddof=1),
                "95 % CI (t4)": f"[{slopes.mean() - half:.3f}, {slopes.mean() + half:.3f}]",
                "p (t4)": 2 * stats.t.sf(abs(t), len(slopes) - 1),
            }
        )
    print("\n## Replicate-wise IVW (each member's own effects, the ensemble's instruments)\n")
    print(markdown(pd.DataFrame(replicate), 3))

    print("\n## Replicate-wise audit: the audit's MR and meta-analysis on each member's effects\n")
    print(markdown(replicate_audit(members, se, effects["seq_id"].astype(str), moments), 3))

    local = pd.read_parquet(demo / "audit/local_effects.parquet")
    intercepts = []
    for x, y, name in PAIRS:
        sub = local[(local.exposure == ("GATA", "TAL1")[x]) & (local.outcome == ("GATA", "TAL1")[y])]
        egger = sub[(sub.method == "deepmr") & (sub.intercept_se > 0) & np.isfinite(sub.intercept_se)]
        pooled = meta_analysis(egger.intercept.to_numpy(), egger.intercept_se.to_numpy(), method="DL")
        row = {"pair": name, "pooled Egger intercept": pooled.estimate, "SE": pooled.se, "p": pooled.p_value}
        for method in ("deepmr", "ivw", "weighted_median"):
            fits = sub[(sub.method == method) & sub.p_value.notna()]
            row[f"{method}: regions p<0.05"] = f"{int((fits.p_value < 0.05).sum())}/{len(fits)}"
        intercepts.append(row)
    print("\n## Egger intercepts (DL-pooled) and regions called significant\n")
    print(markdown(pd.DataFrame(intercepts), 3))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/dir_demo"), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
