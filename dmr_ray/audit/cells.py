"""The cells of a plan and their content-addressed keys.

A cell is one (model version, data, audit). Its key is the digest of everything that
determines its result: the model digest (:func:`~dmr_ray.models.model_digest`: spec settings,
weight bytes, factory code), the data digest (:func:`data_digest`: the bytes of the store),
the audit kind and its canonical configuration (validated, without the cell's model, data and
output, and without execution-only sections such as ``engine``), the dmr_ray version and
:data:`OUTPUT_SCHEMA`. Its output lives under ``<output>/cells/<key>/``::

    out/            the pipeline's own output directory (resumed in place)
    manifest.json   what the key was computed from, the run, the headline metrics
    COMPLETE        written last, atomically: the cell is done
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fsspec

from dmr_ray import __version__
from dmr_ray.audit.kinds import audit_kind
from dmr_ray.audit.plan import AuditEntry, AuditPlan, DataEntry, ModelEntry
from dmr_ray.config.base import check_mapping, read_yaml
from dmr_ray.config.registry import config_from_dict
from dmr_ray.errors import ConfigError
from dmr_ray.stage import canonical_json, identity_digest

OUTPUT_SCHEMA = 1
"""Version of the cell layout and manifest; part of every key."""

CELLS = "cells"
OUT = "out"
MANIFEST = "manifest.json"
COMPLETE = "COMPLETE"
KEY_LENGTH = 24
"""Hex digits of a cell key (96 bits)."""

_PLACEHOLDER = Path("/dmr_ray-audit-cell")


@dataclass(frozen=True)
class Cell:
    """One (model version, data, audit) of a plan, before its key is known."""

    model: ModelEntry
    data: DataEntry
    audit: AuditEntry

    @property
    def ident(self) -> tuple[str, str, str]:
        """``(model@version, data, audit)``: unique within a plan."""
        return (self.model.label, self.data.name, self.audit.name)

    @property
    def label(self) -> str:
        """``model@version × data × audit``."""
        return f"{self.model.label} × {self.data.name} × {self.audit.name}"


@dataclass(frozen=True)
class KeyedCell:
    """A cell with its key and the facts the key was computed from.

    Attributes
    ----------
    cell : Cell
    key : str
        :data:`KEY_LENGTH` hex digits.
    identity : dict
        ``model_digest``, ``data_digest``, ``kind``, ``config`` (canonical), ``config_digest``,
        ``code_version``, ``schema``.
    """

    cell: Cell
    key: str
    identity: dict[str, Any]


def expand_cells(plan: AuditPlan) -> list[Cell]:
    """The plan's cells: the full matrix (models × data × audits) or its listed cells, in order."""
    if plan.cells == "all":
        return [Cell(m, d, a) for m in plan.models for d in plan.data for a in plan.audits]
    data = {d.name: d for d in plan.data}
    audits = {a.name: a for a in plan.audits}
    cells: dict[tuple[str, str, str], Cell] = {}
    for selector in plan.cells:
        for model in plan.models:
            if selector.model in (model.name, model.label):
                cell = Cell(model, data[selector.data], audits[selector.audit])
                cells.setdefault((model.label, selector.data, selector.audit), cell)
    return list(cells.values())


def audit_config(audit: AuditEntry) -> tuple[dict[str, Any], Path]:
    """The audit's configuration mapping and the directory its relative paths resolve against.

    Raises
    ------
    ConfigError
        When the configuration file is missing or not a YAML mapping.
    """
    if isinstance(audit.config, Path):
        return read_yaml(audit.config), audit.config.resolve().parent
    return check_mapping(dict(audit.config), f"audits.{audit.name}.config"), Path.cwd()


def cell_config(cell: Cell, out: Path, base_dir: Path | None = None) -> Any:
    """The validated pipeline configuration of ``cell`` writing to ``out``.

    Raises
    ------
    ConfigError
        Naming the audit and each invalid field.
    """
    hooks = audit_kind(cell.audit.kind)
    config, config_dir = audit_config(cell.audit)
    data = hooks.inject(config, cell.model.spec, cell.data.store, out)
    source = f"audit {cell.audit.name!r}" + (f" ({cell.audit.config})" if isinstance(cell.audit.config, Path) else "")
    return config_from_dict(data, base_dir=base_dir or config_dir, source=source)


def check_audit_configs(plan: AuditPlan) -> None:
    """Validate every audit's configuration (with placeholder model, data and output), so a
    bad option is one error before anything runs.

    Raises
    ------
    ConfigError
        Naming the audit and each invalid field.
    """
    for audit in plan.audits:
        cell_config(Cell(plan.models[0], plan.data[0], audit), _PLACEHOLDER)


def config_identity(cell: Cell, base_dir: Path | None = None) -> dict[str, Any]:
    """The canonical configuration of the cell's audit, without what the cell injects and
    without execution-only sections (JSON-able)."""
    hooks = audit_kind(cell.audit.kind)
    config = cell_config(cell, _PLACEHOLDER, base_dir)
    return config.model_dump(mode="json", exclude=set(hooks.injected) | set(hooks.execution))


@cache
def _model_digest(spec: Path, mtime_ns: int, size: int) -> str:
    from dmr_ray.models import load_model_spec, model_digest

    return model_digest(load_model_spec(spec))


def model_digest_of(model: ModelEntry) -> str:
    """The model digest of ``model``'s spec (cached per spec file state within a process)."""
    try:
        stat = model.spec.stat()
    except FileNotFoundError:
        raise ConfigError(f"models: {model.label}: spec {model.spec} not found") from None
    return _model_digest(model.spec, stat.st_mtime_ns, stat.st_size)


def data_digest(location: str) -> str:
    """SHA-256 over the relative names, sizes and bytes of every file at ``location`` (a file,
    or a directory store such as ``seqs.zarr``; local path or fsspec URL), in name order.

    Raises
    ------
    ConfigError
        When nothing is at ``location``.
    """
    fs, root = fsspec.core.url_to_fs(location)
    if not fs.exists(root):
        raise ConfigError(f"data: {location} not found")
    files = [root] if fs.isfile(root) else sorted(fs.find(root))
    digest = hashlib.sha256()
    for path in files:
        relative = path[len(root) :].lstrip("/")
        digest.update(f"{relative}\0{fs.size(path)}\0".encode())
        with fs.open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def key_cells(
    cells: Iterable[Cell], *, data_digests: Mapping[str, str] | None = None
) -> tuple[list[KeyedCell], list[tuple[Cell, str]]]:
    """Key every cell; a cell whose inputs cannot be read is returned with its reason instead.

    Parameters
    ----------
    cells
        From :func:`expand_cells`.
    data_digests
        Known data digests by data name (otherwise computed once per data entry).

    Returns
    -------
    (list of KeyedCell, list of (Cell, reason))
    """
    digests = dict(data_digests or {})
    keyed: list[KeyedCell] = []
    failed: list[tuple[Cell, str]] = []
    for cell in cells:
        try:
            if cell.data.name not in digests:
                digests[cell.data.name] = data_digest(cell.data.store)
            keyed.append(key_cell(cell, model_digest_of(cell.model), digests[cell.data.name]))
        except Exception as exc:  # a cell that cannot be keyed fails alone, with its reason
            failed.append((cell, f"{type(exc).__name__}: {exc}"))
    return keyed, failed


def key_cell(cell: Cell, model_digest: str, data_digest: str) -> KeyedCell:
    """The :class:`KeyedCell` of ``cell`` given its model and data digests."""
    config = config_identity(cell)
    identity = {
        "model_digest": model_digest,
        "data_digest": data_digest,
        "kind": cell.audit.kind,
        "config": config,
        "config_digest": identity_digest(config),
        "code_version": __version__,
        "schema": OUTPUT_SCHEMA,
    }
    key = hashlib.sha256(canonical_json({k: v for k, v in identity.items() if k != "config"}).encode())
    return KeyedCell(cell, key.hexdigest()[:KEY_LENGTH], identity)
