#!/usr/bin/env python
"""The students' three questions in numbers (autoencoder or VAE, which β, what the latent space is worth with
few labels), on the shipped mnist-5k models. Prints three Markdown tables for the README.

1. Autoencoder or VAE: the shipped mnist-ae against mnist-vae (same architecture, data and seed):
- reconstruction: test -log p(x|z) (nats) and mean absolute pixel error, on mnist-5k's test split;
- prior draws: how realistic decode(z), z ~ N(0, I), looks, judged by a small CNN trained on mnist-5k's
  train split (mean confidence of its top class over 1,000 draws; its confidence on real test digits
  is the reference), and how many draws it reads with confidence >= 0.9;
- interpolation midpoints: the same judge on the middle of 500 straight paths between random test pairs;
- where the codes sit: vae_core.ae_vs_vae.code_cloud (share of codes inside the prior's 99% ball, share
  of prior draws that land among the codes, the codes' radius).
2. Choosing β: mnist-vae and checkpoints/beta-sweep/ (the same recipe at β from 0.1 to 8) as a rate-distortion
   table (test KL and -log p(x|z), nats), with active units and the judge's confidence in their prior draws.
3. Few labels: vae_core.few_labels on mnist-vae's and mnist-ae's posterior means against pixels and PCA,
   1 to 100 labels per class, 10 draws each (mean ± standard deviation of the test accuracy).

Usage: .venv/bin/python bench/three_questions.py   (about two minutes on 2 cores)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app_bench import machine_block, table  # noqa: E402
from vae_core.ae_vs_vae import code_cloud  # noqa: E402
from vae_core.beta_sweep import beta_sweep  # noqa: E402
from vae_core.checkpoint import load_checkpoint  # noqa: E402
from vae_core.datasets import load_dataset  # noqa: E402
from vae_core.few_labels import DRAWS as FEW_DRAWS, REPRESENTATIONS, few_labels  # noqa: E402
from vae_core.metrics import encode_all, measure  # noqa: E402

MODELS = ("mnist-ae", "mnist-vae")
DRAWS, PAIRS, CONFIDENT = 1000, 500, 0.9


def train_judge(data, seed: int = 0, epochs: int = 8) -> nn.Module:
    """A small CNN digit classifier (two convs, one dense layer), trained on the train split."""
    torch.manual_seed(seed)
    judge = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    optimiser = torch.optim.Adam(judge.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(data.x_train), generator=generator).split(64):
            loss = F.cross_entropy(judge(data.x_train[batch]), data.y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return judge.eval()


@torch.inference_mode()
def confidence(judge: nn.Module, images: torch.Tensor) -> np.ndarray:
    return F.softmax(judge(images), 1).max(1).values.numpy()


def main() -> None:
    torch.set_num_threads(1)
    data = load_dataset("mnist-5k", seed=0)
    started = time.perf_counter()
    judge = train_judge(data)
    with torch.inference_mode():
        accuracy = (judge(data.x_test).argmax(1) == data.y_test).float().mean().item()
    real = confidence(judge, data.x_test)
    rows = [["real test digits", "–", "–", f"{real.mean():.3f}", f"{(real >= CONFIDENT).mean():.0%}", "–", "–", "–",
             "–"]]
    generator = torch.Generator().manual_seed(0)
    prior = torch.randn(DRAWS, 16, generator=generator)
    pairs = torch.randint(0, len(data.x_test), (PAIRS, 2), generator=generator)
    for name in MODELS:
        model = load_checkpoint(ROOT / "checkpoints" / f"{name}.safetensors").model.eval()
        scores = measure(model, data.x_test, limit=len(data.x_test))
        z = encode_all(model, data.x_test)[0]
        with torch.inference_mode():
            drawn = confidence(judge, model.decode(prior))
            middles = confidence(judge, model.decode((z[pairs[:, 0]] + z[pairs[:, 1]]) / 2))
        cloud = code_cloud(z.numpy(), draws=DRAWS, seed=0)
        rows.append([name, f"{scores['recon']:.1f}", f"{scores['pixel_error']:.4f}", f"{drawn.mean():.3f}",
                     f"{(drawn >= CONFIDENT).mean():.0%}", f"{middles.mean():.3f}", f"{cloud.in_prior:.0%}",
                     f"{cloud.draws_near_codes:.0%}", f"{cloud.radius:.1f}"])
    print("## The three questions (bench/three_questions.py)\n\n### Autoencoder or VAE\n")
    print(f"The judge: a small CNN trained on mnist-5k's train split, {accuracy:.1%} accurate on its test split. "
          f"Confidence: its top class's probability, averaged ({DRAWS:,} prior draws, {PAIRS} path midpoints); "
          f"'sure' counts images it reads with confidence >= {CONFIDENT}.\n")
    print(table(["", "test −log p(x|z) (nats)", "pixel error", "prior draws: confidence", "prior draws: sure",
                 "path midpoints: confidence", "codes in the prior's 99% ball", "prior draws among the codes",
                 "codes' radius (N(0, I): 4.0)"], rows))

    checkpoints = ROOT / "checkpoints"
    sweep = {p.stem: load_checkpoint(p) for p in sorted((checkpoints / "beta-sweep").glob("*.safetensors"))}
    default = load_checkpoint(checkpoints / "mnist-vae.safetensors")
    models = {**sweep, "mnist-vae": default}
    sweep_rows = []
    for point in beta_sweep(("mnist-vae", default), sweep):
        with torch.inference_mode():
            drawn = confidence(judge, models[point.name].model.eval().decode(prior))
        sweep_rows.append([f"{point.beta:g}", point.name, f"{point.rate:.1f}", f"{point.distortion:.1f}",
                           f"{point.neg_elbo:.1f}", f"{point.active_units} / 16", f"{drawn.mean():.3f}",
                           f"{(drawn >= CONFIDENT).mean():.0%}"])
    print("\n### Choosing β: the rate-distortion curve\n")
    print(table(["β", "model", "rate: test KL (nats)", "distortion: test −log p(x|z) (nats)", "−ELBO (nats)",
                 "active units", "prior draws: confidence", "prior draws: sure"], sweep_rows))

    print(f"\n### Few labels (test accuracy, mean ± sd over {FEW_DRAWS} draws of the labelled images)\n")
    few_rows, shared_rows = [], []
    for name in reversed(MODELS):  # the VAE first
        model = load_checkpoint(checkpoints / f"{name}.safetensors").model.eval()
        result = few_labels(encode_all(model, data.x_train)[0].numpy(), encode_all(model, data.x_test)[0].numpy(),
                            data.x_train.numpy(), data.x_test.numpy(), data.y_train.numpy(), data.y_test.numpy())
        for rep in REPRESENTATIONS:
            cells = [f"{m:.1%} ± {sd:.1%}" for m, sd in zip(result.mean(rep), result.std(rep))]
            if rep == "latent μ":
                few_rows.append([f"{name} μ ({result.dims[rep]})", *cells])
            elif name == MODELS[-1]:  # pixels and PCA do not depend on the model
                shared_rows.append([f"{rep} ({result.dims[rep]})", *cells])
    few_rows += shared_rows
    print(table(["features (size)", *(f"{k} per class" for k in result.labels_per_class)], few_rows))
    print(f"\n{time.perf_counter() - started:.0f} s\n")
    print(machine_block())


if __name__ == "__main__":
    main()
