"""``ray job submit`` entrypoint of a Deep MR audit.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/deep_mr.py audit.yaml [--overwrite]

Under ``ray job submit`` the driver joins the cluster it runs on (Ray sets ``RAY_ADDRESS``);
the configuration's ``ray.address`` is ignored there. Jobs are never retried by Ray: resubmit
the same command and the audit resumes from its committed chunks.
"""

from __future__ import annotations

import sys

from dmr_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["deep-mr", "run", *sys.argv[1:]]))
