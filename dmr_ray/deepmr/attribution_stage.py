"""The optional attribution stage of a Deep MR audit: "how far can this model's attributions be
trusted" (``attribution:`` in the configuration; :mod:`dmr_ray.attribution.sequences`).

The first ``attribution.sequences`` sequences of the audited store are attributed with each
method and, when ``attribution.motifs`` gives their planted motif positions, scored against
them. Without motif positions nothing can be checked, so nothing is computed and the record
says so; the report then explains why the section is empty.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dmr_ray._atomic import write_text_atomic
from dmr_ray.attribution.sequences import MARKER, evaluate_attributions, motif_bed_truth
from dmr_ray.deepmr.config import AttributionOptions

ATTRIBUTION_FILE = "attribution.json"


def attribution_identity(options: AttributionOptions) -> dict[str, Any]:
    """The stage identity of ``options``: the options and the motif file's SHA-256."""
    motifs = None if options.motifs is None else hashlib.sha256(Path(options.motifs).read_bytes()).hexdigest()
    return {"options": options.model_dump(mode="json"), "motifs_sha256": motifs}


def run_attribution_stage(options: AttributionOptions, store: str, spec, device: str | None, path: Path) -> str:
    """Attribute and score the audited sequences; write the JSON summary to ``path``.

    Parameters
    ----------
    options
        The configuration's ``attribution`` section.
    store
        The audited sequence store.
    spec : ModelSpec
        The audited model.
    device
        Torch device of the model (``None``: CUDA when available).
    path
        Where the summary goes (``attribution.json``).

    Returns
    -------
    str
        One line for the terminal.
    """
    from dmr_ray.store import open_sequence_store
    from dmr_ray.uncertainty import build_predictor

    sequences = open_sequence_store(store)
    n = min(options.sequences, sequences.n_seq)
    if options.motifs is None:
        record = {"written_by": MARKER, "truth": False, "n_sequences": n, "requested": list(options.methods)}
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")
        return "no motif positions given: attributions cannot be checked (report says so)"
    ids = [str(s) for s in sequences.seq_ids(0, n)]
    truth = motif_bed_truth(options.motifs, ids, sequences.length, spec.task_names, skip_other_sequences=True)
    evaluation = evaluate_attributions(
        build_predictor(spec, device=device),
        sequences.read(0, n),
        truth,
        methods=options.methods,
        seq_ids=ids,
        ig_steps=options.ig_steps,
        baseline=options.baseline,
    )
    summary = {"written_by": MARKER, "truth": True, **evaluation.to_dict()}
    write_text_atomic(path, json.dumps(summary, indent=2) + "\n")
    aurocs = ", ".join(f"{r.method}/{r.output} {r.auroc.mean:.2f}" for r in evaluation.results)
    return f"{n} sequences, AUROC against the motif positions: {aurocs}"


def read_attribution(path: Path) -> dict[str, Any] | None:
    """The stage's summary, or ``None`` when the audit did not run the stage."""
    return json.loads(path.read_text()) if path.exists() else None
