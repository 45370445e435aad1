"""``ray job submit`` entrypoint of audit plans: ``dmr-ray audit run PLAN.yaml [--only ...] [--json]``.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/audit.py plan.yaml

Under ``ray job submit`` the driver joins the cluster it runs on (Ray sets ``RAY_ADDRESS``).
Complete cells are skipped and each cell is leased on the output store, so resubmitting (or a
scheduler's double fire) computes nothing twice; interrupted cells resume. Exit code 1 when a
cell failed (the others still ran), 2 for an invalid plan. See docs/audits.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ray job submit uploaded

from dmr_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["audit", "run", *sys.argv[1:]]))
