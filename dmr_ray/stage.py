"""Pipeline stages with an identity: rerun what changed, resume the rest, record the timing.

A stage is named, has an *identity* (the options and the input identities that determine its
output, upstream stages' digests included) and declares the outputs it writes, relative to the
audit directory. :meth:`AuditDirectory.run` records each stage in
``.dmr_ray/stages/<name>.json`` (:class:`StageRecord`: identity, digest, outputs, seconds,
finished time) and decides:

* same digest, finished, outputs present: a resumable stage runs again (it skips its own
  finished pieces, e.g. chunks); any other stage is reused without running;
* another digest: the outputs the earlier record lists are removed, then the stage runs —
  unless the stage keeps its outputs (``effects.zarr`` refuses a changed identity itself);
* no record: the stage runs.

:meth:`AuditDirectory.claim` marks the directory as dmr_ray's (``.dmr_ray/audit.json``). With
``overwrite`` it removes only the outputs recorded by the stage records, never other files;
a directory with files but no marker is not an audit directory and is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from dmr_ray import __version__
from dmr_ray._atomic import write_text_atomic
from dmr_ray.errors import ResumeConflictError

log = logging.getLogger(__name__)

STATE_DIR = ".dmr_ray"
"""Where dmr_ray keeps its bookkeeping inside an output directory."""

MARKER = f"{STATE_DIR}/audit.json"
"""Marks a directory as a dmr_ray audit directory (which pipeline wrote it)."""

STAGES_DIR = f"{STATE_DIR}/stages"
"""One :class:`StageRecord` JSON per stage."""


def canonical_json(value: Any) -> str:
    """Key-sorted, compact JSON (tuples as lists, paths and other objects as strings)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def identity_digest(identity: Mapping[str, Any]) -> str:
    """The sha256 hex digest of the canonical JSON of ``identity``."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline.

    Parameters
    ----------
    name
        Its key (the record's file name), e.g. ``"local_mr"``.
    identity
        JSON-able options and input identities that determine its outputs (include upstream
        stages' :attr:`digest`).
    outputs
        What it writes, relative to the audit directory (files or directories).
    label
        How it is shown (default: ``name``).
    resumable
        Run it even when its identity is unchanged: it skips its own finished pieces.
    keeps_outputs
        Do not remove its outputs when its identity changed: they refuse (or accept) the
        new identity themselves.
    """

    name: str
    identity: Mapping[str, Any]
    outputs: tuple[str, ...]
    label: str = ""
    resumable: bool = False
    keeps_outputs: bool = False

    @cached_property
    def digest(self) -> str:
        """:func:`identity_digest` of :attr:`identity`."""
        return identity_digest(self.identity)

    @property
    def title(self) -> str:
        """:attr:`label`, else :attr:`name`."""
        return self.label or self.name


@dataclass(frozen=True)
class StageRecord:
    """What ``.dmr_ray/stages/<name>.json`` holds.

    Attributes
    ----------
    name, identity, digest, outputs
        As the :class:`Stage` that ran.
    summary : str
        The stage's one-line account of what it did ("" while running).
    seconds : float or None
        Wall time of its last run (None while running or after an interruption).
    finished : str or None
        UTC ISO time it finished (None while running or after an interruption).
    code_version : str
        The dmr_ray version that wrote it.
    """

    name: str
    identity: dict[str, Any]
    digest: str
    outputs: tuple[str, ...]
    summary: str = ""
    seconds: float | None = None
    finished: str | None = None
    code_version: str = field(default=__version__)

    @classmethod
    def from_json(cls, text: str) -> StageRecord:
        """Inverse of ``canonical_json(asdict(record))``."""
        data = json.loads(text)
        return cls(**{**data, "outputs": tuple(data["outputs"])})


@dataclass(frozen=True)
class StageResult:
    """What :meth:`AuditDirectory.run` did for one stage."""

    stage: Stage
    summary: str
    seconds: float
    ran: bool


class AuditDirectory:
    """An output directory written stage by stage; see the module docstring.

    Use :meth:`claim` to create one.
    """

    def __init__(self, root: Path, kind: str) -> None:
        self.root = Path(root)
        self.kind = kind

    @classmethod
    def claim(cls, root: Path, kind: str, *, overwrite: bool = False) -> AuditDirectory:
        """Create (or reopen) the audit directory ``root`` of a ``kind`` pipeline.

        Parameters
        ----------
        root
            The output directory; other files in it are left alone.
        kind
            The pipeline (recorded in the marker and checked on reopening).
        overwrite
            Remove every output the stage records list (and the records), so that every
            stage starts fresh.

        Raises
        ------
        ResumeConflictError
            When ``overwrite`` is asked of a directory with files that dmr_ray did not mark,
            or the directory holds another pipeline's outputs.
        """
        root = Path(root)
        marker = root / MARKER
        if marker.exists():
            recorded = json.loads(marker.read_text()).get("kind")
            if recorded != kind:
                raise ResumeConflictError(
                    f"{root}: holds a {recorded!r} run, not {kind!r}; choose another output directory"
                )
        elif overwrite and root.exists() and any(root.iterdir()):
            raise ResumeConflictError(
                f"{root}: --overwrite refused: not a dmr_ray audit directory (no {MARKER}); "
                "choose another output directory or remove it yourself"
            )
        directory = cls(root, kind)
        if overwrite:
            for record in directory.records():
                directory.discard(record.name)
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(marker, canonical_json({"kind": kind, "code_version": __version__}))
        return directory

    def record_path(self, name: str) -> Path:
        """Where the record of stage ``name`` lives."""
        return self.root / STAGES_DIR / f"{name}.json"

    def record(self, name: str) -> StageRecord | None:
        """The record of stage ``name``, or None when it never started."""
        try:
            return StageRecord.from_json(self.record_path(name).read_text())
        except FileNotFoundError:
            return None

    def records(self) -> list[StageRecord]:
        """Every stage record, by name."""
        paths = sorted((self.root / STAGES_DIR).glob("*.json"))
        return [StageRecord.from_json(p.read_text()) for p in paths]

    def discard(self, name: str) -> None:
        """Remove the outputs recorded for stage ``name``, then its record."""
        record = self.record(name)
        if record is not None:
            self._remove(record.outputs)
            self.record_path(name).unlink()

    def run(self, stage: Stage, func: Callable[[], str]) -> StageResult:
        """Run ``stage`` (``func`` returns its one-line summary) unless it can be reused.

        Returns
        -------
        StageResult
            ``ran`` is False when an unchanged, finished stage was reused.
        """
        for name in stage.outputs:
            self._inside(name)
        previous = self.record(stage.name)
        if previous is not None and previous.digest == stage.digest:
            if not stage.resumable and previous.finished and self._present(previous.outputs):
                return StageResult(stage, f"reused: {previous.summary}", 0.0, ran=False)
        elif previous is not None:
            changed = _changed_keys(previous.identity, dict(stage.identity))
            log.info("%s: %s changed since the last run", stage.title, ", ".join(changed))
            if not stage.keeps_outputs:
                self._remove(previous.outputs)
        self._write(StageRecord(stage.name, dict(stage.identity), stage.digest, stage.outputs))
        started = time.monotonic()
        summary = func()
        seconds = time.monotonic() - started
        finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = StageRecord(stage.name, dict(stage.identity), stage.digest, stage.outputs, summary, seconds, finished)
        self._write(record)
        return StageResult(stage, summary, seconds, ran=True)

    def _write(self, record: StageRecord) -> None:
        path = self.record_path(record.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, canonical_json(asdict(record)))

    def _inside(self, name: str) -> Path:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts or relative.parts[0] == STATE_DIR:
            raise ResumeConflictError(f"{self.root / STAGES_DIR}: a stage record lists the output {name!r}")
        return self.root / relative

    def _present(self, outputs: tuple[str, ...]) -> bool:
        return all(self._inside(name).exists() for name in outputs)

    def _remove(self, outputs: tuple[str, ...]) -> None:
        for name in outputs:
            path = self._inside(name)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two identities."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif canonical_json(a) != canonical_json(b):
            keys.append(f"{prefix}{key}")
    return keys
