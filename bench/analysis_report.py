"""The numbers the README quotes for the analysis pages, as Markdown tables (CPU, a few seconds):

1. Anomaly detection of a held-out class: ROC AUC of each per-sample score (vae_core.analysis.anomaly_scores,
   posterior-mean estimates) separating class 3 from the rest of the mnist-5k test set, for mnist-vae-no3
   (trained without 3s) and, as a control, mnist-vae (same recipe, 3s included).
2. Disentanglement: MIG (vae_core.analysis.mutual_information_gap, 20 bins) of the shapes models on the
   whole shapes test set (14,746 images, 64x64), with the gap per factor.
3. Imputation: mean squared error on the hidden pixels of the first 100 mnist-5k test images, for the
   masked image (hidden = 0, hidden = training mean) and after 10 encode/decode rounds of mnist-vae.

Usage: .venv/bin/python bench/analysis_report.py [--checkpoints DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vae_core import analysis as A  # noqa: E402
from vae_core.catalog import objective_label  # noqa: E402
from vae_core.checkpoint import load_checkpoint  # noqa: E402
from vae_core.datasets import load_dataset  # noqa: E402
from vae_core.metrics import encode_all  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    args = parser.parse_args()
    folder = Path(args.checkpoints)
    torch.set_num_threads(1)

    print("### Held-out class: ROC AUC of the anomaly scores (class 3 vs the rest, mnist-5k test set)\n")
    print("| checkpoint | trained on | class-3 test images | AUC, negative ELBO | AUC, reconstruction error |")
    print("|---|---|---|---|---|")
    for name in ("mnist-vae-no3", "mnist-vae"):
        ckpt = load_checkpoint(folder / f"{name}.safetensors")
        data = load_dataset(ckpt.dataset["name"])
        scores = A.anomaly_scores(ckpt.model, data.x_test)
        labels = data.y_test.numpy()
        aucs = [A.holdout_auc(scores[k], labels, 3) for k in ("neg_elbo", "recon_error")]
        print(f"| {name} | {ckpt.dataset['name']} | {int((labels == 3).sum())} of {len(labels)} | "
              f"{aucs[0]:.3f} | {aucs[1]:.3f} |")

    shapes = load_dataset("shapes")
    factors = shapes.factors_test.numpy()
    names = list(shapes.factor_names)
    print("\n### Disentanglement: MIG on the shapes test set (20 bins; gap per factor)\n")
    print("| checkpoint | objective | test ELBO | active units | MIG | " + " | ".join(f"gap: {n}" for n in names) + " |")
    print("|---|---|---|---|---|" + "---|" * len(names))
    for name in ("shapes-vae", "shapes-betavae", "shapes-tcvae"):
        ckpt = load_checkpoint(folder / f"{name}.safetensors")
        z = encode_all(ckpt.model, shapes.x_test)[0].numpy()
        result = A.mutual_information_gap(z, factors)
        print(f"| {name} | {objective_label(ckpt.config)} | {ckpt.metrics['test_elbo']:.1f} | "
              f"{ckpt.metrics['active_units']}/{ckpt.config.latent_dim} | {result.mig:.3f} | "
              + " | ".join(f"{g:.3f}" for g in result.gaps) + " |")

    mnist = load_dataset("mnist-5k")
    x, mean = mnist.x_test[:100], mnist.x_train.mean(0)
    masks = {"centre 12×12 square": A.rectangle_mask(28, 28, 8, 8, 12, 12),
             "bottom half": A.rectangle_mask(28, 28, 14, 0, 14, 28),
             "random 50% of pixels": A.random_mask(28, 28, 0.5, seed=0)}
    model = load_checkpoint(folder / "mnist-vae.safetensors").model
    print("\n### Imputation: MSE on the hidden pixels, mnist-vae, first 100 mnist-5k test images, 10 rounds\n")
    print("| mask | masked, hidden = 0 | filled from 0 | masked, hidden = mean | filled from mean |")
    print("|---|---|---|---|---|")
    for label, mask in masks.items():
        zero = A.impute(model, x, mask, 10)
        from_mean = A.impute(model, x, mask, 10, fill=mean)
        print(f"| {label} | {zero.error_baseline.mean():.4f} | {zero.error_filled.mean():.4f} | "
              f"{from_mean.error_baseline.mean():.4f} | {from_mean.error_filled.mean():.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
