#!/usr/bin/env python
"""MNIST quality benchmark: is our shipped VAE recipe better than well-known peer recipes trained for
the same wall-clock time?

Three models are trained one after another in this process on `mnist-5k` (4,000 train / 1,000 test
MNIST digits, pixels in [0, 1] used as-is as Bernoulli targets), on the CPU, with --threads torch threads:

1. ours: vae_core's Trainer with the recipe given by the flags; the defaults are the shipped mnist-vae's
   (the Makefile's MNIST recipe: conv 32-64-128, latent 16, batch 64, Adam 1e-3, KL warm-up 10, 60 epochs).
2. pytorch/examples vae/main.py: MLP 784-400-20-400-784, BCE(sum) + KLD(sum) per batch, Adam 1e-3,
   batch 128, a shuffled DataLoader over a TensorDataset.
3. pythae's VAE with its default MLP for a 1x28x28 input (784-512-16-512-784, BCE), if pythae imports.

Ours trains first, for --epochs epochs, or with --seconds S until the first epoch end past S seconds
of training. Its training time T is the sum of the Trainer's per-epoch `seconds` (the training part
of each epoch: the Trainer's own test-set scoring after each epoch is left out). The peers then train
for the same T: the clock starts at their first batch and is checked after every batch.

All three are then scored by one function on the 1,000 test images, in nats per image: the negative
ELBO (Bernoulli reconstruction summed over the 784 pixels + analytic KL to N(0, I)) averaged over 10
fixed noise draws, its two parts, and the negative IWAE bound with k = 100 (Burda et al., 2016).
Lower is better. The noise comes from one seeded generator, the same draws for every model.

Usage: .venv/bin/python bench/mnist_quality.py [--seconds S]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from vae_core.config import TrainConfig, VAEConfig  # noqa: E402
from vae_core.datasets import load_dataset  # noqa: E402
from vae_core.model import VAE  # noqa: E402
from vae_core.trainer import Callback, Trainer  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ExamplesVAE(nn.Module):
    """The model of pytorch/examples vae/main.py, as written there."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    """vae/main.py's loss_function: reconstruction + KL divergence summed over all elements and batch."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


class Budget(Callback):
    """Stops the Trainer at the first epoch end past `seconds` of training (the sum of the epochs' `seconds`)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_epoch_end(self, trainer, record):
        if sum(r["seconds"] for r in trainer.history) >= self.seconds:
            trainer.stop_event.set()


def train_for(model: nn.Module, loader: DataLoader, batch_loss, lr: float, seconds: float) -> tuple[float, int, int]:
    """Adam on batch_loss(x) until `seconds` have passed (checked after every batch): (seconds, steps, samples)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    steps = samples = 0
    started = time.perf_counter()
    while True:
        for (x,) in loader:
            optimizer.zero_grad()
            batch_loss(x).backward()
            optimizer.step()
            steps += 1
            samples += len(x)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return elapsed, steps, samples


def bernoulli_nll(x, logits=None, probs=None):
    """-log p(x|z) per image, summed over pixels; from logits, or from probabilities clamped to [1e-6, 1 - 1e-6]."""
    if logits is not None:
        return F.binary_cross_entropy_with_logits(logits.flatten(1), x, reduction="none").sum(1)
    p = probs.flatten(1).clamp(1e-6, 1 - 1e-6)
    return -(x * p.log() + (1 - x) * (-p).log1p()).sum(1)


@torch.inference_mode()
def score(model, encode, x, *, decode_logits=None, decode_probs=None, draws=10, k=100, seed=0) -> dict:
    """Test metrics in nats per image (see the module docstring); pass one of decode_logits / decode_probs."""
    model.eval()
    flat = x.flatten(1)

    def nll(z):
        return (bernoulli_nll(flat, logits=decode_logits(z)) if decode_logits
                else bernoulli_nll(flat, probs=decode_probs(z)))

    mu, logvar = encode(x)
    std = torch.exp(0.5 * logvar)
    generator = torch.Generator().manual_seed(seed)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    recon = torch.stack([nll(mu + std * torch.randn(mu.shape, generator=generator)) for _ in range(draws)]).mean(0)
    log_weights = []
    for _ in range(k):
        eps = torch.randn(mu.shape, generator=generator)
        z = mu + std * eps
        log_p_z = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
        log_q_z = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(1)
        log_weights.append(-nll(z) + log_p_z - log_q_z)
    iwae = torch.logsumexp(torch.stack(log_weights), 0) - math.log(k)
    return {"neg_elbo": (recon + kl).mean().item(), "neg_iwae": -iwae.mean().item(),
            "recon": recon.mean().item(), "kl": kl.mean().item()}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seconds", type=float, help="training budget: ours stops at the first epoch end past it "
                   "(instead of after --epochs), the peers then train for as long as ours did")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[32, 64, 128], help="conv channels per layer")
    p.add_argument("--dense", type=int, nargs="*", default=[], help="dense layers between the conv body and z")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--kl-warmup", type=int, default=10, help="epochs over which the KL weight ramps up from 0")
    p.add_argument("--seed", type=int, default=0, help="initial weights, shuffling and the scorer's noise")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads, the same for all three")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_dataset("mnist-5k", seed=0)
    x_train, x_test = data.x_train, data.x_test
    rows = []  # (recipe, model, seconds, progress, samples, score)
    missing = ""

    log("training ours ...")
    torch.manual_seed(args.seed)
    ours = VAE(VAEConfig(input_shape=data.image_shape, latent_dim=args.latent_dim, architecture="conv",
                         hidden_sizes=args.hidden, dense_sizes=args.dense, likelihood="bernoulli", beta=1.0))
    budget = [Budget(args.seconds)] if args.seconds else []
    trainer = Trainer(ours, data, TrainConfig(epochs=10**9 if args.seconds else args.epochs,
                                              batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                              kl_warmup_epochs=args.kl_warmup, device="cpu"), callbacks=budget)
    started = time.perf_counter()
    history = trainer.fit()
    fit_seconds = time.perf_counter() - started
    seconds = sum(r["seconds"] for r in history)
    steps = len(history) * math.ceil(len(x_train) / args.batch_size)
    recipe = (f"ours: vae_core conv {'-'.join(map(str, args.hidden))}"
              f"{''.join(f' dense {d}' for d in args.dense)}, latent {args.latent_dim}, batch {args.batch_size}, "
              f"lr {args.lr:g}, KL warm-up {args.kl_warmup}")
    rows.append((recipe, ours, seconds, f"{len(history)} ({steps} steps)", len(history) * len(x_train),
                 score(ours, ours.encode, x_test, decode_logits=ours.decoder_output, seed=args.seed)))

    log(f"training pytorch/examples vae/main.py for {seconds:.1f} s ...")
    torch.manual_seed(args.seed)
    example = ExamplesVAE()
    loader = DataLoader(TensorDataset(x_train), batch_size=128, shuffle=True)

    def example_step(x):
        recon_batch, mu, logvar = example(x)
        return examples_loss(recon_batch, x, mu, logvar)

    spent, steps, samples = train_for(example, loader, example_step, 1e-3, seconds)
    rows.append(("pytorch/examples vae/main.py: MLP 784-400-20, batch 128, lr 0.001", example, spent,
                 f"{samples / len(x_train):.1f} ({steps} steps)", samples,
                 score(example, lambda x: example.encode(x.view(-1, 784)), x_test, decode_probs=example.decode,
                       seed=args.seed)))

    try:
        from pythae.models import VAE as PythaeVAE, VAEConfig as PythaeConfig
    except Exception as error:  # noqa: BLE001 - any import failure leaves the row out
        missing = f"pythae does not import ({type(error).__name__}: {error}): its row is left out."
    else:
        log(f"training pythae VAE for {seconds:.1f} s ...")
        torch.manual_seed(args.seed)
        peer = PythaeVAE(PythaeConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce"))
        # A plain loop over pythae's own forward/loss: pythae's BaseTrainer runs a fixed number of epochs
        # (its callbacks cannot stop it) and writes checkpoints to disk. Batch 64 as its trainer's default;
        # lr 1e-3 as the other two (its trainer defaults to 1e-4, slow for a time-bounded race).
        loader = DataLoader(TensorDataset(x_train), batch_size=64, shuffle=True)
        spent, steps, samples = train_for(peer, loader, lambda x: peer({"data": x}).loss, 1e-3, seconds)

        def pythae_encode(x):
            out = peer.encoder(x)
            return out.embedding, out.log_covariance

        rows.append(("pythae VAE: default MLP 784-512-16, batch 64, lr 0.001", peer, spent,
                     f"{samples / len(x_train):.1f} ({steps} steps)", samples,
                     score(peer, pythae_encode, x_test,
                           decode_probs=lambda z: peer.decoder(z)["reconstruction"], seed=args.seed)))

    print(f"**Command:** `{' '.join(sys.argv)}`  ")
    print(f"**torch** {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    print()
    print(f"Dataset `mnist-5k` ({len(x_train)} train / {len(x_test)} test, pixels in [0, 1] as Bernoulli targets). "
          f"Training wall time: ours = sum of the Trainer's per-epoch training seconds (its per-epoch test scoring "
          f"excluded; fit() took {fit_seconds:.1f} s with it); the peers train for that same time, clock checked "
          f"after every batch. Test metrics in nats per image, lower is better: −ELBO, reconstruction and KL "
          f"averaged over 10 fixed noise draws, −IWAE with k = 100.")
    print()
    print("| recipe | parameters | training wall time (s) | epochs (steps) | samples/s | test −ELBO (nats) "
          "| test −IWAE k=100 | reconstruction (nats) | KL (nats) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for recipe, model, spent, progress, samples, s in rows:
        print(f"| {recipe} | {parameter_count(model):,} | {spent:.1f} | {progress} | {samples / spent:,.0f} "
              f"| {s['neg_elbo']:.2f} | {s['neg_iwae']:.2f} | {s['recon']:.2f} | {s['kl']:.2f} |")
    if missing:
        print(f"\n{missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
