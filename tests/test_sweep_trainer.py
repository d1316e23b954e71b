"""A β sweep in one run: each member is the run a plain Trainer trains at its β, whichever engine steps it;
a member that diverges stops alone; the checkpoints resume and form a sweep for the Choosing β page."""
from __future__ import annotations

import pytest
import torch

from vae_core.beta_sweep import beta_sweep
from vae_core.checkpoint import load_checkpoint
from vae_core.cli import main
from vae_core.config import TrainConfig, VAEConfig
from vae_core.datasets import load_dataset
from vae_core.model import VAE
from vae_core.sweep_trainer import SweepCallback, SweepTrainer, choose_engine
from vae_core.trainer import Trainer

BETAS = (0.5, 1.0, 4.0)
# vmap's batched kernels (bmm, grouped convolutions) sum in another order than the plain ones: after a few
# epochs of Adam the stacked engine's weights differ from separate runs by ~1e-5 (6e-6 measured for the
# MLP, 7e-8 for the conv net); the looped engine runs the very same kernels and matches exactly.
STACKED_ATOL = 1e-4


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def models(betas=BETAS, **overrides) -> list[VAE]:
    """One model per β, from the same initial weights (as Recipe.build_model gives them)."""
    fields = {"input_shape": (1, 8, 8), "latent_dim": 4, "hidden_sizes": (32, 16)} | overrides
    built = []
    for beta in betas:
        torch.manual_seed(0)
        built.append(VAE(VAEConfig(beta=beta, **fields)))
    return built


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 256, "lr": 3e-3, "device": "cpu", "kl_warmup_epochs": 1,
                          **overrides})


def separate_run(model: VAE, data, train_config: TrainConfig, path=None) -> list[dict]:
    return Trainer(model, data, train_config, checkpoint_path=path).fit()


def assert_same_weights(a: VAE, b: VAE, atol: float) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("engine, overrides", [
    ("stacked", {}),
    ("looped", {}),
    ("stacked", {"objective": "beta-tcvae", "num_classes": 10}),  # labels and the TC estimate under vmap
    ("stacked", {"architecture": "conv", "hidden_sizes": (8, 16)}),
    ("looped", {"architecture": "conv", "hidden_sizes": (8, 16)}),
])
def test_each_member_ends_where_its_separate_run_ends(digits, engine, overrides):
    sweep = SweepTrainer(models(**overrides), digits, config(), engine=engine)
    members = sweep.fit()
    assert sweep.engine_name == engine and [m.beta for m in members] == list(BETAS)
    atol = STACKED_ATOL if engine == "stacked" else 0.0
    for member, alone in zip(members, models(**overrides)):
        history = separate_run(alone, digits, config())
        assert member.error is None and len(member.history) == 3
        assert_same_weights(member.model, alone, atol)
        for key in ("loss", "kl", "kl_weight", "test_elbo"):
            assert member.history[-1][key] == pytest.approx(history[-1][key], rel=1e-4, abs=1e-4), key
    if "objective" not in overrides:  # β weighs the KL: the larger β, the smaller the KL they end with
        kls = [m.history[-1]["kl"] for m in members]
        assert kls == sorted(kls, reverse=True) and kls[0] > kls[-1] + 0.1


def test_auto_stacks_mlps_and_gpu_runs_and_loops_conv_nets_on_the_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_engine("auto", "mlp", cpu) == "stacked"
    assert choose_engine("auto", "conv", cpu) == "looped"
    assert choose_engine("auto", "conv", cuda) == "stacked"
    assert choose_engine("looped", "mlp", cpu) == "looped"
    with pytest.raises(ValueError, match="engine must be one of"):
        choose_engine("vmap", "mlp", cpu)


class Poison(SweepCallback):
    """Sets one weight of the member at β to NaN after epoch 2, as an exploding step would."""

    def __init__(self, beta: float):
        self.beta, self.records = beta, []

    def on_epoch_end(self, sweep, records):
        self.records.append(sorted(records))
        if len(self.records) == 2:
            k = [sweep.members[i].beta for i in sweep.training].index(self.beta)
            with torch.no_grad():
                if sweep.engine_name == "stacked":
                    sweep.engine.params[0][k].fill_(float("nan"))
                else:
                    next(sweep.engine.models[k].parameters()).fill_(float("nan"))


@pytest.mark.parametrize("engine", ["stacked", "looped"])
def test_a_member_that_diverges_stops_with_its_reason_and_the_others_go_on(digits, tmp_path, engine):
    paths = [tmp_path / f"m-beta-{b:g}.safetensors" for b in BETAS]
    poison = Poison(1.0)
    # Scored after the first and the last epoch only: epoch 2, its last whole one, is saved when it diverges.
    members = SweepTrainer(models(), digits, config(epochs=4, eval_time_share=1e-9), checkpoint_paths=paths,
                           callbacks=[poison], engine=engine).fit()
    bad = members[1]
    assert bad.error.startswith("β = 1: training diverged at epoch 3, step 1: the loss became nan")
    assert bad.error.endswith("its last whole epoch (2) was saved")
    assert len(bad.history) == 2 and load_checkpoint(paths[1]).train_state["epoch"] == 2
    assert all(torch.isfinite(t).all() for t in load_checkpoint(paths[1]).model.state_dict().values())
    assert poison.records == [list(BETAS), list(BETAS), [0.5, 4.0], [0.5, 4.0]]
    # The others trained on, undisturbed: each where its separate run ends.
    for index in (0, 2):
        alone = models()[index]
        separate_run(alone, digits, config(epochs=4))
        assert members[index].error is None and load_checkpoint(paths[index]).train_state["epoch"] == 4
        assert_same_weights(load_checkpoint(paths[index]).model, alone, STACKED_ATOL if engine == "stacked" else 0.0)


class StopAfter(SweepCallback):
    def __init__(self, epochs: int):
        self.epochs, self.seen = epochs, 0

    def on_epoch_end(self, sweep, records):
        self.seen += 1
        if self.seen == self.epochs:
            sweep.stop_event.set()


@pytest.mark.parametrize("engine", ["stacked", "looped"])
def test_a_stopped_sweeps_checkpoints_resume_as_their_separate_runs(digits, tmp_path, engine):
    """The members' checkpoints hold their own Adam moments: resumed alone by the Trainer, each ends where
    an uninterrupted separate run ends."""
    paths = [tmp_path / f"m-beta-{b:g}.safetensors" for b in BETAS]
    sweep = SweepTrainer(models(), digits, config(epochs=4, eval_time_share=1e-9), checkpoint_paths=paths,
                         callbacks=[StopAfter(2)], engine=engine)
    sweep.fit()
    assert sweep.stopped
    for path, alone in zip(paths, models()):
        saved = load_checkpoint(path)
        assert saved.train_state["epoch"] == 2 and saved.optimizer_state
        Trainer(saved.model, digits, config(epochs=4), resume=saved).fit()
        separate_run(alone, digits, config(epochs=4))
        assert_same_weights(saved.model, alone, STACKED_ATOL if engine == "stacked" else 1e-6)


@pytest.mark.slow
def test_a_compiled_stacked_sweep_trains_as_the_eager_one(digits):
    """Tolerance: inductor fuses and reorders float32 sums (see test_trainer's compiled step), and after an
    epoch of Adam steps the weights differ by up to 1e-4."""
    eager = SweepTrainer(models(), digits, config(epochs=1), engine="stacked").fit()
    sweep = SweepTrainer(models(), digits, config(epochs=1, compile=True), engine="stacked")
    compiled = sweep.fit()
    assert sweep.notes == [] and sweep.compile_seconds > 0, "it did compile"
    assert compiled[0].history[0]["compile_seconds"] == sweep.compile_seconds
    assert "compile_seconds" not in eager[0].history[0]
    for a, b in zip(eager, compiled):
        assert_same_weights(b.model, a.model, 1e-3)
        assert b.history[-1]["loss"] == pytest.approx(a.history[-1]["loss"], rel=1e-5)


def test_compile_falls_back_to_eager_with_a_note(digits, monkeypatch):
    looped = SweepTrainer(models(), digits, config(epochs=1, compile=True), engine="looped")
    assert len(looped.fit()[0].history) == 1 and looped.compile_seconds is None
    assert looped.notes == ["torch.compile compiles a stacked sweep's step only, and this one loops over its "
                            "members: training eagerly"]
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    stacked = SweepTrainer(models(), digits, config(epochs=1, compile=True), engine="stacked")
    assert len(stacked.fit()[0].history) == 1
    assert len(stacked.notes) == 1 and "needs a C++ compiler" in stacked.notes[0]


def test_a_sweep_is_one_recipe_of_a_vae(digits):
    with pytest.raises(ValueError, match="differ in β alone"):
        SweepTrainer(models((1.0,)) + models((2.0,), latent_dim=3), digits, config())
    with pytest.raises(ValueError, match="no β to sweep"):
        SweepTrainer(models((1.0, 2.0), objective="ae"), digits, config())
    with pytest.raises(ValueError, match="each β once"):
        SweepTrainer(models((1.0, 1.0)), digits, config())
    with pytest.raises(ValueError, match="does not clip gradients"):
        SweepTrainer(models(), digits, config(grad_clip=1.0))


def test_the_cli_trains_a_sweep_into_one_checkpoint_per_beta(tmp_path, capsys):
    out = tmp_path / "sweep" / "digits.safetensors"
    argv = ["train", "--dataset", "digits", "--latent-dim", "4", "--hidden", "32", "--epochs", "3", "--quiet",
            "--beta", "4", "0.5", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    written = {p.name: load_checkpoint(p) for p in sorted(out.parent.iterdir())}
    assert list(written) == ["digits-beta-0.5.safetensors", "digits-beta-1.safetensors", "digits-beta-4.safetensors"]
    assert [c.config.beta for c in written.values()] == [0.5, 1.0, 4.0]
    assert all(f"saved {out.parent / name}: β = " in printed for name in written)
    # One run's checkpoints are one sweep for the Choosing β page.
    name, ckpt = next(iter(written.items()))
    assert [p.beta for p in beta_sweep((name, ckpt), written)] == [0.5, 1.0, 4.0]
    # Each is the run `train --beta B` makes alone.
    alone = tmp_path / "alone.safetensors"
    assert main(argv[:-6] + ["--beta", "4", "--out", str(alone)]) == 0
    assert_same_weights(written["digits-beta-4.safetensors"].model, load_checkpoint(alone).model, STACKED_ATOL)
    # Nothing is overwritten unasked, and what cannot be a sweep is refused in one line.
    assert main(argv) == 2 and "exist: pass --force to overwrite" in capsys.readouterr().err
    for extra, message in ((["--resume"], "--resume continues one run"),
                           (["--objective", "ae", "--force"], "no KL term, so no β to sweep"),
                           (["--beta", "1", "1.0000001", "--force"], "would share a file name")):
        assert main(argv + extra) == 2
        assert message in capsys.readouterr().err

