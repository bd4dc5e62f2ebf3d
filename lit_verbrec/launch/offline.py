"""Before submitting: can the compute nodes load the model and the tokenizer?

Compute nodes are often offline, and every rank of every job would otherwise download
`size.model` from the hub. Two ways that work without internet on the nodes:

    size.model=/shared/models/Qwen3-32B                 a folder (huggingface-cli download --local-dir)
    cluster.hf_home=/shared/hf cluster.offline=true     the hub cache, filled on the login node:
                                                        HF_HOME=/shared/hf huggingface-cli download Qwen/Qwen3-32B

With cluster.offline=true `model_problems` names what the nodes could not load, and
tools/submit.py submits nothing; a local folder given by path is checked either way.
"""

from __future__ import annotations

import os
from pathlib import Path

from lit_verbrec.config.schema import Config

NEEDS = {"size.model": ("config.json",), "size.tokenizer": ("tokenizer.json", "tokenizer_config.json")}
"""A usable folder holds one of these files."""


def hub_cache(cfg: Config) -> Path:
    """The hub cache the jobs read: <cluster.hf_home or $HF_HOME or ~/.cache/huggingface>/hub."""
    home = cfg.cluster.hf_home or os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).exists()


def _in_cache(cache: Path, repo: str, files: tuple[str, ...]) -> bool:
    snapshots = cache / f"models--{repo.replace('/', '--')}" / "snapshots"
    return any((snap / f).is_file() for snap in snapshots.glob("*") for f in files)


def model_problems(cfg: Config) -> list[str]:
    """What the jobs could not load, one line each ([] if nothing)."""
    problems = []
    for key, name in (("size.model", cfg.size.model), ("size.tokenizer", cfg.size.tokenizer)):
        if not name or name == "builtin" or (key == "size.model" and cfg.size.name == "tiny"):
            continue
        files = NEEDS[key]
        if _looks_like_path(name):
            folder = Path(name).expanduser()
            if not any((folder / f).is_file() for f in files):
                problems.append(f"{key}={name}: no {' or '.join(files)} in that folder")
        elif cfg.cluster.offline and not _in_cache(hub_cache(cfg), name, files):
            problems.append(f"{key}={name} is not in the hub cache {hub_cache(cfg)} and the compute nodes are offline "
                            f"(cluster.offline=true): on a machine with internet run "
                            f"`HF_HOME={hub_cache(cfg).parent} huggingface-cli download {name}` "
                            f"or set {key} to a downloaded folder")
    return problems


def model_note(cfg: Config) -> str:
    """A hint when every rank would download the model from the hub ("" otherwise)."""
    name = cfg.size.model
    if cfg.size.name == "tiny" or not name or _looks_like_path(name) or cfg.cluster.offline:
        return ""
    if _in_cache(hub_cache(cfg), name, NEEDS["size.model"]):
        return ""
    return (f"note: {name} is not in {hub_cache(cfg)}: every rank will download it from the hub; on a cluster whose "
            f"compute nodes are offline download it first and set cluster.hf_home and cluster.offline=true")
