"""The known harmless messages are filtered by their text only; the progress bar counts units."""

from __future__ import annotations

import logging
import warnings

from lit_verbrec.config.console import progress, quiet_known_warnings


def test_known_harmless_messages_are_dropped_and_others_kept(caplog):
    quiet_known_warnings()
    quiet_known_warnings()   # idempotent: one filter per logger
    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert len(bnb.filters) == 1
    lightning = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        bnb.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "No module named 'kernels'")
        bnb.warning("a real bitsandbytes problem")
        lightning.info("💡 Tip: ... try installing [litlogger](https://pypi.org/project/litlogger/) ...")
        lightning.info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["a real bitsandbytes problem", "GPU available: False"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_known_warnings()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_progress_counts_units_and_hides_empty_work(capsys):
    with progress(10, "verbalizing", unit="users") as bar:
        bar.update(4)
        bar.update(6)
        assert bar.n == 10 and bar.unit == "users"
    assert "users/s" in capsys.readouterr().err
    assert progress(0, "nothing").disable


def test_the_training_bar_counts_optimizer_steps_out_of_max_steps():
    from types import SimpleNamespace

    from lit_verbrec.training.callbacks import StepProgressBar

    bar = StepProgressBar()
    bar._train_progress_bar = progress(5, "Epoch 0", unit="it")   # what Lightning's bar shows before
    trainer = SimpleNamespace(max_steps=60, global_step=7)
    bar._show(trainer)
    assert (bar.train_progress_bar.total, bar.train_progress_bar.n) == (60, 7)
    assert bar.train_progress_bar.desc.startswith("steps")
