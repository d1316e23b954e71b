"""Train: a new VAE from the browser, on the server's shared training queue (vae_core.jobs).

The form's values live in the session's TrainForm (pages/ui/state.py), so they survive page
switches. A run is a job on the process-wide queue; this session holds its id and a random owner
token, and a fragment polls the job every second while it is queued or training. Another page may
prefill the form: it sets session().train.preset (dataset, conditional, architecture, hidden_sizes,
dense_sizes, latent_dim, objective, likelihood, obs_sigma, beta, sweep, holdout_class, epochs, kl_warmup,
lr, lr_schedule, batch_size; apply_preset takes what it can use) and switches here.
"""
import math
import secrets
from dataclasses import replace

import pandas as pd
import plotly.express as px
import streamlit as st

from pages.ui import frame, session, shared_dataset, store, widget
from pages.ui.state import TrainForm
from vae_core.beta_sweep import MIN_POINTS
from vae_core.catalog import checkpoint_dir, unique_path, units_note
from vae_core.config import LR_SCHEDULES, TrainConfig
from vae_core.datasets import DatasetError
from vae_core.datasets import available_datasets
from vae_core.jobs import DIVERGED, DONE, FAILED, STOPPED, QueueError, shared_queue
from vae_core.recipe import ARCHITECTURES, DEFAULT_HIDDEN, DEFAULT_OPTIMISATION, MAX_EPOCHS, Recipe, default_name

POLL_SECONDS = 1.0
PAGE_MAX_EPOCHS = min(MAX_EPOCHS, 300)
SWEEP_BETAS = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]  # the shipped sweep's (Choosing β)
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 10.0]
BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024]
NO_HOLDOUT = TrainForm.holdout
FORM_FIELDS = [f"train.form.{name}" for name in TrainForm.__dataclass_fields__]
OBJECTIVE_LABELS = {"vae": "VAE / β-VAE: β weighs the KL", "beta-tcvae": "β-TCVAE: β weighs the total correlation",
                    "ae": "autoencoder: no KL, to compare with (β unused)"}

frame("train", needs_model=False)  # training needs no model open; the folder may even be empty
train = session().train
form = train.form
queue = shared_queue()
if not train.owner:
    train.owner = secrets.token_urlsafe(16)
datasets = available_datasets()


def sizes_text(sizes) -> str:
    return ", ".join(map(str, sizes))


def hidden_text(architecture: str) -> str:
    return sizes_text(DEFAULT_HIDDEN[architecture])


def parse_sizes(text: str, field: str = "hidden_sizes", empty_ok: bool = False) -> tuple[int, ...]:
    """Widths written "256, 128" (or with spaces or semicolons); raises ValueError saying what to write."""
    label, example = field.replace("_", " "), hidden_text("mlp") if field == "hidden_sizes" else "256"
    try:
        sizes = tuple(int(part) for part in str(text).replace(";", ",").replace(" ", ",").split(",") if part)
    except ValueError:
        raise ValueError(f"{label}: whole numbers separated by commas, e.g. {example}") from None
    if not sizes and not empty_ok:
        raise ValueError(f"{label}: at least one width, e.g. {example}")
    return sizes


def _architecture_changed():
    """The architecture's own defaults (hidden sizes, no dense layers, learning rate, schedule, batch), when
    the radio or a preset sets it."""
    form.hidden, form.dense = hidden_text(form.architecture), ""
    default = DEFAULT_OPTIMISATION[form.architecture]
    form.lr, form.lr_schedule, form.batch_size = default.lr, default.lr_schedule, default.batch_size


def apply_preset(preset: dict) -> list[str]:
    """Copy a preset's usable entries into the form's state; returns what was set, for the notice."""
    applied = []

    def put(key, value, label):
        setattr(form, key, value)
        applied.append(label)

    if preset.get("dataset") in datasets:
        put("dataset", preset["dataset"], f"dataset {preset['dataset']}")
    if "conditional" in preset:
        conditional = bool(preset["conditional"])
        put("conditional", conditional, "conditional" if conditional else "unconditional")
    if preset.get("architecture") in ARCHITECTURES:
        put("architecture", preset["architecture"], f"{preset['architecture']} architecture")
        _architecture_changed()
    for field, key, label in (("hidden_sizes", "hidden", "hidden sizes"), ("dense_sizes", "dense", "dense sizes")):
        if isinstance(preset.get(field), (list, tuple)):
            try:
                sizes = parse_sizes(sizes_text(preset[field]), field, empty_ok=field == "dense_sizes")
            except ValueError:
                continue
            if all(size >= 1 for size in sizes):
                put(key, sizes_text(sizes), f"{label} {sizes_text(sizes) or 'none'}")
    for key, choices in (("objective", OBJECTIVE_LABELS), ("likelihood", ("bernoulli", "gaussian")),
                         ("lr_schedule", LR_SCHEDULES)):
        if isinstance(preset.get(key), str) and preset[key] in choices:
            put(key, preset[key], f"{key.replace('_', ' ')} {preset[key]}")
    for key, choices, label in (("lr", LEARNING_RATES, "learning rate"), ("batch_size", BATCH_SIZES, "batch size")):
        value = preset.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value in choices:
            put(key, choices[choices.index(value)], f"{label} {value:g}")
    for field, key, low, high, kind in (("latent_dim", "latent_dim", 1, 64, int),
                                        ("beta", "beta", 0.0, 50.0, float),
                                        ("obs_sigma", "obs_sigma", 0.01, 1.0, float),
                                        ("epochs", "epochs", 1, PAGE_MAX_EPOCHS, int),
                                        ("kl_warmup", "kl_warmup", 0, PAGE_MAX_EPOCHS, int)):
        try:
            value = kind(preset[field])
            if not math.isfinite(value):  # an int beyond a float's range raises OverflowError here
                continue
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        put(key, min(high, max(low, value)), f"{field.replace('_', ' ')} {min(high, max(low, value)):g}")
    if isinstance(preset.get("sweep"), (list, tuple)):
        betas = tuple(b for b in SWEEP_BETAS if b in preset["sweep"] and b != form.beta)
        put("sweep", betas, "β sweep " + ", ".join(f"{b:g}" for b in (form.beta, *betas)))
    if "holdout_class" in preset:  # None: every class
        holdout = preset["holdout_class"]
        if holdout is None or (isinstance(holdout, int) and holdout >= 0):
            put("holdout", NO_HOLDOUT if holdout is None else holdout,
                "every class" if holdout is None else f"class {holdout} left out")
    return applied


preset, train.preset = train.preset, None
if isinstance(preset, dict):
    train.preset_applied = apply_preset(preset)
if form.dataset not in datasets:
    form.dataset = TrainForm.dataset


def recipe_from_form() -> Recipe:
    """The form as a Recipe; raises ValueError with what to fix."""
    return Recipe(
        dataset=form.dataset, architecture=form.architecture, latent_dim=int(form.latent_dim),
        hidden_sizes=parse_sizes(form.hidden),
        dense_sizes=parse_sizes(form.dense, "dense_sizes", empty_ok=True) if form.architecture == "conv" else (),
        beta=float(form.beta), objective=form.objective,
        conditional=bool(form.conditional), epochs=int(form.epochs), lr=float(form.lr),
        lr_schedule=form.lr_schedule, batch_size=int(form.batch_size), kl_warmup=int(form.kl_warmup),
        holdout_class=None if form.holdout == NO_HOLDOUT else int(form.holdout), name=form.name.strip(),
        likelihood=form.likelihood, obs_sigma=float(form.obs_sigma),
    )


def runs_from_form() -> list[Recipe]:
    """The form's recipe, and the same at every other β of the sweep, by β; raises ValueError."""
    recipe = recipe_from_form()
    if recipe.objective == "ae":
        return [recipe]  # β weighs nothing in an autoencoder
    betas = sorted({recipe.beta, *map(float, form.sweep)})
    named = lambda b: f"{recipe.name}-b{b:g}" if recipe.name and b != recipe.beta else recipe.name  # noqa: E731
    return [replace(recipe, beta=b, name=named(b)) for b in betas]


def _start():
    """on_click of Start: runs before the script, so the panel below already shows the new job."""
    store(*FORM_FIELDS)  # the values the click was sent with, also those whose on_change has not run
    train.error = None
    try:
        ids = queue.submit_all(runs_from_form(), train.owner)
    except (ValueError, QueueError) as exc:
        train.error = str(exc)
        return
    train.job, train.sweep = ids[0], tuple(ids) if len(ids) > 1 else ()
    train.shown_beta = None  # a new sweep opens on β = 1
    train.preset_applied = []


def my_runs() -> list:
    """Snapshots of this session's last submission (one run, or a sweep's), those the queue still keeps, in order."""
    return [view for job_id in (train.sweep or (train.job,)) if (view := queue.view(job_id, train.owner))]


def _stop():
    """Stop the run, or every β of the sweep: they train, and stop, together."""
    queue.stop(train.job, train.owner)


def _open(name: str):
    session().view.switch_model(f"file:{name}")


st.title("Train")
st.caption("Train a VAE on the server and explore it on the other pages. Runs share one queue: "
           "while someone else's run trains, yours waits its turn.")
if train.preset_applied:
    st.info(f"Prefilled from another page: {', '.join(train.preset_applied)}. Check the settings, then Start.")

busy = any(view.active for view in my_runs())

c1, c2, c3, c4, c5 = st.columns(5)
c1.selectbox("Dataset", datasets, **widget("train.form.dataset"),
             help="mnist-5k (real digits, 28×28), digits (8×8) and shapes (64×64) are built in; MNIST-style sets "
                  "appear when their files are on the server")
c2.radio("Architecture", ARCHITECTURES, **widget("train.form.architecture", _architecture_changed),
         horizontal=True, format_func={"mlp": "MLP", "conv": "convolutional"}.get)
c3.number_input("Latent size", 1, 64, **widget("train.form.latent_dim"),
                help="Dimensions of z. 2 can be plotted as it is")
c4.text_input("Hidden sizes", **widget("train.form.hidden"),
              help="Widths of the MLP layers, or channels of each stride-2 conv layer, separated by commas")
c5.text_input("Dense sizes", **widget("train.form.dense"), disabled=form.architecture != "conv", placeholder="none",
              help="Conv nets only: widths of dense layers between the last conv layer and z, separated by commas "
                   "(Burgess et al. (2018) use 256 for 64×64 images)")

try:
    label_names = shared_dataset(form.dataset).label_names
except DatasetError as exc:
    st.error(str(exc))
    label_names = []
if form.holdout != NO_HOLDOUT and not 0 <= form.holdout < len(label_names):
    form.holdout = NO_HOLDOUT
try:  # the form as it stands (the widgets' changes were stored before this run)
    planned_runs = runs_from_form()
    planned = planned_runs[0]
    problems = sorted({problem for run in planned_runs for problem in run.server_limits()})
except ValueError as exc:
    planned_runs, planned, problems = [], None, [str(exc)]

c0, c1, c2, c3, c4 = st.columns(5)
c0.selectbox("Objective", list(OBJECTIVE_LABELS), **widget("train.form.objective"), format_func=OBJECTIVE_LABELS.get,
             help="β-TCVAE (Chen et al., 2018) splits the KL and presses only on the total correlation between "
                  "dimensions: disentangles with less blur than a β-VAE of the same β")
c1.number_input("β", 0.0, 50.0, step=0.5, **widget("train.form.beta"), help="1 is a plain VAE; above 1 a β-VAE (or β-TCVAE): more disentangled, "
                                           "blurrier")
form.sweep = tuple(b for b in form.sweep if b != form.beta)  # the form's own β is in the sweep already
st.multiselect("β sweep: also train at", [b for b in SWEEP_BETAS if b != form.beta], **widget("train.form.sweep"),
               format_func=lambda b: f"β = {b:g}", disabled=form.objective == "ae",
               placeholder="no other β" if form.objective != "ae" else "an autoencoder has no β",
               help="The same recipe at each β, trained together in one run (one model each), to compare on the "
                    "Choosing β page")
if form.objective == "ae":
    form.conditional = False  # an autoencoder is unconditional here
c2.checkbox("Conditional (CVAE)", **widget("train.form.conditional"), disabled=form.objective == "ae",
            help="Encoder and decoder also see the label, so you can ask for a class when sampling")
c3.selectbox("Leave out a class", [NO_HOLDOUT, *range(len(label_names))], **widget("train.form.holdout"),
             format_func=lambda i: "none (train on all)" if i == NO_HOLDOUT else f"{i}: {label_names[i]}",
             help="Train without one class, then see how the model treats it: an anomaly experiment")
c4.text_input("Model name", **widget("train.form.name"), max_chars=64,
              placeholder=default_name(replace(planned, name="")) if planned else "")

c1, c2, c3, c4, c5 = st.columns(5)
c1.number_input("Epochs", 1, PAGE_MAX_EPOCHS, **widget("train.form.epochs"))
c2.select_slider("Learning rate", LEARNING_RATES, **widget("train.form.lr"),
                 format_func=lambda v: f"{v:g}", help="Adam's step size (one-cycle's peak). Too high and the loss blows up")
c3.selectbox("Schedule", LR_SCHEDULES, **widget("train.form.lr_schedule"),
             help="one-cycle: the rate rises to its peak over the first 30% of the steps, then falls to almost "
                  "nothing (Smith & Topin, 2019); fast progress, and a low end. constant: the same rate throughout")
c4.select_slider("Batch size", BATCH_SIZES, **widget("train.form.batch_size"))
c5.number_input("KL warm-up (epochs)", 0, PAGE_MAX_EPOCHS, **widget("train.form.kl_warmup"), help="The KL weight ramps from 0 to β over these epochs: fewer collapsed "
                                                "dimensions")
likelihood_label = form.likelihood
if form.likelihood == "gaussian":
    likelihood_label += f", σ {form.obs_sigma:g}"
with st.expander(f"Likelihood p(x|z): {likelihood_label}"):
    l1, l2 = st.columns(2)
    l1.radio("p(x|z)", ["bernoulli", "gaussian"], **widget("train.form.likelihood"), horizontal=True,
             help="Bernoulli suits pixels in [0, 1] (as pytorch/examples, pythae and the β-VAE papers use)")
    l2.number_input("σ of the Gaussian", 0.01, 1.0, step=0.05, **widget("train.form.obs_sigma"), disabled=form.likelihood != "gaussian",
                    help="Smaller: sharper reconstructions, more information in z")

for problem in problems:
    st.warning(problem)
planned = None if problems else planned
s1, s2 = st.columns([1, 3], vertical_alignment="center")
s1.button("Start training", type="primary", on_click=_start, disabled=busy or planned is None, key="train_start",
          help="You have a run in progress: wait for it or stop it" if busy else None)
if planned is not None:
    names = [unique_path(run.model_name, checkpoint_dir()).stem for run in planned_runs]
    s2.caption(f"Will be saved as **{'**, **'.join(names)}** in the models folder (a number is added if a name is "
               "taken then)." + (f" {len(names)} βs, trained together." if len(names) > 1 else ""))
if train.error:
    st.error(f"Could not start: {train.error}")


CHARTS = (  # (title, training-set column, test-set column)
    ("ELBO (higher is better)", "elbo", "test_elbo"),
    ("Reconstruction cost −log p(x|z)", "recon", "test_recon"),
    ("KL(q(z|x) ‖ p(z))", "kl", "test_kl"),
)


def curves(history: list[dict], units: str):
    """ELBO, reconstruction and KL per epoch (an autoencoder: reconstruction), each on its own scale,
    training and test sets alike."""
    table = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)} for r in history])
    last = max(int(table["epoch"].max()), 2)
    st.caption(f"Per epoch, in nats per image: :blue[training set] and :orange[test set] (scored every few epochs, "
               f"so that scoring takes at most {TrainConfig.eval_time_share:.0%} of the run). {units}")
    charts = [chart for chart in CHARTS if chart[1] in table]  # an autoencoder has reconstruction alone
    for column, (title, train, test) in zip(st.columns(len(charts)), charts):
        names = {train: "training", test: "test"}
        shown = table.rename(columns=names)[["epoch", *[n for c, n in names.items() if c in table]]]
        figure = px.line(shown, x="epoch", y=shown.columns[1:], markers=len(table) <= 60, title=title,
                         labels={"value": "nats per image", "variable": ""},
                         color_discrete_map={"training": "#4C78A8", "test": "#F58518"})
        figure.update_layout(height=280, margin=dict(l=10, r=10, t=40, b=10), xaxis=dict(range=[0.5, last + 0.5]),
                             showlegend=False)
        figure.update_traces(connectgaps=True)  # the test set is scored on some epochs only (TrainConfig.eval_time_share)
        column.plotly_chart(figure, width="stretch", key=f"train_chart_{train}")


def saved_line(view) -> None:
    name = view.checkpoint_name
    message = f"Saved as **{name}**: it is in the sidebar's model picker now."
    (st.success if view.status == DONE else st.info)(message)
    if st.button(f"Open {name}", key="train_open", on_click=_open, args=(name,)):
        st.switch_page("pages/overview.py")


def sweep_line(views) -> str:
    """Where a β sweep stands, one word per run."""
    state = {"queued": "waiting", "running": "training", DONE: "done ✓", STOPPED: "stopped", DIVERGED: "diverged",
             FAILED: "failed"}
    word = lambda v: "diverged" if v.active and v.error else state.get(v.status, v.status)  # noqa: E731
    return "β sweep: " + " · ".join(f"β = {v.options.beta:g} {word(v)}" for v in views)


@st.fragment(run_every=POLL_SECONDS if busy else None)
def job_panel():
    views = my_runs()
    view = views[0] if views else None
    if len(views) > 1:  # a sweep: its members train together; the person picks the β on show (1 at first)
        betas = [v.options.beta for v in views]
        if train.shown_beta not in betas:
            train.shown_beta = 1.0 if 1.0 in betas else betas[0]
        view = views[betas.index(train.shown_beta)]
    running, waiting = queue.counts()
    st.caption(f"Training on this machine: {running} run(s) training, {waiting} waiting · "
               f"{queue.max_concurrent} at a time, whichever app process took them")
    if view is None:
        if train.job:
            st.info("Your last run is no longer tracked (finished runs are kept for an hour); "
                    "its model, if it finished, is in the sidebar's picker.")
        return
    opts = view.options
    st.subheader(f"Run: {opts.model_name}")
    if len(views) > 1:
        st.caption(sweep_line(views))
        st.segmented_control("Curves and pictures of", betas, format_func=lambda b: f"β = {b:g}",
                             **widget("train.shown_beta"), required=True)
        if not any(v.active for v in views) and sum(v.checkpoint_path is not None for v in views) >= MIN_POINTS:
            shown = view.checkpoint_name or next(v.checkpoint_name for v in views if v.checkpoint_name)
            if st.button("Compare them on Choosing β", key="train_compare", on_click=_open, args=(shown,)):
                st.switch_page("pages/choosing_beta.py")
    if view.status == "queued":
        st.progress(0.0, text=f"Waiting in the queue: position {view.position} of {waiting} "
                              f"({running} run(s) training now)")
    elif view.active and view.error:  # one β of a sweep diverged; the others train on
        st.error(f"{view.error} The other βs train on; this one's last whole epoch is saved when they finish.")
    else:
        text = f"Epoch {view.epoch} of {view.total_epochs}"
        if view.seconds_per_epoch is not None:
            per_epoch = view.seconds_per_epoch
            text += f" · {per_epoch:.1f} s per epoch" if per_epoch >= 0.1 else " · under 0.1 s per epoch"
            if view.active:
                text += f" · about {max(0, view.total_epochs - view.epoch) * per_epoch:.0f} s left"
        elif view.active:
            text += " · preparing the data and the first epoch…"
        st.progress(view.progress, text=text)
    if view.active:
        st.button("Stop" if view.status == "running" else "Leave the queue", key="train_stop", on_click=_stop,
                  help="Stops after the current batch; finished epochs are kept and saved"
                       + (", for every β of the sweep" if len(views) > 1 else ""))
    elif view.status == DONE:
        saved_line(view)
    elif view.status == STOPPED:
        if view.checkpoint_path:
            st.warning(f"Stopped after {view.epoch} of {view.total_epochs} epochs.")
            saved_line(view)
        elif view.started is None:
            st.warning("You left the queue before your run started: nothing was trained.")
        else:
            st.warning("Stopped before the first epoch finished: nothing was saved.")
    elif view.status == DIVERGED:
        st.error(f"{view.error} Lower the learning rate (or β) and start again.")
        if view.checkpoint_path:
            saved_line(view)
    elif view.status == FAILED:
        st.error(f"Training failed: {view.error}")
    if view.history:
        curves(view.history, units_note(opts.likelihood, opts.obs_sigma))
        if view.grid_png:
            st.image(view.grid_png, output_format="PNG",
                     caption=f"After epoch {view.epoch}. Top: test images · then their reconstructions · "
                             "two rows of samples from the prior (the same noise every epoch)")
    elif view.active:
        st.caption("Curves and pictures appear after the first epoch.")
    if not any(v.active for v in views) and train.announced != train.job:
        train.announced = train.job
        st.rerun()  # a full run: the sidebar picker lists the new model, and polling stops


job_panel()
