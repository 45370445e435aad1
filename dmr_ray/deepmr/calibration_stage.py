"""Fit the recalibration of replicate predictions on a labelled held-out set.

The fitted map is written to ``calibration.json`` in the audit directory, with the calibration
error and curves before and after, and is applied to every replicate prediction before
differencing during ISM (as the original Deep MR did).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmr_ray._atomic import write_text_atomic
from dmr_ray.deepmr.config import CalibrationOptions
from dmr_ray.errors import InputError

CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class CalibrationFit:
    """A fitted recalibration and how well calibrated the model was before and after."""

    recalibrator: dict
    tasks: tuple[str, ...]
    expected: np.ndarray
    observed_before: np.ndarray
    observed_after: np.ndarray
    error_before: np.ndarray
    error_after: np.ndarray

    def to_dict(self) -> dict:
        """A JSON-safe form (the file format of ``calibration.json``)."""
        return {
            "recalibrator": self.recalibrator,
            "tasks": list(self.tasks),
            "expected": self.expected.tolist(),
            "observed_before": self.observed_before.tolist(),
            "observed_after": self.observed_after.tolist(),
            "error_before": self.error_before.tolist(),
            "error_after": self.error_after.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationFit:
        """Inverse of :meth:`to_dict`."""
        arrays = {
            k: np.asarray(data[k], dtype=float)
            for k in ("expected", "observed_before", "observed_after", "error_before", "error_after")
        }
        return cls(recalibrator=data["recalibrator"], tasks=tuple(data["tasks"]), **arrays)


def _load_labels(path: Path, n: int, tasks: tuple[str, ...]) -> np.ndarray:
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read calibration labels as a .npy array: {exc}") from None
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim == 1 and len(tasks) == 1:
        labels = labels[:, None]
    if labels.shape != (n, len(tasks)):
        raise InputError(
            f"{path}: calibration labels have shape {labels.shape}; expected "
            f"({n}, {len(tasks)}) for {n} sequences and tasks {list(tasks)}"
        )
    bad = np.argwhere(~np.isfinite(labels))
    if bad.size:
        raise InputError(f"{path}: calibration label at row {bad[0][0]}, task {tasks[bad[0][1]]!r} is not finite")
    return labels


def replicate_predictions(predictor, tokens: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Predictions of every replicate for every sequence: ``[R, n, T]`` float64."""
    import torch

    from dmr_ray.alphabet import tokens_to_onehot

    parts = []
    for start in range(0, len(tokens), batch_size):
        onehot = torch.from_numpy(tokens_to_onehot(tokens[start : start + batch_size]))
        with torch.inference_mode():
            parts.append(predictor.predict_all(onehot.to(predictor.device)).double().cpu().numpy())
    return np.concatenate(parts, axis=1)


def fit_calibration(options: CalibrationOptions, spec, predictor) -> CalibrationFit:
    """Fit ``options.method`` on the labelled store and measure calibration before and after.

    The map is fitted on the even rows of the labelled set and scored on the odd rows, so
    the reported "after" error is out of sample.

    Parameters
    ----------
    options
        Which recalibration, and where the labelled sequences and labels are.
    spec
        The model spec (its task names order the label columns).
    predictor
        The replicate predictor of ``spec``.
    """
    from dmr_ray.store import open_sequence_store
    from dmr_ray.uncertainty.calibration import (
        IsotonicRecalibrator,
        VarianceScaler,
        calibration_curve,
        calibration_error,
        fit_isotonic_recalibration,
        fit_variance_scaling,
        replicate_moments,
    )

    assert options.store is not None and options.labels is not None, "CalibrationOptions checks both are set"
    store = open_sequence_store(str(options.store))
    tasks = tuple(spec.task_names)
    labels = _load_labels(options.labels, store.n_seq, tasks)
    if store.n_seq < 4:
        raise InputError(f"{options.store}: calibration needs at least 4 labelled sequences, found {store.n_seq}")
    preds = replicate_predictions(predictor, store.read(0, store.n_seq))
    fit_rows, score_rows = np.arange(0, store.n_seq, 2), np.arange(1, store.n_seq, 2)
    mu, sigma = replicate_moments(preds[:, fit_rows])
    recal: IsotonicRecalibrator | VarianceScaler
    if options.method == "isotonic":
        recal = fit_isotonic_recalibration(mu, sigma, labels[fit_rows], mode=options.mode)
    else:
        recal = fit_variance_scaling(mu, sigma, labels[fit_rows])
    held_out = labels[score_rows]
    mu, sigma = replicate_moments(preds[:, score_rows])
    mu_after, sigma_after = replicate_moments(recal.apply(preds[:, score_rows]))
    expected, before = calibration_curve(mu, sigma, held_out)
    _, after = calibration_curve(mu_after, sigma_after, held_out)
    return CalibrationFit(
        recalibrator=recal.to_dict(),
        tasks=tasks,
        expected=np.asarray(expected),
        observed_before=np.asarray(before),
        observed_after=np.asarray(after),
        error_before=np.asarray(calibration_error(mu, sigma, held_out)),
        error_after=np.asarray(calibration_error(mu_after, sigma_after, held_out)),
    )


def save_calibration(fit: CalibrationFit, path: Path) -> None:
    """Write ``calibration.json`` atomically."""
    write_text_atomic(path, json.dumps(fit.to_dict()))


def load_calibration(path: Path) -> CalibrationFit:
    """Read a ``calibration.json`` written by :func:`save_calibration`."""
    return CalibrationFit.from_dict(json.loads(Path(path).read_text()))
