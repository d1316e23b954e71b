"""The trainer: learning, determinism, callbacks, KL warm-up, stopping, divergence, resume."""
from __future__ import annotations

import copy
import math
import threading
import time

import pytest
import torch

from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig, VAEConfig
from vae_core.datasets import load_dataset
from vae_core.metrics import evaluate
from vae_core.model import VAE
from vae_core.trainer import Callback, Trainer, TrainingDiverged, kl_weight

LATENT = 4
RECORD_KEYS = {"epoch", "loss", "recon", "kl", "elbo", "kl_per_dim", "test_elbo", "active_units"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def small_vae(seed: int = 0, **overrides) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=LATENT, hidden_sizes=(64, 32), **overrides))


def config(**overrides) -> TrainConfig:
    # Every epoch evaluated and saved, so records and checkpoints compare one to one; the time share
    # that spaces them out in real runs has tests of its own below.
    return TrainConfig(**{"epochs": 2, "batch_size": 128, "lr": 3e-3, "device": "cpu", "eval_time_share": 1e9,
                          **overrides})


def weights(model: VAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


class Recorder(Callback):
    def __init__(self):
        self.records, self.steps = [], []

    def on_step(self, trainer, step, loss):
        self.steps.append((step, loss))

    def on_epoch_end(self, trainer, record):
        self.records.append(record)


def test_training_improves_the_test_elbo(digits):
    model = small_vae()
    before = evaluate(model.eval(), digits.x_test, digits.y_test)["elbo"]
    history = Trainer(model, digits, config(epochs=5)).fit()
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    after = evaluate(model, digits.x_test, digits.y_test)["elbo"]
    assert after > before + 5  # nats per image: an untrained decoder is far from the data
    assert history[-1]["test_elbo"] > history[0]["test_elbo"]
    assert history[-1]["test_elbo"] == pytest.approx(after, abs=1e-4)  # the record is the metric, same seed
    assert not model.training  # fit() leaves the model ready for inference


def test_same_seed_same_weights_other_seed_other_weights(digits):
    init = small_vae()
    a, b, c = copy.deepcopy(init), copy.deepcopy(init), copy.deepcopy(init)
    Trainer(a, digits, config(seed=5)).fit()
    Trainer(b, digits, config(seed=5)).fit()
    Trainer(c, digits, config(seed=6)).fit()  # same start, other batch order and noise
    assert max_difference(weights(a), weights(b)) == 0
    assert max_difference(weights(a), weights(c)) > 1e-4
    assert max_difference(weights(a), weights(init)) > 1e-3  # training moved the weights at all


def test_epoch_records_reach_callbacks(digits):
    recorder = Recorder()
    history = Trainer(small_vae(), digits, config(epochs=2, batch_size=256), callbacks=[recorder]).fit()
    assert recorder.records == history and len(history) == 2
    n_batches = math.ceil(len(digits.x_train) / 256)
    assert [s for s, _ in recorder.steps] == list(range(n_batches)) * 2
    for epoch, record in enumerate(history, 1):
        assert RECORD_KEYS <= record.keys()
        assert record["epoch"] == epoch
        assert len(record["kl_per_dim"]) == LATENT and all(v >= 0 for v in record["kl_per_dim"])
        assert sum(record["kl_per_dim"]) == pytest.approx(record["kl"], rel=1e-5)
        assert record["elbo"] == pytest.approx(-(record["recon"] + record["kl"]), rel=1e-6)
        assert record["loss"] == pytest.approx(record["recon"] + record["kl"], rel=1e-5)  # beta 1, no warm-up
        assert record["elbo"] < 0 and record["test_elbo"] < 0  # Bernoulli log-likelihoods are <= 0
        assert isinstance(record["active_units"], int) and 0 <= record["active_units"] <= LATENT
    # the per-step losses average (by batch size) to the epoch's loss
    losses = [loss for _, loss in recorder.steps[:n_batches]]
    sizes = [min(256, len(digits.x_train) - 256 * i) for i in range(n_batches)]
    assert sum(l * s for l, s in zip(losses, sizes)) / sum(sizes) == pytest.approx(history[0]["loss"], rel=1e-6)


def test_kl_warmup_ramps_the_kl_weight_from_zero_to_beta(digits):
    model = small_vae(beta=2.0)
    betas = []
    original = model.loss_terms

    def spy(*args, kl_weight=1.0, **kwargs):
        if model.training:  # training steps, not the per-epoch test metrics (which use the true ELBO)
            betas.append(kl_weight * model.config.beta)
        return original(*args, kl_weight=kl_weight, **kwargs)

    model.loss_terms = spy
    trainer = Trainer(model, digits, config(epochs=4, kl_warmup_epochs=2, batch_size=512))
    history = trainer.fit()
    assert betas[0] == 0.0
    assert all(b2 >= b1 for b1, b2 in zip(betas, betas[1:])) and betas[-1] == 2.0
    assert 0 < betas[len(betas) // 4] < 2.0  # still ramping inside the first epoch
    assert [r["kl_weight"] for r in history] == pytest.approx([1.0, 2.0, 2.0, 2.0])
    assert kl_weight(model.config, trainer.config, 0, 0.0) == 0.0
    assert kl_weight(model.config, trainer.config, 1, 0.5) == pytest.approx(1.5)
    assert kl_weight(model.config, trainer.config, 7, 0.0) == 2.0


def test_no_warmup_trains_with_beta_throughout(digits):
    model = small_vae(beta=3.0)
    trainer = Trainer(model, digits, config(epochs=1))
    assert kl_weight(model.config, trainer.config, 0, 0.0) == 3.0
    record = trainer.fit()[0]
    assert record["loss"] == pytest.approx(record["recon"] + 3.0 * record["kl"], rel=1e-5)


def test_stop_event_from_a_callback_ends_the_run_after_that_epoch(digits, tmp_path):
    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                trainer.stop_event.set()

    trainer = Trainer(small_vae(), digits, config(epochs=10), callbacks=[StopAfterTwo()],
                      checkpoint_path=tmp_path / "run.safetensors")
    history = trainer.fit()
    assert trainer.stopped and len(history) == 2
    assert len(load_checkpoint(tmp_path / "run.safetensors").history) == 2


def test_stop_event_mid_epoch_discards_the_partial_epoch(digits):
    stop = threading.Event()

    class StopMidEpoch(Callback):
        def on_step(self, trainer, step, loss):
            if len(trainer.history) == 1 and step == 3:
                stop.set()

    trainer = Trainer(small_vae(), digits, config(epochs=5, batch_size=64), callbacks=[StopMidEpoch()],
                      stop_event=stop)
    history = trainer.fit()
    assert trainer.stopped and len(history) == 1 and not trainer.model.training


def test_a_run_that_finishes_is_not_stopped(digits):
    trainer = Trainer(small_vae(), digits, config(epochs=1))
    trainer.fit()
    assert not trainer.stopped


def test_huge_learning_rate_raises_training_diverged_and_keeps_the_last_good_weights(digits):
    model = small_vae()
    start = weights(model)
    with pytest.raises(TrainingDiverged) as info:
        Trainer(model, digits, config(epochs=3, lr=1e6)).fit()
    message = str(info.value)
    assert "diverged at epoch 1" in message and "learning rate" in message and "100000" in message
    assert all(torch.isfinite(w).all() for w in model.state_dict().values())
    assert max_difference(weights(model), start) == 0  # back to the weights before the bad epoch


def test_divergence_mid_run_keeps_the_last_good_epoch_and_its_checkpoint(digits, tmp_path):
    path = tmp_path / "run.safetensors"
    seen = {}

    class PoisonAfterTwo(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                seen["good"] = weights(trainer.model)
                seen["bytes"] = path.read_bytes()
                poisoned = trainer.x.clone()  # a copy: the dataset itself stays clean
                poisoned[:: 7] = float("nan")
                trainer.x = poisoned

    model = small_vae()
    trainer = Trainer(model, digits, config(epochs=4), callbacks=[PoisonAfterTwo()], checkpoint_path=path)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    assert "epoch 3" in str(info.value) and "checkpoint from epoch 2 was kept" in str(info.value)
    assert torch.isfinite(digits.x_train).all()
    assert len(trainer.history) == 2
    assert max_difference(weights(model), seen["good"]) == 0
    assert path.read_bytes() == seen["bytes"]  # the diverging epoch never wrote
    saved = load_checkpoint(path)
    assert len(saved.history) == 2 and saved.train_state["epoch"] == 2
    assert max_difference(weights(saved.model), seen["good"]) == 0


@pytest.mark.parametrize("architecture", ["mlp", "conv"])  # conv: channels-last weights, contiguous saved moments
def test_resume_continues_exactly_where_the_run_stopped(digits, tmp_path, architecture):
    straight = small_vae(architecture=architecture)
    init = weights(straight)
    full_history = Trainer(straight, digits, config(epochs=4, kl_warmup_epochs=3)).fit()

    path = tmp_path / "half.safetensors"
    first = small_vae(architecture=architecture)
    assert max_difference(weights(first), init) == 0
    Trainer(first, digits, config(epochs=2, kl_warmup_epochs=3), checkpoint_path=path).fit()
    half_way = path.read_bytes()
    saved = load_checkpoint(path)
    assert saved.optimizer_state is not None and saved.train_state["epoch"] == 2
    trainer = Trainer(saved.model, digits, config(epochs=4, kl_warmup_epochs=3), resume=saved,
                      checkpoint_path=path)
    assert trainer.start_epoch == 2
    history = trainer.fit()

    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    for key in ("loss", "test_elbo", "kl_weight"):
        assert [r[key] for r in history] == pytest.approx([r[key] for r in full_history], rel=1e-4)
    resumed = weights(saved.model)
    for name, value in weights(straight).items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-5)
    assert len(load_checkpoint(path).history) == 4

    # the saved Adam moments matter: the same resume without them lands somewhere else
    cold_path = tmp_path / "cold.safetensors"
    cold_path.write_bytes(half_way)
    cold = load_checkpoint(cold_path)
    cold.optimizer_state = None
    Trainer(cold.model, digits, config(epochs=4, kl_warmup_epochs=3), resume=cold).fit()
    assert max_difference(weights(cold.model), weights(straight)) > 1e-4


def test_resume_uses_the_new_learning_rate(digits, tmp_path):
    path = tmp_path / "run.safetensors"
    Trainer(small_vae(), digits, config(epochs=1), checkpoint_path=path).fit()
    saved = load_checkpoint(path)
    trainer = Trainer(saved.model, digits, config(epochs=2, lr=1e-4), resume=saved)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-4]


def test_resume_at_the_final_epoch_trains_nothing(digits, tmp_path):
    path = tmp_path / "run.safetensors"
    Trainer(small_vae(), digits, config(epochs=2), checkpoint_path=path).fit()
    saved = load_checkpoint(path)
    before = weights(saved.model)
    history = Trainer(saved.model, digits, config(epochs=2), resume=saved).fit()
    assert len(history) == 2 and max_difference(weights(saved.model), before) == 0


def test_conditional_model_trains_with_labels(digits):
    model = small_vae(num_classes=10)
    history = Trainer(model, digits, config(epochs=2)).fit()
    assert all(math.isfinite(r["test_elbo"]) for r in history)
    assert history[-1]["test_elbo"] > history[0]["test_elbo"]


class SlowTestMetrics(Trainer):
    """Evaluation that takes 40 ms: far longer than a digits epoch, as a big test split would be."""

    def _test_metrics(self) -> dict:
        time.sleep(0.04)
        return super()._test_metrics()


def test_evaluation_and_saves_take_at_most_their_share_of_the_run(digits, tmp_path):
    path = tmp_path / "run.safetensors"
    saves = []

    class Saves(Callback):
        def on_epoch_end(self, trainer, record):
            saves.append(load_checkpoint(path).train_state["epoch"] if path.exists() else None)

    trainer = SlowTestMetrics(small_vae(), digits, config(epochs=30, eval_time_share=0.1), callbacks=[Saves()],
                              checkpoint_path=path)
    history = trainer.fit()
    evaluated = [r["epoch"] for r in history if "test_elbo" in r]
    assert evaluated[0] == 1 and evaluated[-1] == 30 and len(evaluated) < 10
    assert all("loss" in r and "seconds" in r for r in history)  # every epoch still reaches the curves
    # The checkpoint on disk is always the last evaluated epoch's, with its scores.
    assert saves == [max(e for e in evaluated if e <= epoch) for epoch in range(1, 31)]
    saved = load_checkpoint(path)
    assert saved.train_state["epoch"] == 30 and len(saved.history) == 30
    assert saved.metrics["test_elbo"] == history[-1]["test_elbo"]


def test_a_run_stopped_after_an_unsaved_epoch_evaluates_and_saves_it(digits, tmp_path):
    path = tmp_path / "run.safetensors"

    class StopAfterThree(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 3:
                trainer.stop_event.set()  # after the epoch was (not) evaluated: the decision came first

    trainer = SlowTestMetrics(small_vae(), digits, config(epochs=10, eval_time_share=1e-9),
                              callbacks=[StopAfterThree()], checkpoint_path=path)
    history = trainer.fit()
    assert trainer.stopped and [("test_elbo" in r) for r in history] == [True, False, True]
    assert load_checkpoint(path).train_state["epoch"] == 3


def test_a_stop_mid_epoch_saves_the_last_whole_epoch_and_resumes_as_if_never_stopped(digits, tmp_path):
    path = tmp_path / "run.safetensors"
    straight = Trainer(small_vae(), digits, config(epochs=4, batch_size=64)).fit()
    stop = threading.Event()

    class StopInEpochThree(Callback):
        def on_step(self, trainer, step, loss):
            if len(trainer.history) == 2 and step == 5:
                stop.set()

    # Epoch 2 is neither evaluated nor saved when it ends; the stop inside epoch 3 rolls the weights and
    # Adam's moments back to the end of epoch 2 and saves them.
    Trainer(small_vae(), digits, config(epochs=4, batch_size=64, eval_time_share=1e-9),
            callbacks=[StopInEpochThree()], stop_event=stop, checkpoint_path=path).fit()
    saved = load_checkpoint(path)
    assert saved.train_state["epoch"] == 2 and "test_elbo" in saved.history[-1]
    history = Trainer(saved.model, digits, config(epochs=4, batch_size=64), resume=saved).fit()
    assert [r["loss"] for r in history] == pytest.approx([r["loss"] for r in straight], rel=1e-4)


def test_one_cycle_follows_torchs_one_cycle_lr_step_for_step(digits):
    cfg = config(lr=3e-3, lr_schedule="one-cycle")
    for total in (7, 40, 1000):
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.Adam([parameter], lr=cfg.lr)
        torch_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total,
                                                             cycle_momentum=False)
        for step in range(total):
            assert cfg.lr_at(step, total) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
            optimizer.step()
            torch_schedule.step()
    seen = []

    class LearningRates(Callback):
        def on_step(self, trainer, step, loss):
            seen.append(trainer.optimizer.param_groups[0]["lr"])

    Trainer(small_vae(), digits, config(epochs=3, batch_size=512, lr_schedule="one-cycle"),
            callbacks=[LearningRates()]).fit()
    steps = len(seen)
    assert seen == pytest.approx([cfg.lr_at(step, steps) for step in range(steps)], rel=1e-9)
    assert TrainConfig(lr=3e-3).lr_at(5, 10) == 3e-3  # constant


def test_bad_schedule_and_evaluation_share_are_refused():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="cosine-ish")
    for share in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="eval_time_share"):
            TrainConfig(eval_time_share=share)


def test_a_compiled_step_gives_the_eager_loss_and_gradients(digits):
    """Tolerance: 1e-5 relative on the loss and 1e-4 relative (1e-6 absolute) on every gradient: inductor
    fuses and reorders float32 sums, so the last bits differ."""
    trainer = Trainer(small_vae(), digits, config(compile=True))
    assert trainer.notes == []  # this machine has a compiler: the compiled path is the one under test
    x = digits.x_train[:96]
    eps = torch.randn(96, LATENT, generator=torch.Generator().manual_seed(1))
    found = []
    for forward_loss in (trainer._forward_loss, trainer.forward_loss):
        trainer.model.zero_grad(set_to_none=True)
        parts = forward_loss(x, None, eps, torch.tensor(0.5))
        parts["loss"].backward()
        found.append((parts["loss"].detach(), {k: p.grad.clone() for k, p in trainer.model.named_parameters()}))
    assert trainer.notes == [] and trainer.forward_loss.compiled is not None  # it did compile, and kept to it
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = found
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=0)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_compile_that_fails_or_cannot_run_leaves_the_run_eager_with_a_note(digits, monkeypatch):
    def broken_compile(function, **options):
        def fails(*args):
            raise RuntimeError("inductor could not build the kernel\nmore detail")
        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    trainer = Trainer(small_vae(), digits, config(compile=True))
    history = trainer.fit()
    assert len(history) == 2 and all(math.isfinite(r["loss"]) for r in history)
    assert trainer.notes == ["torch.compile failed (RuntimeError: inductor could not build the kernel): training eagerly"]
    assert "compile_seconds" in history[0]

    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    trainer = Trainer(small_vae(), digits, config(compile=True))
    assert len(trainer.fit()) == 2
    assert trainer.notes and "needs a C++ compiler" in trainer.notes[0] and "training eagerly" in trainer.notes[0]


def test_conv_models_train_channels_last_on_the_cpu_and_save_plain_tensors(tmp_path):
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=LATENT, architecture="conv", hidden_sizes=(8, 16)))
    path = tmp_path / "conv.safetensors"
    trainer = Trainer(model, data, config(epochs=2), checkpoint_path=path)
    conv_weights = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    trainer.fit()
    saved = load_checkpoint(path)
    assert max_difference(weights(saved.model), weights(trainer.model)) == 0
    # Resuming from it (Adam's moments stored contiguous, the weights channels-last again) trains on.
    more = Trainer(saved.model, data, config(epochs=3), resume=saved).fit()
    assert len(more) == 3 and math.isfinite(more[-1]["loss"])


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_adam_step_updates_exactly_as_torchs_fused_adam(architecture):
    """AdamStep calls torch's fused kernel itself: the weights and moments must match optimizer.step()
    bit for bit, through a change of learning rate, a state cleared (a stop restores a run that had not
    stepped) and a state loaded from a checkpoint."""
    from vae_core.trainer import AdamStep, _adam

    config = VAEConfig(input_shape=(1, 8, 8), latent_dim=3, architecture=architecture, hidden_sizes=(8,))
    torch.manual_seed(0)
    ours, theirs = VAE(config), VAE(config)
    theirs.load_state_dict(ours.state_dict())
    if architecture == "conv":  # as the Trainer keeps them on the CPU
        ours.to(memory_format=torch.channels_last), theirs.to(memory_format=torch.channels_last)
    our_adam, their_adam = _adam(ours.parameters(), 1e-2), _adam(theirs.parameters(), 1e-2)
    step = AdamStep(our_adam)
    x = torch.rand(16, 1, 8, 8)
    eps = torch.randn(16, 3)
    saved = None
    for i in range(8):
        for model, adam in ((ours, our_adam), (theirs, their_adam)):
            adam.zero_grad(set_to_none=True)
            model.loss(x, eps=eps * (i + 1))["loss"].backward()
            adam.param_groups[0]["lr"] = 1e-2 / (i + 1)
        step()
        their_adam.step()
        if i == 2:
            our_adam.state.clear(), their_adam.state.clear()
        if i == 4:
            saved = copy.deepcopy(their_adam.state_dict())
        if i == 5:
            our_adam.load_state_dict(copy.deepcopy(saved)), their_adam.load_state_dict(saved)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(a, b), f"step {i}"
    for a, b in zip(ours.parameters(), theirs.parameters()):
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(our_adam.state[a][name], their_adam.state[b][name])
    assert step.states and all(s is our_adam.state[p] for p, s in zip(step.params, step.states)), \
        "after the loaded state, AdamStep went on with the kernel on that state's lists"


def test_adam_step_leaves_other_optimisers_to_their_own_step():
    from vae_core.trainer import AdamStep

    w = torch.nn.Parameter(torch.ones(3))
    for optimizer in (torch.optim.Adam([w], lr=0.1, amsgrad=True, fused=True), torch.optim.Adam([w], lr=0.1),
                      torch.optim.SGD([w], lr=0.1)):
        step = AdamStep(optimizer)
        for _ in range(2):
            w.grad = torch.ones(3)
            before = w.detach().clone()
            step()
            assert not torch.equal(w, before)
        assert not step.states, "no lists taken: every step was torch's"
    # A fused Adam that loads the state of one that was not fused is not fused any more (torch takes the
    # group's settings from the state): its next steps are torch's again.
    fused = torch.optim.Adam([w], lr=0.1, fused=True)
    step = AdamStep(fused)
    for _ in range(2):
        w.grad = torch.ones(3)
        step()
    assert step.states
    plain = torch.optim.Adam([w], lr=0.1)
    w.grad = torch.ones(3)
    plain.step()
    fused.load_state_dict(plain.state_dict())
    w.grad = torch.ones(3)
    step()
    assert not step.states
