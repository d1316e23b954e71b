"""A β sweep in one run: copies of one recipe that differ only in β, trained in lockstep.

Every member starts from the same initial weights and sees the same minibatches and the same posterior
noise (trainer.epoch_batches), so member i follows the run a plain Trainer would train at β_i, and its
checkpoint is one that run could have written: the Choosing β page finds the sweep, `--resume` continues
a member alone. A member whose loss becomes NaN/inf stops with its reason, at its last whole epoch; the
others go on.

Two engines take a step of every member:
* "stacked": the members' weights stacked along a leading axis (torch.func.stack_module_state), their
  loss vmap'd over the stacks (functional_call) and one fused Adam over the stacks, which is Adam per
  member, as Adam is elementwise. One kernel per op for all members: it pays where per-op overhead
  dominates, a small MLP or a GPU.
* "looped": each member its own module and Adam, stepped one after another on the batch. On a CPU a
  conv net is compute-bound and vmap's batching rules (grouped convolutions) cost more than the loop.
"auto" stacks MLPs and conv nets on a GPU and loops conv nets on the CPU: on the CPU measured with
bench/train_bench.py --sections sweep; on a GPU, where vmap's batched kernels fill the device, expected
and not measured here.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import TrainConfig
from .datasets import ImageDataset
from .heap import keep_freed_memory
from .model import VAE
from .trainer import (AdamStep, ScoringCadence, _adam, _Snapshot, compiled_or_eager, epoch_batches, epoch_record,
                      kl_weight, prefer_channels_last, resolve_device, save_run, step_warmup, test_metrics)

ENGINES = ("auto", "stacked", "looped")
TERMS = ("loss", "recon", "kl")


@dataclass
class SweepMember:
    """One β of the sweep: its model (the weights of its last whole epoch between epochs), its history
    and checkpoint, and how it diverged, if it did."""
    model: VAE
    checkpoint_path: Path | None = None
    history: list[dict] = field(default_factory=list)
    diverged: str | None = None  # "training diverged at epoch E, step S: …", as the Trainer says it
    saved_epoch: int = 0

    @property
    def beta(self) -> float:
        return self.model.config.beta

    @property
    def error(self) -> str | None:
        """Why this β stopped early, and what of it was saved; None if it did not diverge."""
        if self.diverged is None:
            return None
        saved = (f"its last whole epoch ({self.saved_epoch}) was saved" if self.saved_epoch else
                 "no epoch had finished, so nothing was saved")
        return f"β = {self.beta:g}: {self.diverged}" + (f"; {saved}" if self.checkpoint_path else "")


class SweepCallback:
    """What the CLI's progress bar and the server's job queue attach to a sweep."""

    def on_step(self, sweep: "SweepTrainer", step: int) -> None: ...

    def on_epoch_end(self, sweep: "SweepTrainer", records: dict[float, dict]) -> None:
        """records: each training member's record of this epoch, by β."""


def choose_engine(engine: str, architecture: str, device: torch.device) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    return "stacked" if device.type == "cuda" or architecture == "mlp" else "looped"


class _Stacked:
    """The members' weights as stacks, their loss vmap'd over the stacks, one fused Adam over them."""

    def __init__(self, models: list[VAE], lr: float, dataset_size: int, compile_notes: list[str] | None = None):
        """compile_notes: torch.compile the vmap'd loss, with its notes there (None: eager)."""
        from torch.func import functional_call, stack_module_state, vmap

        params, self.buffers = stack_module_state(models)
        self.names, self.params = list(params), list(params.values())
        self.betas = torch.tensor([m.config.beta for m in models], device=self.params[0].device)
        self.optimizer = _adam(self.params, lr)
        self.adam_step = AdamStep(self.optimizer)
        template = copy.deepcopy(models[0]).to("meta")  # the code of the model, without weights of its own

        def member_loss(params, buffers, beta, x, y, eps, warmup):
            out = functional_call(template, (dict(zip(self.names, params)), buffers), (x, y, eps))
            parts = template.loss_terms(x, *out, beta=beta, eps=eps, dataset_size=dataset_size, kl_weight=warmup)
            return {t: parts[t] for t in (*TERMS, "kl_per_dim")}

        self._loss = vmap(member_loss, in_dims=(0, 0, 0, None, None, None, None))
        if compile_notes is not None:
            self._loss = compiled_or_eager(self._loss, self.params[0].device, compile_notes)

    def forward_loss(self, x, y, eps, warmup: float) -> dict[str, torch.Tensor]:
        return self._loss(self.params, self.buffers, self.betas, x, y, eps, warmup)

    def step(self, losses: torch.Tensor, lr: float) -> None:
        self.adam_step.zero_grad()
        losses.sum().backward()  # member i's weights get the gradient of member i's loss alone
        self.adam_step(lr)

    def keep(self, keep: list[int]) -> None:
        """Go on with these members only (indices into the current stacks)."""
        index = torch.tensor(keep, device=self.params[0].device)
        state = self.optimizer.state_dict()
        self.params = [p.detach()[index].clone().requires_grad_() for p in self.params]
        self.buffers = {name: b[index] for name, b in self.buffers.items()}
        self.betas = self.betas[index]
        self.optimizer = _adam(self.params, self.optimizer.param_groups[0]["lr"])
        if state["state"]:  # Adam's moments, member by member; its step count is the same for all
            state["state"] = {k: {name: v[index] if name != "step" else v for name, v in s.items()}
                              for k, s in state["state"].items()}
            self.optimizer.load_state_dict(state)
        self.adam_step = AdamStep(self.optimizer)

    @torch.no_grad()
    def write_to(self, members: list[SweepMember], optimizers: list[torch.optim.Optimizer]) -> None:
        """Member i's module and Adam hold slice i of the stacks: what it saves, scores and resumes from."""
        moments = self.optimizer.state
        for i, (member, optimizer) in enumerate(zip(members, optimizers)):
            for param, stack in zip(member.model.parameters(), self.params):
                param.copy_(stack[i])
                if stack in moments:
                    optimizer.state[param] = {name: (v if name == "step" else v[i]).clone()
                                              for name, v in moments[stack].items()}


class _Looped:
    """Each member its own module and Adam, stepped one after another."""

    def __init__(self, models: list[VAE], optimizers: list[torch.optim.Optimizer], dataset_size: int):
        self.models, self.dataset_size = models, dataset_size
        self.adam_steps = [AdamStep(optimizer) for optimizer in optimizers]

    def forward_loss(self, x, y, eps, warmup: float) -> dict[str, torch.Tensor]:
        parts = [m.loss_terms(x, *m(x, y, eps), eps=eps, dataset_size=self.dataset_size, kl_weight=warmup)
                 for m in self.models]
        return {t: torch.stack([p[t] for p in parts]) for t in (*TERMS, "kl_per_dim")}

    def step(self, losses: torch.Tensor, lr: float) -> None:
        for adam_step in self.adam_steps:
            adam_step.zero_grad()
        losses.sum().backward()
        for adam_step in self.adam_steps:
            adam_step(lr)

    def keep(self, keep: list[int]) -> None:
        self.models = [self.models[i] for i in keep]
        self.adam_steps = [self.adam_steps[i] for i in keep]

    def write_to(self, members, optimizers) -> None:
        """The members' own modules and Adams are the ones trained."""


class SweepTrainer:
    def __init__(self, models: list[VAE], data: ImageDataset, config: TrainConfig, *,
                 checkpoint_paths: list[str | Path] | None = None, callbacks=(), engine: str = "auto",
                 stop_event: threading.Event | None = None):
        first = models[0].config if models else None
        if not models or any(dataclasses.replace(m.config, beta=first.beta) != first for m in models):
            raise ValueError("a β sweep trains one recipe: its models may differ in β alone")
        if not first.probabilistic:
            raise ValueError("an autoencoder has no β to sweep: it has no KL term")
        if len({m.config.beta for m in models}) != len(models):
            raise ValueError("a β sweep trains each β once")
        if config.grad_clip > 0:
            raise ValueError("a β sweep does not clip gradients")
        paths = checkpoint_paths or [None] * len(models)
        if len(paths) != len(models):
            raise ValueError("one checkpoint path per model")
        self.config, self.data = config, data
        self.callbacks = list(callbacks)
        self.stop_event = stop_event or threading.Event()
        self.device = resolve_device(config.device)
        self.engine_name = choose_engine(engine, first.architecture, self.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # the members' activations keep their pages from step to step
        torch.manual_seed(config.seed)
        for model in models:
            model.to(self.device).train()
            if self.engine_name == "looped":
                prefer_channels_last(model, self.device)
        self.members = [SweepMember(m, Path(p) if p else None) for m, p in zip(models, paths)]
        self.optimizers = [_adam(m.parameters(), config.lr) for m in models]
        self.x = data.x_train.to(self.device)
        self.y = data.y_train.to(self.device) if first.conditional else None
        self.engine: _Stacked | _Looped | None = None  # made by fit()
        self.notes: list[str] = []  # one line each, for the person who started the run
        if config.compile and self.engine_name == "looped":
            self.notes.append("torch.compile compiles a stacked sweep's step only, and this one loops over its "
                              "members: training eagerly")
        self.stopped = False

    @property
    def compile_seconds(self) -> float | None:
        """The first compiled step's time, once measured."""
        return getattr(getattr(self.engine, "_loss", None), "seconds", None)

    @property
    def training(self) -> list[int]:
        """Indices of the members still training."""
        return [i for i, m in enumerate(self.members) if m.diverged is None]

    def fit(self) -> list[SweepMember]:
        """Train every member for config.epochs (fewer where stopped); returns the members, each with its
        history, its checkpoint saved as a plain Trainer's run would save it, and its error if it diverged."""
        models = [m.model for m in self.members]
        if self.engine_name == "stacked":
            self.engine = engine = _Stacked(models, self.config.lr, len(self.x),
                                            self.notes if self.config.compile else None)
        else:
            self.engine = engine = _Looped(models, self.optimizers, len(self.x))
        last_good = [_Snapshot(m.model, opt) for m, opt in zip(self.members, self.optimizers)]
        cadence = ScoringCadence(self.config, 0)
        for epoch in range(self.config.epochs):
            live = self.training
            if not live:
                break
            means = self._train_epoch(epoch, engine, live, last_good)
            if means is None:  # stopped mid-epoch: every member back to its last whole epoch
                self.stopped = True
                for i in self.training:
                    last_good[i].restore(self.members[i].model, self.optimizers[i])
                break
            if not means:  # every member diverged in this epoch
                break
            live = self.training
            engine.write_to([self.members[i] for i in live], [self.optimizers[i] for i in live])
            records = {}
            for i in live:
                last_good[i].take(self.members[i].model, self.optimizers[i])
                self.members[i].history.append(means[i])
                records[self.members[i].beta] = means[i]

            def score_and_save(epoch=epoch, live=live):
                for i in live:
                    self._score_and_save(self.members[i], self.optimizers[i], epoch + 1)

            cadence.after_epoch(epoch, next(iter(records.values()))["seconds"] if records else 0.0,
                                self.stop_event.is_set(), score_and_save)
            for cb in self.callbacks:
                cb.on_epoch_end(self, records)
            if self.stop_event.is_set():
                self.stopped = True
                break
        for member, optimizer in zip(self.members, self.optimizers):
            # Stopped, or diverged (back at its last whole epoch), after an unsaved epoch.
            if member.history and member.history[-1]["epoch"] > member.saved_epoch:
                self._score_and_save(member, optimizer, member.history[-1]["epoch"])
            member.model.eval()
        return self.members

    def _score_and_save(self, member: SweepMember, optimizer, epoch: int) -> None:
        member.history[-1].update(test_metrics(member.model, self.data))
        if member.checkpoint_path:
            save_run(member.checkpoint_path, member.model, self.data, member.history, self.config, epoch, optimizer)
        member.saved_epoch = epoch

    def _train_epoch(self, epoch: int, engine, live: list[int], last_good: list[_Snapshot]) -> dict[int, dict] | None:
        """{member index: its training record} of the members that trained the whole epoch; None if stopped."""
        cfg, n = self.config, len(self.x)
        latent = self.members[0].model.config.latent_dim
        sums = torch.zeros(len(live), len(TERMS), dtype=torch.float64, device=self.device)
        kl_per_dim = torch.zeros(len(live), latent, dtype=torch.float64, device=self.device)
        count = 0
        n_batches = math.ceil(n / cfg.batch_size)
        step_callbacks = [cb for cb in self.callbacks if type(cb).on_step is not SweepCallback.on_step]
        started = time.perf_counter()
        for step, (batch, eps) in enumerate(epoch_batches(cfg, epoch, n, latent)):
            if self.stop_event.is_set():
                return None
            batch, eps = batch.to(self.device), eps.to(self.device)
            x, y = self.x.index_select(0, batch), None if self.y is None else self.y.index_select(0, batch)
            warmup = step_warmup(cfg, epoch, step, n_batches, self.device)
            parts = engine.forward_loss(x, y, eps, warmup)
            finite = torch.isfinite(parts["loss"]).tolist()  # the one host sync of the step, as in Trainer
            if not all(finite):
                keep = [k for k, ok in enumerate(finite) if ok]
                for k, ok in enumerate(finite):
                    if not ok:
                        self._diverged(live[k], epoch, step, parts["loss"][k].item(), last_good[live[k]])
                live = [live[k] for k in keep]
                if not live:
                    return {}
                engine.keep(keep)
                sums, kl_per_dim = sums[keep], kl_per_dim[keep]
                # The step again without them (the stacked engine has new stacks): no NaN may reach a gradient.
                parts = engine.forward_loss(x, y, eps, warmup)
            engine.step(parts["loss"], cfg.lr_at(epoch * n_batches + step, cfg.epochs * n_batches))
            b = len(batch)
            count += b
            with torch.no_grad():  # no graph for the sums
                sums.add_(torch.stack([parts[t] for t in TERMS], 1), alpha=b)
                kl_per_dim.add_(parts["kl_per_dim"], alpha=b)
            for cb in step_callbacks:
                cb.on_step(self, step)
        sums, kl_per_dim = (sums / count).cpu(), (kl_per_dim / count).cpu()
        seconds = time.perf_counter() - started
        records = {i: epoch_record(epoch, dict(zip(TERMS, sums[k].tolist())), kl_per_dim[k].tolist(),
                                   kl_weight(self.members[i].model.config, cfg, epoch, 1.0), count, seconds)
                   for k, i in enumerate(live)}
        if epoch == 0 and self.compile_seconds is not None:
            for record in records.values():
                record["compile_seconds"] = self.compile_seconds  # inside "seconds": this epoch paid it
        return records

    def _diverged(self, i: int, epoch: int, step: int, loss: float, last_good: _Snapshot) -> None:
        member = self.members[i]
        last_good.restore(member.model, self.optimizers[i])
        member.diverged = (f"training diverged at epoch {epoch + 1}, step {step + 1}: the loss became {loss} "
                           f"(learning rate {self.config.lr:g} too high? try {self.config.lr / 10:g})")
