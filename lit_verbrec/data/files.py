"""Writes that a killed process, or a second process writing the same file, cannot leave half done.

Every output a later step reads (prepared data, tokenizer, checkpoints, adapters, results) is
written to a temporary beside its target, fsynced, and renamed over it: `os.replace` is atomic
within a filesystem, so a reader sees the old file or the new one, never a torn one. Ranks of a
Slurm job that start together may each prepare the same (deterministic) data; with these writes
that is only wasted work, not a rank reading a file another rank is still writing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call write(temporary path) for a file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_folder_write(folder: str | Path, write: Callable[[Path], object], last: str = "") -> Path:
    """Call write(temporary folder) beside `folder`, then rename each file it wrote into `folder`
    (the file named `last` after the others): every file of `folder` is whole at every moment."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(tmp.iterdir(), key=lambda p: p.name == last):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def replace_folder(source: str | Path, target: str | Path) -> None:
    """Move the finished folder `source` to `target` (same filesystem), replacing what is there:
    the old one is renamed aside first, since a folder cannot be renamed over a non-empty one."""
    source, target = Path(source), Path(target)
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.is_dir():
        os.replace(target, aside)
    elif target.exists():
        target.unlink()
    os.replace(source, target)
    shutil.rmtree(aside, ignore_errors=True)
