"""The trainer: learning, determinism, callbacks, KL warm-up, stopping, divergence, resume."""
from __future__ import annotations

import copy
import math
import threading

import pytest
import torch

from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig, VAEConfig
from vae_core.datasets import load_dataset
from vae_core.metrics import evaluate
from vae_core.model import VAE
from vae_core.trainer import Callback, Trainer, TrainingDiverged

LATENT = 4
RECORD_KEYS = {"epoch", "loss", "recon", "kl", "elbo", "kl_per_dim", "test_elbo", "active_units"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def small_vae(seed: int = 0, **overrides) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=LATENT, hidden_sizes=(64, 32), **overrides))


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 128, "lr": 3e-3, "device": "cpu", **overrides})


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
    assert trainer.kl_weight(0, 0.0) == 0.0 and trainer.kl_weight(1, 0.5) == pytest.approx(1.5)
    assert trainer.kl_weight(7, 0.0) == 2.0


def test_no_warmup_trains_with_beta_throughout(digits):
    model = small_vae(beta=3.0)
    trainer = Trainer(model, digits, config(epochs=1))
    assert trainer.kl_weight(0, 0.0) == 3.0
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


def test_resume_continues_exactly_where_the_run_stopped(digits, tmp_path):
    straight = small_vae()
    init = weights(straight)
    full_history = Trainer(straight, digits, config(epochs=4, kl_warmup_epochs=3)).fit()

    path = tmp_path / "half.safetensors"
    first = small_vae()
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
