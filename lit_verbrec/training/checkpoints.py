"""Checkpoints a GRPO run needs: an adapter folder to ship, and a resumable training state.

    <dir>/adapter/               peft format (adapter_config.json + adapter_model.safetensors)
                                 + tokenizer: loads with PeftModel.from_pretrained and as a
                                 vLLM LoRA; rewritten every `every_n_steps` and at the end
    <dir>/last.ckpt              Lightning checkpoint: LoRA weights, optimizer, scheduler and
                                 loop state (GRPOModule drops the frozen base from it)

Only global rank 0 writes the adapter; every rank holds the same weights under DDP.

Every write is atomic: a process killed mid-write (SIGKILL, node failure, a requeue) leaves
the previous file or folder whole. Lightning's own "atomic" save writes through an fsspec
transaction whose temporary file lives in the system temp folder, so on a cluster (local
/tmp, shared run folder) the final move is a copy that a kill can cut short; here the
temporary sits beside the target and `os.replace` swaps it in (atomic within a filesystem).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_verbrec.data.files import atomic_write
from lit_verbrec.models.loading import save_adapter


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written with `atomic_write` (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        import torch

        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


class AdapterCheckpoint(pl.Callback):
    def __init__(self, folder: str | Path, every_n_steps: int = 0) -> None:
        """`every_n_steps` 0: only at the end of training."""
        self.folder = Path(folder)
        self.every_n_steps = every_n_steps

    def _save(self, trainer: pl.Trainer, module) -> None:
        if trainer.is_global_zero:
            save_adapter(module.policy, self.folder, tokenizer=module.tokenizer)
            (self.folder / "global_step.txt").write_text(f"{trainer.global_step}\n")

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._save(trainer, module)

    def on_train_end(self, trainer: pl.Trainer, module) -> None:
        self._save(trainer, module)


def resumable_checkpoint(folder: str | Path, every_n_steps: int) -> ModelCheckpoint:
    """`last.ckpt` in `folder`, rewritten every `every_n_steps` optimizer steps (resume from it)."""
    return ModelCheckpoint(dirpath=folder, filename="step-{step}", save_last=True, save_top_k=0,
                           every_n_train_steps=every_n_steps, enable_version_counter=False)
