"""The Train page through Streamlit's AppTest: the form, a real tiny run on the shared queue from
Start to "Saved as", Stop, the preset another page hands over, and opening the new model."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apptest_support import session_of, view_of
from vae_core import jobs
from vae_core.checkpoint import load_checkpoint
from vae_core.recipe import DEFAULT_OPTIMISATION, MAX_EPOCHS, Recipe

ROOT = Path(__file__).resolve().parent.parent
PAGE = "pages/train.py"
DEADLINE = 180  # seconds for a tiny run, polled by reruns, on a slow shared machine


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """A private copy of the shipped checkpoints: the runs here save beside them."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(ROOT / "checkpoints", folder)
    monkeypatch.setenv("LATENT_EXPLORER_CHECKPOINTS", str(folder))
    return folder


@pytest.fixture(autouse=True)
def fresh_queue():
    """Each test gets the process-wide queue new, and leaves nothing training behind it."""
    jobs.reset_shared_queue()
    yield
    jobs.reset_shared_queue(timeout=60)


def start(preset: dict | None = None) -> AppTest:
    """The Train page; `preset` as another page hands it over (pages.ui.state.TrainSession.preset)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    if preset is not None:
        session_of(at).train.preset = preset
    at.switch_page(PAGE).run()
    return at


def assert_clean(at: AppTest):
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def widget(at: AppTest, kind: str, field: str):
    """A form widget by the TrainForm field it is bound to (its key is the field's path)."""
    return getattr(at, kind)(key=f"train.form.{field}")


def progress_texts(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def configure_tiny(at: AppTest, epochs: int, name: str, batch_size: int = 256):
    widget(at, "number_input", "epochs").set_value(epochs)
    widget(at, "text_input", "hidden").set_value("16")
    widget(at, "number_input", "latent_dim").set_value(2)
    widget(at, "select_slider", "batch_size").set_value(batch_size)
    widget(at, "text_input", "name").set_value(name)
    at.run()


def rerun_until(at: AppTest, done, seen: list[str]) -> None:
    """Rerun (as the polling fragment would) until done(at) or the deadline; collects progress texts."""
    deadline = time.monotonic() + DEADLINE
    while not done(at):
        assert time.monotonic() < deadline, f"not finished in {DEADLINE}s; progress seen: {seen[-3:]}"
        time.sleep(0.3)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        seen.extend(progress_texts(at))


def test_the_page_is_registered():
    from pages.ui.navigation import PAGES

    assert PAGE in [script for script, *_ in PAGES], \
        'add ("pages/train.py", "Train") to PAGES in pages/ui/navigation.py'


def test_the_page_renders_the_form(checkpoints):
    at = start()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Train"]
    dataset = widget(at, "selectbox", "dataset")
    assert dataset.value == "digits" and {"mnist-5k", "digits", "shapes"} <= set(dataset.options)
    assert widget(at, "text_input", "hidden").value == "256, 128"
    start_button = at.button(key="train_start")
    assert start_button.label == "Start training" and not start_button.disabled
    assert any("Will be saved as **digits-vae-mlp-z8**" in c.value for c in at.caption)
    assert not at.get("progress"), "no run, no progress bar"


def optimisation_shown(at) -> tuple:
    return (widget(at, "select_slider", "lr").value, widget(at, "selectbox", "lr_schedule").value,
            widget(at, "select_slider", "batch_size").value)


def test_switching_to_conv_proposes_conv_channels_and_the_conv_optimisation(checkpoints):
    mlp, conv = DEFAULT_OPTIMISATION["mlp"], DEFAULT_OPTIMISATION["conv"]
    at = start()
    assert optimisation_shown(at) == (mlp.lr, mlp.lr_schedule, mlp.batch_size)
    widget(at, "radio", "architecture").set_value("conv").run()
    assert_clean(at)
    assert widget(at, "text_input", "hidden").value == "32, 64"
    assert optimisation_shown(at) == (conv.lr, conv.lr_schedule, conv.batch_size)
    assert (conv.lr, conv.batch_size) != (mlp.lr, mlp.batch_size)
    widget(at, "radio", "architecture").set_value("mlp").run()
    assert optimisation_shown(at) == (mlp.lr, mlp.lr_schedule, mlp.batch_size)


def test_the_schedule_chosen_is_the_one_trained(checkpoints):
    at = start()
    assert widget(at, "selectbox", "lr_schedule").value == "one-cycle"
    configure_tiny(at, epochs=1, name="constant-rate")
    widget(at, "selectbox", "lr_schedule").set_value("constant").run()
    at.button(key="train_start").click().run()
    assert_clean(at)
    owner, job_id = session_of(at).train.owner, session_of(at).train.job
    assert jobs.shared_queue().view(job_id, owner).options.lr_schedule == "constant"


def test_bernoulli_is_the_default_likelihood_for_every_dataset_and_gaussian_stays_a_choice(checkpoints):
    at = start()
    for dataset in ("digits", "mnist-5k", "shapes"):
        widget(at, "selectbox", "dataset").set_value(dataset).run()
        assert_clean(at)
        assert widget(at, "radio", "likelihood").value == "bernoulli", dataset
    assert any("Likelihood p(x|z): bernoulli" in e.label for e in at.expander)
    widget(at, "radio", "likelihood").set_value("gaussian").run()
    assert_clean(at)
    assert widget(at, "radio", "likelihood").value == "gaussian"
    assert any("Likelihood p(x|z): gaussian, σ 0.1" in e.label for e in at.expander)


def test_the_objective_reaches_the_job_and_the_name(checkpoints):
    at = start()
    objective = widget(at, "selectbox", "objective")
    assert objective.value == "vae" and objective.options == ["VAE / β-VAE: β weighs the KL",
                                                              "β-TCVAE: β weighs the total correlation",
                                                              "autoencoder: no KL, to compare with (β unused)"]
    objective.set_value("beta-tcvae").run()
    widget(at, "number_input", "beta").set_value(6.0).run()
    assert_clean(at)
    assert any("Will be saved as **digits-tcvae-mlp-z8-b6**" in c.value for c in at.caption)


def test_an_autoencoder_trains_from_the_page_with_its_reconstruction_curve_alone(checkpoints):
    at = start()
    widget(at, "selectbox", "objective").set_value("ae").run()
    configure_tiny(at, epochs=3, name="")
    assert any("Will be saved as **digits-ae-mlp-z2**" in c.value for c in at.caption)
    at.button(key="train_start").click().run()
    seen = progress_texts(at)
    rerun_until(at, lambda a: any("Saved as" in s.value for s in a.success), seen)
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 1, "an autoencoder has a reconstruction curve and no ELBO or KL"
    ckpt = load_checkpoint(checkpoints / "digits-ae-mlp-z2.safetensors")
    assert ckpt.config.objective == "ae" and not ckpt.config.probabilistic


def test_a_beta_sweep_trains_its_betas_together_and_the_choosing_beta_page_draws_it(checkpoints):
    at = start()
    configure_tiny(at, epochs=2, name="")
    widget(at, "multiselect", "sweep").set_value([0.5, 2.0]).run()
    assert any("Will be saved as **digits-betavae-mlp-z2-b0.5**, **digits-vae-mlp-z2**, **digits-betavae-mlp-z2-b2**"
               in c.value and "3 βs, trained together" in c.value for c in at.caption)
    at.button(key="train_start").click().run()
    seen = progress_texts(at)
    assert any(c.value.startswith("β sweep: β = 0.5") for c in at.caption)
    rerun_until(at, lambda a: any("β sweep: β = 0.5 done ✓ · β = 1 done ✓ · β = 2 done ✓" in c.value
                                  for c in a.caption), seen)
    assert_clean(at)
    betas = {load_checkpoint(checkpoints / f"{name}.safetensors").config.beta
             for name in ("digits-betavae-mlp-z2-b0.5", "digits-vae-mlp-z2", "digits-betavae-mlp-z2-b2")}
    assert betas == {0.5, 1.0, 2.0}
    # β = 1's run is on show first; the person may look at any other β's
    assert at.subheader[0].value == "Run: digits-vae-mlp-z2"
    picker = at.button_group(key="train.shown_beta")
    assert list(picker.options) == ["β = 0.5", "β = 1", "β = 2"]
    picker.set_value(2.0).run()
    assert at.subheader[0].value == "Run: digits-betavae-mlp-z2-b2" and at.button(key="train_open").label == \
        "Open digits-betavae-mlp-z2-b2"
    at.button(key="train_compare").click().run()
    assert_clean(at)
    assert at.title[0].value == "Choosing β" and view_of(at).model == "file:digits-betavae-mlp-z2-b2"
    assert list(at.select_slider(key="view.sweep_beta").options) == ["0.5", "1", "2"]


def test_the_form_beta_leaves_the_sweep_and_an_autoencoder_has_none(checkpoints):
    at = start()
    widget(at, "multiselect", "sweep").set_value([0.5, 2.0]).run()
    widget(at, "number_input", "beta").set_value(2.0).run()
    assert_clean(at)
    assert widget(at, "multiselect", "sweep").value == [0.5] and 2.0 not in widget(at, "multiselect", "sweep").options
    widget(at, "selectbox", "objective").set_value("ae").run()
    assert_clean(at)
    assert widget(at, "multiselect", "sweep").disabled
    assert not any("trained together" in c.value for c in at.caption)


def test_bad_hidden_sizes_disable_start_with_a_message(checkpoints):
    at = start()
    widget(at, "text_input", "hidden").set_value("big, bigger").run()
    assert not at.exception
    assert any("hidden sizes" in w.value for w in at.warning)
    assert at.button(key="train_start").disabled


def test_a_tiny_run_shows_progress_then_saved_as_and_opens_the_model(checkpoints):
    before = {p.name for p in checkpoints.iterdir()}
    at = start()
    configure_tiny(at, epochs=25, name="../my run", batch_size=16)
    assert any("Will be saved as **my-run**" in c.value for c in at.caption)
    at.button(key="train_start").click().run()
    assert_clean(at)
    seen = progress_texts(at)
    assert seen and (seen[0].startswith("Epoch") or seen[0].startswith("Waiting")), seen
    assert at.button(key="train_start").disabled, "one run at a time per person"
    assert at.button(key="train_stop").label == "Stop"
    rerun_until(at, lambda a: any("Saved as" in s.value for s in a.success), seen)
    assert_clean(at)
    assert any(t.startswith("Epoch") and " of 25" in t for t in seen[:-1]), "progress was shown while training"
    assert progress_texts(at)[-1].startswith("Epoch 25 of 25")
    assert [s.value for s in at.success] == ["Saved as **my-run**: it is in the sidebar's model picker now."]
    assert len(at.get("plotly_chart")) == 3, "ELBO, reconstruction and KL curves"
    assert at.get("image"), "the sample/reconstruction grid"
    assert {p.name for p in checkpoints.iterdir()} == before | {"my-run.safetensors", ".training"}
    assert not [p for p in (checkpoints / ".training").iterdir() if not p.name.endswith(".lock")], \
        "the run left no ticket or partial checkpoint in the machine's training line"
    picker = at.sidebar.selectbox(key="view.model")
    assert "file:my-run" in picker.options or "my-run" in picker.options
    assert not at.button(key="train_start").disabled, "free to start another"
    at.button(key="train_open").click().run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Overview"]
    assert view_of(at).model == "file:my-run"
    assert at.sidebar.selectbox(key="view.model").value == "file:my-run"


def test_stop_ends_the_run(checkpoints):
    at = start()
    configure_tiny(at, epochs=300, name="to-stop", batch_size=16)
    at.button(key="train_start").click().run()
    assert_clean(at)
    owner, job_id = session_of(at).train.owner, session_of(at).train.job
    deadline = time.monotonic() + DEADLINE  # let it finish one epoch, so there is something to keep
    while jobs.shared_queue().view(job_id, owner).epoch < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    at.run()
    at.button(key="train_stop").click().run()
    seen: list[str] = []
    rerun_until(at, lambda a: any("Stopped after" in w.value for w in a.warning), seen)
    assert not at.exception
    view = jobs.shared_queue().view(job_id, owner)
    assert view.status == jobs.STOPPED and 1 <= view.epoch < 300
    assert any("Saved as **to-stop**" in i.value for i in at.info)
    assert (checkpoints / "to-stop.safetensors").exists()


def test_a_run_waits_its_turn_with_its_position_shown(checkpoints):
    queue = jobs.shared_queue()
    other = queue.submit(Recipe(dataset="digits", latent_dim=2, hidden_sizes=(16,), epochs=MAX_EPOCHS,
                                         batch_size=16), owner="someone else")
    at = start()
    configure_tiny(at, epochs=2, name="waiting")
    at.button(key="train_start").click().run()
    assert_clean(at)
    assert progress_texts(at) == ["Waiting in the queue: position 1 of 1 (1 run(s) training now)"]
    assert any("Training on this machine: 1 run(s) training, 1 waiting" in c.value for c in at.caption)
    at.button(key="train_stop").click().run()
    seen: list[str] = []
    rerun_until(at, lambda a: any("left the queue" in w.value for w in a.warning), seen)
    assert not (checkpoints / "waiting.safetensors").exists()
    assert queue.view(other, "someone else").status == jobs.RUNNING, "the other run goes on"
    assert queue.stop(other, "someone else")


def test_a_preset_prefills_the_form(checkpoints):
    preset = {"dataset": "shapes", "conditional": True, "architecture": "conv", "latent_dim": 6, "beta": 4,
              "holdout_class": 1, "epochs": 7}
    at = start(preset)
    assert_clean(at)
    assert session_of(at).train.preset is None, "used once"
    assert widget(at, "selectbox", "dataset").value == "shapes"
    assert widget(at, "checkbox", "conditional").value is True
    assert widget(at, "radio", "architecture").value == "conv"
    assert widget(at, "text_input", "hidden").value == "32, 64"
    assert widget(at, "select_slider", "lr").value == DEFAULT_OPTIMISATION["conv"].lr
    assert widget(at, "number_input", "latent_dim").value == 6
    assert widget(at, "number_input", "beta").value == 4.0
    assert widget(at, "selectbox", "holdout").value == 1
    assert widget(at, "number_input", "epochs").value == 7
    assert any("Prefilled" in i.value and "conditional" in i.value for i in at.info)
    at.switch_page("pages/overview.py").run()
    at.switch_page(PAGE).run()
    assert widget(at, "number_input", "epochs").value == 7, "the form survives a page switch"


def test_a_partial_or_odd_preset_changes_only_what_it_can(checkpoints):
    at = start({"conditional": True, "architecture": "external", "dataset": "folder:/etc",
                             "latent_dim": "lots", "epochs": 10**9, "kl_warmup": 10**400, "objective": ["vae"],
                             "likelihood": {"gaussian": 1}, "hidden_sizes": [0, -3], "dense_sizes": "256",
                             "sweep": [2.0, "x", 3.5]})
    assert_clean(at)
    form = session_of(at).train.form
    assert (form.hidden, form.dense, form.objective, form.likelihood, form.kl_warmup) == \
        ("256, 128", "", "vae", "bernoulli", 10), "odd sizes, choices and numbers leave the form as it was"
    assert form.sweep == (2.0,), "only the βs the sweep offers"
    assert widget(at, "checkbox", "conditional").value is True
    assert widget(at, "selectbox", "dataset").value == "digits"
    assert widget(at, "radio", "architecture").value == "mlp"
    assert widget(at, "number_input", "latent_dim").value == 8
    assert widget(at, "number_input", "epochs").value == 300, "clamped to the page's limit"


def test_dense_sizes_train_for_conv_nets_only(checkpoints):
    at = start()
    assert widget(at, "text_input", "dense").disabled, "an MLP has no conv body to put dense layers after"
    widget(at, "radio", "architecture").set_value("conv").run()
    widget(at, "text_input", "dense").set_value("12, x").run()
    assert any("dense sizes: whole numbers separated by commas" in w.value for w in at.warning)
    assert at.button(key="train_start").disabled
    configure_tiny(at, epochs=1, name="with-dense")
    widget(at, "text_input", "dense").set_value("12").run()
    assert_clean(at)
    at.button(key="train_start").click().run()
    assert_clean(at)
    owner, job_id = session_of(at).train.owner, session_of(at).train.job
    assert jobs.shared_queue().view(job_id, owner).options.dense_sizes == (12,)
    widget(at, "radio", "architecture").set_value("mlp").run()
    assert session_of(at).train.form.dense == "", "the architecture's defaults: no dense layers"
