"""vae_core.allocator: a step's freed activations keep their pages (glibc), measured in fresh processes:
the thresholds cannot be put back once set."""
from __future__ import annotations

import dataclasses
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Training steps of the 64x64 shapes net at batch 32 (its default recipe's): each backward pass frees
# more than glibc's adaptive thresholds let its heap keep.
STEPS = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from vae_core.allocator import keep_freed_memory
from vae_core.config import VAEConfig
from vae_core.model import VAE
torch.set_num_threads(1)
applied = keep_freed_memory() if sys.argv[1] == "kept" else None
torch.manual_seed(0)
model = VAE(VAEConfig(input_shape=(1, 64, 64), latent_dim=10, architecture="conv", hidden_sizes=(32, 32, 64, 64),
                      dense_sizes=(256,))).to(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(model.parameters())
x = torch.rand(32, 1, 64, 64).round()
def step():
    optimizer.zero_grad()
    model.loss(x)["loss"].backward()
    optimizer.step()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def faults_per_step(mode: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", STEPS.format(root=str(ROOT)), mode], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    return out[-2], float(out[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_activations_keep_their_pages_once_the_thresholds_are_set():
    _, default = faults_per_step("default")
    applied, kept = faults_per_step("kept")
    assert default > 3_000, "glibc's own thresholds return such blocks to the system: their pages fault in again"
    assert applied == "True"
    assert kept < default / 10


def test_the_trainers_set_the_thresholds_when_they_train_on_the_cpu(monkeypatch):
    import torch

    from vae_core import sweep_trainer, trainer
    from vae_core.config import TrainConfig, VAEConfig
    from vae_core.datasets import ImageDataset
    from vae_core.model import VAE

    calls = []
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append("trainer"))
    monkeypatch.setattr(sweep_trainer, "keep_freed_memory", lambda: calls.append("sweep"))
    x = torch.rand(8, 1, 4, 4)
    labels = torch.zeros(8, dtype=torch.long)
    data = ImageDataset("toy", x, labels, x, labels, label_names=["0"])
    config = VAEConfig(input_shape=(1, 4, 4), latent_dim=2, hidden_sizes=(4,))
    trainer.Trainer(VAE(config), data, TrainConfig(epochs=1, device="cpu"))
    sweep_trainer.SweepTrainer([VAE(config), VAE(dataclasses.replace(config, beta=2.0))], data,
                               TrainConfig(epochs=1, device="cpu"))
    assert calls == ["trainer", "sweep"]
