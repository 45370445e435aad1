"""Safe weight files: safetensors (preferred) or ``torch.load(weights_only=True)`` state dicts.

Nothing here unpickles arbitrary objects: a ``.pt``/``.pth`` file that holds anything other
than tensors (and plain containers) is refused by torch's weights-only loader, with one line
saying how to save a state dict instead.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from dmr_ray._atomic import write_atomic
from dmr_ray.errors import ModelSpecError

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_MAX_LISTED = 5


def save_weights(module: torch.nn.Module, path: str | Path) -> Path:
    """Write ``module``'s state dict to a safetensors file, atomically.

    The file is written to a temporary sibling and renamed onto ``path`` only when complete
    (:func:`dmr_ray._atomic.write_atomic`), so an interrupted write leaves any previous file at
    ``path`` intact and no partial file behind.

    Parameters
    ----------
    module
        Any ``torch.nn.Module``; its parameters and buffers are saved (copied to CPU and
        made contiguous; shared tensors are stored once per name).
    path
        Destination; conventionally ends in ``.safetensors``. Its directory must exist.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    state = {name: t.detach().cpu().clone().contiguous() for name, t in module.state_dict().items()}
    write_atomic(path, lambda tmp: safetensors.torch.save_file(state, str(tmp)))
    return path


def load_state_dict_file(path: str | Path, field: str = "weights") -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` without executing code from the file.

    Parameters
    ----------
    path
        A ``.safetensors`` file, or a ``.pt``/``.pth``/``.bin`` file holding a state dict.
    field
        The spec field that named the file, for error messages (e.g. ``"weights[1]"``).

    Returns
    -------
    dict
        Parameter and buffer names mapped to CPU tensors.

    Raises
    ------
    ModelSpecError
        If the file is missing, unreadable, of an unknown kind, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelSpecError(f"{field}: file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in SAFETENSORS_SUFFIXES:
            return safetensors.torch.load_file(str(path), device="cpu")
        if suffix in TORCH_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ModelSpecError(
                f"{field}: {path.name} has an unsupported extension; use .safetensors "
                f"(or a state dict in .pt/.pth/.bin)"
            )
    except pickle.UnpicklingError as err:
        raise ModelSpecError(
            f"{field}: cannot read weights from {path}: it holds pickled objects (a whole model?), not a state dict "
            f"of tensors; save one with torch.save(model.state_dict(), path) or as .safetensors "
            f"(dmr_ray.models.save_weights)"
        ) from err
    except (SafetensorError, RuntimeError, OSError, EOFError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelSpecError(f"{field}: cannot read weights from {path}: {reason}") from err
    if not (isinstance(state, Mapping) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ModelSpecError(f"{field}: {path} does not hold a state dict (a mapping of names to tensors)")
    return dict(state)


def load_weights_into(module: torch.nn.Module, path: str | Path, field: str = "weights") -> None:
    """Load the weight file at ``path`` into ``module`` after checking that it fits.

    Raises
    ------
    ModelSpecError
        Naming ``field`` and listing missing keys, unexpected keys and shape mismatches.
    """
    state = load_state_dict_file(path, field)
    expected = module.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = [
        f"{k} (file {list(state[k].shape)}, model {list(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", mismatched)):
        if keys:
            more = f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
            problems.append(f"{label}: {', '.join(keys[:_MAX_LISTED])}{more}")
    if problems:
        raise ModelSpecError(f"{field}: {Path(path).name} does not fit the model: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)
