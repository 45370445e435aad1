"""Calibrated predictors: all replicates recalibrated together, served per replicate, exact ISM."""

import json

import numpy as np
import pytest
import torch

from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models.architectures import small_cnn
from dmr_ray.uncertainty import EnsemblePredictor
from dmr_ray.uncertainty.calibrated import CalibratedPredictor, calibration_digest, with_calibration
from dmr_ray.uncertainty.calibration import IsotonicRecalibrator, VarianceScaler, fit_isotonic_recalibration


def _ensemble(seed: int = 0) -> EnsemblePredictor:
    members = []
    for i in range(3):
        torch.manual_seed(seed + i)
        members.append(small_cnn(length=24, n_tasks=2, filters=4, n_conv=1, n_dense=1, hidden=8))
    return EnsemblePredictor(members)


def test_replicates_served_from_one_joint_recalibration() -> None:
    base = _ensemble()
    scaler = VarianceScaler(np.array([4.0, 9.0]), 1e-6)
    calibrated = CalibratedPredictor(base, scaler)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (5, 24)), 4).permute(0, 2, 1).float()
    expected = scaler.apply(base.predict_all(x).double().numpy())
    for r in range(3):
        np.testing.assert_allclose(calibrated.predict(x, r).numpy(), expected[r], rtol=1e-6)
    x2 = x.clone()
    x2[:, :, 0] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    again = scaler.apply(base.predict_all(x2).double().numpy())
    np.testing.assert_allclose(calibrated.predict(x2, 1).numpy(), again[1], rtol=1e-6)


def _isotonic(base: EnsemblePredictor) -> IsotonicRecalibrator:
    """An isotonic map fitted to labels that spread 3× wider than the ensemble's replicates."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 4, (200, 24)).astype(np.uint8)
    replicates = base.predict_all(_onehot(tokens)).double().numpy()
    mu, sigma = replicates.mean(0), replicates.std(0)
    labels = mu + 3 * sigma * rng.standard_normal(mu.shape)
    return fit_isotonic_recalibration(mu, sigma, labels)


@pytest.mark.parametrize("kind", ["variance", "isotonic"])
def test_ism_of_a_calibrated_predictor_is_exact_and_fast_is_refused(kind) -> None:
    base = _ensemble(5)
    scaler = VarianceScaler(np.array([2.0, 3.0]), 1e-6) if kind == "variance" else _isotonic(base)
    tokens = np.random.default_rng(0).integers(0, 4, (2, 24)).astype(np.uint8)
    got = saturation_mutagenesis(CalibratedPredictor(base, scaler), tokens, fast=True)
    # Brute force: recalibrate all replicates of reference and mutants together, then difference.
    raw = base.predict_all(_onehot(tokens)).double().numpy()
    ref = scaler.apply(raw)
    assert np.abs(ref - raw).max() > 1e-3  # the map moves the predictions: not a trivial check
    seq, pos = 1, 7
    alt = [b for b in range(4) if b != tokens[seq, pos]][0]
    mutant = tokens[seq : seq + 1].copy()
    mutant[0, pos] = alt
    mut = scaler.apply(base.predict_all(_onehot(mutant)).double().numpy())
    diffs = mut[:, 0] - ref[:, seq]
    np.testing.assert_allclose(got.beta[seq, pos, 0], diffs.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.se[seq, pos, 0], diffs.std(0), rtol=1e-4, atol=1e-6)


def _onehot(tokens: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(tokens).long(), 4).permute(0, 2, 1).float()


def test_digest_and_loading(tmp_path) -> None:
    assert calibration_digest(None) == "none"
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"recalibrator": VarianceScaler(np.array([2.0]), 1e-6).to_dict()}))
    digest = calibration_digest(path)
    assert digest.startswith("variance_scaling:sha256:")
    base = _ensemble()
    assert with_calibration(base, None) is base
    assert isinstance(with_calibration(base, path), CalibratedPredictor)
