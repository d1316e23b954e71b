#!/usr/bin/env python
"""Training benchmark: vae_core's Trainer against the pytorch/examples loop and pythae's trainer, for
the digits MLP, the mnist-5k conv net (28x28) and the shapes conv net (64x64), all rows from one run.

Per setup (--setups) and section (--sections), one torch thread by default (--threads), the app's
setting for a training run, on the CPU or, with --device cuda, on a GPU (every trainer, peers included):

1. Samples per second ("speed") at the same model, batch (128) and Adam learning rate (1e-3):
   * "vae_core Trainer": vae_core.trainer.Trainer.fit(), batches sliced from tensors in memory, fused
     Adam, channels-last conv weights and kept freed memory (vae_core.heap) on the CPU; its
     test-set scoring is left out (NoEvalTrainer).
   * "DataLoader loop": the training loop of pytorch/examples vae/main.py: a TensorDataset in a
     DataLoader(shuffle=True, batch_size=B), then per batch zero_grad, forward + loss, backward,
     loss.item(), Adam step (torch's default Adam).
   * "pythae BaseTrainer": pythae's own trainer (pythae.trainers.BaseTrainer, its defaults but batch
     and learning rate) on a pythae VAE whose encoder and decoder are the same networks; it runs whole
     epochs, so its rate is epochs x N over the wall time of train() (its checkpoint writes included).
   --repeat-seconds of training from fresh weights per repeat, the trainers interleaved, median of
   --repeats. The peers train in a process of their own (PeerProcess), with glibc's malloc as it comes.
   The roofline columns: FLOPs of one training step (forward + backward, counted by
   torch.utils.flop_counter) over the measured step time, against this machine's float32 matrix
   multiply on the same threads (1024x1024 sgemm): how close to the machine's limit each one runs,
   and below the table the ceiling, how many times the loop's rate a step at that peak would run.
2. The step's variants ("variants"): one fused-Adam step of the plain model, of its channels-last
   weights (conv nets) and of torch.compile(model.loss): the first two steps' time (the compile) and the
   time per step after them.
3. A β sweep in one run ("sweep"): vae_core.sweep_trainer.SweepTrainer training 4 βs of the default
   recipe with each engine (stacked and vmap'd; looped per member), against the plain Trainer training
   one, the whole run timed (test scoring included), --sweep-repeats runs each, interleaved. The
   floor: the sweep's FLOPs (the members' count times one run's, counted by torch.utils.flop_counter)
   at the measured sgemm peak, over one run's time; no engine beats it unless it outruns that peak.
4. Time to quality ("race"): the pytorch/examples recipe (the loop above, batch 128, Adam 1e-3 constant, its
   test() on the first EVAL_LIMIT test images after every epoch, as the example does) trains for the
   setup's epochs; its final test ELBO is the level to reach. Then the project's default recipe
   (vae_core.recipe.Recipe's batch size, learning rate and schedule, the Trainer as the CLI runs it: its
   own evaluation cadence included) trains from the same initial weights for the setup's race_epochs,
   a half or a third of the peer's: a one-cycle schedule spends its run, however long, and ends low. After every
   epoch the bench scores both with one scorer, outside their clocks: vae_core.metrics.evaluate on the
   first EVAL_LIMIT test images, averaged over 3 seeds. Reported: when each first reaches the peer's
   final level, how many times sooner ours gets there, and each one's final score.

shapes trains on a seeded subset of --shapes-train images (the whole split is 58,982 and an epoch of
the 64x64 net takes minutes on one thread).

Usage (from the repository root; about 20 minutes on this 2-core machine):
    .venv/bin/python bench/train_bench.py
    .venv/bin/python bench/train_bench.py --setups digits --repeats 3
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from vae_core.config import TrainConfig, VAEConfig  # noqa: E402
from vae_core.datasets import load_dataset  # noqa: E402
from vae_core.heap import keep_freed_memory  # noqa: E402
from vae_core.metrics import evaluate  # noqa: E402
from vae_core.model import VAE  # noqa: E402
from vae_core.recipe import Recipe  # noqa: E402
from vae_core.sweep_trainer import SweepTrainer, choose_engine  # noqa: E402
from vae_core.trainer import EVAL_LIMIT, Callback, Trainer  # noqa: E402

OURS = "vae_core Trainer (in-memory slicing)"
BASELINE = "DataLoader loop (pytorch/examples style)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def run_trainer(make_model, data, args, device, *, seconds):
    """Trainer.fit() until `seconds` have passed; returns (model, elapsed seconds, steps, samples)."""
    config = TrainConfig(epochs=10**9, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         device=str(device))
    budget = Budget(seconds)
    trainer = NoEvalTrainer(make_model(), data, config, callbacks=[budget], stop_event=threading.Event())
    budget.start = started = time.perf_counter()
    trainer.fit()
    return trainer.model, time.perf_counter() - started, budget.steps, budget.samples


def examples_training(make_model, data, seed: int, lr: float, batch_size: int, device: torch.device):
    """(model, optimizer, loader) as pytorch/examples vae/main.py makes them: the model on the device,
    torch's default Adam, a shuffled DataLoader (on a GPU with its one worker and pinned memory)."""
    model = make_model().to(device)
    torch.manual_seed(seed)  # the DataLoader's shuffle and randn_like draw from the global RNG
    options = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(TensorDataset(data.x_train), batch_size=batch_size, shuffle=True, **options)
    return model, torch.optim.Adam(model.parameters(), lr=lr), loader


def examples_epoch(model, optimizer, loader, device: torch.device):
    """One epoch of pytorch/examples vae/main.py's train(): per batch, to the device, zero_grad, forward +
    loss, backward, loss.item() (its running loss: one host sync a step, as the Trainer's), Adam step.
    Yields each batch's size after its step."""
    model.train()
    for x, in loader:
        x = x.to(device)
        optimizer.zero_grad()
        loss = model.loss(x)["loss"]
        loss.backward()
        loss.item()
        optimizer.step()
        yield len(x)


def run_dataloader(make_model, data, args, device, *, seconds):
    """The pytorch/examples vae/main.py loop; same stopping rules as run_trainer."""
    model, optimizer, loader = examples_training(make_model, data, args.seed, args.lr, args.batch_size, device)
    budget = Budget(seconds)
    steps = samples = 0
    budget.start = started = time.perf_counter()
    while not budget.over():
        for size in examples_epoch(model, optimizer, loader, device):
            steps += 1
            samples += size
            if budget.over():
                break
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



PYTHAE = "pythae BaseTrainer"
SECTIONS = ("speed", "variants", "sweep", "race")


@dataclass(frozen=True)
class Setup:
    dataset: str
    architecture: str
    hidden: tuple[int, ...]
    dense: tuple[int, ...]
    latent: int
    epochs: int  # the peer's run in the time-to-quality race
    race_epochs: int  # ours: picked from a few lengths tried, each ending below the peer's final test −ELBO
    sweep_epochs: int  # the sweep section's runs: about 2 s for one model
    train_limit: int | None = None  # a seeded subset of the training split

    def describe(self) -> str:
        body = "-".join(map(str, self.hidden)) + ("".join(f" + dense {d}" for d in self.dense))
        return f"{self.dataset}, {self.architecture} {body}, latent {self.latent}"


SETUPS = {
    # The digits setup: the pytorch/examples MLP scaled to 8x8 (64-128-8).
    "digits": Setup("digits", "mlp", (128,), (), 8, epochs=100, race_epochs=50, sweep_epochs=100),
    "mnist-5k": Setup("mnist-5k", "conv", (32, 64, 128), (), 16, epochs=50, race_epochs=15, sweep_epochs=1),
    "shapes": Setup("shapes", "conv", (32, 32, 64, 64), (256,), 10, epochs=12, race_epochs=4, sweep_epochs=1,
                    train_limit=5000),
}


def load_setup(setup: Setup, args):
    data = load_dataset(setup.dataset, seed=args.seed)
    if setup.train_limit and len(data.x_train) > setup.train_limit:
        keep = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(args.seed))[:setup.train_limit]
        data = replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    config = VAEConfig(input_shape=data.image_shape, latent_dim=setup.latent, architecture=setup.architecture,
                       hidden_sizes=setup.hidden, dense_sizes=setup.dense)

    def make_model() -> VAE:
        torch.manual_seed(args.seed)  # the same initial weights for every run
        return VAE(config)

    return data, make_model


# -- pythae's trainer on the same networks ------------------------------------------------------------
def run_pythae(make_model, data, args, device, *, seconds):
    """pythae's BaseTrainer for whole epochs, about `seconds` long; (None, seconds, None, samples)."""
    import logging
    import tempfile

    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE as PythaeVAE, VAEConfig as PythaeConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    logging.getLogger("pythae").setLevel(logging.ERROR)
    ours = make_model()

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.vae = ours

        def forward(self, x):
            mu, logvar = self.vae.encode(x)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.vae = ours

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.vae.decoder_output(z)))

    model = PythaeVAE(PythaeConfig(input_dim=tuple(data.image_shape), latent_dim=ours.config.latent_dim,
                                   reconstruction_loss="bce"), encoder=Encoder(), decoder=Decoder())
    n = len(data.x_train)
    epochs = max(1, round(seconds * args.pythae_rate_guess / n))
    with tempfile.TemporaryDirectory() as folder:
        trainer = BaseTrainer(model, train_dataset=BaseDataset(data.x_train, data.y_train), training_config=BaseTrainerConfig(
            output_dir=folder, num_epochs=epochs, learning_rate=args.lr, per_device_train_batch_size=args.batch_size,
            no_cuda=device.type != "cuda"))
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # its progress lines, away from the tables
            trainer.train()
        elapsed = time.perf_counter() - started
    return None, elapsed, None, epochs * n


# -- the roofline --------------------------------------------------------------------------------------
def step_flops(make_model, data, batch_size: int) -> int:
    """FLOPs of one training step's forward and backward (Adam's elementwise update is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model()
    with FlopCounterMode(display=False) as counter:
        model.loss(data.x_train[:batch_size])["loss"].backward()
    return counter.get_total_flops()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU's kernels run after the call that queued them returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(call, seconds: float, device: torch.device) -> float:
    """Calls `call` for about `seconds` (already warm); the mean seconds per call, its work on `device` done."""
    synchronize(device)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        count += 1
        if count % 8 == 0:  # a GPU's queue is not let run ahead of the clock by more than a few calls
            synchronize(device)
    synchronize(device)
    return (time.perf_counter() - started) / count


def sgemm_flops_per_second(device: torch.device, seconds: float = 1.0, windows: int = 5) -> tuple[float, str]:
    """(FLOP/s, what was timed): the device's float32 matrix multiply, the best of `windows` timings of
    `seconds` / `windows` each (a peak; one 1 s mean read 91 and 160 GFLOP/s in two runs of this bench on
    the same CPU). 1024² on the CPU; 8192² on a GPU, where a smaller one leaves it idle, and there the
    faster of float32 and TF32 where cuDNN runs float32 convolutions in TF32 (torch's default): a
    roofline the trainers' convolutions cannot pass."""
    size = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)

    def best() -> float:
        for _ in range(3):
            a @ b
        return max(2 * size ** 3 / seconds_per_call(lambda: a @ b, seconds / windows, device) for _ in range(windows))

    rate, timed = best(), f"float32 matrix multiply ({size}², same threads)"
    matmul = torch.backends.cuda.matmul  # torch's newer TF32 switches only: it refuses a mix with the old ones
    if device.type == "cuda" and torch.backends.cudnn.conv.fp32_precision == "tf32" and matmul.fp32_precision != "tf32":
        before, matmul.fp32_precision = matmul.fp32_precision, "tf32"
        try:
            rate, timed = max(rate, best()), f"float32 or TF32 matrix multiply, the faster ({size}²)"
        finally:
            matmul.fp32_precision = before
    return rate, timed


def fixed_batch(make_model, data, batch_size: int, device: torch.device):
    """(x, eps): one training batch and its posterior noise on `device`, the same for every variant timed."""
    x = data.x_train[:batch_size]
    eps = torch.randn(len(x), make_model().config.latent_dim, generator=torch.Generator().manual_seed(0))
    return x.to(device), eps.to(device)


def adam_step(parameters, loss):
    """One training step of `loss()` with fused Adam at 1e-3, as a function."""
    optimizer = torch.optim.Adam(parameters, lr=1e-3, fused=True)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    return step


# -- the step's variants: memory format and torch.compile ----------------------------------------------
def step_variants(make_model, data, batch_size: int, seconds: float,
                  device: torch.device) -> dict[str, tuple[float, float]]:
    """{variant: (seconds of its first two steps, seconds per step after them)} for one fused-Adam step
    of the plain model, of its channels-last weights (conv nets) and of torch.compile(model.loss), each
    with the freed memory kept as the Trainer keeps it (whichever sections ran before)."""
    keep_freed_memory()
    x, eps = fixed_batch(make_model, data, batch_size, device)
    variants = {"eager": (False, False), "torch.compile": (False, True)}
    if make_model().config.architecture == "conv":
        variants["eager, channels-last"] = (True, False)
    found = {}
    for name, (channels_last, compiled) in variants.items():
        model = make_model().to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        loss = (lambda: model.loss(x, eps=eps)["loss"])
        if compiled:
            torch._dynamo.reset()  # every setup pays its own compile
            loss = torch.compile(loss)
        step = adam_step(model.parameters(), loss)
        synchronize(device)
        started = time.perf_counter()
        step()
        step()
        synchronize(device)
        found[name] = (time.perf_counter() - started, seconds_per_call(step, seconds, device))
    return found


# -- a β sweep in one run ------------------------------------------------------------------------------
SWEEP_BETAS = (1.0, 2.0, 4.0, 8.0)


def sweep_seconds(make_model, data, setup: Setup, device: torch.device, engine: str | None,
                  compile: bool = False) -> tuple[float, float]:
    """(wall seconds, of which compiling) of one run of the default recipe for setup.sweep_epochs: the plain
    Trainer at β = 1 (engine None), or vae_core's SweepTrainer training SWEEP_BETAS with that engine (and
    its step through torch.compile). Both score the test set and keep their checkpoints' state as they do
    for a user (no files are written)."""
    config = Recipe(architecture=setup.architecture, epochs=setup.sweep_epochs).train_config(device=str(device),
                                                                                             compile=compile)
    template = make_model().config
    models = []
    for beta in (SWEEP_BETAS if engine else (1.0,)):
        torch.manual_seed(0)
        models.append(VAE(replace(template, beta=beta)))
    trainer = Trainer(models[0], data, config) if engine is None else SweepTrainer(models, data, config, engine=engine)
    started = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - started, trainer.compile_seconds or 0.0


def run_flops(make_model, data, setup: Setup, device: torch.device) -> int:
    """FLOPs of one plain run of sweep_seconds (training and test scoring), counted by torch.utils.flop_counter:
    a sweep of k members does k times this work, whatever its engine, as no two members share a weight.
    Scoring follows wall time (ScoringCadence), so over many epochs the counted run, slowed by the
    counting, may score a different number of times than a timed one; a run of one epoch scores once."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        sweep_seconds(make_model, data, setup, device, None)
    return counter.get_total_flops()


# -- time to quality ---------------------------------------------------------------------------------
class Scorer:
    """One scorer for every run, outside their clocks: −ELBO on the first EVAL_LIMIT test images, 3 seeds."""

    def __init__(self, data):
        self.x, self.y = data.x_test[:EVAL_LIMIT], data.y_test[:EVAL_LIMIT]

    def __call__(self, model) -> float:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            value = -statistics.fmean(evaluate(model, self.x, self.y, seed=seed)["elbo"] for seed in range(3))
        model.train(was_training)
        return value


def race_peer(make_model, data, args, setup: Setup, scorer: Scorer) -> list[tuple[float, float]]:
    """The pytorch/examples recipe for setup.epochs: [(seconds on its clock, score)] after every epoch."""
    device = torch.device(args.device)
    model, optimizer, loader = examples_training(make_model, data, args.seed, 1e-3, 128, device)
    x_eval, y_eval = data.x_test[:EVAL_LIMIT], data.y_test[:EVAL_LIMIT]
    clock, curve = 0.0, []
    for epoch in range(setup.epochs):
        started = time.perf_counter()
        for _ in examples_epoch(model, optimizer, loader, device):
            pass
        model.eval()  # the example's test() after every epoch, on its clock
        with torch.inference_mode():
            evaluate(model, x_eval, y_eval, seed=0)
        clock += time.perf_counter() - started
        curve.append((clock, scorer(model)))
        log(f"  peer epoch {epoch + 1}: {curve[-1][1]:.2f} at {clock:.1f} s")
    return curve


class Stopwatch(Callback):
    """Scores the Trainer's model after every epoch with the clock paused."""

    def __init__(self, scorer: Scorer):
        self.scorer, self.curve, self.clock, self.started = scorer, [], 0.0, time.perf_counter()

    def on_epoch_end(self, trainer, record):
        self.clock += time.perf_counter() - self.started
        self.curve.append((self.clock, self.scorer(trainer.model)))
        log(f"  ours epoch {record['epoch']}: {self.curve[-1][1]:.2f} at {self.clock:.1f} s")
        self.started = time.perf_counter()


def race_recipe(setup: Setup, args) -> Recipe:
    """The project's default recipe (Recipe's batch, learning rate and schedule; --race-lr sets another
    rate) for setup.race_epochs."""
    return Recipe(architecture=setup.architecture, epochs=setup.race_epochs, lr=args.race_lr)


def race_ours(make_model, data, args, setup: Setup, scorer: Scorer) -> list[tuple[float, float]]:
    recipe = race_recipe(setup, args)
    watch = Stopwatch(scorer)
    trainer = Trainer(make_model(), data, recipe.train_config(device=args.device), callbacks=[watch])
    watch.started = time.perf_counter()
    trainer.fit()
    return watch.curve


def reached(curve: list[tuple[float, float]], level: float) -> float | None:
    return next((seconds for seconds, score in curve if score <= level), None)


# -- the peers' own process -------------------------------------------------------------------------
_PEER = None  # in the peer process: (setup, data, make_model)


def _peer_start(setup_name: str, args, threads: int) -> None:
    global _PEER
    torch.set_num_threads(threads)
    setup = SETUPS[setup_name]
    _PEER = (setup, *load_setup(setup, args))


def _peer_speed(runner: str, args, seconds: float) -> tuple[float, int]:
    _, data, make_model = _PEER
    _, elapsed, _, samples = ({**RUNNERS, PYTHAE: run_pythae}[runner])(make_model, data, args,
                                                                       torch.device(args.device), seconds=seconds)
    return elapsed, samples


def _peer_race(args) -> list[tuple[float, float]]:
    setup, data, make_model = _PEER
    return race_peer(make_model, data, args, setup, Scorer(data))


class PeerProcess:
    """The peers (the DataLoader loop, pythae, the race's pytorch/examples recipe) train in a process of
    their own that never makes a vae_core Trainer: a Trainer sets the process's malloc thresholds
    (vae_core.heap), which cannot be put back, and the peers are measured as people run them."""

    def __init__(self, setup_name: str, args):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_peer_start,
                                        initargs=(setup_name, args, args.threads))

    def speed(self, runner: str, args, seconds: float) -> tuple[float, int]:
        return self.pool.submit(_peer_speed, runner, args, seconds).result()

    def race(self, args) -> list[tuple[float, float]]:
        return self.pool.submit(_peer_race, args).result()

    def __enter__(self) -> "PeerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()


# -- the run -----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    p.add_argument("--repeats", type=int, default=5, help="throughput repeats per trainer (median reported)")
    p.add_argument("--repeat-seconds", type=float, default=2.0, help="length of one throughput repeat")
    p.add_argument("--batch-size", type=int, default=128, help="the throughput comparison's batch")
    p.add_argument("--lr", type=float, default=1e-3, help="the throughput comparison's learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="where every trainer trains: cpu, or cuda for a GPU's rows")
    p.add_argument("--sweep-repeats", type=int, default=3, help="runs per engine in the sweep section (median)")
    p.add_argument("--race-lr", type=float, help="the race's learning rate instead of the default recipe's")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = p.parse_args(argv)
    args.workers = None
    setups = [name.strip() for name in args.setups.split(",") if name.strip()]
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = [name for name in setups if name not in SETUPS] + [name for name in sections if name not in SECTIONS]
    if unknown or args.repeats < 1:
        p.error(f"unknown setups or sections {unknown}; --repeats must be positive")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        p.error(f"--device {args.device}: {error}")
    if str(device) not in ("cpu", "cuda") or (device.type == "cuda" and not torch.cuda.is_available()):
        p.error(f"--device {args.device}: this bench trains on cpu, or on cuda (the current GPU) where torch "
                f"sees one (torch.cuda.is_available() is {torch.cuda.is_available()} here)")
    torch.set_num_threads(args.threads)
    load_at_start = load_average()
    try:
        import pythae  # noqa: F401 (only whether it imports)
        runners = [*RUNNERS, PYTHAE]
    except Exception as error:  # noqa: BLE001 - any import failure leaves the row out
        log(f"pythae does not import ({type(error).__name__}: {error}): its rows are left out")
        runners = list(RUNNERS)
    peak, peak_timed = sgemm_flops_per_second(device)
    speed_rows, variant_rows, sweep_rows, race_rows = [], [], [], []
    for name in setups:
        setup = SETUPS[name]
        data, make_model = load_setup(setup, args)
        peers = PeerProcess(name, args) if {"speed", "race"} & set(sections) else contextlib.nullcontext()
        with peers:
            if "speed" in sections:
                log(f"{setup.describe()}: samples/s ...")
                args.pythae_rate_guess = 1.0

                def samples_per_second(runner: str, seconds: float) -> float:
                    if runner == OURS:
                        _, elapsed, _, samples = run_trainer(make_model, data, args, device, seconds=seconds)
                    else:
                        elapsed, samples = peers.speed(runner, args, seconds)
                    return samples / elapsed

                for runner in RUNNERS:  # warm-up
                    samples_per_second(runner, 0.5)
                flops = step_flops(make_model, data, args.batch_size)
                rates = {runner: [] for runner in runners}
                for r in range(args.repeats):
                    for runner in (runners if r % 2 == 0 else runners[::-1]):
                        args.pythae_rate_guess = statistics.fmean(rates[BASELINE]) if rates[BASELINE] else 1000.0
                        rates[runner].append(samples_per_second(runner, args.repeat_seconds))
                for runner, values in rates.items():
                    rate = statistics.median(values)
                    ratio = statistics.median(a / b for a, b in zip(values, rates[BASELINE]))
                    achieved = flops * rate / args.batch_size
                    speed_rows.append((setup.describe(), runner, rate, ratio, flops, achieved, achieved / peak))
            if "variants" in sections:
                log(f"{setup.describe()}: the step's variants ...")
                variant_rows.append((setup.describe(), step_variants(make_model, data, args.batch_size,
                                                                     args.repeat_seconds, device)))
            if "sweep" in sections:
                log(f"{setup.describe()}: a sweep of {len(SWEEP_BETAS)} βs, {setup.sweep_epochs} epoch(s) ...")
                engines = [(None, False), ("stacked", False), ("looped", False)]
                if choose_engine("auto", setup.architecture, device) == "stacked":  # the one engine that compiles
                    engines.append(("stacked", True))
                times = {engine: [] for engine in engines}
                for r in range(args.sweep_repeats):
                    for engine in (engines if r % 2 == 0 else engines[::-1]):
                        times[engine].append(sweep_seconds(make_model, data, setup, device, *engine))
                # (median seconds after the compile, the compile): only the process's first compiled run
                # compiles; the later ones find the compiled step in dynamo's cache
                sweep_rows.append((setup, {engine: (statistics.median(t - c for t, c in runs), max(c for _, c in runs))
                                           for engine, runs in times.items()}, run_flops(make_model, data, setup, device)))
            if "race" in sections:
                scorer = Scorer(data)
                log(f"{setup.describe()}: the peer's recipe, {setup.epochs} epochs ...")
                peer = peers.race(args)
                log(f"{setup.describe()}: the default recipe, {setup.race_epochs} epochs ...")
                ours = race_ours(make_model, data, args, setup, scorer)
                level = peer[-1][1]
                race_rows.append((setup, len(data.x_train), peer, ours, level, reached(peer, level), reached(ours, level)))

    loads = (load_at_start, load_average())
    print(machine_line(device, loads))
    print()
    if speed_rows:
        print(f"### Samples per second, batch {args.batch_size}, Adam {args.lr:g}, {args.threads} thread(s)")
        print()
        print(f"This machine's {peak_timed}: {peak / 1e9:.0f} GFLOP/s.")
        print()
        print(f"| setup | trainer | samples/s (median of {args.repeats}) | × the loop | FLOPs per step | GFLOP/s "
              "| of the sgemm peak |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for describe, runner, rate, ratio, flops, achieved, share in speed_rows:
            print(f"| {describe} | {runner} | {rate:,.0f} | {ratio:.2f} | {flops / 1e6:,.1f} M | {achieved / 1e9:.1f} "
                  f"| {share:.0%} |")
        print()
        for describe, runner, *_, share in speed_rows:
            if runner == BASELINE:
                print(f"- {describe}: a step at the sgemm peak would run {1 / share:.2f}× the loop.")
        print()
    if variant_rows:
        print(f"### One fused-Adam step, batch {args.batch_size}: memory format and torch.compile")
        print()
        print("| setup | variant | first two steps | per step after them | × eager |")
        print("|---|---|---:|---:|---:|")
        for describe, found in variant_rows:
            for variant, (first, per_step) in found.items():
                print(f"| {describe} | {variant} | {first:.2f} s | {per_step * 1e3:.2f} ms | "
                      f"{found['eager'][1] / per_step:.2f} |")
        print()
    if sweep_rows:
        print(f"### A sweep of {len(SWEEP_BETAS)} βs in one run (vae_core.sweep_trainer), against one run at β = 1")
        print()
        print(f"The default recipe, the whole run (test scoring included), median of {args.sweep_repeats}. "
              "Compiled: the run without its compile, which only the first compiled run of the process pays "
              "(its time in brackets; inductor's on-disk cache may be warm from earlier runs).")
        print()
        print(f"The floor: {len(SWEEP_BETAS)} runs' FLOPs (counted in one run, scoring included) at the sgemm peak "
              "above, against one run's time: no engine takes less unless it outruns that peak.")
        print()
        print("| setup | epochs | one run | stacked (vmap) | × one | looped | × one | stacked, torch.compile "
              "| × one | auto picks | floor, × one |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for setup, median, flops in sweep_rows:
            one = median[None, False][0]
            stacked, looped = median["stacked", False][0], median["looped", False][0]
            compiled = median.get(("stacked", True))
            compiled_cells = (f"{compiled[0]:.2f} s (+ {compiled[1]:.1f} s compiling, once) | {compiled[0] / one:.2f}"
                              if compiled else "– | –")
            print(f"| {setup.describe()} | {setup.sweep_epochs} | {one:.2f} s | {stacked:.2f} s | {stacked / one:.2f} "
                  f"| {looped:.2f} s | {looped / one:.2f} | {compiled_cells} "
                  f"| {choose_engine('auto', setup.architecture, device)} "
                  f"| {len(SWEEP_BETAS) * flops / peak / one:.2f} |")
        print()
    if race_rows:
        print("### Time to quality: the pytorch/examples recipe (batch 128, Adam 1e-3) against the default recipe")
        print()
        print("| setup | train images | peer: epochs | peer: final test −ELBO, first reached at | the default recipe "
              "| epochs | reaches it at | × sooner | its final test −ELBO, at |")
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
        for setup, n, peer, ours, level, peer_at, ours_at in race_rows:
            recipe = race_recipe(setup, args)
            sooner = f"{peer_at / ours_at:.2f}" if ours_at else "not reached"
            at = f"{ours_at:.1f} s" if ours_at else "–"
            print(f"| {setup.describe()} | {n:,} | {setup.epochs} | {level:.2f} nats, {peer_at:.1f} s "
                  f"| batch {recipe.batch_size}, Adam {recipe.lr:g}, {recipe.lr_schedule} | {recipe.epochs} | {at} | {sooner} "
                  f"| {ours[-1][1]:.2f} nats, {ours[-1][0]:.1f} s |")
        print()
    print(f"**Command:** `{' '.join(sys.argv)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
