"""Training: minibatches sliced from in-memory tensors, callbacks, KL warm-up, divergence guard,
atomic per-epoch checkpoints, resume, and DistributedDataParallel under torchrun.
"""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

try:  # hooks torch runs around every optimiser's step: AdamStep leaves the step to torch while any are set
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
except ImportError:
    _global_optimizer_pre_hooks = _global_optimizer_post_hooks = {}

from .checkpoint import Checkpoint, save_checkpoint
from .config import TrainConfig
from .datasets import ImageDataset
from .heap import keep_freed_memory
from .model import VAE

EVAL_LIMIT = 2000  # test samples scored per epoch: enough for a stable curve, cheap on CPU


class TrainingDiverged(Exception):
    """The loss or its gradient became NaN/inf. The model holds the last good weights."""


class Callback:
    """Hooks the CLI (progress bar) and the app (live curves) attach to a run."""

    def on_step(self, trainer: "Trainer", step: int, loss: float) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", record: dict) -> None: ...


def resolve_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _adam(parameters, lr: float) -> torch.optim.Adam:
    """Adam fused into one kernel where torch has one for the device (CPU and CUDA), else torch's default
    implementation. On the digits MLP its update is most of what the Trainer saves per step over the
    pytorch/examples loop (bench/train_bench.py, samples/s)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(parameters, lr=lr)


class AdamStep:
    """optimizer.step() for _adam's optimizer, with the fused kernel called on lists built once; and
    zero_grad(), its gradients set to None (torch's optimizer.zero_grad took 12 us for 10 of them, this 0.5).

    Each call of torch.optim's step collects every parameter's gradient and state and groups them by
    device and dtype before the one kernel call; on the digits MLP that was 140 us of a 1.1 ms step, the
    kernel 28 us. This makes the same two calls torch's fused Adam makes (the step counts + 1, then
    torch._fused_adam_ with the group's current lr), so the update is identical (tests/test_trainer.py).
    Anything else goes through optimizer.step(): not fused, several groups or devices, amsgrad and the
    like, step hooks, a missing gradient, and the first step after the state or the group was made
    anew (the first step of all, load_state_dict, a clear), after which the lists are taken again."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        # What the lists were taken from: the group and each parameter's state dict ([]: not taken).
        self.group: dict | None = None
        self.states: list[dict] = []
        self.exp_avgs: list[torch.Tensor] = []
        self.exp_avg_sqs: list[torch.Tensor] = []
        self.steps: list[torch.Tensor] = []

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _direct(self) -> bool:
        """Is one call of the fused kernel what optimizer.step() would do now?"""
        optimizer, group = self.optimizer, self.optimizer.param_groups[0]
        return (isinstance(optimizer, torch.optim.Adam) and len(optimizer.param_groups) == 1
                and hasattr(torch, "_fused_adam_") and bool(group.get("fused"))
                and not any(group.get(k) for k in ("amsgrad", "maximize", "differentiable", "capturable",
                                                   "weight_decay", "decoupled_weight_decay"))
                and not torch.is_tensor(group["lr"])
                and len({(p.device, p.dtype) for p in self.params}) == 1
                and not getattr(optimizer, "_optimizer_step_pre_hooks", None)
                and not getattr(optimizer, "_optimizer_step_post_hooks", None)
                and not _global_optimizer_pre_hooks and not _global_optimizer_post_hooks)

    def _take_lists(self) -> None:
        state = self.optimizer.state
        states = [state.get(p) for p in self.params]
        if not self._direct() or any(s is None for s in states):
            self.states = []
            return
        self.group, self.states = self.optimizer.param_groups[0], states
        self.exp_avgs = [s["exp_avg"] for s in states]
        self.exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        self.steps = [s["step"] for s in states]

    def __call__(self, lr: float | None = None) -> None:
        """One step; with `lr`, at that learning rate (every group's, from now on)."""
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        state = self.optimizer.state
        if (not self.states or self.optimizer.param_groups[0] is not self.group
                or any(state.get(p) is not s for p, s in zip(self.params, self.states))):
            self.optimizer.step()  # makes the state on the first step
            self._take_lists()
            return
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            self.optimizer.step()
            return
        beta1, beta2 = self.group["betas"]
        with torch.no_grad():
            torch._foreach_add_(self.steps, 1)
            torch._fused_adam_(self.params, grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps,
                               lr=self.group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0, eps=self.group["eps"],
                               amsgrad=False, maximize=False, grad_scale=None, found_inf=None)


def moments_like_weights(optimizer: torch.optim.Optimizer) -> None:
    """Adam's moments in the memory layout of their weights. A checkpoint holds them contiguous, and
    load_state_dict keeps that: against channels-last conv weights, torch's fused Adam (one pass over
    the raw memory of weight, gradient and moments alike) would pair the wrong elements."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            slots = optimizer.state.get(p, {})
            for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if name in slots and slots[name].stride() != p.stride():
                    slots[name] = torch.empty_like(p).copy_(slots[name])


def epoch_batches(config: TrainConfig, epoch: int, n: int, latent_dim: int):
    """The epoch's minibatches as (indices, posterior noise), drawn from one generator seeded from
    (seed, epoch): every DDP process draws the same order and noise, a resumed run draws exactly what the
    uninterrupted one would have, and each member of a β sweep what its own run would."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, config.batch_size):
        batch = order[start:start + config.batch_size]
        yield batch, torch.randn(len(batch), latent_dim, generator=generator)


def warmup_fraction(config: TrainConfig, epoch: int, step_fraction: float) -> float:
    """How much of the regulariser is on: 0 -> 1 linearly over the KL warm-up epochs."""
    warmup = config.kl_warmup_epochs
    return 1.0 if warmup <= 0 else min(1.0, (epoch + step_fraction) / warmup)


def step_warmup(config: TrainConfig, epoch: int, step: int, n_batches: int, device: torch.device):
    """warmup_fraction() at this step, as its loss takes it: a tensor when the step is compiled, since a
    float that changes with every step would recompile every step."""
    warmup = warmup_fraction(config, epoch, step / n_batches)
    return torch.tensor(warmup, device=device) if config.compile else warmup


def kl_weight(model_config, config: TrainConfig, epoch: int, step_fraction: float) -> float:
    """The weight on KL(q(z|x) || p(z)) at this point of training (beta for a beta-VAE, 1 for beta-TCVAE)."""
    beta = model_config.beta if model_config.objective == "vae" else 1.0
    return beta * warmup_fraction(config, epoch, step_fraction)


class ScoringCadence:
    """When a run scores the test set (and saves the checkpoint): after its first epoch, its last (also
    where it is stopped) and in between while scoring has taken at most eval_time_share of the run."""

    def __init__(self, config: TrainConfig, start_epoch: int):
        self.config, self.start_epoch = config, start_epoch
        self.train_seconds = self.eval_seconds = 0.0

    def after_epoch(self, epoch: int, seconds: float, stopping: bool, score: Callable[[], None]) -> None:
        """Epoch `epoch` (0-based) trained in `seconds`: call score() if it is due, timing it."""
        self.train_seconds += seconds
        if (epoch == self.start_epoch or epoch + 1 == self.config.epochs or stopping
                or self.eval_seconds <= self.config.eval_time_share * self.train_seconds):
            started = time.perf_counter()
            score()
            self.eval_seconds += time.perf_counter() - started


def epoch_record(epoch: int, means: dict[str, float], kl_per_dim: list[float] | None, kl_weight: float,
                 count: float, seconds: float) -> dict:
    """One epoch's training record, as the history, the curves and the checkpoints hold it."""
    record = {"epoch": epoch + 1, **means}
    if "kl" in record:
        record |= {"elbo": -(record["recon"] + record["kl"]), "kl_per_dim": kl_per_dim, "kl_weight": kl_weight}
    return record | {"seconds": seconds, "samples_per_second": count / seconds}


@torch.inference_mode()
def test_metrics(model: VAE, data: ImageDataset) -> dict:
    """Test ELBO, reconstruction and KL on the first EVAL_LIMIT test images, and the active units."""
    from .metrics import evaluate

    x, y = data.x_test[:EVAL_LIMIT], data.y_test[:EVAL_LIMIT]
    if len(x) == 0:
        return {}
    model.eval()
    result = evaluate(model, x, y, seed=0)
    model.train()
    return {f"test_{k}": result[k] for k in ("elbo", "recon", "kl") if k in result} | \
        {"active_units": result["active_units"]}


def save_run(path: Path, model: VAE, data: ImageDataset, history: list[dict], config: TrainConfig, epoch: int,
             optimizer: torch.optim.Optimizer | None, world: int = 1) -> Path:
    """The run's checkpoint: weights, data names, history, last test scores, and what resumes it."""
    last = history[-1] if history else {}
    return save_checkpoint(
        path, model,
        dataset={"name": data.name, "label_names": data.label_names, "factor_names": data.factor_names},
        history=history,
        metrics={k: last[k] for k in ("test_elbo", "test_recon", "test_kl", "active_units") if k in last},
        train_state={"epoch": epoch, "train_config": vars(config), "world_size": world},
        optimizer=optimizer if config.save_optimizer else None,
    )


def prefer_channels_last(model: VAE, device: torch.device) -> None:
    """A conv net on the CPU trains on NHWC weights: oneDNN's convolutions run faster on them, most for the
    64x64 shapes net (bench/train_bench.py --sections variants: 1.19x a step with glibc's own malloc
    thresholds, 1.04x with the freed memory kept). Saved checkpoints are plain contiguous."""
    if model.config.architecture == "conv" and device.type == "cpu":
        model.to(memory_format=torch.channels_last)


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot be used on this machine and device; None where it can."""
    import shutil

    if device.type == "mps":
        return "torch.compile is not used on MPS"
    if device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
        return "torch.compile needs a C++ compiler on the CPU and none was found (set CXX, or install g++)"
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    return None


class CompiledStep:
    """torch.compile(eager) (AOTAutograd compiles its backward too). The first call pays the compile:
    it is timed (`seconds`) and shown as such. A compile that fails, then or at a later recompile (new
    shapes), leaves the run eager with a note in `notes`, not broken."""

    def __init__(self, eager, notes: list[str]):
        self.eager, self.notes, self.seconds = eager, notes, None
        self.compiled = torch.compile(eager)

    def __call__(self, *args):
        if self.compiled is None:
            return self.eager(*args)
        started = time.perf_counter()
        try:
            result = self.compiled(*args)
        except Exception as exc:  # inductor's errors have no common base class beyond this
            self.notes.append(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): "
                              "training eagerly")
            self.compiled = None
            result = self.eager(*args)
        if self.seconds is None:
            self.seconds = time.perf_counter() - started
        return result


def compiled_or_eager(eager, device: torch.device, notes: list[str]):
    """CompiledStep(eager), or eager itself with a note in `notes` saying why torch.compile cannot run."""
    why = compile_unavailable(device)
    if why:
        notes.append(f"{why}: training eagerly")
        return eager
    return CompiledStep(eager, notes)


def distributed_context() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        # The epoch's loss sums are all-reduced as CPU tensors, which NCCL cannot carry: gloo takes those.
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


class _Snapshot:
    """The weights and Adam's moments at the end of the last whole epoch, copied into tensors kept for
    the run: deep copies of both state dicts after every epoch were 12% of a digits run in cProfile."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.weights = [t.detach().clone() for t in model.state_dict().values()]
        self.moments = [t.clone() for t in self._moments(optimizer)]  # none before Adam's first step

    @staticmethod
    def _moments(optimizer) -> list[torch.Tensor]:
        return [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]

    def take(self, model, optimizer) -> None:
        torch._foreach_copy_(self.weights, list(model.state_dict().values()))
        moments = self._moments(optimizer)
        if len(moments) != len(self.moments):
            self.moments = [t.clone() for t in moments]
        else:
            torch._foreach_copy_(self.moments, moments)

    def restore(self, model, optimizer=None) -> None:
        torch._foreach_copy_(list(model.state_dict().values()), self.weights)
        if optimizer is not None:
            if self.moments:
                torch._foreach_copy_(self._moments(optimizer), self.moments)
            else:
                optimizer.state.clear()


class Trainer:
    def __init__(self, model: VAE, data: ImageDataset, config: TrainConfig, *, callbacks=(),
                 checkpoint_path: str | Path | None = None, resume: Checkpoint | None = None,
                 stop_event: threading.Event | None = None):
        self.config = config
        self.data = data
        self.callbacks = list(callbacks)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.stop_event = stop_event or threading.Event()
        self.rank, self.world = distributed_context()
        if self.world > 1 and torch.cuda.is_available():
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        else:
            self.device = resolve_device(config.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # a step's activations keep their pages for the next step
        self.model = model.to(self.device)
        prefer_channels_last(self.model, self.device)
        self.model.train()
        torch.manual_seed(config.seed)
        self.network = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.network = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        self.optimizer = _adam(self.model.parameters(), config.lr)
        self.adam_step = AdamStep(self.optimizer)
        self.history: list[dict] = []
        self.start_epoch = 0
        if resume is not None:
            self.history = list(resume.history)
            self.start_epoch = int(resume.train_state.get("epoch", len(self.history)))
            if resume.optimizer_state:
                self.optimizer.load_state_dict(resume.optimizer_state)
                moments_like_weights(self.optimizer)
                for group in self.optimizer.param_groups:
                    group["lr"] = config.lr
        self.x = data.x_train.to(self.device)
        self.y = data.y_train.to(self.device) if model.config.conditional else None
        self.notes: list[str] = []  # one line each, for the person who started the run
        # Off by default: on this project's 2-core CPU the compile took longer than a default run saves
        # with it (bench/train_bench.py --sections variants).
        self.forward_loss = compiled_or_eager(self._forward_loss, self.device, self.notes) if config.compile \
            else self._forward_loss
        self.stopped = False

    @property
    def compile_seconds(self) -> float | None:
        """The first compiled step's time, once measured."""
        return getattr(self.forward_loss, "seconds", None)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def fit(self) -> list[dict]:
        """Train from start_epoch to config.epochs; returns the full history (earlier runs included).

        Every epoch's training record reaches the callbacks; the test-set evaluation and the checkpoint
        save come after the epochs ScoringCadence names."""
        last_good = _Snapshot(self.model, self.optimizer)
        self._saved_epoch = self.start_epoch
        cadence = ScoringCadence(self.config, self.start_epoch)
        for epoch in range(self.start_epoch, self.config.epochs):
            record = self._train_epoch(epoch, last_good)
            if record is None:  # stopped by the user mid-epoch: back to the last whole epoch
                self.stopped = True
                last_good.restore(self.model, self.optimizer)
                break
            last_good.take(self.model, self.optimizer)
            self.history.append(record)
            cadence.after_epoch(epoch, record["seconds"], self.stop_event.is_set(),
                                lambda: self._evaluate_and_save(epoch + 1))
            for cb in self.callbacks:
                cb.on_epoch_end(self, record)
            if self.stop_event.is_set():
                self.stopped = True
                break
        if self.history and self.history[-1]["epoch"] > self._saved_epoch:  # stopped after an unsaved epoch
            self._evaluate_and_save(self.history[-1]["epoch"])
        self.model.eval()
        return self.history

    def _evaluate_and_save(self, epoch: int) -> None:
        """Test metrics into the epoch's record (the last in history), then the checkpoint."""
        self.history[-1].update(self._test_metrics())
        if self.is_main and self.checkpoint_path:
            self.save(epoch)
        self._saved_epoch = epoch

    def _train_epoch(self, epoch: int, last_good: "_Snapshot") -> dict | None:
        cfg, n = self.config, len(self.x)
        latent = self.model.config.latent_dim
        # Running sums stay on the device (loss, recon[, kl]; KL per dimension): no sync per step.
        terms = ("loss", "recon", "kl") if self.model.config.probabilistic else ("loss", "recon")
        sums = torch.zeros(len(terms), dtype=torch.float64, device=self.device)
        kl_per_dim = torch.zeros(latent, dtype=torch.float64, device=self.device)
        count = 0
        step_callbacks = [cb for cb in self.callbacks if type(cb).on_step is not Callback.on_step]
        self.model.train()
        started = time.perf_counter()
        n_batches = math.ceil(n / cfg.batch_size)
        scheduled = cfg.lr_schedule != "constant"
        for step, (batch, eps) in enumerate(epoch_batches(cfg, epoch, n, latent)):
            if self.stop_event.is_set():
                return None
            if len(batch) < self.world:
                continue
            if self.world > 1:
                # Each process takes its slice of the global batch; weighting by slice size makes the
                # DDP gradient average equal to the single-process gradient of the whole batch.
                mine = batch.tensor_split(self.world)[self.rank]
                eps = eps.tensor_split(self.world)[self.rank]
                share = len(mine) * self.world / len(batch)
            else:
                mine, share = batch, 1.0
            mine, eps = mine.to(self.device), eps.to(self.device)
            # index_select, not self.x[mine]: a quarter of the indexing's time on a batch of 8x8 digits
            x, y = self.x.index_select(0, mine), None if self.y is None else self.y.index_select(0, mine)
            warmup = step_warmup(cfg, epoch, step, n_batches, self.device)
            parts = self.forward_loss(x, y, eps, warmup)
            self.adam_step.zero_grad()
            (parts["loss"] * share if share != 1.0 else parts["loss"]).backward()
            if self._diverged(parts["loss"]):
                last_good.restore(self.model)
                saved = self._saved_epoch
                kept = f"; the checkpoint from epoch {saved} was kept" if self.checkpoint_path and saved else ""
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}, step {step + 1}: the loss became "
                    f"{parts['loss'].item()} (learning rate {cfg.lr:g} too high? try {cfg.lr / 10:g}){kept}"
                )
            self.adam_step(cfg.lr_at(epoch * n_batches + step, cfg.epochs * n_batches) if scheduled else None)
            b = len(mine)
            count += b
            with torch.no_grad():  # no graph for the sums: in float64, on the device
                sums.add_(torch.stack([parts[t] for t in terms]), alpha=b)
                if "kl_per_dim" in parts:
                    kl_per_dim.add_(parts["kl_per_dim"], alpha=b)
            if step_callbacks:
                loss_value = parts["loss"].item()
                for cb in step_callbacks:
                    cb.on_step(self, step, loss_value)
        sums = torch.cat([sums.cpu(), torch.tensor([float(count)], dtype=torch.float64)])
        kl_per_dim = kl_per_dim.cpu()
        if self.world > 1:
            for t in (sums, kl_per_dim):
                dist.all_reduce(t)
        count = sums[-1].item()
        record = epoch_record(epoch, {t: sums[i].item() / count for i, t in enumerate(terms)},
                              (kl_per_dim / count).tolist(), kl_weight(self.model.config, cfg, epoch, 1.0), count,
                              time.perf_counter() - started)
        if epoch == self.start_epoch and self.compile_seconds is not None:
            record["compile_seconds"] = self.compile_seconds  # inside "seconds": this epoch paid it
        return record

    def _test_metrics(self) -> dict:
        return test_metrics(self.model, self.data)

    def _forward_loss(self, x, y, eps, kl_weight) -> dict[str, torch.Tensor]:
        # Through self.network (the DDP wrapper when distributed): its forward arms the all-reduce.
        return self.model.loss_terms(x, *self.network(x, y, eps), eps=eps, dataset_size=len(self.x),
                                     kl_weight=kl_weight)

    def _diverged(self, loss: torch.Tensor) -> bool:
        """Is this step's loss or gradient NaN/inf? Clips the gradient when grad_clip > 0."""
        if self.config.grad_clip > 0 or self.world > 1:
            # After DDP's all-reduce the gradient norm is the same on every process, so all of them take
            # the same branch; a NaN loss on any process makes the averaged gradient NaN everywhere.
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip or float("inf"))
            return not bool(torch.isfinite(norm)) or not math.isfinite(loss.item())
        # One process without clipping: the loss alone tells, without a norm over every gradient.
        return not math.isfinite(loss.item())

    def save(self, epoch: int) -> Path:
        return save_run(self.checkpoint_path, self.model, self.data, self.history, self.config, epoch, self.optimizer,
                        self.world)
