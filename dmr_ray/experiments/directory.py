"""An experiment's output directory: claimed with a marker, cleared only of what it wrote."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dmr_ray._atomic import write_text_atomic
from dmr_ray.errors import InputError

MARKER = Path(".dmr_ray") / "experiment.json"
"""Marks a directory as a dmr_ray experiment and records its identity."""


def claim_experiment_directory(out: Path, identity: dict[str, Any], outputs: Sequence[str], *, overwrite: bool) -> None:
    """Make ``out`` this experiment's directory, or refuse before writing anything.

    Parameters
    ----------
    out
        The directory; created when absent.
    identity
        What the results depend on (the experiment's name, size, seed); recorded in the marker.
    outputs
        Names (files or folders directly under ``out``) the experiment writes; ``overwrite``
        removes these and nothing else.
    overwrite
        Start afresh (also after a change of identity).

    Raises
    ------
    InputError
        If ``out`` holds files but no marker (not a dmr_ray experiment), or a marker of another
        identity without ``overwrite``.
    """
    marker = out / MARKER
    check_experiment_directory(out, identity, overwrite=overwrite)
    if overwrite and marker.exists():
        for name in outputs:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, json.dumps(identity))


def check_experiment_directory(
    out: Path, identity: dict[str, Any], *, overwrite: bool, absent_hints: Mapping[str, str] | None = None
) -> None:
    """Refuse an ``out`` that is neither empty nor marked (:data:`MARKER`) with ``identity``;
    writes nothing. With ``overwrite``, any marked directory is accepted. The refusal names
    each differing entry (a dotted key; ``absent`` where one side lacks it) and adds the
    ``absent_hints`` of the keys the directory's identity lacks (entries added to an
    experiment's identity after the directory was written).

    Raises
    ------
    InputError
        As :func:`claim_experiment_directory`.
    """
    if out.exists() and any(out.iterdir()):
        marker = out / MARKER
        if not marker.exists():
            raise InputError(
                f"{out} exists and is not a dmr_ray {identity['experiment']} experiment directory; choose another --out"
            )
        recorded = json.loads(marker.read_text())
        if recorded != identity and not overwrite:
            old, new = _flat(recorded), _flat(identity)
            differing = [key for key in sorted(set(old) | set(new)) if old.get(key, ...) != new.get(key, ...)]
            said = ", ".join(f"{key} {_shown(old, key)} (asked: {_shown(new, key)})" for key in differing)
            hints = absent_hints or {}
            hinted = "".join(f" ({hints[key]})" for key in differing if key in hints and key not in old)
            raise InputError(
                f"{out} holds the experiment {recorded.get('experiment')!r} with other inputs: {said}{hinted}; "
                "use --overwrite or another --out"
            )


def _shown(entries: Mapping[str, Any], key: str) -> str:
    return repr(entries[key]) if key in entries else "absent"


def _flat(identity: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``settings.grammar.length``), so that a
    refusal names only the entries that differ."""
    flat: dict[str, Any] = {}
    for key, value in identity.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
