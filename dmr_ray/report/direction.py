"""The report's explicit direction call per unordered pair of tasks, and its evidence.

For each pair {A, B} audited in both directions the call says which direction (if any) the
audit supports. A → B is a finding only when its global effects come from the replicate test
(``inference == "replicate"``, t on R - 1 df across ensemble members; docs/direction.md),
at least one method is significant in A → B, and for every such method A → B *dominates*:
its standardized effect is significantly larger than B → A's, paired over the members
(:mod:`dmr_ray.stats.dominance`; the outputs' mutational SDs, ``effect_sd``, standardize).
"Significant" is Holm's step-down across the methods of a direction
(:func:`holm_significant`), so that three methods testing one direction do not triple the
chance of calling a direction that has no effect. A direction that is significant but does not
dominate (a model's small reverse dependence beside a large forward effect, docs/direction.md
§9-10) is shown with that evidence, never as a finding. Everything else is said as what it is:
no direction supported, significance that neither direction's dominance resolves, methods
disagreeing in sign or in the dominant direction, or (pooled inference) significance that no
replicate test backs, which counts a member's error shared by all instruments as independent
evidence and is therefore never called a direction. Without ``effect_sd`` no dominance is
tested and a direction is a finding only when no method is significant the other way. The
evidence travels with the call: the methods that agree and their p-values, the other
direction's smallest p, heterogeneity across regions (Cochran's Q) and the Egger intercept
(the share of regions whose intercept is significant, for the Egger-based methods). Those two
are flags, not vetoes: on the demo the Egger intercept is significant in both directions.

Per method and direction, :func:`direction_status` gives the same judgement for one row:
``finding``, ``not_dominant``, ``significant`` (no dominance testable) or ``not_significant``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from dmr_ray.stats.dominance import Dominance, dominance

Verdict = Literal["supported", "none", "both", "unresolved", "sign_conflict", "untested"]
Status = Literal["finding", "not_dominant", "significant", "not_significant"]

EGGER_METHODS = ("deepmr", "egger", "egger_robust")
"""Local methods whose fits carry an Egger intercept."""


@dataclass(frozen=True)
class DirectionCall:
    """The call of one unordered pair.

    Attributes
    ----------
    pair : tuple of str
        The two tasks, in the order their first ordered pair appears.
    verdict : str
        ``supported`` (a direction is a finding), ``none``, ``both`` (significant both ways and
        no dominance tested, or methods finding opposite directions), ``unresolved``
        (significant, but no direction dominates), ``sign_conflict`` or ``untested`` (pooled
        inference: no replicate test).
    direction : tuple of str or None
        ``(exposure, outcome)`` of the supported direction (``supported`` only).
    text : str
        One plain-text line: the call and its evidence.
    """

    pair: tuple[str, str]
    verdict: Verdict
    direction: tuple[str, str] | None
    text: str


@dataclass(frozen=True)
class DirectionStatus:
    """What one method's global effect in one direction says about that direction.

    Attributes
    ----------
    status : str
        ``finding`` (significant, and the direction dominates its reverse), ``not_dominant``
        (significant, but it does not dominate), ``significant`` (significant, no dominance
        testable: pooled inference, no reverse audited or no ``effect_sd``) or
        ``not_significant``.
    dominance : Dominance or None
        This direction (as forward) compared with its reverse, when testable.
    """

    status: Status
    dominance: Dominance | None


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def _significant(row: Mapping[str, Any], alpha: float) -> bool:
    return _finite(row["estimate"]) and _finite(row["p_value"]) and row["p_value"] < alpha


def holm_significant(rows: Sequence[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """The rows (one per method, one direction) whose test Holm's step-down procedure rejects.

    With the k finite p-values sorted, ``p_(1) ≤ … ≤ p_(k)``, ``H_(i)`` is rejected while
    ``p_(i) < alpha / (k − i + 1)``; the first that fails stops it. This keeps the chance that
    any of the k methods is called significant in a direction without an effect at most
    ``alpha`` (family-wise), which the plain "at least one method below alpha" does not: the
    methods test the same hypothesis on the same instruments. Rows without a finite estimate or
    p-value are never significant and do not count in k.
    """
    tested = sorted((r for r in rows if _finite(r["estimate"]) and _finite(r["p_value"])), key=lambda r: r["p_value"])
    rejected = []
    for i, row in enumerate(tested):
        if row["p_value"] >= alpha / (len(tested) - i):
            break
        rejected.append(row)
    return [r for r in rows if any(r is h for h in rejected)]


def _p(value: Any) -> str:
    return f"{value:.2g}" if _finite(value) else "n/a"


def _arrow(direction: tuple[str, str]) -> str:
    return f"{direction[0]} → {direction[1]}"


def direction_status(
    global_table: pa.Table, effect_sd: Mapping[str, float] | None = None, *, alpha: float = 0.05
) -> dict[tuple[str, str, str], DirectionStatus]:
    """Per ``(exposure, outcome, method)`` row of ``global_table``, what it says about its direction.

    Parameters
    ----------
    global_table
        ``global_effects`` rows; dominance needs ``inference == "replicate"`` and
        ``replicate_estimates`` in both directions of the pair.
    effect_sd
        Each task's mutational SD (the SD of its effects over the audit's substitutions,
        ``instruments.json``; :func:`dmr_ray.deepmr.pipeline.effect_sd`), or None for no
        dominance test.
    alpha
        Level of both the effect's test and the dominance test (one method alone: no Holm).
    """
    rows = {row_key(r): r for r in global_table.to_pylist()}
    out = {}
    for key, row in rows.items():
        compared = _dominance(row, rows.get((key[1], key[0], key[2])), effect_sd)
        if not _significant(row, alpha):
            status: Status = "not_significant"
        elif compared is None:
            status = "significant"
        else:
            status = "finding" if compared.p_forward < alpha else "not_dominant"
        out[key] = DirectionStatus(status, compared)
    return out


def _dominance(
    row: Mapping[str, Any], reverse: Mapping[str, Any] | None, effect_sd: Mapping[str, float] | None
) -> Dominance | None:
    """``row``'s direction compared with ``reverse`` (:func:`~dmr_ray.stats.dominance.dominance`),
    or None when not testable."""
    if reverse is None or effect_sd is None or row["exposure"] not in effect_sd or row["outcome"] not in effect_sd:
        return None
    if any(r.get("inference") != "replicate" or not r.get("replicate_estimates") for r in (row, reverse)):
        return None
    return dominance(
        np.asarray(row["replicate_estimates"], dtype=np.float64),
        np.asarray(reverse["replicate_estimates"], dtype=np.float64),
        effect_sd[row["exposure"]],
        effect_sd[row["outcome"]],
    )


def direction_calls(
    global_table: pa.Table,
    local_table: pa.Table | None = None,
    *,
    alpha: float = 0.05,
    effect_sd: Mapping[str, float] | None = None,
) -> list[DirectionCall]:
    """The direction call of every pair audited in both directions.

    Parameters
    ----------
    global_table
        ``global_effects`` rows (``exposure``, ``outcome``, ``method``, ``estimate``,
        ``p_value``, ``q_p``; ``inference``, ``n_replicates`` and ``replicate_estimates`` when
        present: a table without ``inference`` is pooled).
    local_table
        ``local_effects`` rows, for the Egger-intercept flag (``intercept_p``); optional.
    alpha
        Significance level.
    effect_sd
        Each task's mutational SD, for the dominance test (:func:`direction_status`); None
        calls a direction only where no method is significant the other way.

    Returns
    -------
    list of DirectionCall
        One per unordered pair, in the order of first appearance.
    """
    rows = global_table.to_pylist()
    by_direction: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_direction.setdefault((row["exposure"], row["outcome"]), []).append(row)
    egger = _egger_flags(local_table, alpha) if local_table is not None else {}
    status = direction_status(global_table, effect_sd, alpha=alpha)
    calls, seen = [], set()
    for forward in by_direction:
        reverse = (forward[1], forward[0])
        key = frozenset(forward)
        if key in seen or reverse not in by_direction:
            continue
        seen.add(key)
        calls.append(_call(forward, by_direction[forward], by_direction[reverse], egger, status, alpha))
    return calls


def _call(
    forward: tuple[str, str],
    forward_rows: Sequence[dict[str, Any]],
    reverse_rows: Sequence[dict[str, Any]],
    egger: Mapping[tuple[str, str], str],
    status: Mapping[tuple[str, str, str], DirectionStatus],
    alpha: float,
) -> DirectionCall:
    reverse = (forward[1], forward[0])
    sides = {forward: forward_rows, reverse: reverse_rows}
    replicate = all(r.get("inference") == "replicate" for rs in sides.values() for r in rs)
    evidence = _evidence(sides, egger, alpha)
    if not replicate:
        significant = {d: [r for r in rs if _significant(r, alpha)] for d, rs in sides.items()}
        found = [d for d, rs in significant.items() if rs]
        said = "; ".join(f"{_arrow(d)} for {_methods(significant[d])}" for d in found) or "neither direction"
        text = (
            f"{_arrow(forward)} / {_arrow(reverse)}: no direction called — pooled inference, no replicate "
            f"test (significant at {alpha} under pooled inference: {said}; set meta.inference: replicate)"
        )
        return DirectionCall(forward, "untested", None, f"{text}. {evidence}")
    significant = {d: holm_significant(rs, alpha) for d, rs in sides.items()}
    both = f"{_arrow(forward)} / {_arrow(reverse)}"
    n_rep = max((r.get("n_replicates") or 0 for rs in sides.values() for r in rs), default=0)
    test = f"replicate test, t on {n_rep - 1} df" if n_rep else "replicate test"
    test += f"; Holm across the {max(len(rs) for rs in sides.values())} methods of a direction"
    hits = [d for d, rs in significant.items() if rs]
    if not hits:
        ps = ", ".join(f"{_arrow(d)} smallest p = {_smallest_p(rs)}" for d, rs in sides.items())
        return DirectionCall(forward, "none", None, f"{both}: no direction supported ({test}; {ps}). {evidence}")
    compared = all(status[row_key(r)].dominance is not None for d in hits for r in significant[d])
    if compared:
        findings = {d: [r for r in significant[d] if status[row_key(r)].status == "finding"] for d in hits}
        test += "; dominance: standardized effects paired over members"
    else:
        findings = significant if len(hits) == 1 else {}
    directions = [d for d in hits if findings.get(d)]
    if len(directions) == 2:
        said = "; ".join(f"{_arrow(d)} by {_methods(findings[d])}" for d in directions)
        text = f"{both}: methods find opposite dominant directions ({test}: {said}); no single direction can be called"
        return DirectionCall(forward, "both", None, f"{text}. {evidence}")
    if not directions and compared:
        said = "; ".join(f"{_arrow(d)} for {_compared(significant[d], status)}" for d in hits)
        text = f"{both}: significant, but no direction dominates the other ({test}: {said}); no direction called"
        return DirectionCall(forward, "unresolved", None, f"{text}. {evidence}")
    if not directions:
        said = "; ".join(f"{_arrow(d)} by {_methods(significant[d])}" for d in hits)
        text = f"{both}: both directions significant ({test}: {said}); no single direction can be called"
        return DirectionCall(forward, "both", None, f"{text}. {evidence}")
    direction = directions[0]
    opposite = (direction[1], direction[0])
    signs = {r["estimate"] > 0 for r in findings[direction]}
    if len(signs) > 1:
        said = _methods(findings[direction])
        text = f"{both}: methods significant in {_arrow(direction)} disagree in sign ({said}); no direction called"
        return DirectionCall(forward, "sign_conflict", None, f"{text}. {evidence}")
    other = [r for r in sides[direction] if not any(r is f for f in findings[direction])]
    against = f"; not a finding for {_compared(other, status) if compared else _methods(other)}" if other else ""
    sign = "increases" if signs.pop() else "decreases"
    said = _compared(findings[direction], status) if compared else _methods(findings[direction])
    if significant.get(opposite):
        reverse_text = (
            f"{_arrow(opposite)} significant for {_compared(significant[opposite], status)}: "
            "a dependence dominated by the supported direction, not a direction of its own"
        )
    else:
        reverse_text = (
            f"{_arrow(opposite)} not significant for any method after Holm's correction "
            f"(smallest p = {_smallest_p(sides[opposite])})"
        )
    text = (
        f"{_arrow(direction)} supported ({sign}): {len(findings[direction])} of {len(sides[direction])} "
        f"methods agree ({said}; {test}){against}; {reverse_text}. {evidence}"
    )
    return DirectionCall(forward, "supported", direction, text)


def row_key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(exposure, outcome, method)`` of a ``global_effects`` row: the key of :func:`direction_status`."""
    return row["exposure"], row["outcome"], row["method"]


def _compared(rows: Sequence[dict[str, Any]], status: Mapping[tuple[str, str, str], DirectionStatus]) -> str:
    """Each row's estimate and p with its dominance comparison (standardized effect of its own
    direction against the reverse's, and the one-sided p of its direction dominating)."""
    parts = []
    for r in rows:
        d = status[row_key(r)].dominance
        compared = (
            f"; standardized {d.forward:.2g} against {d.reverse:.2g} the other way, "
            f"p = {_p(d.p_forward)} that it dominates"
            if d is not None
            else ""
        )
        parts.append(f"{r['method']} {r['estimate']:+.3g} (p = {_p(r['p_value'])}{compared})")
    return ", ".join(parts)


def _smallest_p(rows: Sequence[dict[str, Any]]) -> str:
    """``p (method)`` of the smallest finite p-value among ``rows``, or ``n/a``."""
    tested = [r for r in rows if _finite(r["p_value"])]
    if not tested:
        return "n/a"
    best = min(tested, key=lambda r: r["p_value"])
    return f"{_p(best['p_value'])}, {best['method']}"


def _methods(rows: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{r['method']} {r['estimate']:+.3g} (p = {_p(r['p_value'])})" for r in rows)


def _evidence(
    sides: Mapping[tuple[str, str], Sequence[dict[str, Any]]],
    egger: Mapping[tuple[str, str], str],
    alpha: float,
) -> str:
    """Heterogeneity and Egger-intercept flags of both directions."""
    parts = []
    for direction, rows in sides.items():
        heterogeneous = [r["method"] for r in rows if _finite(r.get("q_p")) and r["q_p"] < alpha]
        flags = []
        if heterogeneous:
            flags.append(f"heterogeneity across regions (Q p < {alpha}) for {', '.join(heterogeneous)}")
        if direction in egger:
            flags.append(egger[direction])
        parts.append(f"{_arrow(direction)}: {'; '.join(flags) if flags else 'no flag'}")
    return "Flags — " + " | ".join(parts) + "."


def _egger_flags(local_table: pa.Table, alpha: float) -> dict[tuple[str, str], str]:
    """Per direction, the share of Egger-based regions with a significant intercept."""
    if "intercept_p" not in local_table.column_names:
        return {}
    counts: dict[tuple[str, str], list[int]] = {}
    columns = local_table.select(["exposure", "outcome", "method", "intercept_p"]).to_pydict()
    for exposure, outcome, method, p in zip(*columns.values(), strict=True):
        if method in EGGER_METHODS and _finite(p):
            tally = counts.setdefault((exposure, outcome), [0, 0])
            tally[0] += p < alpha
            tally[1] += 1
    return {d: f"Egger intercept p < {alpha} in {k} of {n} region fits" for d, (k, n) in counts.items()}
