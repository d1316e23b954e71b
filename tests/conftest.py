"""Shared fixtures for the tests. Keep each fixture small and documented; append new ones below."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from vae_core import VAE, VAEConfig

# Small enough that building and running one takes milliseconds on a CPU.
TINY_HIDDEN = {"mlp": (32, 16), "conv": (4, 8)}


def tiny_config(architecture: str = "mlp", num_classes: int = 0, input_shape=(1, 8, 8), **overrides) -> VAEConfig:
    """A small VAEConfig of the given kind; keyword overrides win."""
    fields = dict(input_shape=input_shape, latent_dim=3, architecture=architecture,
                  hidden_sizes=TINY_HIDDEN[architecture], num_classes=num_classes)
    fields.update(overrides)
    return VAEConfig(**fields)


@pytest.fixture(params=[("mlp", 0), ("mlp", 4), ("conv", 0), ("conv", 4)],
                ids=["mlp", "mlp-cond", "conv", "conv-cond"])
def tiny_model(request) -> VAE:
    """A freshly initialised, seeded, small VAE: (mlp, conv) x (unconditional, conditional with 4 classes)."""
    architecture, num_classes = request.param
    torch.manual_seed(0)
    return VAE(tiny_config(architecture, num_classes)).eval()


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """A private copy of the shipped checkpoints/ that the app reads (LATENT_EXPLORER_CHECKPOINTS),
    so a test can add broken or new files beside them without touching the repository."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(Path(__file__).resolve().parent.parent / "checkpoints", folder)
    monkeypatch.setenv("LATENT_EXPLORER_CHECKPOINTS", str(folder))
    return folder
