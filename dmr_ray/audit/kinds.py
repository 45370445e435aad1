"""Per-kind hooks of audit plans: how a cell's model and data enter an audit's configuration,
its headline metrics and its diff between model versions.

Each audit kind of a plan is a pipeline of :mod:`dmr_ray.config.registry` plus an
:class:`AuditKind` registered here (``kind`` → ``module:attribute``, imported on first use),
so a pipeline written later plugs in with one line::

    AUDIT_KINDS["grids"] = "dmr_ray.grids.audit:GRIDS_AUDIT"

Only implemented kinds are registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr_ray.errors import ConfigError


@dataclass(frozen=True)
class KindDiff:
    """What changed in one audit between two model versions.

    Attributes
    ----------
    header : tuple of str
        Column names of :attr:`rows`.
    rows : tuple of tuple
        One row per compared quantity (e.g. per pair and method), values as shown.
    summary : tuple of str
        Lines for the terminal and the page (e.g. "2 pairs gained significance").
    figure : Path or None
        A PNG comparing the two versions, when the kind draws one.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    summary: tuple[str, ...] = ()
    figure: Path | None = None


@dataclass(frozen=True)
class AuditKind:
    """The hooks of one audit kind.

    Attributes
    ----------
    kind
        The pipeline's registry name (``kind:`` of its configuration).
    inject
        ``inject(config, model_spec, data, out) -> config``: the audit's configuration mapping
        with the cell's model spec path, data location and output directory filled in.
    injected
        Top-level keys :attr:`inject` sets; they are left out of the cell's configuration
        identity (the model and data enter the key through their digests instead).
    headline
        ``headline(out) -> {name: value}``: the few numbers the index records per cell.
    diff
        ``diff(old_out, new_out, figure_path, (old_label, new_label)) -> KindDiff``: what
        changed between two cells of the same data, audit and configuration.
    execution
        Configuration keys that do not change results (engine, Ray), also left out of the identity.
    """

    kind: str
    inject: Callable[[Mapping[str, Any], Path, str, Path], dict[str, Any]]
    injected: tuple[str, ...]
    headline: Callable[[Path], dict[str, float]]
    diff: Callable[[Path, Path, Path, tuple[str, str]], KindDiff]
    execution: tuple[str, ...] = field(default=("engine", "ray"))


AUDIT_KINDS: dict[str, str] = {"deep_mr": "dmr_ray.audit.deep_mr:DEEP_MR"}
"""Audit kind -> ``module:attribute`` of its :class:`AuditKind`."""


def audit_kind(kind: str) -> AuditKind:
    """The hooks of ``kind``.

    Raises
    ------
    ConfigError
        For a kind no audit hooks are registered for.
    """
    if kind not in AUDIT_KINDS:
        raise ConfigError(f"kind: no audit hooks for {kind!r}; choose from {sorted(AUDIT_KINDS)}")
    module, _, name = AUDIT_KINDS[kind].partition(":")
    hooks = getattr(importlib.import_module(module), name)
    if not isinstance(hooks, AuditKind):
        raise TypeError(f"{AUDIT_KINDS[kind]} is not an AuditKind")
    return hooks
