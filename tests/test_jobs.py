"""The training queue (vae_core.jobs) and what it is built on (recipe, publish, threads, the datasets a
server offers): runs, waits its turn, stops, diverges, saves safely, and shows each person only their
own jobs. Tiny digits models: every run here takes about a second."""
from __future__ import annotations

import hashlib
import math
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from vae_core import datasets, jobs, publish, recipe, threads
from vae_core.checkpoint import load_checkpoint
from vae_core.jobs import JobQueue, QueueError
from vae_core.recipe import Recipe
from vae_core.sweep_trainer import SweepCallback, SweepTrainer
from vae_core.trainer import Callback, Trainer

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(dataset="digits", latent_dim=2, hidden_sizes=(16,), epochs=2, batch_size=256)
TIMEOUT = 120  # seconds any one job may take on a slow, busy CI machine
PNG = b"\x89PNG\r\n\x1a\n"


def tiny(**overrides) -> Recipe:
    return Recipe(**{**TINY, **overrides})


@pytest.fixture
def folder(tmp_path) -> Path:
    """The models folder, holding one existing model that nothing may overwrite."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(ROOT / "checkpoints" / "digits-vae.safetensors", folder)
    return folder


@pytest.fixture
def make_queue(folder):
    """JobQueue(folder=the temp folder, cpu); every queue made is shut down (bounded) afterwards."""
    made = []

    def make(**kwargs) -> JobQueue:
        queue = JobQueue(**{"folder": folder, "device": "cpu", **kwargs})
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.shutdown(timeout=30)


class _Gate:
    """Runs that pause after every epoch (and, if asked, before their first step) until the test lets
    them go on: the test decides when epochs end, no sleeping and hoping."""

    def __init__(self, pause_before_first_step: bool = False):
        self.permits = threading.Semaphore(0)
        self.reached = threading.Semaphore(0)
        self.pause_before_first_step = pause_before_first_step
        self.trainers: list = []

    def _pause(self):
        self.reached.release()
        assert self.permits.acquire(timeout=TIMEOUT), "the test never let the run go on"

    def wait_reached(self):
        assert self.reached.acquire(timeout=TIMEOUT), "the run did not get there in time"

    def go_on(self, times: int = 1):
        self.permits.release(times)

    def run_freely(self):
        self.go_on(10_000)


class Stepper(_Gate, Callback):
    """A trainer_factory whose runs pause (see _Gate)."""

    def __call__(self, *args, **kwargs) -> Trainer:
        trainer = Trainer(*args, **kwargs)
        trainer.callbacks.append(self)  # after the job's own callback, which has recorded the epoch
        self.trainers.append(trainer)
        return trainer

    def on_step(self, trainer, step, loss):
        if self.pause_before_first_step and step == 0 and not trainer.history:
            self._pause()

    def on_epoch_end(self, trainer, record):
        self._pause()


class SweepStepper(_Gate, SweepCallback):
    """A sweep_trainer_factory whose β sweeps pause after every epoch (see _Gate)."""

    def __call__(self, *args, **kwargs) -> SweepTrainer:
        sweep = SweepTrainer(*args, **kwargs)
        sweep.callbacks.append(self)
        self.trainers.append(sweep)
        return sweep

    def on_epoch_end(self, sweep, records):
        self._pause()


def files(folder: Path) -> set[str]:
    """The models folder's files, and any run's leftovers in its training line (tickets, partial
    checkpoints, temporary files); the line's lock files may stay."""
    line = folder / ".training"
    leftovers = {f".training/{p.name}" for p in line.iterdir() if not p.name.endswith(".lock")} if line.exists() else set()
    return {p.name for p in folder.iterdir() if p != line} | leftovers


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_tiny_digits_job_runs_to_done_and_its_checkpoint_loads(make_queue, folder):
    queue = make_queue()
    job_id = queue.submit(tiny(conditional=True, name="my first vae"), owner="ann")
    view = queue.wait(job_id, TIMEOUT)
    assert view.status == jobs.DONE, view.error
    assert view.error is None and view.progress == 1.0 and view.epoch == 2 and view.position is None
    assert view.checkpoint_path == folder / "my-first-vae.safetensors"
    ckpt = load_checkpoint(view.checkpoint_path)
    assert ckpt.config.latent_dim == 2 and ckpt.config.hidden_sizes == (16,)
    assert ckpt.config.num_classes == 10, "conditional on the ten digit classes"
    assert ckpt.dataset["name"] == "digits" and len(ckpt.history) == 2
    assert view.grid_png.startswith(PNG)
    assert files(folder) == {"digits-vae.safetensors", "my-first-vae.safetensors"}, "no temporary file left behind"


def test_history_records_arrive_per_epoch(make_queue):
    stepper = Stepper()
    queue = make_queue(trainer_factory=stepper)
    job_id = queue.submit(tiny(epochs=3), owner="ann")
    grids = []
    for epoch in (1, 2, 3):
        stepper.wait_reached()  # the run is paused right after this epoch's records went out
        view = queue.view(job_id, "ann")
        assert view.status == jobs.RUNNING and view.position == 0
        assert [r["epoch"] for r in view.history] == list(range(1, epoch + 1))
        assert {"elbo", "recon", "kl"} <= set(view.history[-1])
        if epoch in (1, 3):  # the first and the last epoch are always scored on the test set; others by time
            assert "test_elbo" in view.history[-1]
        assert view.epoch == epoch and view.progress == pytest.approx(epoch / 3)
        assert view.seconds_per_epoch > 0
        grids.append(view.grid_png)
        stepper.go_on()
    assert all(g.startswith(PNG) for g in grids)
    assert len(set(grids)) == 3, "the picture grid is redrawn after every epoch"
    view = queue.wait(job_id, TIMEOUT)
    assert view.status == jobs.DONE and len(view.history) == 3


def test_a_second_job_waits_behind_the_first_and_runs_after_it(make_queue):
    stepper = Stepper()
    queue = make_queue(trainer_factory=stepper)
    first = queue.submit(tiny(), owner="ann")
    stepper.wait_reached()
    second = queue.submit(tiny(), owner="bob")
    third = queue.submit(tiny(), owner="cat")
    assert queue.view(first, "ann").position == 0
    assert queue.view(second, "bob").status == jobs.QUEUED
    assert queue.view(second, "bob").position == 1
    assert queue.view(third, "cat").position == 2
    assert queue.counts() == (1, 2)
    assert len(stepper.trainers) == 1, "one run at a time: the others have not started"
    stepper.run_freely()
    views = [queue.wait(j, TIMEOUT) for j in (first, second, third)]
    assert [v.status for v in views] == [jobs.DONE] * 3
    assert views[0].finished <= views[1].started and views[1].finished <= views[2].started, "in order, one by one"
    assert queue.counts() == (0, 0)


def test_a_beta_sweep_trains_its_betas_together_in_one_place_in_the_line(make_queue, folder):
    sweeps = SweepStepper()
    queue = make_queue(sweep_trainer_factory=sweeps)
    ids = queue.submit_all([tiny(beta=b) for b in (2.0, 0.5, 1.0)], owner="ann")
    sweeps.wait_reached()  # after the sweep's first epoch
    views = [queue.view(i, "ann") for i in ids]
    assert [v.options.beta for v in views] == [0.5, 1.0, 2.0], "ids in β order"
    assert [(v.status, v.position, v.epoch) for v in views] == [(jobs.RUNNING, 0, 1)] * 3, "all three train at once"
    assert len({v.started for v in views}) == 1 and len(sweeps.trainers) == 1
    assert len({v.grid_png for v in views}) == 3, "each β's own pictures"
    assert {v.history[0]["kl_weight"] for v in views} == {0.5, 1.0, 2.0}
    with pytest.raises(jobs.QueueError, match="already have a run"):
        queue.submit(tiny(), owner="ann")  # the sweep is ann's one turn until it ends
    other = queue.submit(tiny(), owner="bob")
    assert queue.view(other, "bob").position == 1, "the sweep stands in the line once"
    assert queue.counts() == (1, 1)
    sweeps.run_freely()
    views = [queue.wait(i, TIMEOUT) for i in ids]
    assert [v.status for v in views] == [jobs.DONE] * 3
    saved = [load_checkpoint(v.checkpoint_path) for v in views]
    assert [c.config.beta for c in saved] == [0.5, 1.0, 2.0] and all(len(c.history) == 2 for c in saved)
    assert len({v.checkpoint_path for v in views}) == 3
    assert queue.wait(other, TIMEOUT).status == jobs.DONE
    assert len(files(folder)) == 1 + 3 + 1, "three βs and bob's run, no partial checkpoint left"


def test_a_sweep_takes_one_slot_however_many_betas_it_has(make_queue):
    stepper, sweeps = Stepper(), SweepStepper()
    queue = make_queue(trainer_factory=stepper, sweep_trainer_factory=sweeps, max_concurrent=2)
    ids = queue.submit_all([tiny(beta=b) for b in (0.5, 2.0, 4.0)], owner="ann")
    bob = queue.submit(tiny(), owner="bob")
    cat = queue.submit(tiny(), owner="cat")
    sweeps.wait_reached()
    stepper.wait_reached()
    assert [queue.view(i, "ann").status for i in ids] == [jobs.RUNNING] * 3
    assert queue.view(bob, "bob").status == jobs.RUNNING, "bob takes the second slot"
    assert queue.view(cat, "cat").position == 1
    stepper.run_freely()
    sweeps.run_freely()
    assert {queue.wait(i, TIMEOUT).status for i in (*ids, bob, cat)} == {jobs.DONE}


def test_a_sweep_is_one_recipe_queued_whole_or_not_at_all(make_queue):
    queue = make_queue()
    with pytest.raises(jobs.QueueError, match="at most 8 runs"):
        queue.submit_all([tiny(beta=b) for b in range(1, 10)], owner="ann")
    with pytest.raises(jobs.QueueError, match="epochs must be at most"):
        queue.submit_all([tiny(epochs=10_000), tiny(beta=2.0, epochs=10_000)], owner="ann")
    with pytest.raises(jobs.QueueError, match="must be one recipe"):
        queue.submit_all([tiny(), tiny(beta=2.0, latent_dim=3)], owner="ann")
    with pytest.raises(jobs.QueueError, match="each β once, and an autoencoder has no β"):
        queue.submit_all([tiny(), tiny(name="again")], owner="ann")
    with pytest.raises(jobs.QueueError, match="an autoencoder has no β"):
        queue.submit_all([tiny(objective="ae"), tiny(objective="ae", beta=2.0)], owner="ann")
    assert queue.counts() == (0, 0), "nothing of a refused sweep was queued"


def test_stopping_a_sweep_stops_every_beta_and_keeps_their_finished_epochs(make_queue, folder):
    sweeps = SweepStepper()
    queue = make_queue(sweep_trainer_factory=sweeps)
    ids = queue.submit_all([tiny(beta=b, epochs=50) for b in (1.0, 4.0)], owner="ann")
    sweeps.wait_reached()  # after epoch 1
    assert queue.stop(ids[1], "ann")
    sweeps.run_freely()
    views = [queue.wait(i, TIMEOUT) for i in ids]
    assert [(v.status, v.epoch) for v in views] == [(jobs.STOPPED, 1)] * 2
    assert [len(load_checkpoint(v.checkpoint_path).history) for v in views] == [1, 1]


def test_a_queued_sweep_leaves_the_queue_whole(make_queue):
    stepper, sweeps = Stepper(), SweepStepper()
    queue = make_queue(trainer_factory=stepper, sweep_trainer_factory=sweeps)
    first = queue.submit(tiny(), owner="bob")
    stepper.wait_reached()
    ids = queue.submit_all([tiny(beta=b) for b in (1.0, 4.0)], owner="ann")
    assert [queue.view(i, "ann").position for i in ids] == [1, 1]
    assert queue.stop(ids[1], "ann")
    assert [(queue.view(i, "ann").status, queue.view(i, "ann").started) for i in ids] == [(jobs.STOPPED, None)] * 2
    assert queue.counts() == (1, 0)
    stepper.run_freely()
    assert queue.wait(first, TIMEOUT).status == jobs.DONE and not sweeps.trainers


class PoisonBeta(SweepCallback):
    """Turns a weight of the member at β into NaN after epoch 2, as an exploding step would."""

    def __init__(self, beta: float):
        self.beta = beta

    def on_epoch_end(self, sweep, records):
        if next(iter(records.values()))["epoch"] == 2:
            k = [sweep.members[i].beta for i in sweep.training].index(self.beta)
            with torch.no_grad():
                sweep.engine.params[0][k].fill_(math.nan)  # digits MLPs: the stacked engine


def test_one_beta_of_a_sweep_diverges_alone_and_says_so_at_once(make_queue, folder):
    sweeps = SweepStepper()

    def factory(*args, **kwargs):
        sweep = sweeps(*args, **kwargs)
        sweep.callbacks.insert(0, PoisonBeta(2.0))  # before the job's callback, which reports the epoch
        return sweep

    queue = make_queue(sweep_trainer_factory=factory)
    ids = queue.submit_all([tiny(beta=b, epochs=5, name="sweep") for b in (0.5, 2.0)], owner="ann")
    for _ in range(3):
        sweeps.wait_reached()
        sweeps.go_on()
    sweeps.wait_reached()  # after epoch 4: β = 2 diverged in epoch 3
    good, bad = [queue.view(i, "ann") for i in ids]
    assert (good.status, good.epoch, good.error) == (jobs.RUNNING, 4, None)
    assert bad.status == jobs.RUNNING and bad.epoch == 2, "published with the others, when the sweep ends"
    assert bad.error.startswith("Training diverged at epoch 3, step 1")
    sweeps.run_freely()
    good, bad = [queue.wait(i, TIMEOUT) for i in ids]
    assert good.status == jobs.DONE and good.epoch == 5
    assert bad.status == jobs.DIVERGED and bad.error.startswith("Training diverged at epoch 3, step 1")
    assert bad.error.endswith("The last good epoch (2) was saved.") and "β" not in bad.error
    assert len(load_checkpoint(bad.checkpoint_path).history) == 2
    assert all(torch.isfinite(w).all() for w in load_checkpoint(bad.checkpoint_path).model.state_dict().values())


def test_a_sweep_counts_as_one_of_a_persons_runs(make_queue):
    sweeps = SweepStepper()
    queue = make_queue(sweep_trainer_factory=sweeps, max_active_per_owner=2, max_concurrent=2)
    queue.submit_all([tiny(beta=b) for b in (0.5, 1.0, 2.0)], owner="ann")
    second = queue.submit(tiny(), owner="ann")
    with pytest.raises(jobs.QueueError, match="already have a run"):
        queue.submit(tiny(), owner="ann")
    sweeps.run_freely()
    assert queue.wait(second, TIMEOUT).status == jobs.DONE


def test_two_at_a_time_when_configured(make_queue):
    stepper = Stepper()
    queue = make_queue(trainer_factory=stepper, max_concurrent=2)
    ids = [queue.submit(tiny(), owner=name) for name in ("ann", "bob", "cat")]
    stepper.wait_reached()
    stepper.wait_reached()  # both first runs reached their first epoch's end: they train side by side
    assert queue.counts() == (2, 1) and queue.view(ids[2], "cat").position == 1
    stepper.run_freely()
    assert all(queue.wait(j, TIMEOUT).status == jobs.DONE for j in ids)


def test_stop_a_queued_job(make_queue):
    stepper = Stepper()
    queue = make_queue(trainer_factory=stepper)
    first = queue.submit(tiny(), owner="ann")
    stepper.wait_reached()
    second = queue.submit(tiny(), owner="bob")
    third = queue.submit(tiny(), owner="cat")
    assert not queue.stop(second, "cat"), "only its owner may stop a job"
    assert queue.view(second, "bob").status == jobs.QUEUED
    assert queue.stop(second, "bob")
    stopped = queue.view(second, "bob")
    assert stopped.status == jobs.STOPPED and stopped.position is None and stopped.checkpoint_path is None
    assert queue.view(third, "cat").position == 1, "the line moves up"
    assert not queue.stop(second, "bob"), "already finished"
    stepper.run_freely()
    assert queue.wait(third, TIMEOUT).status == jobs.DONE
    assert len(stepper.trainers) == 2, "the stopped job never trained"
    assert queue.wait(first, TIMEOUT).status == jobs.DONE


def test_stop_a_running_job_keeps_its_finished_epochs(make_queue, folder):
    stepper = Stepper()
    queue = make_queue(trainer_factory=stepper)
    job_id = queue.submit(tiny(epochs=50, name="stopped run"), owner="ann")
    stepper.wait_reached()  # paused after epoch 1
    assert queue.stop(job_id, "ann")
    stepper.run_freely()
    view = queue.wait(job_id, TIMEOUT)
    assert view.status == jobs.STOPPED and view.epoch == 1 and view.error is None
    assert view.checkpoint_path == folder / "stopped-run.safetensors"
    assert len(load_checkpoint(view.checkpoint_path).history) == 1


def test_stop_a_running_job_before_its_first_epoch_saves_nothing(make_queue, folder):
    stepper = Stepper(pause_before_first_step=True)
    queue = make_queue(trainer_factory=stepper)
    before = files(folder)
    job_id = queue.submit(tiny(epochs=5), owner="ann")
    stepper.wait_reached()  # inside the first step of epoch 1
    assert queue.view(job_id, "ann").status == jobs.RUNNING
    assert queue.stop(job_id, "ann")
    stepper.run_freely()
    view = queue.wait(job_id, TIMEOUT)
    assert view.status == jobs.STOPPED and view.epoch == 0 and view.checkpoint_path is None
    assert files(folder) == before


def test_a_diverging_run_says_so_and_leaves_no_file(make_queue, folder):
    queue = make_queue()
    before = {p.name: digest(p) for p in folder.iterdir() if p.is_file()}
    view = queue.wait(queue.submit(tiny(lr=1e6), owner="ann"), TIMEOUT)
    assert files(folder) == set(before)
    assert view.status == jobs.DIVERGED
    assert "diverged" in view.error and "learning rate" in view.error
    assert "nothing was saved" in view.error
    assert view.checkpoint_path is None
    assert {p.name: digest(p) for p in folder.iterdir() if p.is_file()} == before, "no new, broken or temporary file"


class PoisonAfterFirstEpoch(Callback):
    """Turns a weight into NaN after epoch 1, so epoch 2 diverges through the Trainer's real guard."""

    def on_epoch_end(self, trainer, record):
        if record["epoch"] == 1:
            with torch.no_grad():
                trainer.model.to_mu.weight.fill_(math.nan)


def test_divergence_after_a_good_epoch_keeps_that_epoch(make_queue, folder):
    def factory(*args, **kwargs):
        trainer = Trainer(*args, **kwargs)
        trainer.callbacks.append(PoisonAfterFirstEpoch())
        return trainer

    queue = make_queue(trainer_factory=factory)
    view = queue.wait(queue.submit(tiny(epochs=4, name="almost"), owner="ann"), TIMEOUT)
    assert view.status == jobs.DIVERGED
    assert "epoch 2" in view.error and "last good epoch (1) was saved" in view.error
    assert view.checkpoint_path == folder / "almost.safetensors"
    ckpt = load_checkpoint(view.checkpoint_path)
    assert len(ckpt.history) == 1
    assert all(torch.isfinite(w).all() for w in ckpt.model.state_dict().values()), "the good weights, not the NaNs"
    assert files(folder) == {"digits-vae.safetensors", "almost.safetensors"}


def test_names_are_sanitised_and_never_overwrite_a_model(make_queue, folder):
    queue = make_queue(max_concurrent=2, max_active_per_owner=3)
    original = digest(folder / "digits-vae.safetensors")
    names = ["../digits-vae", "../../evil name!.safetensors", "digits-vae", ""]
    ids = [queue.submit(tiny(name=name), owner="ann") for name in names[:3]]
    ids.append(queue.submit(tiny(name=names[3]), owner="bob"))
    views = [queue.wait(j, TIMEOUT) for j in ids]
    assert all(v.status == jobs.DONE for v in views), [v.error for v in views]
    saved = [v.checkpoint_path for v in views]
    assert all(p.parent == folder for p in saved), "nothing lands outside the models folder"
    assert {p.name for p in saved[:3]} == {"digits-vae-2.safetensors", "digits-vae-3.safetensors",
                                          "evil-name.safetensors"}
    assert saved[3].name == "digits-vae-mlp-z2.safetensors", "an empty name gets a descriptive default"
    assert digest(folder / "digits-vae.safetensors") == original, "the existing model is untouched"
    assert len(set(saved)) == 4
    assert not list(folder.parent.glob("*.safetensors")) and not (folder.parent / "evil name!.safetensors").exists()


def test_publish_picks_the_next_name_when_the_first_is_taken(tmp_path):
    temporary = tmp_path / ".train-x.partial"
    temporary.write_bytes(b"new")
    (tmp_path / "model.safetensors").write_bytes(b"old")
    path = publish.publish(temporary, "model", tmp_path)
    assert path == tmp_path / "model-2.safetensors" and path.read_bytes() == b"new"
    assert (tmp_path / "model.safetensors").read_bytes() == b"old"
    assert not temporary.exists()


def test_each_person_sees_and_controls_only_their_own_jobs(make_queue):
    stepper = Stepper()
    queue = make_queue(trainer_factory=stepper)
    job_id = queue.submit(tiny(), owner="ann")
    assert queue.view(job_id, "bob") is None
    assert not queue.stop(job_id, "bob")
    assert queue.view("no-such-id", "ann") is None and queue.view(None, "ann") is None
    stepper.run_freely()
    assert queue.wait(job_id, TIMEOUT).status == jobs.DONE


def test_one_active_run_per_person_and_a_bounded_queue(make_queue):
    stepper = Stepper()
    queue = make_queue(trainer_factory=stepper, max_waiting=1)
    first = queue.submit(tiny(), owner="ann")
    with pytest.raises(QueueError, match="already have a run"):
        queue.submit(tiny(), owner="ann")
    stepper.wait_reached()
    queue.submit(tiny(), owner="bob")
    with pytest.raises(QueueError, match="queue is full"):
        queue.submit(tiny(), owner="cat")
    stepper.run_freely()
    assert queue.wait(first, TIMEOUT).status == jobs.DONE
    queue.submit(tiny(), owner="ann")  # finished runs do not count against a person


def test_finished_jobs_are_pruned(make_queue):
    queue = make_queue(max_finished=2)
    ids = []
    for owner in ("ann", "bob", "cat"):
        ids.append(queue.submit(tiny(epochs=1), owner=owner))
        assert queue.wait(ids[-1], TIMEOUT).status == jobs.DONE
    assert queue.view(ids[0], "ann") is None, "the oldest finished job is forgotten"
    assert queue.view(ids[1], "bob") is not None and queue.view(ids[2], "cat") is not None
    expiring = make_queue(finished_ttl=0.0)
    job_id = expiring.submit(tiny(epochs=1), owner="ann")
    assert expiring.wait(job_id, TIMEOUT).status == jobs.DONE
    time.sleep(0.01)
    assert expiring.view(job_id, "ann") is None, "and so is one older than finished_ttl"


@pytest.mark.parametrize("bad", [
    {"epochs": 0}, {"dataset": "imagenet"}, {"dataset": None}, {"architecture": "external"}, {"hidden_sizes": (0,)},
    {"hidden_sizes": ()}, {"dense_sizes": (0,)}, {"lr": math.nan}, {"lr": 0.0}, {"beta": -1.0}, {"beta": math.inf},
    {"batch_size": 0}, {"holdout_class": -1}, {"kl_warmup": -1}, {"likelihood": "poisson"}, {"latent_dim": 2.5},
    {"epochs": math.inf}, {"latent_dim": math.nan}, {"holdout_class": True}, {"hidden_sizes": ("wide",)},
    {"objective": "wae"}, {"objective": None}, {"seed": -1},
])
def test_a_recipe_is_checked_when_it_is_made(bad):
    with pytest.raises(ValueError):
        tiny(**bad)


@pytest.mark.parametrize("beyond", [
    {"epochs": recipe.MAX_EPOCHS + 1}, {"latent_dim": recipe.MAX_LATENT + 1}, {"hidden_sizes": (8,) * 9},
    {"dense_sizes": (recipe.MAX_WIDTH + 1,)}, {"batch_size": recipe.MAX_BATCH + 1}, {"dataset": "folder:/etc"},
    {"dataset": "npz:/tmp/x.npz"},
])
def test_the_queue_refuses_what_a_shared_server_does_not_train(make_queue, folder, beyond):
    """The command line may train anything valid; a shared server keeps to its limits and its own data."""
    assert tiny(**beyond).server_limits()
    with pytest.raises(QueueError):
        make_queue().submit(tiny(**beyond), owner="ann")
    assert files(folder) == {"digits-vae.safetensors"}


def test_one_recipe_gives_the_same_model_through_the_queue_and_by_hand(make_queue):
    queue = make_queue()
    view = queue.wait(queue.submit(tiny(epochs=1, seed=3), owner="ann"), TIMEOUT)
    assert view.status == jobs.DONE, view.error
    by_hand = tiny(epochs=1, seed=3)
    data = by_hand.load_data()
    model = by_hand.build_model(data)
    trainer = Trainer(model, data, by_hand.train_config(device="cpu"))
    trainer.fit()
    queued = load_checkpoint(view.checkpoint_path).model
    for (name, a), (_, b) in zip(model.state_dict().items(), queued.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5), name  # thread counts may order sums differently


def test_a_class_that_does_not_exist_fails_with_a_message(make_queue, folder):
    queue = make_queue()
    view = queue.wait(queue.submit(tiny(holdout_class=12), owner="ann"), TIMEOUT)
    assert view.status == jobs.FAILED and "no class 12" in view.error
    assert files(folder) == {"digits-vae.safetensors"}


def test_a_beta_tcvae_job_trains_that_objective(make_queue):
    queue = make_queue()
    view = queue.wait(queue.submit(tiny(epochs=1, objective="beta-tcvae", beta=4.0), owner="ann"), TIMEOUT)
    assert view.status == jobs.DONE, view.error
    assert view.checkpoint_path.name == "digits-tcvae-mlp-z2-b4.safetensors"
    config = load_checkpoint(view.checkpoint_path).config
    assert (config.objective, config.beta) == ("beta-tcvae", 4.0)


def test_holdout_class_is_left_out_of_training(make_queue):
    queue = make_queue()
    view = queue.wait(queue.submit(tiny(epochs=1, holdout_class=3), owner="ann"), TIMEOUT)
    assert view.status == jobs.DONE, view.error
    assert view.checkpoint_path.name == "digits-vae-mlp-z2-without-3.safetensors"
    assert load_checkpoint(view.checkpoint_path).dataset["name"] == "digits-without-3"


def test_an_unwritable_folder_is_refused_at_once(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    queue = JobQueue(folder=blocked / "models", device="cpu")
    with pytest.raises(QueueError, match="model folder"):
        queue.submit(tiny(), owner="ann")


def test_worker_threads_leave_the_process_default_alone(make_queue):
    seen = {}

    def factory(*args, **kwargs):
        seen["worker"] = torch.get_num_threads()
        return Trainer(*args, **kwargs)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # what the app sets for decoding
    try:
        queue = make_queue(trainer_factory=factory, torch_threads=2)
        assert queue.wait(queue.submit(tiny(epochs=1), owner="ann"), TIMEOUT).status == jobs.DONE
        later = {}
        thread = threading.Thread(target=lambda: later.setdefault("fresh", torch.get_num_threads()))
        thread.start()
        thread.join(10)
        assert seen["worker"] == 2, "the training thread gets its own thread count"
        assert torch.get_num_threads() == 1 and later["fresh"] == 1, "threads started later still get 1"
    finally:
        torch.set_num_threads(previous)


def test_default_thread_count_leaves_a_core_for_serving(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert threads.compute_threads(1) == 8 and threads.compute_threads(3) == 5
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert threads.compute_threads(1) == 1
    assert threads.compute_threads(1, spare_core=False) == 2, "a process that serves no pages takes every core"
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert threads.compute_threads(1) == 1


def test_available_datasets_lists_registry_sets_only_when_their_files_are_there(tmp_path):
    assert datasets.available_datasets(tmp_path) == ["mnist-5k", "digits", "shapes"]
    for name in datasets.DATASET_FILES["mnist"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert datasets.available_datasets(tmp_path) == ["mnist-5k", "digits", "shapes", "mnist"]


def test_shared_queue_is_one_per_process(monkeypatch):
    jobs.reset_shared_queue()
    monkeypatch.setenv("LATENT_EXPLORER_TRAIN_CONCURRENCY", "3")
    try:
        assert jobs.shared_queue() is jobs.shared_queue()
        assert jobs.shared_queue().max_concurrent == 3
    finally:
        jobs.reset_shared_queue()


EXIT_WHILE_TRAINING = """
import sys, time
from pathlib import Path
from vae_core.jobs import JobQueue
from vae_core.recipe import Recipe
queue = JobQueue(folder=Path(sys.argv[1]), device="cpu")
job = queue.submit(Recipe(dataset="digits", latent_dim=2, hidden_sizes=(16,), epochs=500, batch_size=16), "ann")
deadline = time.monotonic() + 60
while queue.view(job, "ann").progress == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
print("exiting while", queue.view(job, "ann").status, flush=True)
"""


def test_the_process_exits_cleanly_while_a_run_trains(tmp_path):
    """A daemon thread killed at interpreter exit inside torch's C++ aborts the process (exit code 134,
    "terminate called without an active exception"): the queue stops its runs at exit first."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", EXIT_WHILE_TRAINING, str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert "exiting while running" in result.stdout, result.stderr[-2000:]
    assert result.returncode == 0 and "terminate called" not in result.stderr, result.stderr[-2000:]
    assert files(tmp_path) == set(), "no temporary file left behind"


# -- the machine's line: every app process of `make serve` shares the slots and the order -------------------
WORKER = """
import json, sys, time
from pathlib import Path
from vae_core.jobs import JobQueue
from vae_core.recipe import Recipe
folder, owner, epochs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
queue = JobQueue(folder=folder, device="cpu")
job = queue.submit(Recipe(dataset="digits", latent_dim=2, hidden_sizes=(16,), epochs=epochs, batch_size=16), owner)
said = None
while True:
    view = queue.view(job, owner)
    mid_epoch = view.epoch >= 1 and view.progress * view.total_epochs > view.epoch
    state = dict(status=view.status, position=view.position, mid_epoch=mid_epoch,
                 model=view.checkpoint_name)
    if state != said:
        print(json.dumps({**state, "at": time.time()}), flush=True)
        said = state
    if not view.active:
        break
    time.sleep(0.01)
"""


class Worker:
    """Another app process with its own JobQueue on the same models folder, training one run; it
    prints every change of its run's state as a JSON line."""

    def __init__(self, folder: Path, owner: str, epochs: int):
        import os
        import subprocess
        import sys
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, str(folder), owner, str(epochs)], cwd=ROOT,
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for(self, **wanted) -> dict:
        import json
        for line in self.process.stdout:
            state = json.loads(line)
            if all(state[k] == v for k, v in wanted.items()):
                return state
        raise AssertionError(f"the worker ended without {wanted}: {self.process.stderr.read()[-2000:]}")

    def close(self):
        self.process.kill()
        self.process.wait(timeout=30)
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def workers():
    started = []

    def start(*args) -> Worker:
        started.append(Worker(*args))
        return started[-1]

    yield start
    for worker in started:
        worker.close()


def line_files(folder: Path) -> set[str]:
    return {p.name for p in (folder / ".training").iterdir()}


def test_two_processes_train_one_run_at_a_time_in_the_order_they_asked(make_queue, folder, workers):
    stepper = Stepper()
    queue = make_queue(trainer_factory=stepper)
    ours = queue.submit(tiny(), owner="ann")
    stepper.wait_reached()  # ann's run holds the machine's one slot, paused after its first epoch
    other = workers(folder, "bob", 2)
    assert other.wait_for(status="queued")["position"] == 1
    assert queue.counts() == (1, 1), "this process sees the other's waiting run"
    later = queue.submit(tiny(), owner="cat")
    assert queue.view(later, "cat").position == 2, "behind bob's run from the other process"
    stepper.run_freely()
    finished = queue.wait(ours, TIMEOUT).finished
    started = other.wait_for(status="running")["at"]
    assert started >= finished, "bob's run started only once ann's had ended"
    model = other.wait_for(status="done")["model"]
    assert other.process.wait(TIMEOUT) == 0
    view = queue.wait(later, TIMEOUT)
    assert view.status == jobs.DONE and view.started >= started, "cat's run came after bob's, as they asked"
    assert (folder / f"{model}.safetensors").exists(), "the other process's model is in the shared folder"
    assert queue.counts() == (0, 0)


def test_a_worker_killed_mid_epoch_leaves_no_file_and_frees_the_slot(make_queue, folder, workers):
    import signal

    other = workers(folder, "bob", 500)
    other.wait_for(status="running", mid_epoch=True)
    assert list((folder / ".training").glob("*.partial")), "the run has a saved epoch when it is killed"
    queue = make_queue()
    ours = queue.submit(tiny(), owner="ann")
    assert queue.view(ours, "ann").status == jobs.QUEUED and queue.counts() == (1, 1)
    other.process.send_signal(signal.SIGKILL)
    view = queue.wait(ours, TIMEOUT)
    assert view.status == jobs.DONE, "the killed process's slot came free"
    assert files(folder) == {"digits-vae.safetensors", view.checkpoint_path.name}, \
        "nothing of the killed run: no checkpoint, no partial file, no ticket"
    assert not any(name.startswith("process-") for name in line_files(folder) - {f"process-{queue._lines[folder].process}.lock"})


def test_the_line_leaves_dead_queues_out_and_keeps_owner_tokens_private(tmp_path):
    from vae_core.machine_line import MachineLine

    first, second = MachineLine(tmp_path, slots=1), MachineLine(tmp_path, slots=1)
    first.join("a1", "ann-secret-token", 1)
    first.join("a2", "ann-secret-token", 2)
    second.join("b1", "bob-secret-token", 3)
    (tmp_path / ".training" / "notes.ticket").write_text("not one of ours")
    assert first.next_to_start() == ["a1"], "first come; ann's second run waits for her first"
    assert first.start("a1") and not second.start("b1"), "one slot on the machine"
    assert [t.job_id for t in second.tickets()] == ["a1", "a2", "b1"] and first.next_to_start() == []
    assert all("secret" not in p.read_text() for p in (tmp_path / ".training").glob("*.ticket"))
    first.partial_path("a1").write_bytes(b"an epoch")
    import os
    for fd in (first._alive_fd, *first._slot_fds.values()):
        os.close(fd)  # the process dies: the kernel drops its locks, its files stay behind
    assert [t.job_id for t in second.tickets()] == ["b1"], "the dead queue's runs leave the line"
    assert not first.partial_path("a1").exists()
    assert second.next_to_start() == ["b1"] and second.start("b1"), "its slot came free"
    second.close()
    assert not list((tmp_path / ".training").glob("process-*")) and second.tickets() == []
