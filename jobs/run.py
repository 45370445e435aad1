"""``ray job submit`` entrypoint of every pipeline: the configuration's ``kind`` picks it.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/run.py audit.yaml [--overwrite]

Under ``ray job submit`` the driver joins the cluster it runs on (Ray sets ``RAY_ADDRESS``);
the configuration's ``engine.address`` is ignored there. Jobs are never retried by Ray:
resubmit the same command and the run resumes from its finished stages and chunks. With
token authentication (Ray 2.60's default for new clusters) the submitting shell needs
``RAY_AUTH_MODE=token`` and the cluster's token (README, "On a cluster").
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ray job submit uploaded

from dmr_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
