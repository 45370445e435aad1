"""Zarr stores: ``sequences.zarr`` (input tokens) and ``effects.zarr`` (ISM output)."""

from dmr_ray.store._zarr_io import normalise as normalise_location
from dmr_ray.store.effects import EffectsStore
from dmr_ray.store.info import store_info
from dmr_ray.store.sequences import (
    Coordinates,
    SequenceStore,
    build_from_arrays,
    build_from_fasta_bed,
    default_chunk_size,
    open_sequence_store,
    write_sequence_store,
)

__all__ = [
    "Coordinates",
    "EffectsStore",
    "SequenceStore",
    "build_from_arrays",
    "build_from_fasta_bed",
    "default_chunk_size",
    "normalise_location",
    "open_sequence_store",
    "store_info",
    "write_sequence_store",
]
