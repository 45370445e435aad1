"""Which pipeline a configuration describes: its top-level ``kind`` key.

Each pipeline registers the import path of its configuration class (imported only when a
configuration of that kind is loaded). A configuration without ``kind`` is a Deep MR audit,
so files written before the key existed keep working.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from dmr_ray.config.base import PipelineConfig, check_mapping, read_yaml, validate
from dmr_ray.errors import ConfigError

DEFAULT_KIND = "deep_mr"

PIPELINES: dict[str, str] = {
    "deep_mr": "dmr_ray.deepmr.config:DeepMRConfig",
    "grids": "dmr_ray.grids.config:GridsConfig",
    "attribution": "dmr_ray.attribution.config:AttributionConfig",
}
"""Pipeline kind -> ``module:ClassName`` of its :class:`PipelineConfig` subclass."""


def register(kind: str, target: str) -> None:
    """Make ``kind`` loadable: ``target`` is ``module:ClassName`` of a :class:`PipelineConfig`."""
    PIPELINES[kind] = target


def config_class(kind: Any, source: str = "config") -> type[PipelineConfig]:
    """The configuration class of ``kind``.

    Raises
    ------
    ConfigError
        For a kind no pipeline registered, naming the known ones.
    """
    if not isinstance(kind, str) or kind not in PIPELINES:
        raise ConfigError(f"{source}: kind: unknown pipeline {kind!r}; choose from {sorted(PIPELINES)}")
    module, _, name = PIPELINES[kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, PipelineConfig)):
        raise TypeError(f"{PIPELINES[kind]} is not a PipelineConfig")
    return cls


def config_from_dict(data: Any, *, base_dir: Path | None = None, source: str = "config") -> Any:
    """Validate a configuration mapping as the pipeline its ``kind`` names.

    Relative paths resolve against ``base_dir`` (default: the working directory).

    Raises
    ------
    ConfigError
        Naming ``source`` and each invalid field, or an unknown ``kind``.
    """
    data = check_mapping(data, source)
    cls = config_class(data.get("kind", DEFAULT_KIND), source)
    return validate(cls, data, base_dir=base_dir or Path.cwd(), source=source)


def load_config(path: str | Path) -> Any:
    """Load and validate a pipeline's YAML configuration (safe loader).

    Raises
    ------
    ConfigError
        Naming the file and each invalid field.
    """
    path = Path(path)
    return config_from_dict(read_yaml(path), base_dir=path.resolve().parent, source=str(path))
