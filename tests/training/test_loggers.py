"""train.loggers: a toy GRPO run through the stages' own `fit` writes the same metrics to CSV, an
offline W&B run folder and a local MLflow file store (no network)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_toy import TOY_GRPO  # noqa: E402
from toy import ToyModule, ToyPrompts, toy_tokenizer  # noqa: E402
from wandb_records import exit_codes, history  # noqa: E402

from lit_verbrec.config.compose import ConfigError, compose  # noqa: E402
from lit_verbrec.config.schema import LoraConfig, SizeConfig  # noqa: E402
from lit_verbrec.config.train_schema import GRPOConfig  # noqa: E402
from lit_verbrec.models.loading import load_policy  # noqa: E402
from lit_verbrec.rollout.hf import HFEngine  # noqa: E402
from lit_verbrec.training.run import fit  # noqa: E402


def toy_fit(tmp_path, monkeypatch, loggers: str, module_class=ToyModule) -> Path:
    """Three GRPO steps of the toy task through the stages' `fit`, logging to `loggers` (offline W&B
    under tmp_path); returns the stage folder."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    cfg = compose([f"run.root={tmp_path}", f"train.loggers={loggers}"])
    tokenizer = toy_tokenizer()
    policy = load_policy(SizeConfig(lora=LoraConfig(rank=8, alpha=16, dropout=0.0)), tokenizer,
                         gradient_checkpointing=False, seed=0)
    grpo = GRPOConfig(**{**TOY_GRPO, "max_steps": 3})
    stage_dir = tmp_path / "default" / "verbalizer"
    fit(cfg, module_class(policy, tokenizer, HFEngine(policy, tokenizer), grpo), list(ToyPrompts(12)), stage_dir, grpo, [])
    return stage_dir


def test_csv_wandb_and_mlflow_record_the_same_metrics(tmp_path, monkeypatch):
    stage_dir = toy_fit(tmp_path, monkeypatch, "[csv,wandb,mlflow]")

    logs = stage_dir / "logs"
    with open(next(logs.glob("csv/version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    csv_metrics = {k for row in rows for k, v in row.items() if v and k not in ("step", "epoch")}
    assert {"reward/mean", "train/loss"} <= csv_metrics

    mlflow_runs = list(logs.glob("mlruns/*/*/metrics"))
    assert len(mlflow_runs) == 1
    mlflow_metrics = {p.relative_to(mlflow_runs[0]).as_posix() for p in mlflow_runs[0].rglob("*") if p.is_file()}
    assert csv_metrics <= mlflow_metrics
    steps = [line.split()[2] for line in (mlflow_runs[0] / "reward" / "mean").read_text().splitlines()]
    assert len(steps) == 3                                            # one value per optimizer step

    wandb_runs = list(logs.glob("wandb/wandb/offline-run-*"))
    assert len(wandb_runs) == 1
    wandb_rows = history(next(wandb_runs[0].glob("run-*.wandb")))      # complete once the stage finished it
    assert len(wandb_rows) == 3
    assert all(csv_metrics <= set(row) for row in wandb_rows)
    csv_rewards = [float(r["reward/mean"]) for r in rows if r.get("reward/mean")]
    assert [row["reward/mean"] for row in wandb_rows] == pytest.approx(csv_rewards)
    assert exit_codes(next(wandb_runs[0].glob("run-*.wandb"))) == [0]


class FailingModule(ToyModule):
    """Raises in the reward of its second step, as a dead oracle would."""

    def score(self, batch, rollout):
        if self.global_step == 1:
            raise RuntimeError("the oracle is gone")
        return super().score(batch, rollout)


def test_a_stage_that_raises_ends_its_wandb_run_as_failed(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="the oracle is gone"):
        toy_fit(tmp_path, monkeypatch, "[wandb]", FailingModule)
    stage_dir = tmp_path / "default" / "verbalizer"
    (run_file,) = (stage_dir / "logs").glob("wandb/wandb/offline-run-*/run-*.wandb")
    assert exit_codes(run_file) == [1] and len(history(run_file)) == 1        # the step before the failure


def test_an_unknown_logger_is_named():
    with pytest.raises(ConfigError, match="train.loggers"):
        compose(["train.loggers=[csv,neptune]"])
