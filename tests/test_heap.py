"""vae_core.heap: what a server's sessions freed goes back to the system (glibc's malloc_trim), and what a
training step frees stays for the next step (keep_freed_memory), each measured in fresh processes."""
from __future__ import annotations

import dataclasses
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# In a fresh process: 190 MB of 64 kB blocks (malloc'd inside the heap, under the mmap threshold), then
# all freed but every 16th, which pins the freed pages between them: they stay in the process's RSS.
FRAGMENT = """
import os, sys, time
sys.path.insert(0, {root!r})
from vae_core import heap

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

blocks = [bytes(64 * 1024) for _ in range(3000)]
kept = blocks[::16]
del blocks
held = rss_mib()
{release}
print(held - rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
@pytest.mark.parametrize("release", ["assert heap.trim()", "assert heap.start_trimming(0.05); time.sleep(0.5)",
                                     "time.sleep(0.5)"])
def test_freed_pages_go_back_to_the_system_when_trimmed(release):
    done = subprocess.run([sys.executable, "-c", FRAGMENT.format(root=str(ROOT), release=release)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    released = float(done.stdout)
    if "heap." in release:
        assert released > 80, f"only {released:.0f} MiB of the ~175 MiB freed went back"
    else:  # without a trim glibc keeps them: what the trimming is for
        assert released < 20


# Training steps of the 64x64 shapes net at batch 32 (its default recipe's): each backward pass frees
# more than glibc's adaptive thresholds let its heap keep.
STEPS = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from vae_core.heap import keep_freed_memory
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


def test_without_mallopt_nothing_is_set_and_it_says_so(monkeypatch):
    from vae_core import heap

    monkeypatch.setattr(heap, "_libc_function", lambda name, argtypes: None)  # macOS's libc, say
    heap.keep_freed_memory.cache_clear()
    try:
        assert heap.keep_freed_memory() is False
        assert heap.trim() is False
    finally:
        heap.keep_freed_memory.cache_clear()
