"""Callbacks of a stage run: validation with best-adapter keeping, and sample tables.

Keeping the best checkpoint by validation reward is one of the guards against the late
collapse plain GRPO shows near the optimum (notes/learnability.md): the policy is scored
greedily on held-out examples at step 0 and every `every_n_steps`, and the adapter of the
best score is written to `best_dir` (with `best.json`), so a later slide costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar

from lit_verbrec.models.loading import save_adapter


class EveryNSteps(pl.Callback):
    """Runs `measure(trainer, module)` before training (a fresh run's step 0) and after every
    `every_n_steps`-th optimizer step; the schedule shared by validation and the decision probe."""

    every_n_steps: int

    def measure(self, trainer: pl.Trainer, module) -> None:
        raise NotImplementedError

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        if trainer.global_step == 0:
            self.measure(trainer, module)

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.measure(trainer, module)


class ValidationCallback(EveryNSteps):
    def __init__(self, examples: list[dict], every_n_steps: int, best_dir: str | Path, metric: str = "reward") -> None:
        self.examples, self.every_n_steps = examples, every_n_steps
        self.best_dir, self.metric = Path(best_dir), metric
        self.best: float | None = None
        self.history: list[dict] = []

    def state_dict(self) -> dict:
        """Saved in the checkpoint: after a requeue the best score and the history go on, so a worse
        first validation does not overwrite the best adapter (the one stage 2 and evaluation use)."""
        return {"best": self.best, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.history = state["best"], list(state["history"])

    def measure(self, trainer: pl.Trainer, module) -> None:
        metrics = module.validation_reward(self.examples)
        step = trainer.global_step
        self.history.append({"step": step, **metrics})
        for logger in trainer.loggers:
            logger.log_metrics({f"val/{k}": v for k, v in metrics.items()}, step=step)
        if self.best is None or metrics[self.metric] > self.best:
            self.best = metrics[self.metric]
            if trainer.is_global_zero:
                save_adapter(module.policy, self.best_dir, tokenizer=module.tokenizer)
                (self.best_dir / "best.json").write_text(json.dumps({"step": step, **metrics}, indent=2) + "\n")


class SampleTable(pl.Callback):
    """Every `every_n_steps`, write the latest rollout's texts with their rewards as Markdown."""

    def __init__(self, folder: str | Path, every_n_steps: int, rows: int = 8) -> None:
        self.folder, self.every_n_steps, self.rows = Path(folder), every_n_steps, rows

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if not trainer.is_global_zero or trainer.global_step % self.every_n_steps or not module.last_samples:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        samples = module.last_samples[: self.rows]
        columns = [k for k in samples[0] if k != "text"]
        lines = [f"# step {trainer.global_step}", "", "| " + " | ".join(columns + ["text"]) + " |",
                 "|" + "---|" * (len(columns) + 1)]
        for s in samples:
            text = s["text"].replace("|", "\\|").replace("\n", "<br>")
            lines.append("| " + " | ".join(f"{s[c]:.3f}" if isinstance(s[c], float) else str(s[c]) for c in columns)
                         + f" | {text} |")
        (self.folder / f"step-{trainer.global_step:06d}.md").write_text("\n".join(lines) + "\n")


class ReplicaCheck(pl.Callback):
    """At the end of a DDP fit, prove that every rank holds the same trainable weights.

    Each rank hashes its trainable parameters (SHA-256 of their bytes, in name order); the hashes
    are all-gathered and written to `path` ({"ranks": [hex, ...], "identical": bool}). DDP keeps
    replicas equal only while every rank takes every step with the same averaged gradient; a
    rank that skipped a step, or reduced a different set of parameters, would silently train a
    different model, so a mismatch is an error, not a warning.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: pl.Trainer, module) -> None:
        import hashlib

        import torch

        digest = hashlib.sha256()
        for _, param in sorted((n, p) for n, p in module.named_parameters() if p.requires_grad):
            digest.update(param.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        mine = torch.tensor(list(digest.digest()), dtype=torch.int64, device=module.device)     # [32]
        gathered = trainer.strategy.all_gather(mine).reshape(-1, 32)                            # [world, 32]
        hashes = [bytes(row.tolist()).hex() for row in gathered.cpu()]
        identical = len(set(hashes)) == 1
        if trainer.is_global_zero:
            self.path.write_text(json.dumps({"ranks": hashes, "identical": identical}, indent=2) + "\n")
        if not identical:
            raise RuntimeError(f"DDP replicas diverged: trainable-weight hashes per rank {hashes} (see {self.path})")


class StepProgressBar(TQDMProgressBar):
    """Optimizer steps done out of grpo.max_steps, with the logged metrics. The runs are counted in
    steps: Lightning's own bar counts the batches of an epoch (`max_epochs` is unset here)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *_) -> None:
        super().on_train_epoch_start(trainer)
        self._show(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        self._show(trainer, pl_module)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        return {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k != "v_num"}   # logger version: noise

    def _show(self, trainer: pl.Trainer, pl_module: pl.LightningModule | None = None) -> None:
        bar = self.train_progress_bar
        if bar is None or bar.disable:
            return
        bar.total, bar.n = trainer.max_steps, trainer.global_step
        bar.set_description("steps", refresh=False)
        if pl_module is not None:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.refresh()
