"""The models the app can open: shipped checkpoints, user checkpoints, and their cards."""
from __future__ import annotations

import re
from pathlib import Path

from .checkpoint import Checkpoint

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_MODEL = "digits-vae"


def list_checkpoints(folder: Path = CHECKPOINT_DIR) -> dict[str, Path]:
    """name -> path for every .safetensors under folder (sub-folders too), sorted, default first."""
    found = {p.relative_to(folder).with_suffix("").as_posix(): p for p in sorted(folder.rglob("*.safetensors"))
             if not p.name.startswith(".")}
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != DEFAULT_MODEL, kv[0])))


def safe_name(name: str, fallback: str = "model") -> str:
    """A file name safe to create under checkpoints/: no folders, no dots in front, plain characters."""
    stem = Path(str(name).replace("\\", "/")).name
    stem = re.sub(r"\.safetensors$", "", stem)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-_")[:64]
    return stem or fallback


def unique_path(name: str, folder: Path = CHECKPOINT_DIR) -> Path:
    """folder/<safe name>.safetensors, with -2, -3, ... appended rather than overwrite anything."""
    stem = safe_name(name)
    path, n = folder / f"{stem}.safetensors", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.safetensors", n + 1
    return path


def model_card(ckpt: Checkpoint) -> dict:
    """What a person needs to know about a model at a glance."""
    cfg = ckpt.config
    return {
        "dataset": ckpt.dataset.get("name", "unknown"),
        "architecture": cfg.architecture,
        "latent size": cfg.latent_dim,
        "β": cfg.beta,
        "conditional": f"yes ({cfg.num_classes} classes)" if cfg.conditional else "no",
        "likelihood": cfg.likelihood,
        "input": "×".join(map(str, cfg.input_shape)),
        "epochs": len(ckpt.history),
        "test ELBO": round(ckpt.metrics["test_elbo"], 1) if "test_elbo" in ckpt.metrics else "—",
    }
