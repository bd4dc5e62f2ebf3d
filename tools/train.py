"""Train one stage on this machine (CPU or one GPU; train.devices > 1 for DDP).

    python tools/train.py stage=verbalizer                     # stage 1 on the embedded default
    python tools/train.py stage=reasoner                       # stage 2 (needs stage 1's adapter)
    python tools/train.py stage=reasoner reasoner.input=template   # the "reasoner on raw" ablation
    python tools/train.py stage=verbalizer size=8b oracle=openai oracle.base_url=http://host:8000/v1

The run folder is runs/<run.name>/ (layout: lit_verbrec/training/run.py); rerunning the same
command resumes from the stage's last checkpoint. At the end the stage is scored on the test
split and results.md / results.json are updated.
"""

from __future__ import annotations

import sys

from lit_verbrec.config.cli import parse_cli
from lit_verbrec.launch.local import run_local


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_cli(__doc__, argv)
    if len(cfg.stage.stages) > 1:
        print(f"config error: stage: tools/train.py trains one stage; pick stage=verbalizer or stage=reasoner "
              f"(tools/submit.py stage={cfg.stage.name} runs {', '.join(cfg.stage.stages)})", file=sys.stderr)
        return 2
    run_local(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
