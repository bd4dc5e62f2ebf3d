"""The metric loggers of a stage, by name (`train.loggers`): one table, Lightning's own loggers.

    tensorboard  <stage>/logs/tensorboard/version_<attempt>/events.out.tfevents.*
    csv          <stage>/logs/csv/version_<attempt>/metrics.csv (what tools/report.py reads)
    wandb        <stage>/logs/wandb/: a W&B run, offline by default (`wandb sync <folder>` uploads it;
                 train.wandb_mode=online logs live, with WANDB_API_KEY set)
    mlflow       an MLflow run in train.mlflow_tracking_uri, by default the file store <stage>/logs/mlruns
                 (`mlflow ui --backend-store-uri <that folder>`)

A resumed run logs a new version (tensorboard, csv) or a new W&B / MLflow run; the experiment name
is `<run.name>-<stage>`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lightning.pytorch.loggers import (
    CSVLogger,
    Logger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
)

from lit_verbrec.config.schema import Config


def _tensorboard(cfg: Config, logs: Path, name: str) -> Logger:
    return TensorBoardLogger(logs, name="tensorboard")


def _csv(cfg: Config, logs: Path, name: str) -> Logger:
    return CSVLogger(logs, name="csv")


def _wandb(cfg: Config, logs: Path, name: str) -> Logger:
    (logs / "wandb").mkdir(parents=True, exist_ok=True)
    return WandbLogger(name=name, project=cfg.train.wandb_project, save_dir=str(logs / "wandb"),
                       offline=cfg.train.wandb_mode == "offline", mode=cfg.train.wandb_mode)


def _mlflow(cfg: Config, logs: Path, name: str) -> Logger:
    uri = cfg.train.mlflow_tracking_uri
    if not uri:
        # MLflow 3 refuses a file store unless asked (it wants a database); a file store needs no
        # server and no extra package, which is the point of the default
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (logs / "mlruns").resolve().as_uri()
    return MLFlowLogger(experiment_name=name, tracking_uri=uri)


LOGGERS: dict[str, Callable[[Config, Path, str], Logger]] = {
    "tensorboard": _tensorboard, "csv": _csv, "wandb": _wandb, "mlflow": _mlflow}
"""train.loggers name -> constructor(cfg, <stage>/logs, experiment name); TrainConfig validates the names."""


def stage_loggers(cfg: Config, stage_dir: Path) -> list[Logger]:
    """The loggers `train.loggers` names, writing under `stage_dir`/logs."""
    name = f"{cfg.run.name}-{stage_dir.name}"
    return [LOGGERS[key](cfg, stage_dir / "logs", name) for key in cfg.train.loggers]


def finish_loggers(trainer, failed: bool = False) -> None:
    """End the stage's W&B run: Lightning's WandbLogger leaves it open, so stage 2 of an in-process
    `stage=both` would log into stage 1's run and an offline run's summary would not be written
    until the process exits. `failed` (training raised) ends it with exit code 1, so the dashboard
    shows the run as failed, not finished. (MLflow's and the file loggers' runs are closed by
    Lightning, which marks a run that raised as failed itself.)"""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            logger.experiment.finish(exit_code=1 if failed else 0)
