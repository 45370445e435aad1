"""Scheduled audits: plans over models × data × audits, content-addressed cells, an
append-only index, diffs between model versions and manifests for existing schedulers
(docs/audits.md).

* :mod:`plan` — the plan (``load_plan``); :mod:`kinds` — per-kind hooks (``AUDIT_KINDS``);
* :mod:`cells` — cells and their keys; :mod:`lease` — one run per cell; :mod:`runner` —
  ``run_plan``; :mod:`index` — ``index.parquet``; :mod:`status`, :mod:`diff`, :mod:`export`.
"""

from dmr_ray.audit.plan import AuditPlan, load_plan
from dmr_ray.audit.runner import CellOutcome, PlanRun, run_plan

__all__ = ["AuditPlan", "CellOutcome", "PlanRun", "load_plan", "run_plan"]
