"""Run the stages of a run: both stages in order by default.

    python tools/submit.py stage=both size=tiny cluster=local      # this machine, stage 1 then stage 2
    python tools/submit.py stage=verbalizer cluster=local

cluster=local trains the stages one after another here (each resumes from its last checkpoint
if interrupted) and writes runs/<run.name>/results.md. cluster=slurm submits them as dependent
Slurm jobs; that launcher is not part of this version yet and says so.
"""

from __future__ import annotations

import sys

from lit_verbrec.config.cli import parse_cli
from lit_verbrec.launch.local import run_local


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_cli(__doc__, argv)
    if cfg.cluster.kind == "slurm":
        print("cluster=slurm: the Slurm launcher is not in this version yet; use cluster=local "
              "(or tools/train.py inside your own sbatch script)", file=sys.stderr)
        return 2
    run_local(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
