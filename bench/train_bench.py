#!/usr/bin/env python
"""Training benchmark: vae_core's Trainer against a plain torch DataLoader loop, side by side.

Both train the same VAE class from the same initial weights, with the same loss (VAE.loss_terms,
batch-mean negative ELBO), Adam at the same learning rate and the same batch size.

* "vae_core Trainer": vae_core.trainer.Trainer.fit(), which slices minibatches out of tensors held
  in memory (plus its own per-step bookkeeping: gradient-norm and NaN checks, loss sums, KL per
  dimension, a copy of the weights after each epoch).
* "DataLoader loop": the training loop of pytorch/examples vae/main.py: a TensorDataset wrapped in
  DataLoader(shuffle=True, batch_size=B) (num_workers=1, pin_memory=True on CUDA, as the example
  does), then per batch: zero_grad, forward + loss (model.loss), backward, loss.item(), Adam step.

Two measurements, in one run so the numbers sit side by side:

1. Training samples per second: --repeat-seconds of training from fresh weights (stopped at the
   first step boundary past it; samples actually trained / elapsed seconds), no evaluation,
   repeated --repeats times with the two interleaved (the order alternates), median reported.
   A short warm-up run of each comes first and is not reported.
2. Test ELBO reached in the same wall-clock budget (--seconds each, from the same initial weights).
   By default the per-epoch test-set evaluation that Trainer runs is excluded from BOTH (Trainer is
   subclassed with a no-op _test_metrics); with --eval-each-epoch it is included in BOTH (the stock
   Trainer, and the baseline calls the same vae_core.metrics.evaluate on the same first EVAL_LIMIT
   test samples after each full epoch, as the example's test() does). Either way the budget starts
   at the first training step (setup excluded for both) and ends at the first step boundary past
   it; the reported test ELBO is then computed outside the budget with vae_core.metrics.evaluate
   on the whole test split (seed 0, one posterior sample per image), the same call for both.

Usage (from the repository root):
    .venv/bin/python bench/train_bench.py                               # digits, mlp, latent 8
    .venv/bin/python bench/train_bench.py --dataset shapes --arch conv
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from vae_core.config import TrainConfig, VAEConfig  # noqa: E402
from vae_core.datasets import load_dataset  # noqa: E402
from vae_core.metrics import evaluate  # noqa: E402
from vae_core.model import VAE  # noqa: E402
from vae_core.trainer import EVAL_LIMIT, Callback, Trainer, resolve_device  # noqa: E402

OURS = "vae_core Trainer (in-memory slicing)"
BASELINE = "DataLoader loop (pytorch/examples style)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class NoEvalTrainer(Trainer):
    """The stock Trainer minus its per-epoch test-set evaluation (the only thing overridden)."""

    def _test_metrics(self) -> dict:
        return {}


class Budget(Callback):
    """Counts optimiser steps and samples; asks the Trainer to stop once `seconds` have passed since `start`."""

    def __init__(self, seconds: float):
        self.seconds, self.start, self.steps, self.samples = seconds, time.perf_counter(), 0, 0

    def over(self) -> bool:
        return time.perf_counter() - self.start >= self.seconds

    def on_step(self, trainer, step, loss):
        self.steps += 1
        self.samples += min(trainer.config.batch_size, len(trainer.x) - step * trainer.config.batch_size)
        if self.over():
            trainer.stop_event.set()  # checked at the start of the next step: the epoch stops there

    def on_epoch_end(self, trainer, record):
        if self.over():
            trainer.stop_event.set()  # checked by fit() right after this hook


def run_trainer(make_model, data, args, device, *, seconds, with_eval=False):
    """Trainer.fit() until `seconds` have passed; returns (model, elapsed seconds, steps, samples)."""
    config = TrainConfig(epochs=10**9, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         device=str(device))
    budget = Budget(seconds)
    trainer = (Trainer if with_eval else NoEvalTrainer)(make_model(), data, config, callbacks=[budget],
                                                        stop_event=threading.Event())
    sync(device)
    budget.start = started = time.perf_counter()
    trainer.fit()
    sync(device)
    return trainer.model, time.perf_counter() - started, budget.steps, budget.samples


def run_dataloader(make_model, data, args, device, *, seconds, with_eval=False):
    """The pytorch/examples vae/main.py loop; same stopping rules as run_trainer."""
    model = make_model().to(device)
    torch.manual_seed(args.seed)  # the DataLoader's shuffle and randn_like draw from the global RNG
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    if args.workers is not None:
        kwargs = {"num_workers": args.workers, "pin_memory": device.type == "cuda"}
    train_loader = DataLoader(TensorDataset(data.x_train), batch_size=args.batch_size, shuffle=True, **kwargs)
    x_eval, y_eval = data.x_test[:EVAL_LIMIT], data.y_test[:EVAL_LIMIT]
    budget = Budget(seconds)
    steps = samples = 0
    stop = False
    sync(device)
    budget.start = started = time.perf_counter()
    while not stop:
        model.train()
        train_loss = 0.0  # the example's running loss: one .item() per step, as Trainer also does
        for batch_idx, (x,) in enumerate(train_loader):
            x = x.to(device)
            optimizer.zero_grad()
            loss = model.loss(x)["loss"]
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            steps += 1
            samples += len(x)
            stop = budget.over()
            if stop and batch_idx + 1 < len(train_loader):
                break  # mid-epoch: no evaluation, as Trainer
        else:  # a full epoch: the example's test() runs here
            if with_eval and len(x_eval):
                model.eval()
                evaluate(model, x_eval, y_eval, seed=0)
                model.train()
            stop = stop or budget.over()
    sync(device)
    return model, time.perf_counter() - started, steps, samples


RUNNERS = {OURS: run_trainer, BASELINE: run_dataloader}


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine_line(device: torch.device, loads: tuple) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    where = f"device {device}"
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    load = "" if None in loads else f", 1-min load average {loads[0]:.1f} at start / {loads[1]:.1f} at end"
    return (f"**Machine:** {cpu}, {os.cpu_count()} CPUs ({usable} usable), torch {torch.__version__}, "
            f"torch threads {torch.get_num_threads()}, {where}, Python {platform.python_version()}{load}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="digits", help="any vae_core dataset name (digits, shapes, ...)")
    p.add_argument("--arch", choices=["mlp", "conv"], default="mlp")
    p.add_argument("--hidden", type=int, nargs="+", help="default: 256 128 (mlp), 32 64 (conv), as the CLI")
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0, help="wall-clock training budget for each, for the ELBO")
    p.add_argument("--repeats", type=int, default=5, help="throughput repeats per trainer (median reported)")
    p.add_argument("--repeat-seconds", type=float, default=1.5, help="length of one throughput repeat")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (both trainers use it)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--workers", type=int, help="DataLoader num_workers (default: as the example, 1 on CUDA else 0)")
    p.add_argument("--eval-each-epoch", action="store_true",
                   help="include the per-epoch test evaluation in both budgets (default: exclude it from both)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.seconds <= 0 or args.batch_size < 1:
        p.error("--repeats, --seconds and --batch-size must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load_at_start = load_average()

    log(f"loading {args.dataset} ...")
    data = load_dataset(args.dataset, seed=args.seed)
    hidden = args.hidden or ([256, 128] if args.arch == "mlp" else [32, 64])
    vae_config = VAEConfig(input_shape=data.image_shape, latent_dim=args.latent_dim, architecture=args.arch,
                           hidden_sizes=hidden)

    def make_model() -> VAE:
        torch.manual_seed(args.seed)  # the same initial weights for every run
        return VAE(vae_config)

    n_train = len(data.x_train)

    log("warm-up ...")
    for run in RUNNERS.values():
        run(make_model, data, args, device, seconds=min(0.5, args.repeat_seconds))
    log(f"throughput: {args.repeats} repeats x {args.repeat_seconds:g} s each ...")
    rates = {name: [] for name in RUNNERS}
    for r in range(args.repeats):
        order = list(RUNNERS) if r % 2 == 0 else list(reversed(RUNNERS))
        for name in order:
            _, seconds, _, samples = RUNNERS[name](make_model, data, args, device, seconds=args.repeat_seconds)
            rates[name].append(samples / seconds)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    # Speedup: the median of the per-repeat ratios (each pair ran back to back, so load that drifts
    # over the run cancels out better than in a ratio of the two medians).
    speedups = {name: statistics.median(a / b for a, b in zip(v, rates[BASELINE])) for name, v in rates.items()}

    results = {}
    for name, run in RUNNERS.items():
        log(f"budget: {name}, {args.seconds:g} s ...")
        model, seconds, steps, samples = run(make_model, data, args, device, seconds=args.seconds,
                                    with_eval=args.eval_each_epoch)
        model.eval()
        elbo = evaluate(model, data.x_test, data.y_test, seed=0)["elbo"]
        results[name] = (elbo, samples / n_train, seconds, steps, samples)

    eval_note = ("per-epoch test evaluation INCLUDED in both budgets (Trainer's own; the baseline runs the "
                 f"same metrics.evaluate on the first {EVAL_LIMIT} test samples after each epoch)"
                 if args.eval_each_epoch else
                 "per-epoch test evaluation EXCLUDED from both budgets (Trainer's _test_metrics is a no-op)")
    loads = (load_at_start, load_average())
    print(machine_line(device, loads))
    # Other work on the machine: the load before we started, or at the end less our own torch threads.
    others = None if None in loads else max(loads[0], loads[1] - torch.get_num_threads())
    if others is not None and others > 1.0 and device.type == "cpu":
        hint = " or try `--threads 1`" if torch.get_num_threads() > 1 else ""
        print()
        print(f"> **Warning:** about {others:.0f} other runnable processes shared the CPUs during this run, so these "
              "numbers are noisy (torch's intra-op threads slow down badly when the cores are oversubscribed). "
              f"Rerun on a quiet machine{hint}.")
    print()
    print(f"Dataset `{args.dataset}` ({n_train} train / {len(data.x_test)} test, {tuple(data.image_shape)}), "
          f"{args.arch} {tuple(hidden)}, latent {args.latent_dim}, batch {args.batch_size}, Adam lr {args.lr:g}")
    print()
    print(f"| trainer | samples/s (median of {args.repeats}) | speedup × | test ELBO after {args.seconds:g} s "
          "| epochs done |")
    print("|---|---:|---:|---:|---:|")
    for name in RUNNERS:
        elbo, done, *_ = results[name]
        print(f"| {name} | {medians[name]:,.0f} | {speedups[name]:.2f} | {elbo:.2f} "
              f"| {done:.1f} |")
    print()
    print(f"- samples/s: training only, no evaluation; {args.repeat_seconds:g} s from fresh weights per repeat, "
          "the two trainers interleaved; speedup is the median of the per-repeat ratios to the DataLoader loop. "
          "Per repeat:")
    for name in RUNNERS:
        print(f"  - {name}: " + ", ".join(f"{v:,.0f}" for v in rates[name]))
    print(f"- test ELBO (nats per image, higher is better): whole test split, metrics.evaluate(seed=0), computed "
          f"after the budget; {eval_note}.")
    print("  Each budget is a single run, so load on the machine shows up here first: compare its rate with the "
          "median above.")
    for name in RUNNERS:
        _, _, seconds, steps, samples = results[name]
        rate = samples / seconds
        print(f"  - {name}: {steps} steps in {seconds:.2f} s, {rate:,.0f} samples/s "
              f"({rate / medians[name]:.0%} of its median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
