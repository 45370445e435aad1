"""One way to turn pydantic validation errors into the one-line messages users see.

Used by every YAML the package reads (pipeline configurations, model specs), so a typo reads
the same everywhere: ``instrumets: unknown field (did you mean 'instruments'?)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


def describe_errors(exc: ValidationError, model: type | None = None) -> list[str]:
    """Each problem of ``exc`` as ``field.path[i]: message``.

    Parameters
    ----------
    exc
        What pydantic raised.
    model
        The validated class (a pydantic model or a dataclass); with it, an unknown key is
        followed by the closest known key at its place.
    """
    return [_describe(error, model) for error in exc.errors()]


def _describe(error: Mapping[str, Any], model: type | None) -> str:
    loc: Sequence[int | str] = error["loc"]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    kind = error["type"]
    if kind == "missing":
        message = "field required"
    elif kind in _UNKNOWN:
        message = "unknown field" + _suggestion(model, loc)
    elif kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
    else:
        message = f"{error['msg']} (got {error.get('input')!r})"
    return f"{field}: {message}" if field else message


def _suggestion(model: type | None, loc: Sequence[int | str]) -> str:
    """`` (did you mean 'x'?)`` for the known key closest to ``loc[-1]``, else ``""``."""
    for part in loc[:-1]:
        if isinstance(part, str) and part in _field_names(model):  # else a list index or mapping key
            model = _field_type(model, part)
    names = _field_names(model)
    close = difflib.get_close_matches(str(loc[-1]), names, n=1) if loc else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_names(model: type | None) -> list[str]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    if isinstance(model, type) and dataclasses.is_dataclass(model):
        return [f.name for f in dataclasses.fields(model)]
    return []


def _field_type(model: type | None, name: int | str) -> type | None:
    """The class of field ``name`` of ``model`` when it is itself a model or dataclass."""
    if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(name, str):
        field = model.model_fields.get(name)
        candidates = [field.annotation] if field is not None else []
    elif isinstance(model, type) and dataclasses.is_dataclass(model) and isinstance(name, str):
        hints = typing.get_type_hints(model)
        candidates = [hints[name]] if name in hints else []
    else:
        return None
    while candidates:  # the annotation, then its arguments: Model | None, list[Model], dict[str, Model]
        option = candidates.pop(0)
        if isinstance(option, type) and (issubclass(option, BaseModel) or dataclasses.is_dataclass(option)):
            return option
        candidates.extend(typing.get_args(option))
    return None
