"""Configuration of every pipeline: shared bases, the engine section and the ``kind`` registry.

:func:`load_config` reads a YAML file (safe loader), picks the pipeline its top-level ``kind``
names (default ``deep_mr``) and validates it; errors name the file and the field. Each
pipeline keeps its own configuration class in its package (``dmr_ray.deepmr.config``).
"""

from dmr_ray.config.base import Options, PipelineConfig, RaySection, read_yaml, resolve_path, validate
from dmr_ray.config.registry import DEFAULT_KIND, PIPELINES, config_class, config_from_dict, load_config, register

__all__ = [
    "DEFAULT_KIND",
    "PIPELINES",
    "Options",
    "PipelineConfig",
    "RaySection",
    "config_class",
    "config_from_dict",
    "load_config",
    "read_yaml",
    "register",
    "resolve_path",
    "validate",
]
