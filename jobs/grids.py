"""``ray job submit`` entrypoint of a GRIDS run (the same as ``python jobs/run.py grids.yaml``).

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python jobs/grids.py grids.yaml [--overwrite]

The driver joins the cluster the job runs on; Tune trials and their shard actors are placed on
its worker nodes (cluster.yaml's worker types). Set ``tune.storage_path`` to shared storage or
an object-store URL so that every node reaches the experiments. Resubmitting the same command
resumes: finished tasks are reused and an interrupted Tune experiment is restored.
"""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_name("run.py")), run_name="__main__")
