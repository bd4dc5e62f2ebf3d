"""Checkpoints: the LoRA weights and optimizer state only, resumable, and a loadable adapter."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from peft import PeftModel
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_toy import TOY_GRPO  # noqa: E402
from toy import ToyModule, ToyPrompts, toy_tokenizer  # noqa: E402

from lit_verbrec.config.schema import LoraConfig, SizeConfig  # noqa: E402
from lit_verbrec.config.train_schema import GRPOConfig  # noqa: E402
from lit_verbrec.models.loading import load_base_model, load_policy  # noqa: E402
from lit_verbrec.rollout.callback import RolloutCallback  # noqa: E402
from lit_verbrec.rollout.hf import HFEngine  # noqa: E402
from lit_verbrec.training.checkpoints import AdapterCheckpoint, resumable_checkpoint  # noqa: E402

SIZE = SizeConfig(lora=LoraConfig(rank=8, alpha=16, dropout=0.0))


def _fit(folder: Path, steps: int, ckpt_path: str | None = None):
    pl.seed_everything(0)
    tokenizer = toy_tokenizer()
    policy = load_policy(SIZE, tokenizer, gradient_checkpointing=False, seed=0)
    module = ToyModule(policy, tokenizer, HFEngine(policy, tokenizer), GRPOConfig(**{**TOY_GRPO, "max_steps": steps}))
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                         enable_model_summary=False,
                         callbacks=[RolloutCallback(), resumable_checkpoint(folder, every_n_steps=2),
                                    AdapterCheckpoint(folder / "adapter")])
    trainer.fit(module, DataLoader(ToyPrompts(1000), batch_size=4, collate_fn=list), ckpt_path=ckpt_path)
    return trainer, module, tokenizer


def test_checkpoint_holds_only_trainable_weights_and_resumes(tmp_path):
    trainer, module, _ = _fit(tmp_path, steps=4)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
    keys = set(ckpt["state_dict"])
    assert keys and all("lora_" in k for k in keys)
    assert keys == {n for n, p in module.named_parameters() if p.requires_grad}
    assert len(ckpt["optimizer_states"][0]["state"]) == len(keys)      # AdamW moments for every LoRA tensor
    saved = {k: v.clone() for k, v in ckpt["state_dict"].items()}

    # Resume in a fresh process state: a new random model, then the checkpoint restores the LoRA weights.
    resumed, module2, _ = _fit(tmp_path / "again", steps=6, ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.global_step == 6                                         # continued from 4, not from 0
    restored = torch.load(tmp_path / "again" / "last.ckpt", weights_only=False)
    assert restored["global_step"] == 6
    # Two more optimizer steps moved the restored weights (they did not start from a fresh init).
    changed = [k for k in saved if not torch.equal(saved[k], restored["state_dict"][k])]
    assert changed


def test_adapter_folder_loads_with_peft_and_matches(tmp_path):
    trainer, module, tokenizer = _fit(tmp_path, steps=2)
    folder = tmp_path / "adapter"
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    assert (folder / "global_step.txt").read_text().strip() == "2"
    base = load_base_model(SIZE, tokenizer)
    loaded = PeftModel.from_pretrained(base, folder)
    ids = torch.tensor([tokenizer("which is red")["input_ids"]])
    module.policy.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, module.policy(input_ids=ids).logits)
