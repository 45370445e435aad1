"""Build a ``torch.nn.Module`` from an entrypoint ``"package.module:factory"`` and its kwargs,
and inspect what was built.

Importing the entrypoint's module runs that module's code, like any import: name only
modules you trust. Weights never execute code (see :mod:`dmr_ray.models.weights`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from dmr_ray.errors import ModelSpecError

DROPOUT_TYPES = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)
"""Dropout layers that MC dropout replaces with locked (batch-shared) masks."""


def resolve_entrypoint(entrypoint: str) -> Callable[..., Any]:
    """Import ``"package.module:attribute"`` and return the attribute.

    Raises
    ------
    ModelSpecError
        Naming the ``entrypoint`` field when the string is malformed, the module cannot be
        imported, the attribute is absent or it is not callable.
    """
    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise ModelSpecError(f"entrypoint: {entrypoint!r} is not of the form 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ModelSpecError(f"entrypoint: cannot import module {module_name!r} ({err})") from err
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModelSpecError(f"entrypoint: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelSpecError(f"entrypoint: {entrypoint!r} is not callable")
    return target


def entrypoint_files(entrypoint: str) -> tuple[Path, ...]:
    """The files holding the code an entrypoint runs, which :func:`~dmr_ray.models.model_digest` covers.

    These are the file of the entrypoint's module (``mylab/models.py`` for
    ``mylab.models:build``; ``dmr_ray/models/architectures.py`` for the built-ins) and, when
    the factory is defined in another module and imported into it, the file of that
    module too. Code the factory reaches through other imports is not covered.

    Raises
    ------
    ModelSpecError
        As :func:`resolve_entrypoint`.
    """
    factory = resolve_entrypoint(entrypoint)
    files: list[Path] = []
    for owner in (importlib.import_module(entrypoint.partition(":")[0]), inspect.unwrap(factory)):
        try:
            name = inspect.getsourcefile(owner) or inspect.getfile(owner)
        except TypeError:  # built into the interpreter: no file
            continue
        path = Path(name).resolve()
        if path.is_file() and path not in files:
            files.append(path)
    return tuple(files)


def build_module(entrypoint: str, kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """Call the factory named by ``entrypoint`` with ``kwargs``; returns the module in eval mode.

    Raises
    ------
    ModelSpecError
        Naming ``entrypoint`` (unresolvable) or ``kwargs`` (the factory raised, or returned
        something other than a ``torch.nn.Module``).
    """
    factory = resolve_entrypoint(entrypoint)
    try:
        module = factory(**kwargs)
    except Exception as err:
        raise ModelSpecError(f"kwargs: factory {entrypoint!r} raised {type(err).__name__}: {err}") from err
    if not isinstance(module, torch.nn.Module):
        raise ModelSpecError(f"entrypoint: {entrypoint!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval()


def dropout_layers(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The ``(qualified name, layer)`` pairs of ``module``'s dropout layers with ``p > 0``,
    in ``named_modules()`` order (the order MC dropout numbers them in)."""
    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, DROPOUT_TYPES) and layer.p > 0]
