"""The report's explicit direction call per unordered pair of tasks, and its evidence.

For each pair {A, B} audited in both directions the call says which direction (if any) the
audit supports: A → B is a finding only when its global effects come from the replicate test
(``inference == "replicate"``, t on R - 1 df across ensemble members; docs/direction.md),
at least one method is significant in A → B, none is in B → A, and the significant methods
agree in sign. "Significant" is Holm's step-down across the methods of a direction
(:func:`holm_significant`), so that three methods testing one direction do not triple the
chance of calling a direction that has no effect. Everything else is said as what it is: no
direction supported, both directions significant, methods disagreeing in sign, or (pooled
inference) significance that no replicate test backs, which counts a member's error shared by
all instruments as independent evidence and is therefore never called a direction. The
evidence travels with the call: the methods that agree and their p-values, the other
direction's smallest p, heterogeneity across regions (Cochran's Q) and the Egger intercept
(the share of regions whose intercept is significant, for the Egger-based methods). Those two
are flags, not vetoes: on the demo the Egger intercept is significant in both directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

Verdict = Literal["supported", "none", "both", "sign_conflict", "untested"]

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
        ``supported`` (a direction is a finding), ``none``, ``both``, ``sign_conflict`` or
        ``untested`` (pooled inference: no replicate test).
    direction : tuple of str or None
        ``(exposure, outcome)`` of the supported direction (``supported`` only).
    text : str
        One plain-text line: the call and its evidence.
    """

    pair: tuple[str, str]
    verdict: Verdict
    direction: tuple[str, str] | None
    text: str


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


def direction_calls(
    global_table: pa.Table, local_table: pa.Table | None = None, *, alpha: float = 0.05
) -> list[DirectionCall]:
    """The direction call of every pair audited in both directions.

    Parameters
    ----------
    global_table
        ``global_effects`` rows (``exposure``, ``outcome``, ``method``, ``estimate``,
        ``p_value``, ``q_p``; ``inference`` and ``n_replicates`` when present: a table without
        ``inference`` is pooled).
    local_table
        ``local_effects`` rows, for the Egger-intercept flag (``intercept_p``); optional.
    alpha
        Significance level.

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
    calls, seen = [], set()
    for forward in by_direction:
        reverse = (forward[1], forward[0])
        key = frozenset(forward)
        if key in seen or reverse not in by_direction:
            continue
        seen.add(key)
        calls.append(_call(forward, by_direction[forward], by_direction[reverse], egger, alpha))
    return calls


def _call(
    forward: tuple[str, str],
    forward_rows: Sequence[dict[str, Any]],
    reverse_rows: Sequence[dict[str, Any]],
    egger: Mapping[tuple[str, str], str],
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
    if len(hits) == 2:
        said = "; ".join(f"{_arrow(d)} by {_methods(significant[d])}" for d in hits)
        text = f"{both}: both directions significant ({test}: {said}); no single direction can be called"
        return DirectionCall(forward, "both", None, f"{text}. {evidence}")
    direction = hits[0]
    signs = {r["estimate"] > 0 for r in significant[direction]}
    if len(signs) > 1:
        said = _methods(significant[direction])
        text = f"{both}: methods significant in {_arrow(direction)} disagree in sign ({said}); no direction called"
        return DirectionCall(forward, "sign_conflict", None, f"{text}. {evidence}")
    other = [r for r in sides[direction] if r not in significant[direction]]
    against = f"; not significant for {_methods(other)}" if other else ""
    sign = "increases" if signs.pop() else "decreases"
    text = (
        f"{_arrow(direction)} supported ({sign}): {len(significant[direction])} of {len(sides[direction])} "
        f"methods agree ({_methods(significant[direction])}; {test}){against}; "
        f"{_arrow((direction[1], direction[0]))} not significant for any method after Holm's correction "
        f"(smallest p = {_smallest_p(sides[(direction[1], direction[0])])}). {evidence}"
    )
    return DirectionCall(forward, "supported", direction, text)


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
