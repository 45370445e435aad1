"""Sequence-model attributions: analytic values on linear models, truth masks, the command."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dmr_ray.attribution.sequences import (
    METHODS,
    evaluate_attributions,
    motif_bed_truth,
    position_scores,
    simulation_motif_lines,
    simulation_truth,
    span_mask,
)
from dmr_ray.attribution.sequences_cli import add_sequences
from dmr_ray.config.commands import CommandGroup
from dmr_ray.errors import ConfigError, InputError
from dmr_ray.sim import CONFOUNDER_MOTIF, EXPOSURE_MOTIF, OUTCOME_MOTIF, simulate_tf_coop
from dmr_ray.uncertainty import EnsemblePredictor

L, T = 12, 2


class LinearSequenceModel(nn.Module):
    """``f_t(x) = Σ_{c,l} W[t, c, l] x[c, l] + b_t`` on one-hot ``[batch, 4, L]``."""

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float32))
        self.bias = nn.Parameter(torch.tensor([0.5, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bcl,tcl->bt", x, self.weight) + self.bias


@pytest.fixture(scope="module")
def linear() -> tuple[EnsemblePredictor, np.ndarray, np.ndarray]:
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(2, T, 4, L))
    tokens = rng.integers(0, 4, (5, L)).astype(np.uint8)
    tokens[2, 3] = 4  # an N
    predictor = EnsemblePredictor([LinearSequenceModel(w) for w in weights])
    return predictor, weights, tokens


def _analytic(method: str, w: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The expected ``[n, T, L]`` scores of one linear model ``w`` ``[T, 4, L]``."""
    n = tokens.shape[0]
    ref = np.minimum(tokens, 3)
    at_ref = w[:, ref, np.arange(L)].transpose(1, 0, 2)  # [n, T, L]: W[t, ref_l, l]
    if method == "grad_x_input":
        out = np.abs(at_ref)
    elif method == "saliency":
        out = np.broadcast_to(np.sqrt((w**2).sum(axis=1)), (n, T, L)).copy()
    elif method == "ig":  # uniform baseline: Σ_c (x_c − 0.25) W_c
        out = np.abs(at_ref - w.mean(axis=1)[None])
    else:  # ism: mean over the 3 other bases of |W_alt − W_ref|
        out = (np.abs(w[None] - at_ref[:, :, None, :]).sum(axis=2)) / 3
    out[np.broadcast_to((tokens == 4)[:, None, :], out.shape)] = np.nan
    return out


@pytest.mark.parametrize("method", METHODS)
def test_each_method_equals_its_analytic_value_on_linear_models(linear, method) -> None:
    predictor, weights, tokens = linear
    scores = position_scores(predictor, tokens, method, ig_steps=4, batch_size=2)
    for r in range(2):
        np.testing.assert_allclose(scores.replicates[r], _analytic(method, weights[r], tokens), rtol=1e-5, atol=1e-5)
    # The ensemble attribution is that of the member-mean model.
    np.testing.assert_allclose(scores.ensemble, _analytic(method, weights.mean(axis=0), tokens), rtol=1e-5, atol=1e-5)
    assert np.isnan(scores.replicates[:, 2, :, 3]).all()
    if method == "ig":
        assert scores.completeness_gap < 1e-5  # IG is exact on a linear model
    else:
        assert np.isnan(scores.completeness_gap)


def test_weights_only_at_motif_positions_rank_perfectly() -> None:
    truth = np.zeros((3, T, L), dtype=bool)
    truth[:, 0, 2:5] = True
    truth[:, 1, 6:10] = True
    rng = np.random.default_rng(2)
    members = []
    for _ in range(2):
        w = np.zeros((T, 4, L))
        w[0][:, 2:5] = rng.normal(size=(4, 3)) * 3
        w[1][:, 6:10] = rng.normal(size=(4, 4)) * 3
        w[w == 0] = 1e-3 * rng.normal(size=int((w == 0).sum()))  # weak, non-zero elsewhere
        members.append(LinearSequenceModel(w))
    tokens = rng.integers(0, 4, (3, L)).astype(np.uint8)
    evaluation = evaluate_attributions(EnsemblePredictor(members), tokens, truth, ig_steps=4)
    summary = evaluation.to_dict()
    assert set(summary["methods"]) == set(METHODS) and summary["outputs"] == ["task0", "task1"]
    for method in METHODS:
        for output in ("task0", "task1"):
            r = summary["methods"][method][output]
            assert r["auroc"] == pytest.approx(1.0) and r["auprc"] == pytest.approx(1.0), (method, output)
            assert r["auroc_sd"] == pytest.approx(0.0) and r["n_sequences"] == 3
    assert summary["methods"]["ism"]["task0"]["random_auprc"] == pytest.approx(3 / L)
    assert summary["example"]["output"] == "task1" and sum(summary["example"]["motif"]) == 4
    with pytest.raises(InputError, match="truth must be bool"):
        evaluate_attributions(EnsemblePredictor(members), tokens, truth[:, :1])


def test_simulation_truth_follows_the_generative_model(tmp_path: Path) -> None:
    sim = simulate_tf_coop(60, length=40, confounder_motif=True, seed=3)
    truth = simulation_truth(sim)
    pair = int(np.flatnonzero(sim.is_pair)[0])
    gata, tal1 = sim.exposure_start[pair], sim.outcome_start[pair]
    expected_gata = np.zeros(40, dtype=bool)
    expected_gata[gata : gata + EXPOSURE_MOTIF.length] = True
    conf = sim.confounder_start[pair]
    if conf >= 0:  # the confounder motif drives both outputs
        expected_gata[conf : conf + CONFOUNDER_MOTIF.length] = True
    expected_tal1 = expected_gata.copy()
    expected_tal1[tal1 : tal1 + OUTCOME_MOTIF.length] = True
    assert sim.has_confounder.any()
    np.testing.assert_array_equal(truth[pair, 0], expected_gata)
    np.testing.assert_array_equal(truth[pair, 1], expected_tal1)
    none = ~sim.has_exposure & ~sim.has_outcome & ~sim.has_confounder
    assert not truth[none].any()
    # The same truth written as a motif file and read back.
    ids = [f"s{i}" for i in range(60)]
    path = tmp_path / "motifs.bed"
    path.write_text(simulation_motif_lines(sim, np.arange(60), ids))
    np.testing.assert_array_equal(motif_bed_truth(path, ids, 40, ["GATA", "TAL1"]), truth)
    np.testing.assert_array_equal(span_mask(np.array([-1, 38]), 10, 40).sum(axis=1), [0, 2])


def test_motif_bed_truth_reads_and_refuses(tmp_path: Path) -> None:
    bed = tmp_path / "motifs.bed"
    bed.write_text("# header\ns1\t2\t5\ns2 0 3 TAL1\n\n")
    truth = motif_bed_truth(bed, ["s1", "s2"], 8, ["GATA", "TAL1"])
    assert truth[0, :, 2:5].all() and truth[0].sum() == 6
    assert truth[1, 1, :3].all() and not truth[1, 0].any()
    for line, message in (("s3 0 2", "not among"), ("s1 4 2", "start < end"), ("s1 0 2 SOX2", "not an output")):
        bed.write_text(line + "\n")
        with pytest.raises(InputError, match=f"motifs.bed:1: .*{message}"):
            motif_bed_truth(bed, ["s1", "s2"], 8, ["GATA", "TAL1"])


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    group = CommandGroup(parser.add_subparsers(dest="command", required=True)).group("attribution", help="a")
    add_sequences(group)
    args = parser.parse_args(["attribution", "sequences", *argv])
    return args.func(args)


TINY = ("--n-train", "200", "--n-eval", "6", "--members", "2", "--epochs", "2", "--length", "40", "--ig-steps", "8")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq") / "run"
    assert _cli("--out", str(out), *TINY) == 0
    return out


def test_command_smoke_run_writes_its_outputs(smoke: Path) -> None:
    summary = json.loads((smoke / "sequences.json").read_text())
    assert summary["n_replicates"] == 2 and summary["n_sequences"] == 6 and summary["outputs"] == ["GATA", "TAL1"]
    for method in METHODS:
        for output in ("GATA", "TAL1"):
            r = summary["methods"][method][output]
            assert 0 <= r["auroc"] <= 1 and 0 <= r["auprc"] <= 1 and len(r["member_auroc"]) == 2
    assert "| ISM | GATA |" in (smoke / "sequences.md").read_text()
    assert (smoke / "sequences_metrics.png").stat().st_size > 0 and (smoke / "sequences_example.png").exists()
    assert (smoke / "model" / "model.yaml").exists()


def test_command_refuses_to_replace_outputs_and_bad_options(smoke: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pass --overwrite"):
        _cli("--out", str(smoke), *TINY)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "sequences.json").write_text("{}")
    with pytest.raises(InputError, match="not written by this command"):
        _cli("--out", str(foreign), "--overwrite", *TINY)
    fresh = tmp_path / "fresh"
    with pytest.raises(InputError, match="go together"):
        _cli("--out", str(fresh), "--model", str(smoke / "model" / "model.yaml"))
    with pytest.raises(InputError, match="members must be at least 2"):
        _cli("--out", str(fresh), "--members", "1")
    assert not fresh.exists()


def test_command_scores_a_users_model_on_a_store(smoke: Path, tmp_path: Path) -> None:
    from dmr_ray.store import write_sequence_store

    sim = simulate_tf_coop(40, length=40, seed=5)
    rows = np.flatnonzero(sim.is_pair)[:4]
    ids = np.array([f"r{i}" for i in range(rows.size)])
    write_sequence_store(tmp_path / "seqs.zarr", sim.tokens[rows], ids)
    lines = [f"{i}\t{s}\t{s + 10}" for i, s in zip(ids, sim.exposure_start[rows], strict=True)]
    (tmp_path / "motifs.bed").write_text("\n".join(lines) + "\n")
    out = tmp_path / "user"
    args = ("--model", str(smoke / "model" / "model.yaml"), "--store", str(tmp_path / "seqs.zarr"))
    assert _cli("--out", str(out), *args, "--motifs", str(tmp_path / "motifs.bed"), "--methods", "ism", "ig") == 0
    summary = json.loads((out / "sequences.json").read_text())
    assert list(summary["methods"]) == ["ism", "ig"] and summary["n_sequences"] == 4
    assert summary["methods"]["ism"]["TAL1"]["random_auprc"] == pytest.approx(10 / 40)


AUDIT = {"store": "seqs.zarr", "model": "model.yaml", "out": "audit"}


def test_deep_mr_config_accepts_and_refuses_the_attribution_section() -> None:
    from dmr_ray.config import config_from_dict

    assert config_from_dict(AUDIT, base_dir=Path("/x")).attribution is None  # off by default
    on = config_from_dict({**AUDIT, "attribution": {"methods": ["ig", "ism"], "motifs": "m.bed"}}, base_dir=Path("/x"))
    assert on.attribution is not None
    assert on.attribution.methods == ("ism", "ig") and on.attribution.motifs == Path("/x/m.bed")
    for section, field in (
        ({"methods": ["shap"]}, "attribution.methods: unknown or none ['shap']"),
        ({"sequences": 0}, "attribution.sequences"),
        ({"baseline": "shuffled"}, "attribution.baseline"),
        ({"steps": 5}, "attribution.steps"),
    ):
        with pytest.raises(ConfigError, match=re.escape(field)):
            config_from_dict({**AUDIT, "attribution": section}, base_dir=Path("/x"))


def test_deep_mr_attribution_stage_and_report_section(smoke: Path, tmp_path: Path) -> None:
    import pyarrow as pa

    from dmr_ray.deepmr.attribution_stage import run_attribution_stage
    from dmr_ray.deepmr.config import AttributionOptions
    from dmr_ray.models import load_model_spec
    from dmr_ray.report import write_report
    from dmr_ray.store import write_sequence_store

    sim = simulate_tf_coop(40, length=40, seed=6)
    rows = np.flatnonzero(sim.is_pair)[:3]
    ids = [f"p{i}" for i in range(rows.size)]
    write_sequence_store(tmp_path / "seqs.zarr", sim.tokens[rows], np.array(ids))
    bed = tmp_path / "motifs.bed"
    bed.write_text("".join(f"{i} {s} {s + 10}\n" for i, s in zip(ids, sim.exposure_start[rows], strict=True)))
    spec = load_model_spec(smoke / "model" / "model.yaml")
    empty_global, empty_local = pa.table({"method": pa.array([], pa.string())}), pa.table({"x": pa.array([])})
    for motifs, expected in ((bed, "AUROC (ensemble)"), (None, "cannot be checked")):
        options = AttributionOptions(methods=("grad_x_input",), sequences=2, motifs=motifs)
        path = tmp_path / "attribution.json"
        line = run_attribution_stage(options, str(tmp_path / "seqs.zarr"), spec, "cpu", path)
        summary = json.loads(path.read_text())
        assert summary["truth"] is (motifs is not None) and summary["n_sequences"] == 2
        assert ("grad_x_input/GATA" in line) is (motifs is not None)
        index = write_report(tmp_path, global_table=empty_global, local_table=empty_local, attribution=summary)
        page = index.read_text()
        assert "How far can this model&#x27;s attributions be trusted" in page and expected in page
        assert page.count("figures/attribution-") == (2 if motifs is not None else 0)
