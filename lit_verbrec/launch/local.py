"""cluster=local: run the configured stages one after another on this machine, then score them.

Each stage resumes from its last checkpoint if an earlier attempt left one, so rerunning the
same command after an interruption continues where it stopped. Results of every stage are
appended to `<run>/results.md` and `<run>/results.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lit_verbrec.config.compose import save_config
from lit_verbrec.config.schema import Config
from lit_verbrec.data.files import atomic_write
from lit_verbrec.evaluation.stage_results import markdown, reasoner_results, verbalizer_results
from lit_verbrec.training.run import RunPaths, best_adapter, run_prepare_stage
from lit_verbrec.training.stages import run_reasoner_stage, run_verbalizer_stage

STAGES = {"prepare": (run_prepare_stage, None), "verbalizer": (run_verbalizer_stage, verbalizer_results),
          "reasoner": (run_reasoner_stage, reasoner_results)}
"""stage -> (what runs it, what scores it on the test split; None: nothing to score)."""


def run_stage(cfg: Config, stage: str) -> dict:
    """Run one stage; a training stage is then scored on the test split and its result recorded and
    printed (rank 0 scores; under DDP the other ranks return their training summary)."""
    train, score = STAGES[stage]
    start = time.perf_counter()
    summary = train(cfg)
    if score is None or not is_global_zero():
        return summary
    results = score(cfg)
    results["train"] = {k: v for k, v in summary.items() if k != "validation"} | {
        "validation": summary["validation"], "minutes": round((time.perf_counter() - start) / 60, 2)}
    paths = RunPaths.of(cfg)
    record(paths.run, results)
    print(markdown(results), flush=True)
    print(f"\nwrote {paths.run / 'results.md'} and results.json; {stage} adapter: {best_adapter(paths.stage(stage))}; "
          f"logs: {paths.stage(stage) / 'logs'}", flush=True)
    return results


def is_global_zero() -> bool:
    """True outside DDP, and on global rank 0 inside it (the process group outlives fit())."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def run_local(cfg: Config) -> list[dict]:
    paths = RunPaths.of(cfg)
    paths.run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, paths.run)
    return [run_stage(cfg, stage) for stage in cfg.stage.stages]


def record(run_dir: Path, results: dict) -> None:
    """Replace this stage's entry in results.json and rewrite results.md from all entries."""
    path = run_dir / "results.json"
    entries = [r for r in (json.loads(path.read_text()) if path.is_file() else []) if r["stage"] != results["stage"]]
    entries.append(results)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(entries, indent=2, default=str) + "\n"))
    atomic_write(run_dir / "results.md",
                 lambda tmp: tmp.write_text("# Results\n\n" + "\n\n".join(markdown(r) for r in entries) + "\n"))
