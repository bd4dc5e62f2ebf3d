"""Preemption around the step loop: a signal before fit, who requeues (Slurm or the job), the
requeue cap, and the best adapter and validation history across a requeue."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toy import ToyModule  # noqa: E402
from toy_fit import Record, fit_toy, signal_handlers  # noqa: E402,F401 (a fixture)

from lit_verbrec.training import preemption  # noqa: E402
from lit_verbrec.training.callbacks import ValidationCallback  # noqa: E402
from lit_verbrec.training.preemption import REQUEUED_EXIT_CODE, RequeueOnSignal, stop_job  # noqa: E402


@pytest.mark.usefixtures("signal_handlers")
def test_signal_while_the_model_loads_stops_fit_before_its_first_step(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    preemption.install()                     # what the job does before loading anything
    os.kill(os.getpid(), signal.SIGTERM)     # preempted during model load: recorded, the load goes on
    assert preemption.received() == signal.SIGTERM
    requeued, record = [], Record()
    with pytest.raises(SystemExit) as stop:
        fit_toy(4, [RequeueOnSignal(tmp_path / "last.ckpt", requeue=requeued.append, state=lambda j: "RUNNING"),
                    record])
    assert stop.value.code == REQUEUED_EXIT_CODE and requeued == ["77"]
    assert record.batches == [] and not (tmp_path / "last.ckpt").exists()   # no step taken, nothing to save


@pytest.mark.parametrize(("state", "restarts", "requeues", "code"), [
    ("RUNNING", "0", ["9"], REQUEUED_EXIT_CODE),     # SIGUSR2 / scancel --signal=TERM: the job requeues itself
    ("COMPLETING", "0", [], REQUEUED_EXIT_CODE),     # preempted, `scontrol requeue`, scancel: Slurm decides
    ("RUNNING", "3", [], 1),                         # cluster.max_requeues=3 used up: the job fails
])
def test_rank_0_requeues_only_a_job_slurm_still_runs_and_within_the_cap(monkeypatch, capsys, state, restarts,
                                                                         requeues, code):
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
    requeued = []
    with pytest.raises(SystemExit) as stop:
        stop_job("checkpoint at step 5", 3, True, requeue=requeued.append, state=lambda job: state)
    assert stop.value.code == code and requeued == requeues
    assert "checkpoint at step 5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as other_rank:   # other ranks only exit
        stop_job("checkpoint at step 5", 3, False, requeue=requeued.append, state=lambda job: state)
    assert other_rank.value.code == REQUEUED_EXIT_CODE and requeued == requeues


SCORES = {0: 0.1, 2: 0.9, 4: 0.5, 6: 0.4}
"""Validation reward by step: the best (0.9, step 2) comes before the requeue at step 3, and every
validation after it is worse."""


class ScriptedValidation(ToyModule):
    def validation_reward(self, examples: list) -> dict:
        return {"reward": SCORES[self.global_step]}


def _weights(folder: Path) -> str:
    return hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()


@pytest.mark.usefixtures("signal_handlers")
def test_best_adapter_and_validation_history_survive_a_requeue(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    best, ckpt = tmp_path / "adapter-best", tmp_path / "last.ckpt"
    first = ValidationCallback(["x"], 2, best)
    with pytest.raises(SystemExit):
        fit_toy(6, [first, Record(signal_at=3, signum=signal.SIGUSR2),
                    RequeueOnSignal(ckpt, requeue=lambda job: None, state=lambda job: "RUNNING")],
                module_class=ScriptedValidation)
    assert [h["step"] for h in first.history] == [0, 2] and json.loads((best / "best.json").read_text())["step"] == 2
    best_weights = _weights(best)

    preemption.reset()   # the requeued job: a new process, a new callback
    resumed = ValidationCallback(["x"], 2, best)
    fit_toy(6, [resumed], ckpt_path=str(ckpt), module_class=ScriptedValidation)
    assert [(h["step"], h["reward"]) for h in resumed.history] == [(0, 0.1), (2, 0.9), (4, 0.5), (6, 0.4)]
    assert resumed.best == 0.9
    assert json.loads((best / "best.json").read_text()) == {"step": 2, "reward": 0.9}   # not step 4's 0.5
    assert _weights(best) == best_weights
