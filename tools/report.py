"""One HTML page per run: training curves of each stage, the results tables, example texts.

    python tools/report.py run=runs/default             # writes runs/default/report/index.html
    python tools/report.py run=runs/default out=/tmp/r

Plots (matplotlib, PNG beside the page): reward, its accuracy and length parts, compression
ratio, KL, approx KL, clip fraction, zero-spread groups and validation scores over steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lit_verbrec.evaluation.report import write_report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__.strip())
        return 0
    args = dict(a.partition("=")[::2] for a in argv)
    unknown = sorted(set(args) - {"run", "out"})
    if unknown or "run" not in args:
        print("usage: tools/report.py run=<run folder> [out=<folder>]" + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
              file=sys.stderr)
        return 2
    run = Path(args["run"])
    if not run.is_dir():
        print(f"error: {run} is not a run folder", file=sys.stderr)
        return 1
    index = write_report(run, Path(args["out"]) if args.get("out") else None)
    print(f"wrote {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
