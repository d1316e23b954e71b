"""The README's PyTorch-VAE-style example (docs/examples/vanilla_vae.py), trained and saved for the tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "vanilla_vae.py"
_spec = importlib.util.spec_from_file_location("vanilla_vae_example", EXAMPLE)
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)
KWARGS = example.KWARGS


def write(folder: Path) -> tuple[Path, Path]:
    """(the example's file, a Lightning-style .ckpt of it trained for a few seconds in folder)."""
    checkpoint = folder / "vanilla.ckpt"
    example.train(str(checkpoint))
    return EXAMPLE, checkpoint
