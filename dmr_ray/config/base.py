"""The shared bases of every pipeline configuration.

* :class:`Options`: a section of options (pydantic, unknown keys are errors, frozen).
* :class:`RaySection`, and the engine section, which is :class:`~dmr_ray.engine.EngineOptions`
  itself (pydantic validates the dataclass field by field and runs its own checks, so its
  defaults and rules are the only ones).
* :class:`PipelineConfig`: what every pipeline's configuration has (``kind``, ``out``,
  ``engine``, ``ray``); each pipeline subclasses it in its own package.
* :func:`read_yaml`, :func:`validate`: YAML through the safe loader, paths resolved against
  the YAML file's directory, and errors that name the file and each field at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dmr_ray._validation import describe_errors
from dmr_ray.engine import EngineOptions
from dmr_ray.errors import ConfigError


class Options(BaseModel):
    """A section of options: unknown keys are errors and validated values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RaySection(Options):
    """The local Ray instance a run starts when it joins no cluster."""

    num_cpus: int | None = Field(default=None, gt=0)
    """Logical CPUs of the local instance (default: all); ignored when joining a cluster."""


class PipelineConfig(Options):
    """What every pipeline's configuration holds besides its own sections.

    Subclasses set ``kind`` to a ``Literal`` of their registry name, list the dotted names of
    their path fields in ``path_fields`` (resolved against the YAML file's directory) and
    implement :meth:`run`.
    """

    kind: str
    out: Path
    engine: EngineOptions = EngineOptions()
    ray: RaySection = RaySection()

    path_fields: ClassVar[tuple[str, ...]] = ("out",)
    moved_keys: ClassVar[dict[str, str]] = {"ray.address": "engine.address", "ism.actors": "engine.actors"}
    """Keys of earlier versions and where they live now (named in the error)."""

    @model_validator(mode="before")
    @classmethod
    def _no_moved_keys(cls, data: Any) -> Any:
        for old, new in cls.moved_keys.items():
            section, key = old.split(".")
            if isinstance(data, dict) and isinstance(data.get(section), dict) and key in data[section]:
                raise ValueError(f"{old}: this key moved to {new}")
        return data

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Load and validate a YAML file as this pipeline's configuration (safe loader).

        Raises
        ------
        ConfigError
            Naming the file and each invalid field.
        """
        path = Path(path)
        return validate(cls, read_yaml(path), base_dir=path.resolve().parent, source=str(path))

    def run(self, *, overwrite: bool = False) -> str:
        """Run (or resume) this pipeline; returns a line saying where its results are."""
        raise NotImplementedError(f"pipeline kind {self.kind!r} cannot run")


C = TypeVar("C", bound=PipelineConfig)


def _is_url(value: str) -> bool:
    return "://" in value


def resolve_path(base: Path, value: Any) -> Any:
    """``value`` as an absolute path against ``base``; URLs, mappings and ``None`` are left as they are."""
    if value is None or isinstance(value, dict) or (isinstance(value, str) and _is_url(value)):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def resolve_paths(data: dict[str, Any], fields: tuple[str, ...], base: Path) -> dict[str, Any]:
    """A copy of ``data`` with the dotted ``fields`` (e.g. ``calibration.store``) resolved."""
    data = dict(data)
    for name in fields:
        head, _, rest = name.partition(".")
        if head not in data:
            continue
        if rest:
            if isinstance(data[head], dict):
                data[head] = resolve_paths(data[head], (rest,), base)
        else:
            data[head] = resolve_path(base, data[head])
    return data


def format_error(source: str, exc: ValidationError, model: type | None = None) -> str:
    """One line naming ``source`` and, per problem, the dotted field and what is wrong."""
    return f"{source}: invalid configuration: " + "; ".join(describe_errors(exc, model))


def validate(cls: type[C], data: dict[str, Any], *, base_dir: Path, source: str) -> C:
    """Validate ``data`` as ``cls``, its path fields resolved against ``base_dir``.

    Raises
    ------
    ConfigError
        Naming ``source`` and each invalid field.
    """
    try:
        return cls.model_validate(resolve_paths(data, cls.path_fields, base_dir))
    except ValidationError as exc:
        raise ConfigError(format_error(source, exc, cls)) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (safe loader).

    Raises
    ------
    ConfigError
        When the file is missing, not valid YAML or not a mapping.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return check_mapping(data, str(path))


def check_mapping(data: Any, source: str) -> dict[str, Any]:
    """``data`` if it is a mapping, else a :class:`ConfigError` naming ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return data
