"""Stages with an identity: reuse, rerun on change, records with timing, overwrite that spares foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmr_ray.errors import ResumeConflictError
from dmr_ray.stage import MARKER, AuditDirectory, Stage, identity_digest


def _writer(root: Path, name: str, text: str, calls: list[str]):
    def write() -> str:
        calls.append(name)
        (root / name).write_text(text)
        return f"wrote {name}"

    return write


def test_identity_digest_is_canonical() -> None:
    assert identity_digest({"a": 1, "b": (1, 2)}) == identity_digest({"b": [1, 2], "a": 1})
    assert identity_digest({"a": 1}) != identity_digest({"a": 1.5})


def test_unchanged_stage_is_reused_and_recorded_with_timing(tmp_path: Path) -> None:
    audit = AuditDirectory.claim(tmp_path, "toy")
    calls: list[str] = []
    stage = Stage("meta", {"method": "DL"}, ("global.txt",))
    first = audit.run(stage, _writer(tmp_path, "global.txt", "1", calls))
    assert first.ran and first.summary == "wrote global.txt"
    record = json.loads((tmp_path / ".dmr_ray" / "stages" / "meta.json").read_text())
    assert record["digest"] == stage.digest == identity_digest({"method": "DL"})
    assert record["identity"] == {"method": "DL"} and record["outputs"] == ["global.txt"]
    assert record["seconds"] >= 0 and record["finished"].endswith("Z") and record["summary"] == "wrote global.txt"
    again = audit.run(stage, _writer(tmp_path, "global.txt", "2", calls))
    assert not again.ran and again.summary == "reused: wrote global.txt" and calls == ["global.txt"]
    (tmp_path / "global.txt").unlink()  # a missing output is recomputed
    assert audit.run(stage, _writer(tmp_path, "global.txt", "3", calls)).ran


def test_resumable_stage_always_runs(tmp_path: Path) -> None:
    audit = AuditDirectory.claim(tmp_path, "toy")
    calls: list[str] = []
    stage = Stage("local", {"t": 1}, ("parts",), resumable=True)
    audit.run(stage, _writer(tmp_path, "parts", "", calls))
    audit.run(stage, _writer(tmp_path, "parts", "", calls))
    assert calls == ["parts", "parts"]


def test_changed_identity_removes_only_the_recorded_outputs(tmp_path: Path) -> None:
    audit = AuditDirectory.claim(tmp_path, "toy")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "p0").write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    audit.run(Stage("local", {"threshold": 1.0}, ("parts",), resumable=True), lambda: "done")
    seen = []
    audit.run(
        Stage("local", {"threshold": 3.0}, ("parts",), resumable=True),
        lambda: seen.append((tmp_path / "parts").exists()) or "redone",
    )
    assert seen == [False]  # removed before the stage ran again
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert audit.record("local").identity == {"threshold": 3.0}


def test_a_stage_that_keeps_its_outputs_is_not_cleared(tmp_path: Path) -> None:
    audit = AuditDirectory.claim(tmp_path, "toy")
    (tmp_path / "effects.zarr").mkdir()
    audit.run(Stage("ism", {"ddof": 0}, ("effects.zarr",), resumable=True, keeps_outputs=True), lambda: "a")
    audit.run(Stage("ism", {"ddof": 1}, ("effects.zarr",), resumable=True, keeps_outputs=True), lambda: "b")
    assert (tmp_path / "effects.zarr").is_dir()


def test_an_interrupted_stage_leaves_an_unfinished_record(tmp_path: Path) -> None:
    audit = AuditDirectory.claim(tmp_path, "toy")

    def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        audit.run(Stage("meta", {"m": 1}, ("global.txt",)), interrupted)
    record = audit.record("meta")
    assert record is not None and record.finished is None and record.seconds is None
    calls: list[str] = []
    assert audit.run(Stage("meta", {"m": 1}, ("global.txt",)), _writer(tmp_path, "global.txt", "x", calls)).ran


def test_overwrite_removes_recorded_outputs_and_spares_the_users_files(tmp_path: Path) -> None:
    root = tmp_path / "results"
    root.mkdir()
    (root / "notes.txt").write_text("my notes")
    audit = AuditDirectory.claim(root, "toy")  # writing beside other files is fine
    calls: list[str] = []
    audit.run(Stage("meta", {"m": 1}, ("global.txt",)), _writer(root, "global.txt", "x", calls))
    (root / "report").mkdir()
    audit.run(Stage("report", {"r": 1}, ("report",)), lambda: "report")
    audit = AuditDirectory.claim(root, "toy", overwrite=True)
    assert sorted(p.name for p in root.iterdir()) == [".dmr_ray", "notes.txt"]
    assert (root / "notes.txt").read_text() == "my notes"
    assert audit.records() == [] and (root / MARKER).exists()


def test_overwrite_of_a_directory_dmr_ray_did_not_mark_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    (root / "thesis.tex").write_text("years of work")
    with pytest.raises(ResumeConflictError, match=r"home: --overwrite refused: not a dmr_ray audit directory"):
        AuditDirectory.claim(root, "toy", overwrite=True)
    assert [p.name for p in root.iterdir()] == ["thesis.tex"]
    AuditDirectory.claim(tmp_path / "new", "toy", overwrite=True)  # nothing there: fine
    AuditDirectory.claim(tmp_path / "new", "toy", overwrite=True)


def test_another_pipelines_directory_is_refused(tmp_path: Path) -> None:
    AuditDirectory.claim(tmp_path, "grids")
    with pytest.raises(ResumeConflictError, match="holds a 'grids' run, not 'deep_mr'"):
        AuditDirectory.claim(tmp_path, "deep_mr")


@pytest.mark.parametrize("output", ["../outside.txt", "/etc/passwd", ".dmr_ray"])
def test_records_cannot_name_paths_outside_the_directory(tmp_path: Path, output: str) -> None:
    root = tmp_path / "audit"
    audit = AuditDirectory.claim(root, "toy")
    (tmp_path / "outside.txt").write_text("keep")
    with pytest.raises(ResumeConflictError, match="a stage record lists the output"):
        audit.run(Stage("bad", {}, (output,)), lambda: "x")
    audit.run(Stage("bad", {}, ("fine.txt",)), lambda: "x")
    record = audit.record_path("bad")
    record.write_text(record.read_text().replace('"fine.txt"', json.dumps(output)))  # a tampered record
    with pytest.raises(ResumeConflictError, match="a stage record lists the output"):
        AuditDirectory.claim(root, "toy", overwrite=True)
    assert (tmp_path / "outside.txt").read_text() == "keep"
