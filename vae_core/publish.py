"""Putting a finished run's checkpoint among the models, safely.

A run writes its per-epoch checkpoints (atomic, via save_checkpoint) to a temporary file in the
models' hidden ".training" folder (machine_line.py), which list_checkpoints() ignores. When it ends with
at least one finished epoch (done, stopped, or diverged: the last good epoch) that file is
published under a fresh, sanitised name: catalog.unique_path() picks the name, and os.link, which
fails rather than replace an existing file, puts it in place. A checkpoint is never half-written
and never overwrites another model.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from .catalog import unique_path


class PublishError(Exception):
    """No free name for the model in the folder."""


_publish_lock = threading.Lock()


def publish(temporary: Path, name: str, folder: Path) -> Path:
    """Move a finished temporary checkpoint to folder/<safe unique name>.safetensors, never
    replacing a file: os.link fails if the name was taken meanwhile (then the next name is tried)."""
    with _publish_lock:
        for _ in range(1000):
            target = unique_path(name, folder)
            try:
                os.link(temporary, target)
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: check, then rename (tiny race, other processes only)
                if target.exists():
                    continue
                os.replace(temporary, target)
                return target
            temporary.unlink(missing_ok=True)
            return target
    raise PublishError(f"no free name for {name!r} in {folder}")
