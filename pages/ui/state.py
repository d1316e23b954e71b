"""Per-user state: one `Session` object per browser session, under one key of st.session_state.

`Session.view` is what a link carries (pages/ui/view.py); the rest stays in this browser: uploads,
messages waiting to be shown, the Train page's form and job. Pages read and write fields of these
objects; widgets bind to a field with `widget("view.sample")`, which keeps the field and the widget
in step. Streamlit forgets a widget's own state when a run does not draw it (another page); the
field outlives that.
"""
from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass, replace
from typing import Any, Callable

import streamlit as st

from vae_core.recipe import QUICK

from .view import View

KEY = "latent_explorer"  # the one st.session_state key the app owns; widget keys are field paths


@dataclass
class TrainForm:
    """The Train page's choices (a vae_core.recipe.Recipe once checked), kept across page switches.
    They start from recipe.QUICK."""
    dataset: str = QUICK.dataset
    architecture: str = QUICK.architecture
    latent_dim: int = QUICK.latent_dim
    hidden: str = ", ".join(map(str, QUICK.hidden_sizes))
    dense: str = ", ".join(map(str, QUICK.dense_sizes))  # conv nets only: dense layers between the convs and z
    objective: str = QUICK.objective
    beta: float = QUICK.beta
    sweep: tuple[float, ...] = ()  # more β to train the same recipe at, together in one run
    conditional: bool = QUICK.conditional
    holdout: int = -1  # -1: keep every class
    name: str = QUICK.name
    epochs: int = QUICK.epochs
    lr: float = QUICK.lr
    lr_schedule: str = QUICK.lr_schedule
    batch_size: int = QUICK.batch_size
    kl_warmup: int = QUICK.kl_warmup
    likelihood: str = QUICK.likelihood
    obs_sigma: float = QUICK.obs_sigma


@dataclass
class OwnModelForm:
    """The sidebar's "your own model" fields: a Python class and its weights, on this computer."""
    spec: str = ""
    model_kwargs: str = ""  # JSON object of constructor arguments
    weights: str = ""
    dataset: str = "digits"
    outputs: str = "logits"
    input_range: str = "0,1"


@dataclass
class TrainSession:
    owner: str = ""  # this browser's id in the job queue
    job: str | None = None
    sweep: tuple[str, ...] = ()  # every run of the last submission, when it was a β sweep
    shown_beta: float | None = None  # the sweep's β whose curves and pictures are on show
    form: TrainForm = field(default_factory=TrainForm)
    preset: dict | None = None  # set by another page ("train a conditional model"), applied once
    preset_applied: list[str] = field(default_factory=list)
    error: str | None = None
    announced: str | None = None


@dataclass
class Session:
    view: View = field(default_factory=View)
    page: str = "overview"  # the page this run draws
    started: bool = False  # the link has been read
    notices: list[str] = field(default_factory=list)  # shown once, at the top of the next page drawn
    uploads: dict = field(default_factory=dict)  # "upload:<sha>" -> Checkpoint
    external_models: dict = field(default_factory=dict)  # "external:<id>" -> OwnModel | ModelPath
    last_good_model: str = ""
    model_error: str | None = None
    upload_config: str = ""  # the JSON config that comes with an uploaded .pt
    upload_error: str | None = None
    own_model: OwnModelForm = field(default_factory=OwnModelForm)
    live_pad_unsupported: str | None = None  # why this browser cannot run the live pad
    component_reports_seen: dict = field(default_factory=dict)  # component key -> id of the last report handled
    scrubbed: tuple | None = None  # (path token, z, t, mode): the point scrubbed on Interpolation
    train: TrainSession = field(default_factory=TrainSession)


def session() -> Session:
    state = st.session_state
    if KEY not in state:
        state[KEY] = Session()
    return state[KEY]


def view() -> View:
    return session().view


def notice(text: str) -> None:
    session().notices.append(text)


# -- widgets bound to fields ------------------------------------------------------------------
def _get(path: str) -> Any:
    value: Any = session()
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


def _set(path: str, value: Any) -> None:
    """Set the field at path; tuples and frozen dataclasses on the way are rebuilt, not mutated."""
    *parents, last = path.split(".")
    chain = [session()]
    for part in parents:
        chain.append(chain[-1][int(part)] if part.isdigit() else getattr(chain[-1], part))
    if isinstance(value, list):
        value = tuple(value)
    for part, parent in zip(reversed([*parents, last]), reversed(chain)):
        if isinstance(parent, tuple):
            value = tuple(value if i == int(part) else v for i, v in enumerate(parent))
        elif is_dataclass(parent) and parent.__dataclass_params__.frozen:
            value = replace(parent, **{part: value})
        else:
            setattr(parent, part, value)
            return


def widget(path: str, on_change: Callable[[], None] | None = None) -> dict:
    """Keyword arguments that bind a widget to the field at `path` ("view.sample", "view.z.3",
    "view.a.kind", "train.form.epochs"): the widget shows the field, and a change is stored back
    (then `on_change` runs). Draw the widget without its own value/index/default."""
    _show(path)
    return {"key": path, "on_change": _store, "args": (path, on_change)}


def slider_widget(path: str, on_change: Callable[[], None] | None = None) -> dict:
    """widget() for st.slider, with the field's value passed as the slider's value too. Given no
    value, st.slider reads the whole of session state on every call to learn whether it is a range
    slider (streamlit 1.67, elements/widgets/slider.py): 9% of a server's Python time when a class
    moves Traversal's 16 latent sliders (py-spy --gil). The slider still shows the field, which
    _show put in its state; .streamlit/config.toml turns off the log line about a value given both ways."""
    return {**widget(path, on_change), "value": _widget_value(path)}


def _widget_value(path: str) -> Any:
    """The field at path as a widget holds it: multiselects and range sliders hold lists."""
    value = _get(path)
    return list(value) if isinstance(value, tuple) else value


def _show(path: str) -> None:
    """Put the field's value in the widget's state before the widget is drawn."""
    st.session_state[path] = _widget_value(path)


def _store(path: str, then: Callable[[], None] | None) -> None:
    """on_change of a bound widget."""
    store(path)
    if then is not None:
        then()


def form_widget(path: str) -> dict:
    """widget() for a widget inside st.form, which takes no callback: its form's submit button
    stores it (on_click calling store(path, …))."""
    _show(path)
    return {"key": path}


def store(*paths: str) -> None:
    """Copy the values of the widgets bound to `paths` into their fields."""
    for path in paths:
        if path in st.session_state:
            _set(path, st.session_state[path])
    view().normalise()


# -- the link -----------------------------------------------------------------------------------
def read_link(page: str) -> bool:
    """On a session's first run, take the view the link describes, with a notice for each parameter
    it could not use; True on that first run."""
    state = session()
    state.page = page
    if state.started:
        return False
    state.started = True
    state.view, notices = View.from_query(st.query_params.to_dict(), page)
    state.notices += notices
    return True


def in_fragment_rerun() -> bool:
    """True while Streamlit reruns fragments on their own (a widget inside one changed), not the page."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def sync_url() -> None:
    """Make the URL name what is on screen (only its changes are sent to the browser)."""
    state = session()
    wanted = state.view.to_query(state.page)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
