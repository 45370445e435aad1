"""Local causal effects: MR of outcome effects on exposure effects, per sequence region.

One call handles one chunk of ``effects.zarr``: every region of every sequence, every
exposure -> outcome pair and every estimator, vectorised with the batched estimators of
:mod:`dmr_ray.stats.batched` (no Python loop over regions). The result is a long Arrow table,
one row per (seq_id, region, exposure, outcome, method), with the DESIGN schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import stats

from dmr_ray.deepmr.instruments import passes_direction, passes_filter, region_rms, usable
from dmr_ray.errors import InputError
from dmr_ray.stats import batched
from dmr_ray.stats.batched import Reason

ROBUST_ABOVE = 10
"""The original fits robust Egger to regions with more than this many instruments."""

_MR_FIELDS = (
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "p_value",
    "intercept",
    "intercept_se",
    "intercept_p",
    "i2_gx",
    "rse",
    "q",
    "q_p",
)

SCHEMA = pa.schema(
    [
        ("seq_id", pa.string()),
        ("region", pa.int32()),
        ("region_start", pa.int32()),
        ("region_end", pa.int32()),
        ("exposure", pa.string()),
        ("outcome", pa.string()),
        ("method", pa.string()),
        ("estimator", pa.string()),
    ]
    + [(name, pa.float64()) for name in _MR_FIELDS]
    + [("direction", pa.int8()), ("n_instruments", pa.int32()), ("n_unusable", pa.int32()), ("reason", pa.string())]
    + [("inference", pa.string())]
)
"""Columns of ``local_effects.parquet``. ``inference`` says where a row's SE, CI and p-value
come from: ``ensemble`` (the fit of the ensemble's effects) or ``replicate`` (the spread of
the replicates' fits, :func:`local_replicate_inference`)."""

REPLICATE = "replicate"
"""The column of ``local_replicates.parquet`` naming the replicate (0 .. R - 1) of a row."""


@dataclass(frozen=True)
class LocalMROptions:
    """How local effects are computed (everything that changes the numbers).

    Parameters
    ----------
    tasks
        Task names in effects-store order.
    pairs
        Ordered (exposure, outcome) task names.
    estimators
        Per-region estimators (see :data:`dmr_ray.config.MR_METHODS`).
    filter, threshold
        Instrument filter (see :func:`dmr_ray.deepmr.instruments.passes_filter`).
    moments_mean, moments_sd
        Pooled per-task effect moments for the z-score filter (empty for ``wald``).
    region_width
        Region width in bp; the whole window when equal to the sequence length.
    direction_sd
        Per-task SD of the reference predictions; when given, the direction (Steiger-style)
        filter keeps only instruments that move the exposure more than the outcome.
    direction_scale
        Each output's scale in the direction filter: ``"reference"`` (``direction_sd``) or
        ``"region"`` (the root mean square of its effects over the region's substitutions;
        :func:`dmr_ray.deepmr.instruments.region_rms`).
    direction_against
        ``"outcome"``: the direction filter compares the exposure with the outcome;
        ``"all"``: with every other task as well (an instrument must move the exposure more
        than any other task, each on its own scale).
    alpha, iterations, seed
        Confidence level and bootstrap settings of the estimators.
    inference
        ``"ensemble"``: each row's inference is its fit of the ensemble's effects;
        ``"replicate"``: from the spread of the replicates' fits (the local stage then needs
        every replicate's effects).
    """

    tasks: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    estimators: tuple[str, ...]
    filter: str
    threshold: float
    moments_mean: tuple[float, ...]
    moments_sd: tuple[float, ...]
    region_width: int
    direction_sd: tuple[float, ...] = ()
    direction_scale: str = "reference"
    direction_against: str = "outcome"
    alpha: float = 0.05
    iterations: int = 10_000
    seed: int = 314159265
    inference: str = "ensemble"


@dataclass(frozen=True)
class RegionRows:
    """Instruments of one exposure -> outcome pair, one padded row per (sequence, region)."""

    bx: np.ndarray
    bxse: np.ndarray
    by: np.ndarray
    byse: np.ndarray
    mask: np.ndarray
    n_unusable: np.ndarray


def _tile(a: np.ndarray, width: int, fill: float) -> np.ndarray:
    """[n, L, 3] -> [n * n_regions, width * 3], padding the last region with ``fill``."""
    n, length, alts = a.shape
    n_regions = -(-length // width)
    padded = np.full((n, n_regions * width, alts), fill, dtype=a.dtype)
    padded[:, :length] = a
    return padded.reshape(n * n_regions, width * alts)


def instrument_mask(
    beta: np.ndarray, se: np.ndarray, exposure: int, outcome: int, options: LocalMROptions
) -> np.ndarray:
    """``bool [n, L, 3]``: the substitutions that are instruments of one pair (usable, passing
    the strength filter and, when on, the direction filter: against the outcome, or against
    every other task with ``direction_against: "all"``)."""
    bx, sx = beta[..., exposure], se[..., exposure]
    by, sy = beta[..., outcome], se[..., outcome]
    mean = options.moments_mean[exposure] if options.moments_mean else None
    sd = options.moments_sd[exposure] if options.moments_sd else None
    keep = usable(bx, sx, by, sy) & passes_filter(
        bx, sx, kind=options.filter, threshold=options.threshold, mean=mean, sd=sd
    )
    if options.direction_sd:
        against = range(beta.shape[-1]) if options.direction_against == "all" else (outcome,)

        def scale(task: int) -> float | np.ndarray:
            if options.direction_scale == "region":
                return region_rms(beta[..., task], options.region_width)
            return options.direction_sd[task]

        scale_x = scale(exposure)
        for task in against:
            if task != exposure:
                keep &= passes_direction(bx, beta[..., task], scale_x, scale(task))
    return keep


def instrument_masks(beta: np.ndarray, se: np.ndarray, options: LocalMROptions) -> dict[tuple[str, str], np.ndarray]:
    """:func:`instrument_mask` of every pair of ``options`` on the ``[n, L, 3, T]`` effects
    ``beta``: ``(exposure, outcome) → bool [n, L, 3]``."""
    index = {name: i for i, name in enumerate(options.tasks)}
    return {
        (exposure, outcome): instrument_mask(beta, se, index[exposure], index[outcome], options)
        for exposure, outcome in options.pairs
    }


def region_rows(
    beta: np.ndarray,
    se: np.ndarray,
    exposure: int,
    outcome: int,
    options: LocalMROptions,
    instruments: np.ndarray | None = None,
) -> RegionRows:
    """Gather the instruments of one pair into padded region rows (kept ones first).

    ``instruments`` (``bool [n, L, 3]``) fixes which substitutions are instruments, e.g. the
    ensemble's when ``beta`` is one replicate's; by default :func:`instrument_mask` of ``beta``.
    A given mask is narrowed to the substitutions usable in ``beta``.
    """
    bx, sx = beta[..., exposure], se[..., exposure]
    by, sy = beta[..., outcome], se[..., outcome]
    ok = usable(bx, sx, by, sy)
    keep = instrument_mask(beta, se, exposure, outcome, options) if instruments is None else instruments & ok
    width = options.region_width
    exists = _tile(np.isfinite(bx), width, False)
    keep_rows = _tile(keep, width, False)
    n_unusable = (exists & ~_tile(ok, width, False)).sum(axis=1)
    order = np.argsort(~keep_rows, axis=1, kind="stable")
    n_kept = keep_rows.sum(axis=1)
    width_j = max(int(n_kept.max(initial=0)), 1)
    order = order[:, :width_j]

    def take(a: np.ndarray, fill: float) -> np.ndarray:
        return np.take_along_axis(_tile(a, width, fill), order, axis=1).astype(np.float64)

    mask = np.take_along_axis(keep_rows, order, axis=1)
    # Padding must hold valid numbers for the estimators' input checks; the mask hides it.
    return RegionRows(
        bx=np.where(mask, take(bx, 1.0), 1.0),
        bxse=np.where(mask, take(sx, 1.0), 1.0),
        by=np.where(mask, take(by, 0.0), 0.0),
        byse=np.where(mask, take(sy, 1.0), 1.0),
        mask=mask,
        n_unusable=n_unusable,
    )


def _run_estimator(name: str, rows: RegionRows, options: LocalMROptions) -> tuple[dict, np.ndarray]:
    """Columns of one estimator over all rows, and the per-row estimator actually used."""
    args = (rows.bx, rows.bxse, rows.by, rows.byse, rows.mask)
    boot = {"iterations": options.iterations, "seed": options.seed}
    n_rows = rows.mask.shape[0]
    if name == "steiger":
        test = batched.steiger(*args, alpha=options.alpha)
        cols = {
            "estimate": test.mean_difference,
            "se": test.se,
            "ci_low": test.ci_low,
            "ci_high": test.ci_high,
            "p_value": test.p_value,
            "direction": test.direction,
            "n_instruments": test.n_instruments,
            "reason": test.reason,
        }
        return cols, np.full(n_rows, "steiger", dtype=object)
    if name == "deepmr":
        return _deepmr_rows(rows, options)
    if name == "egger_robust":
        res = batched.egger(*args, alpha=options.alpha, robust=True, seed=options.seed)
    elif name in ("weighted_median", "mbe"):
        res = getattr(batched, name)(*args, alpha=options.alpha, **boot)
    else:
        res = getattr(batched, name)(*args, alpha=options.alpha)
    return _mr_columns(res), np.full(n_rows, name, dtype=object)


def _mr_columns(res: batched.BatchedMRResult) -> dict:
    cols = {f: getattr(res, f) for f in _MR_FIELDS if getattr(res, f) is not None}
    cols["n_instruments"] = res.n_instruments
    cols["reason"] = res.reason
    return cols


def _deepmr_rows(rows: RegionRows, options: LocalMROptions) -> tuple[dict, np.ndarray]:
    """The original's rule: robust Egger above 10 instruments, plain Egger for 3-10."""
    args = (rows.bx, rows.bxse, rows.by, rows.byse, rows.mask)
    cols = _mr_columns(batched.egger(*args, alpha=options.alpha))
    n = rows.mask.sum(axis=1)
    estimator = np.where(n > ROBUST_ABOVE, "egger_robust", "egger").astype(object)
    estimator[n < batched.MIN_INSTRUMENTS["egger"]] = ""
    big = np.flatnonzero(n > ROBUST_ABOVE)
    if big.size:
        robust = _mr_columns(
            batched.egger(*(a[big] for a in args), alpha=options.alpha, robust=True, seed=options.seed)
        )
        for key, values in robust.items():
            column = np.asarray(cols.get(key, np.full(n.shape, np.nan)), dtype=np.result_type(values))
            column[big] = values
            cols[key] = column
    return cols, estimator


def local_effects_table(
    beta: np.ndarray,
    se: np.ndarray,
    seq_ids: np.ndarray,
    options: LocalMROptions,
    *,
    instruments: Mapping[tuple[str, str], np.ndarray] | None = None,
) -> pa.Table:
    """Local causal effects of one chunk of ``effects.zarr``.

    Parameters
    ----------
    beta, se
        ``[n, L, 3, T]`` effects and standard errors of one chunk.
    seq_ids
        ``[n]`` identifiers; every row of the output carries its sequence's id.
    options
        What to compute.
    instruments
        Which substitutions are each pair's instruments (:func:`instrument_masks`, e.g. of the
        ensemble's effects when ``beta`` is one replicate's); chosen on ``beta`` itself by
        default.

    Returns
    -------
    pyarrow.Table
        One row per (seq_id, region, exposure, outcome, method), schema :data:`SCHEMA`.
    """
    n, length = beta.shape[:2]
    width = options.region_width
    n_regions = -(-length // width)
    region = np.tile(np.arange(n_regions, dtype=np.int32), n)
    index = {name: i for i, name in enumerate(options.tasks)}
    parts = []
    for exposure, outcome in options.pairs:
        chosen = None if instruments is None else instruments[exposure, outcome]
        rows = region_rows(beta, se, index[exposure], index[outcome], options, chosen)
        for method in options.estimators:
            cols, estimator = _run_estimator(method, rows, options)
            parts.append(
                _part(cols, estimator, seq_ids, region, width, length, exposure, outcome, method, rows.n_unusable)
            )
    return pa.concat_tables(parts) if parts else SCHEMA.empty_table()


def replicate_local_effects(
    replicate_beta: np.ndarray,
    se: np.ndarray,
    seq_ids: np.ndarray,
    options: LocalMROptions,
    *,
    instruments: Mapping[tuple[str, str], np.ndarray] | None = None,
) -> pa.Table:
    """Local effects of every replicate: :func:`~dmr_ray.deepmr.local.local_effects_table` of
    each replicate's effects with the ensemble's SEs, plus the column :data:`REPLICATE`.

    With ``instruments`` (:func:`instrument_masks` of the ensemble's effects) every replicate
    is fitted on the ensemble's instruments, so the replicates differ only in their effects,
    not in which substitutions they use; without, each on its own.

    Parameters
    ----------
    replicate_beta
        ``[R, n, L, 3, T]`` effects of each replicate (``f_r(mut) - f_r(ref)``), R >= 2.
    se
        ``[n, L, 3, T]`` standard errors of the ensemble effects: the weights of every
        replicate's fits and, through the filters of ``options``, part of instrument selection.
    seq_ids
        ``[n]`` sequence identifiers.
    options
        Instrument filters and estimators, as for the audit's local stage.

    Returns
    -------
    pyarrow.Table
        The rows of each replicate in turn (schema :data:`~dmr_ray.deepmr.local.SCHEMA` and
        ``replicate int16``).

    Raises
    ------
    InputError
        Fewer than two replicates, or shapes that do not match.
    """
    replicate_beta = np.asarray(replicate_beta)
    if replicate_beta.ndim != 5 or replicate_beta.shape[0] < 2 or replicate_beta.shape[1:] != np.shape(se):
        raise InputError(
            f"replicate_beta must be [R >= 2, n, L, 3, T] matching se {np.shape(se)}, got {replicate_beta.shape}"
        )
    tables = []
    for r, beta in enumerate(replicate_beta):
        table = local_effects_table(beta, se, seq_ids, options, instruments=instruments)
        tables.append(table.append_column(REPLICATE, pa.array(np.full(table.num_rows, r, dtype=np.int16))))
    return pa.concat_tables(tables)


def _part(
    cols: dict,
    estimator: np.ndarray,
    seq_ids: np.ndarray,
    region: np.ndarray,
    width: int,
    length: int,
    exposure: str,
    outcome: str,
    method: str,
    n_unusable: np.ndarray,
) -> pa.Table:
    n_rows = region.shape[0]
    n_regions = n_rows // len(seq_ids)
    reason = np.asarray(cols["reason"])
    data = {
        "seq_id": np.repeat(np.asarray(seq_ids).astype(str), n_regions),
        "region": region,
        "region_start": region * width,
        "region_end": np.minimum((region + 1) * width, length),
        "exposure": np.full(n_rows, exposure, dtype=object),
        "outcome": np.full(n_rows, outcome, dtype=object),
        "method": np.full(n_rows, method, dtype=object),
        "estimator": estimator,
        "direction": cols.get("direction", np.zeros(n_rows, dtype=np.int8)),
        "n_instruments": cols["n_instruments"],
        "n_unusable": n_unusable,
        "reason": np.array([Reason(int(r)).name.lower() for r in reason], dtype=object),
        "inference": np.full(n_rows, "ensemble", dtype=object),
    }
    for name in _MR_FIELDS:
        data[name] = cols.get(name, np.full(n_rows, np.nan))
    return pa.Table.from_pydict({f.name: pa.array(data[f.name], type=f.type) for f in SCHEMA}, schema=SCHEMA)


def across_replicates(estimates: np.ndarray, alpha: float) -> dict[str, np.ndarray]:
    """Inference from ``estimates [rows, R]``: the mean, SE = SD (ddof 1) / sqrt(R), and the
    CI and two-sided p-value from Student's t on R - 1 df (NaN wherever a replicate is)."""
    n_rep = estimates.shape[1]
    mean = estimates.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sem = estimates.std(axis=1, ddof=1) / np.sqrt(n_rep)
        half = stats.t.ppf(1 - alpha / 2, n_rep - 1) * sem
        p_value = 2 * stats.t.sf(np.abs(mean / sem), n_rep - 1)
    return {"estimate": mean, "se": sem, "ci_low": mean - half, "ci_high": mean + half, "p_value": p_value}


def local_replicate_inference(local: pa.Table, local_replicates: pa.Table, *, alpha: float = 0.05) -> pa.Table:
    """``local`` (the ensemble's region fits) with each row's inference taken from its replicates.

    Per row, the estimate is the mean of the R replicates' fits of the same region on the
    same instruments (:func:`replicate_local_effects` with
    ``instruments``), its SE their SD (ddof 1) / sqrt(R), and the CI and p-value come from
    Student's t on R - 1 df: an interval for the effect the model's members agree on, whose
    width is their disagreement, rather than the ensemble fit's, whose SEs count one member's
    error shared by all instruments as independent evidence. The fit's other columns
    (intercept, heterogeneity, instruments) stay the ensemble's; ``inference`` is ``replicate``.

    Parameters
    ----------
    local
        Local effects of one chunk (:func:`local_effects_table`).
    local_replicates
        The same chunk's replicate rows: R copies of ``local``'s rows, in its order, with
        the column :data:`REPLICATE`.
    alpha
        1 - confidence level.

    Raises
    ------
    InputError
        Fewer than two replicates, or replicate rows that do not match ``local``'s.
    """
    n_rows = local.num_rows
    if n_rows == 0 or local_replicates.num_rows % n_rows or local_replicates.num_rows < 2 * n_rows:
        raise InputError(
            f"local replicate inference needs R >= 2 copies of the {n_rows} ensemble rows, "
            f"got {local_replicates.num_rows} replicate rows"
        )
    n_rep = local_replicates.num_rows // n_rows
    for name in ("seq_id", "region", "exposure", "outcome", "method"):
        mine, theirs = local.column(name).to_pylist(), local_replicates.column(name).to_pylist()
        if theirs != mine * n_rep:
            raise InputError(f"replicate rows do not match the ensemble's local rows (column {name!r})")
    estimates = local_replicates.column("estimate").to_numpy(zero_copy_only=False).reshape(n_rep, n_rows).T
    table = local
    for name, values in across_replicates(estimates, alpha).items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, type=pa.float64()))
    index = table.schema.get_field_index("inference")
    return table.set_column(index, "inference", pa.array(["replicate"] * n_rows, type=pa.string()))
