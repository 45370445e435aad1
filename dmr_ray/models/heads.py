"""Output heads: how each named task is read from a model's raw output.

A model may return a tensor, a tuple/list of tensors or a dict of tensors. Each task of a
model spec names (``select``) one of those tensors, (``index``) entries along its task axis
(axis 1, right after the batch axis) and (``reduce``) how the entries left over are pooled
into one number per sequence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dmr_ray._checks import is_int
from dmr_ray.errors import ModelSpecError

Reduce = Literal["mean", "sum", "max", "none"]


class OutputSpec(BaseModel):
    """One named task of a model spec.

    Attributes
    ----------
    name
        Task name (unique within a spec).
    select
        Key of a dict output or position in a tuple/list output; ``None`` for a model that
        returns a single tensor.
    index
        Entries along the task axis (axis 1) of the selected tensor: one int or a list of
        ints (stored as a tuple). ``None`` keeps the whole tensor.
    reduce
        How the selected values of one sequence become one number: ``mean``, ``sum``,
        ``max`` or ``none`` (the selection must already be a single value per sequence).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    select: str | int | None = None
    index: tuple[int, ...] | None = None
    reduce: Reduce = "none"

    @field_validator("select", mode="before")
    @classmethod
    def _select_type(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if is_int(value) and value >= 0:
            return int(value)
        raise ValueError(f"must be an output key (string) or a position (int >= 0), got {value!r}")

    @field_validator("index", mode="before")
    @classmethod
    def _index_tuple(cls, value: Any) -> Any:
        if value is None:
            return None
        items = list(value) if isinstance(value, list | tuple) else [value]
        if not items or not all(is_int(i) and i >= 0 for i in items):
            raise ValueError(f"must be an int >= 0 or a non-empty list of them, got {value!r}")
        return tuple(int(i) for i in items)


class OutputSelector:
    """Turn a model's raw output into a ``[batch, tasks]`` tensor, one column per task.

    Parameters
    ----------
    outputs
        The tasks, in column order.
    """

    def __init__(self, outputs: Sequence[OutputSpec]):
        self.outputs = tuple(outputs)
        self.task_names = tuple(o.name for o in self.outputs)
        self._index_cache: dict[tuple[int, torch.device], torch.Tensor] = {}

    def __call__(self, raw: Any) -> torch.Tensor:
        """Select and reduce every task; returns ``float32 [batch, tasks]``."""
        columns = [self._column(i, raw) for i in range(len(self.outputs))]
        return torch.stack(columns, dim=1).float()

    def check(self, raw: Any) -> None:
        """Validate the spec against one raw output; raises :class:`ModelSpecError` naming
        the field at fault (e.g. ``outputs[1].index``)."""
        for i, out in enumerate(self.outputs):
            tensor = _pick(raw, out.select, f"outputs[{i}].select")
            if tensor.ndim == 0:
                raise ModelSpecError(f"outputs[{i}].select: output {_label(out)} is a scalar, not a batch")
            if out.index is not None:
                if tensor.ndim < 2:
                    raise ModelSpecError(
                        f"outputs[{i}].index: output {_label(out)} has no task axis "
                        f"(shape {list(tensor.shape)}); remove 'index'"
                    )
                n_tasks = tensor.shape[1]
                bad = [j for j in out.index if j >= n_tasks]
                if bad:
                    raise ModelSpecError(
                        f"outputs[{i}].index: {bad[0]} is out of range for output {_label(out)} with {n_tasks} tasks"
                    )
            per_sequence = self._selected(i, tensor).shape[1]
            if per_sequence == 0:
                raise ModelSpecError(f"outputs[{i}]: output {_label(out)} selects no values")
            if out.reduce == "none" and per_sequence != 1:
                raise ModelSpecError(
                    f"outputs[{i}].reduce: 'none' but output {_label(out)} gives {per_sequence} "
                    f"values per sequence; set reduce to mean, sum or max"
                )

    def _column(self, i: int, raw: Any) -> torch.Tensor:
        out = self.outputs[i]
        values = self._selected(i, _pick(raw, out.select, f"outputs[{i}].select"))
        if out.reduce == "mean":
            return values.mean(dim=1)
        if out.reduce == "sum":
            return values.sum(dim=1)
        if out.reduce == "max":
            return values.amax(dim=1)
        return values[:, 0]

    def _selected(self, i: int, tensor: torch.Tensor) -> torch.Tensor:
        """The values task ``i`` reads, flattened to ``[batch, k]``."""
        index = self.outputs[i].index
        if index is not None:
            key = (i, tensor.device)
            if key not in self._index_cache:
                self._index_cache[key] = torch.tensor(index, dtype=torch.long, device=tensor.device)
            tensor = tensor.index_select(1, self._index_cache[key])
        return tensor.reshape(tensor.shape[0], -1)


def _pick(raw: Any, select: str | int | None, field: str) -> torch.Tensor:
    """The tensor ``select`` names in ``raw``."""
    if isinstance(raw, torch.Tensor):
        if select is not None:
            raise ModelSpecError(f"{field}: the model returns a single tensor; remove 'select' ({select!r})")
        return raw
    if isinstance(raw, Mapping):
        if select not in raw:
            keys = ", ".join(repr(k) for k in raw)
            raise ModelSpecError(f"{field}: {select!r} is not an output of the model (outputs: {keys})")
        return _as_tensor(raw[select], field)
    if isinstance(raw, tuple | list):
        if not isinstance(select, int):
            raise ModelSpecError(
                f"{field}: the model returns {len(raw)} outputs in a sequence; select one by position, got {select!r}"
            )
        if select >= len(raw):
            raise ModelSpecError(f"{field}: position {select} is out of range for a model returning {len(raw)} outputs")
        return _as_tensor(raw[select], field)
    raise ModelSpecError(f"{field}: the model returns {type(raw).__name__}, not a tensor, tuple or dict")


def _as_tensor(value: Any, field: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ModelSpecError(f"{field}: selects a {type(value).__name__}, not a tensor")
    return value


def _label(out: OutputSpec) -> str:
    return repr(out.select) if out.select is not None else "(the model's tensor)"
