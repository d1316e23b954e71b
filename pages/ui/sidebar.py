"""The frame of every page: the link read, the sidebar's model picker and upload, notices."""
from __future__ import annotations

import hashlib
import re

import streamlit as st

from vae_core.catalog import checkpoint_dir, model_card, open_uploaded
from vae_core.checkpoint import CheckpointError
from vae_core.datasets import DatasetError, available_datasets
from vae_core.external import DECODER_OUTPUTS, INPUT_RANGES, OwnModel

from .models import ModelHandle, cli_model, default_model, external_key, model_choices, resolve, shared_dataset
from .navigation import page_links
from .state import notice, read_link, session, sync_url, view, widget
from .view import CLASSROOM, NAMED_DATASETS

LOCAL_CODE_ALLOWED = not CLASSROOM  # `make serve` turns it off


def plain(text: str) -> str:
    """Text shown as written: Markdown would turn `__init__` bold and `[x](y)` into a link."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-!|~$:])", r"\\\1", text)


def _model_changed() -> None:
    view().switch_model(view().model)


def _accept_upload(file) -> None:
    """on_click of "Open upload": runs before the script, so the picker shows the upload."""
    state = session()
    if file is None:
        return
    data = file.getvalue()
    try:
        ckpt = open_uploaded(file.name, data, state.upload_config)
    except CheckpointError as exc:
        state.upload_error = str(exc)
        return
    key = "upload:" + hashlib.sha256(data).hexdigest()[:16]
    state.uploads[key] = ckpt
    state.view.switch_model(key)
    state.upload_error = None


def _open_own_model() -> None:
    """on_click of "Open my model": register it and switch the picker to it (before the script runs)."""
    form = session().own_model
    spec, weights = form.spec.strip(), form.weights.strip()
    if not spec or not weights:
        session().model_error = "Give both the model (file.py:Class) and its weights file."
        return
    view().switch_model(external_key(OwnModel(spec, weights, form.model_kwargs.strip(), form.outputs,
                                              form.input_range, form.dataset)))


def _choose_model(choices: dict[str, str]) -> None:
    """Make view.model one the picker offers: the default when the link names none; a checkpoint named
    without its "file:" prefix as that checkpoint; for a link that names a model this server lacks,
    the default with a notice saying so."""
    wanted = view().model
    if wanted in choices:
        return
    fallback = default_model(choices)
    if not wanted:  # the link's other fields are meant for whatever opens by default
        view().model = fallback
        return
    if wanted != "upload" and f"file:{wanted}" in choices:  # a hand-typed link names a checkpoint as the models folder lists it
        view().model = f"file:{wanted}"
        return
    shown = choices.get(fallback, "no model")
    if wanted == "upload":
        notice(f"This link was made with an uploaded model, which a link cannot carry: it opens {shown} instead. "
               "Upload the file in the sidebar to see it.")
    else:
        notice(f"There is no model “{wanted.partition(':')[2] or wanted}” on this server: showing {shown} instead.")
    view().switch_model(fallback)


def _open_model(choices: dict[str, str]) -> ModelHandle | None:
    """The chosen model, opened; one that fails to open sends the picker back to the last good one."""
    state = session()
    if not state.view.model:
        return None
    try:
        token, ckpt = resolve(state.view.model)
    except (CheckpointError, DatasetError, OSError) as exc:  # DatasetError: its dataset's files are absent
        failed, good = state.view.model, state.last_good_model
        choices = model_choices()  # the command line's model may have joined since the page began
        state.model_error = f"Could not open {choices.get(failed, failed)}: {exc}"
        state.external_models.pop(failed, None)  # a failed one leaves the picker
        if not good or good == failed:
            return None
        state.model_error += f". Back on {choices.get(good, good)}."
        state.last_good_model = ""  # tried once: no loop if it fails too
        state.view.switch_model(good)
        return _open_model(choices)
    state.last_good_model = state.view.model
    return ModelHandle(state.view.model, token, ckpt, ckpt.dataset.get("name") or "digits")


def _uploads() -> None:
    state = session()
    with st.expander("Upload a model"):
        file = st.file_uploader("Checkpoint (.safetensors, a .pt state_dict, or a zip of a pythae or ONNX folder)",
                                type=["safetensors", "pt", "zip"])
        st.text_area("Config JSON for a .pt", height=80, **widget("upload_config"),
                     placeholder='{"input_shape": [1, 8, 8], "latent_dim": 8, "dataset": "digits"}')
        st.button("Open upload", disabled=file is None, on_click=_accept_upload, args=(file,))
        if state.upload_error:
            st.error(plain(f"Could not open the upload: {state.upload_error}. The current model stays loaded."))
    if LOCAL_CODE_ALLOWED:
        with st.expander("Your own model (local files)"):
            st.caption("A Python file whose class has encode(x) → (μ, log σ²) and decode(z) → x, its constructor's "
                       "arguments, and its weights. The file runs on this computer: name only code you trust.")
            st.text_input("Model", placeholder="path/to/my_vae.py:VanillaVAE", **widget("own_model.spec"))
            st.text_input("Constructor arguments (JSON)", placeholder='{"in_channels": 1, "latent_dim": 16}',
                          **widget("own_model.model_kwargs"))
            st.text_input("Weights (.safetensors, .pt state_dict or Lightning .ckpt)", placeholder="path/to/weights.pt",
                          **widget("own_model.weights"))
            st.selectbox("Dataset", NAMED_DATASETS, **widget("own_model.dataset"))
            st.radio("decode(z) returns", DECODER_OUTPUTS, horizontal=True, **widget("own_model.outputs"),
                     help="logits (before a sigmoid), probabilities in [0, 1], or tanh in [−1, 1]")
            st.radio("encode(x) takes images in", list(INPUT_RANGES), horizontal=True,
                     format_func=lambda r: f"[{r.replace(',', ', ')}]", **widget("own_model.input_range"))
            st.button("Open my model", on_click=_open_own_model)


def _dataset(handle: ModelHandle) -> ModelHandle | None:
    """The dataset to encode: the model's own, or another of the same image shape."""
    own = handle.dataset_name
    options = [""] + [d for d in available_datasets() if d != own]
    if view().dataset not in options:
        view().dataset = ""
    chosen = st.selectbox("Dataset to encode", options, format_func=lambda d: d or own, **widget("view.dataset"),
                          help="The model's own dataset, or another with the same image shape") or own
    try:
        data = shared_dataset(chosen)
    except DatasetError as exc:
        st.error(str(exc))
        return None
    if data.image_shape != tuple(handle.config.input_shape):
        st.warning(f"{chosen} images are {data.image_shape}, the model takes {handle.config.input_shape}: using {own}.")
        view().dataset, chosen = "", own
    handle.dataset_name = chosen
    return handle


def sidebar() -> ModelHandle | None:
    """The page links, model picker, uploads and dataset choice; returns the session's open model."""
    state = session()
    choices = model_choices()
    _choose_model(choices)
    handle = _open_model(choices)
    if state.model_error:  # a model that failed to open left the picker
        choices = model_choices()
    with st.sidebar:
        page_links()
        st.divider()
        if not choices:
            st.warning(f"No models in {checkpoint_dir()} yet: train one on the Train page, or upload one.")
        if state.view.model:
            st.selectbox("Model", list(choices), format_func=choices.get, **widget("view.model", _model_changed),
                         help=f"Checkpoints in {checkpoint_dir()} and your uploads")
        if state.view.model.startswith("upload:"):
            st.caption("An upload lives in this browser only: a link to this page opens the default model.")
        _uploads()
        if state.model_error:
            st.error(plain(state.model_error))
            state.model_error = None
        if handle is not None:
            handle = _dataset(handle)
        if handle is not None:
            try:
                measured, warning = handle.measured()
            except Exception as exc:  # the user's own code, run on this dataset for the first time
                measured, warning = {}, f"Scoring the model on {handle.dataset_name} failed: {type(exc).__name__}: {exc}"
            card = model_card(handle.ckpt, measured)
            st.caption(" · ".join(f"**{k}** {plain(str(v))}" for k, v in card.items()))
            if warning:
                st.warning(plain(warning))
    return handle


def frame(page: str, needs_model: bool = True) -> ModelHandle | None:
    """Every page starts here: page config, the link, the sidebar, notices; returns the open model.

    Pages call it themselves rather than rely on app.py having run first: with a pages/ folder,
    Streamlit runs page files directly (its legacy multipage mode) until a session reaches
    st.navigation."""
    st.set_page_config(page_title="Latent Explorer", layout="wide")
    if read_link(page) and cli_model() is not None:  # a new session: the command line's model joins the picker
        external_key(cli_model())
    handle = sidebar()
    if handle is not None:
        cfg = handle.config
        state = session()
        state.notices += view().fit(len(handle.data.x_test), cfg.latent_dim, len(handle.label_names),
                                    tuple(cfg.input_shape[1:]))
    for text in session().notices:
        st.warning(text, icon="🔗")
    session().notices.clear()
    sync_url()
    if handle is None and needs_model:
        st.info("Choose a model in the sidebar to begin.")
        st.stop()
    return handle
