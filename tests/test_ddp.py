"""DistributedDataParallel under torchrun (gloo on CPU) trains the same model as one process.

The trainer splits each global batch across the ranks, scales each rank's loss by its share, and draws
the reparameterisation noise for the whole batch before splitting it, so two processes should follow
the single-process run step for step, up to the order of floating-point sums.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vae_core.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# An odd batch size: the ranks get unequal halves (52/51, and 50/49 in the last batch), so the
# per-rank loss weighting is exercised, not just the even split.
ARGS = ["train", "--dataset", "digits", "--epochs", "2", "--batch-size", "103", "--hidden", "64", "32",
        "--latent-dim", "4", "--lr", "3e-3", "--kl-warmup", "1", "--seed", "3", "--quiet"]


def test_two_process_ddp_matches_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("WORLD_SIZE", None)
    commands = {
        "ddp": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                "-m", "vae_core", *ARGS, "--out", str(tmp_path / "ddp.safetensors")],
        "single": [sys.executable, "-m", "vae_core", *ARGS, "--out", str(tmp_path / "single.safetensors")],
    }
    procs = {k: subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k, c in commands.items()}
    outputs = {}
    try:
        for key, proc in procs.items():
            outputs[key] = proc.communicate(timeout=150)[0]
            assert proc.returncode == 0, f"{key} run failed:\n{outputs[key]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:  # a hung rendezvous: do not leave the ranks behind
                proc.kill()
                proc.communicate()
    assert outputs["ddp"].count("saved ") == 1  # only rank 0 writes and reports

    ddp, single = load_checkpoint(tmp_path / "ddp.safetensors"), load_checkpoint(tmp_path / "single.safetensors")
    assert ddp.train_state["world_size"] == 2 and single.train_state["world_size"] == 1
    assert len(ddp.history) == len(single.history) == 2
    a, b = ddp.model.state_dict(), single.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-4, msg=lambda m: f"{name}: {m}")
    # the training really moved the weights: a match of two untrained models would prove nothing
    torch.manual_seed(3)
    from vae_core import VAE

    init = VAE(single.config).state_dict()
    assert max((b[k] - init[k]).abs().max().item() for k in b) > 1e-2
    for key in ("loss", "recon", "kl", "test_elbo"):
        assert [r[key] for r in ddp.history] == pytest.approx([r[key] for r in single.history], rel=1e-4)
    assert [len(r["kl_per_dim"]) for r in ddp.history] == [4, 4]
    torch.testing.assert_close(torch.tensor(ddp.history[-1]["kl_per_dim"]),
                               torch.tensor(single.history[-1]["kl_per_dim"]), rtol=1e-4, atol=1e-5)
