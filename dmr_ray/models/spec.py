"""Model specs: a YAML file naming a model factory, its weights, its tasks and its replicates.

```yaml
entrypoint: "dmr_ray.models.architectures:bpnet"
kwargs: {n_tasks: 4}
weights: [m0.safetensors, m1.safetensors]     # relative to the YAML file
input_length: 1000
outputs:
  - {name: Oct4, select: counts, index: 0, reduce: mean}
replicates: {kind: ensemble}                  # or {kind: mc_dropout, passes: 50, seed: 0}
```

See ``docs/models.md`` for the full field reference.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dmr_ray._validation import describe_errors
from dmr_ray.errors import InputError, ModelSpecError
from dmr_ray.models.heads import OutputSelector, OutputSpec
from dmr_ray.models.loading import build_module, dropout_layers, entrypoint_files
from dmr_ray.models.weights import load_weights_into

_DIGEST_FIELDS = {"entrypoint", "kwargs", "outputs", "replicates", "input_length"}
_READ_BLOCK = 1 << 20


class ReplicatesSpec(BaseModel):
    """How replicate predictions are made.

    Attributes
    ----------
    kind
        ``ensemble`` (one member per weight file, at least 2), ``mc_dropout`` (one weight
        file, ``passes`` forward passes with locked dropout masks) or ``single`` (one weight
        file, one replicate: standard errors are 0).
    passes
        Number of MC-dropout passes (``mc_dropout`` only; at least 2).
    seed
        Seed of the MC-dropout masks (``mc_dropout`` only).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["ensemble", "mc_dropout", "single"]
    passes: int | None = Field(default=None, ge=2)
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _fields_match_kind(self) -> ReplicatesSpec:
        if self.kind == "mc_dropout":
            if self.passes is None:
                raise ValueError("'passes' is required when kind is 'mc_dropout'")
        else:
            for name in ("passes", "seed"):
                if name in self.model_fields_set:
                    raise ValueError(f"'{name}' only applies to kind 'mc_dropout', not {self.kind!r}")
        return self


class ModelSpec(BaseModel):
    """A validated model spec; weight paths are absolute.

    Build one with :func:`load_model_spec` or :meth:`ModelSpec.from_dict`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    entrypoint: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: tuple[Path, ...] = Field(min_length=1)
    input_length: int = Field(gt=0)
    outputs: tuple[OutputSpec, ...] = Field(min_length=1)
    replicates: ReplicatesSpec

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    @field_validator("weights", mode="after")
    @classmethod
    def _weights_absolute(cls, value: tuple[Path, ...], info: ValidationInfo) -> tuple[Path, ...]:
        base = Path((info.context or {}).get("base_dir") or Path.cwd()).absolute()
        return tuple(p if p.is_absolute() else base / p for p in value)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        names = [o.name for o in self.outputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"outputs: task names must be unique, repeated: {', '.join(dupes)}")
        n = len(self.weights)
        if self.replicates.kind == "ensemble" and n < 2:
            raise ValueError(f"replicates.kind: 'ensemble' needs at least 2 weight files in 'weights', got {n}")
        if self.replicates.kind != "ensemble" and n != 1:
            raise ValueError(f"replicates.kind: {self.replicates.kind!r} takes exactly 1 weight file, got {n}")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None, *, check: bool = True) -> ModelSpec:
        """Validate a spec given as a mapping.

        Parameters
        ----------
        data
            The parsed YAML document.
        base_dir
            Directory that relative weight paths are resolved against (default: the current
            directory).
        check
            Also build the model, load every weight file into it and run one probe forward
            pass on CPU to check the outputs, the input length and (for ``mc_dropout``) the
            presence of dropout layers. Off, only the document itself and the existence of
            the weight files are checked.

        Raises
        ------
        ModelSpecError
            Naming the field at fault, e.g. ``outputs[1].index: 7 is out of range ...``.
        """
        if not isinstance(data, Mapping):
            raise ModelSpecError(f"a model spec must be a mapping of fields, got {type(data).__name__}")
        try:
            spec = cls.model_validate(dict(data), context={"base_dir": base_dir})
        except ValidationError as err:
            raise ModelSpecError("; ".join(describe_errors(err, cls))) from None
        for i, path in enumerate(spec.weights):
            if not path.is_file():
                raise ModelSpecError(f"weights[{i}]: file not found: {path}")
        if check:
            spec.check()
        return spec

    @property
    def n_replicates(self) -> int:
        """Number of replicate predictions (ensemble members or MC-dropout passes)."""
        kind, passes = self.replicates.kind, self.replicates.passes
        if kind == "ensemble":
            return len(self.weights)
        return passes if kind == "mc_dropout" and passes is not None else 1

    @property
    def task_names(self) -> tuple[str, ...]:
        """Task names in output-column order."""
        return tuple(o.name for o in self.outputs)

    def output_selector(self) -> OutputSelector:
        """The selector turning raw model outputs into ``[batch, tasks]``."""
        return OutputSelector(self.outputs)

    def check_input_length(self, length: int) -> None:
        """Raise :class:`InputError` if sequences of ``length`` do not fit this model."""
        if length != self.input_length:
            raise InputError(f"sequences have length {length} but the model spec's input_length is {self.input_length}")

    def build_module(self) -> torch.nn.Module:
        """A fresh module from the factory, without weights, in eval mode on CPU."""
        return build_module(self.entrypoint, self.kwargs)

    def build_members(self) -> list[torch.nn.Module]:
        """One module per weight file, weights loaded, in eval mode on CPU."""
        members = []
        for i, path in enumerate(self.weights):
            module = self.build_module()
            load_weights_into(module, path, f"weights[{i}]")
            members.append(module)
        return members

    def check(self) -> None:
        """Build the model, load every weight file and run one probe pass (CPU).

        Raises
        ------
        ModelSpecError
            Naming the field at fault.
        """
        module = self.build_module()
        declared = getattr(module, "input_length", None)
        if declared is not None and declared != self.input_length:
            raise ModelSpecError(
                f"input_length: {self.input_length} does not match the input length {declared} "
                f"of the model built from kwargs"
            )
        for i, path in enumerate(self.weights):
            load_weights_into(module, path, f"weights[{i}]")
        if self.replicates.kind == "mc_dropout" and not dropout_layers(module):
            raise ModelSpecError(
                f"replicates.kind: 'mc_dropout' needs dropout layers with p > 0, but {self.entrypoint!r} "
                f"builds a model without any"
            )
        try:
            with torch.inference_mode():
                raw = module(torch.zeros(2, 4, self.input_length))
        except Exception as err:
            raise ModelSpecError(
                f"input_length: the model fails on one-hot input of length {self.input_length}: "
                f"{type(err).__name__}: {err}"
            ) from err
        self.output_selector().check(raw)


def load_model_spec(path: str | Path, *, check: bool = True) -> ModelSpec:
    """Read and validate a model spec YAML file.

    Parameters
    ----------
    path
        The YAML file; relative weight paths are resolved against its directory.
    check
        See :meth:`ModelSpec.from_dict`.

    Raises
    ------
    ModelSpecError
        Naming the file and the field at fault.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ModelSpecError(f"{path}: cannot read model spec: {err}") from err
    except yaml.YAMLError as err:
        raise ModelSpecError(f"{path}: not valid YAML: {err}") from err
    try:
        return ModelSpec.from_dict(data, base_dir=path.parent, check=check)
    except ModelSpecError as err:
        raise ModelSpecError(f"{path}: {err}") from err.__cause__


def model_digest(spec: ModelSpec) -> str:
    """SHA-256 hex digest identifying what a spec computes: its settings, weights and code.

    Covers the canonical JSON of ``entrypoint``, ``kwargs``, ``outputs``, ``replicates`` and
    ``input_length``, the bytes of every weight file in order, and the bytes of the files
    holding the factory's code (:func:`~dmr_ray.models.loading.entrypoint_files`: the
    entrypoint module's file, and the factory's own file if that differs); not the file
    paths, so moving the files keeps the digest. Editing the factory's module changes it,
    so an effects store computed by older code is not resumed with newer code.

    Raises
    ------
    ModelSpecError
        When the entrypoint cannot be imported.
    """
    canonical = json.dumps(spec.model_dump(mode="json", include=_DIGEST_FIELDS), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode())
    for path in (*spec.weights, *entrypoint_files(spec.entrypoint)):
        digest.update(path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as fh:
            while block := fh.read(_READ_BLOCK):
                digest.update(block)
    return digest.hexdigest()
