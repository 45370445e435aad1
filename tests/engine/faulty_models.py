"""Small CNNs with injected faults, for the engine tests.

Ray workers import this module by name (``faulty_models:faulty_cnn``), so the tests put this
folder on their ``PYTHONPATH`` through the engine's ``runtime_env``. The all-zeros probe
that a model spec check runs is answered normally, so only real sequences see the faults.
"""

from __future__ import annotations

import os
import time

import torch

from dmr_ray.models.architectures import SmallCNN


class FaultyCNN(SmallCNN):
    """:class:`SmallCNN` that can be slow, hang, or predict NaN for marked sequences.

    Parameters
    ----------
    delay
        Seconds to sleep in every forward pass.
    hang
        Never return from a forward pass.
    nan_marker
        If positive, sequences whose first ``nan_marker`` bases are all T predict NaN.
    **kwargs
        Passed to :class:`SmallCNN`.

    Raises
    ------
    RuntimeError
        When built in a process whose environment sets ``FAULTY_CNN_FAIL_INIT=1`` (a worker
        that cannot load the model).
    """

    def __init__(self, delay: float = 0.0, hang: bool = False, nan_marker: int = 0, **kwargs) -> None:
        if os.environ.get("FAULTY_CNN_FAIL_INIT") == "1":
            raise RuntimeError("this worker cannot build the model (FAULTY_CNN_FAIL_INIT=1)")
        super().__init__(**kwargs)
        self.delay, self.hang, self.nan_marker = delay, hang, nan_marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass with the configured faults (none for an all-zeros probe)."""
        if not x.any():
            return super().forward(x)
        while self.hang:
            time.sleep(1.0)
        time.sleep(self.delay)
        y = super().forward(x)
        if self.nan_marker:
            marked = (x[:, 3, : self.nan_marker] == 1).all(dim=1)
            y = torch.where(marked[:, None], torch.full_like(y, float("nan")), y)
        return y


def faulty_cnn(**kwargs) -> FaultyCNN:
    """Factory for model specs: ``entrypoint: "faulty_models:faulty_cnn"``."""
    return FaultyCNN(**kwargs)
