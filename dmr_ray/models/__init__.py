"""Model specs, safe weight loading, output heads and built-in architectures.

* :func:`load_model_spec` / :meth:`ModelSpec.from_dict`: validated YAML model specs.
* :func:`model_digest`: what a spec computes (settings, weights, factory code), as a SHA-256 digest.
* :func:`save_weights` / :func:`load_state_dict_file`: safetensors (or weights-only torch) files.
* :class:`OutputSelector`: raw model output -> ``[batch, tasks]``.
* :mod:`dmr_ray.models.architectures`: ``small_cnn``, ``bpnet``, ``deepsea``.
"""

from dmr_ray.models.heads import OutputSelector, OutputSpec
from dmr_ray.models.loading import build_module, dropout_layers, entrypoint_files, resolve_entrypoint
from dmr_ray.models.spec import ModelSpec, ReplicatesSpec, load_model_spec, model_digest
from dmr_ray.models.weights import load_state_dict_file, load_weights_into, save_weights

__all__ = [
    "ModelSpec",
    "OutputSelector",
    "OutputSpec",
    "ReplicatesSpec",
    "build_module",
    "dropout_layers",
    "entrypoint_files",
    "load_model_spec",
    "load_state_dict_file",
    "load_weights_into",
    "model_digest",
    "resolve_entrypoint",
    "save_weights",
]
