"""What every page shares: the model picker, caches, per-user state and the URL that mirrors it.

Models and datasets are shared, read-only objects (st.cache_resource, eval mode, used only under
torch.inference_mode); encodings and maps are cached data keyed by a token naming the exact
weights. A student's own upload lives in their session only. Nothing per-user is a module global.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sys
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from vae_core.catalog import DEFAULT_MODEL, checkpoint_dir, list_checkpoints, model_card, open_uploaded
from vae_core.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from vae_core.datasets import DatasetError, ImageDataset, load_dataset
from vae_core.images import make_grid, png_bytes, png_data_uri, upscale_factor
from vae_core.jobs import available_datasets
from vae_core.metrics import encode_all
from vae_core.projection import ProjectionParams, project

from .navigation import page_links

# Decoding a small VAE takes far below a millisecond; extra threads only contend when a classroom
# of sessions decode at once, so each decode runs on one thread.
torch.set_num_threads(1)
# The modules imported so far live as long as the server: move their objects out of the garbage
# collector's view, so its full collections scan only what the sessions allocate.
gc.freeze()



# -- command line: `streamlit run app.py -- --model my_vae.py:VAE --weights w.pt --dataset digits` --
def cli_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamlit run app.py --", add_help=False)
    parser.add_argument("--model", help="your own model: path/to/file.py:ClassName")
    parser.add_argument("--weights", help="its weights (.pt state_dict or .safetensors)")
    parser.add_argument("--dataset", default="digits", help="dataset its inputs come from")
    parser.add_argument("--decoder-outputs", default="logits", choices=["logits", "probabilities"])
    parser.add_argument("--checkpoint", help="open this .safetensors checkpoint first")
    return parser.parse_known_args(sys.argv[1:])[0]


# -- shared caches ---------------------------------------------------------------------------
def _read_only(ckpt: Checkpoint) -> Checkpoint:
    """A model every session shares: eval mode, and no parameter asks for gradients, so no session
    can build an autograd graph on it (or, by mistake, train it)."""
    ckpt.model.eval().requires_grad_(False)
    return ckpt


@st.cache_resource(max_entries=16, show_spinner="Loading model…")
def file_checkpoint(path: str, mtime: float) -> Checkpoint:
    """A checkpoint file, loaded once per server (and again when the file changes)."""
    return _read_only(load_checkpoint(path))


@st.cache_resource(max_entries=4, show_spinner="Loading your model…")
def _external_checkpoint(spec: str, weights: str, dataset: str, decoder_outputs: str) -> Checkpoint:
    from vae_core.external import load_external

    data = shared_dataset(dataset)
    return _read_only(load_external(spec, weights, data.image_shape, decoder_outputs, dataset, data.label_names))


@st.cache_resource(max_entries=8, show_spinner="Loading dataset…")
def shared_dataset(name: str) -> ImageDataset:
    return load_dataset(name)


@st.cache_data(max_entries=64, ttl="2h", show_spinner="Encoding the dataset…")
def encodings(model_token: str, dataset_name: str, split: str, _model) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means of a split and its labels; `_model` is not hashed, model_token names it."""
    data = shared_dataset(dataset_name)
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    mu, _ = encode_all(_model, x, y if _model.config.conditional else None)
    return mu.numpy(), y.numpy()


@st.cache_data(max_entries=32, ttl="2h", show_spinner=False)
def latent_map(model_token: str, dataset_name: str, split: str, params: tuple, _z: np.ndarray) -> np.ndarray:
    return project(_z, ProjectionParams(*params))


# -- the model the session is looking at ------------------------------------------------------
@dataclass
class Active:
    key: str  # "file:<name>", "upload:<sha>" or "external:<hash>"
    token: str  # names the exact weights, for the caches
    ckpt: Checkpoint
    dataset_name: str

    @property
    def model(self):
        return self.ckpt.model

    @property
    def config(self):
        return self.ckpt.config

    @property
    def data(self) -> ImageDataset:
        return shared_dataset(self.dataset_name)

    @property
    def label_names(self) -> list[str]:
        return self.ckpt.dataset.get("label_names") or self.data.label_names

    def encodings(self, split: str = "test"):
        return encodings(self.token, self.dataset_name, split, self.model)

    def images(self, indices, split: str = "test") -> torch.Tensor:
        x = self.data.x_test if split == "test" else self.data.x_train
        return x[torch.as_tensor(indices, dtype=torch.long)]

    def labels(self, indices, split: str = "test") -> torch.Tensor:
        y = self.data.y_test if split == "test" else self.data.y_train
        return y[torch.as_tensor(indices, dtype=torch.long)]


def _resolve(key: str) -> tuple[str, Checkpoint]:
    if key.startswith("file:"):
        name = key.removeprefix("file:")
        path = list_checkpoints().get(name)
        if path is None:
            raise CheckpointError(f"no checkpoint named {name!r} in checkpoints/")
        return f"{path}:{path.stat().st_mtime}", file_checkpoint(str(path), path.stat().st_mtime)
    if key.startswith("upload:"):
        upload = st.session_state.get("uploads", {}).get(key)
        if upload is None:
            raise CheckpointError("that upload is no longer in this session; upload it again")
        return key, upload
    if key.startswith("external:"):
        spec = st.session_state.get("external_models", {}).get(key)
        if spec is None:
            raise CheckpointError("that model is no longer in this session; open it again")
        weights = Path(spec[1])
        mtime = weights.stat().st_mtime if weights.exists() else 0
        return f"{key}:{mtime}", _external_checkpoint(*spec)
    raise CheckpointError(f"unknown model {key!r}")


def model_choices() -> dict[str, str]:
    """key -> label for the picker: shipped/user checkpoints, this session's uploads, a CLI model."""
    choices = {f"file:{name}": name for name in list_checkpoints()}
    for key, ckpt in st.session_state.get("uploads", {}).items():
        choices[key] = f"⬆ {ckpt.path.name if ckpt.path else key[7:15]}"
    for key, spec in st.session_state.get("external_models", {}).items():
        choices[key] = f"🐍 {Path(spec[0].rpartition(':')[0]).name}:{spec[0].rpartition(':')[2]}"
    return choices


def external_key(spec: str, weights: str, dataset: str, decoder_outputs: str) -> str:
    """Register a bring-your-own model (local files) in this session; returns its picker key."""
    args = (spec, weights, dataset, decoder_outputs)
    key = "external:" + hashlib.sha256("\0".join(args).encode()).hexdigest()[:12]
    st.session_state.setdefault("external_models", {})[key] = args
    return key


LOCAL_CODE_ALLOWED = not os.environ.get("LATENT_EXPLORER_CLASSROOM")  # `make serve` turns it off


def _default_key(choices: dict[str, str]) -> str:
    opts = cli_options()
    if opts.model and opts.weights:
        return external_key(opts.model, opts.weights, opts.dataset, opts.decoder_outputs)
    if opts.checkpoint and f"file:{Path(opts.checkpoint).stem}" in choices:
        return f"file:{Path(opts.checkpoint).stem}"
    if f"file:{DEFAULT_MODEL}" in choices:
        return f"file:{DEFAULT_MODEL}"
    return next(iter(choices), "")  # "": no model at all yet (an empty checkpoints folder)


def init_state() -> None:
    """First run of a session: defaults, then whatever the URL says (a shared link)."""
    state = st.session_state
    if state.get("_initialised"):
        return
    state._initialised = True
    state.setdefault("uploads", {})
    opts = cli_options()
    if opts.model and opts.weights:
        external_key(opts.model, opts.weights, opts.dataset, opts.decoder_outputs)
    choices = model_choices()
    state.model_key = _default_key(choices)
    state.sample = 0
    state.seed = 0
    params = st.query_params
    if params.get("model") in choices:
        state.model_key = params["model"]
    for key in ("sample", "seed"):
        try:
            state[key] = max(0, int(params.get(key, state[key])))
        except ValueError:
            pass
    try:  # the traversal's latent vector, as "z=0.10,-1.25,..."
        z = [float(v) for v in params.get("z", "").split(",") if v]
        state.current_z = [min(4.0, max(-4.0, v)) for v in z if np.isfinite(v)] if z else None
    except ValueError:
        state.current_z = None


def sync_url() -> None:
    """Mirror the shareable view into the query string on every run (page switches clear it)."""
    state = st.session_state
    wanted = {"model": state.model_key, "sample": str(state.sample), "seed": str(state.seed)}
    if state.model_key.startswith("upload:"):
        wanted.pop("model")  # an upload cannot be reopened from a link
    for key, value in wanted.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value


def persistent(key: str, default=None) -> str:
    """A widget key that mirrors st.session_state[key]. Streamlit forgets a widget's own state
    when a run (another page, or a page switch) does not draw it; the mirrored key outlives that.
    Call before drawing the widget, with on_change=store, args=(key,)."""
    if key not in st.session_state:
        st.session_state[key] = default
    widget_key = f"_w_{key}"
    st.session_state[widget_key] = st.session_state[key]
    return widget_key


def store(key: str) -> None:
    st.session_state[key] = st.session_state[f"_w_{key}"]


def _accept_upload() -> None:
    """on_click of "Open upload": runs before the script, so it may switch the model picker."""
    file = st.session_state.get("upload_file")
    if file is None:
        return
    data = file.getvalue()
    try:
        ckpt = open_uploaded(file.name, data, st.session_state.get("upload_config", ""))
    except CheckpointError as exc:
        st.session_state.upload_error = str(exc)
        return
    key = "upload:" + hashlib.sha256(data).hexdigest()[:16]
    st.session_state.uploads[key] = ckpt
    st.session_state.model_key = key
    st.session_state.upload_error = None


def _open_local_model() -> None:
    """on_click of "Open my model": register it and switch the picker to it (before the script runs)."""
    state = st.session_state
    spec, weights = state.get("byom_spec", "").strip(), state.get("byom_weights", "").strip()
    if not spec or not weights:
        state.model_error = "Give both the model (file.py:Class) and its weights file."
        return
    state.model_key = external_key(spec, weights, state.byom_dataset, state.byom_outputs)


def sidebar() -> Active | None:
    """The model picker, upload and dataset choice; returns the session's active model."""
    init_state()
    state = st.session_state
    choices = model_choices()
    if state.get("fallback_model"):  # a model that failed to open sends us back to the last good one
        state.model_key = state.pop("fallback_model")
    if state.model_key not in choices:
        state.model_key = _default_key(choices)
    with st.sidebar:
        page_links()
        st.divider()
        if not choices:
            st.warning(f"No models in {checkpoint_dir()} yet: train one on the Train page, or upload one.")
        st.selectbox("Model", list(choices), format_func=choices.get, key=persistent("model_key"),
                     on_change=store, args=("model_key",), help=f"Checkpoints in {checkpoint_dir()} and your uploads")
        with st.expander("Upload a model"):
            file = st.file_uploader("Checkpoint (.safetensors, or .pt state_dict)", type=["safetensors", "pt"],
                                    key="upload_file")
            st.text_area("Config JSON for a .pt", key="upload_config", height=80,
                         placeholder='{"input_shape": [1, 8, 8], "latent_dim": 8, "dataset": "digits"}')
            st.button("Open upload", disabled=file is None, on_click=_accept_upload)
            if state.get("upload_error"):
                st.error(f"Could not open the upload: {state.upload_error}. The current model stays loaded.")
        if LOCAL_CODE_ALLOWED:
            with st.expander("Your own model (local files)"):
                st.caption("A Python file whose class has encode(x) → (μ, log σ²) and decode(z) → x, and its "
                           "weights. The file runs on this computer: name only code you trust.")
                st.text_input("Model", key="byom_spec", placeholder="path/to/my_vae.py:VAE")
                st.text_input("Weights (.pt state_dict or .safetensors)", key="byom_weights",
                              placeholder="path/to/weights.pt")
                st.selectbox("Dataset", ["digits", "mnist-5k", "shapes", "mnist", "fashion-mnist", "kmnist", "cifar10"],
                             key="byom_dataset")
                st.radio("decode(z) returns", ["logits", "probabilities"], key="byom_outputs", horizontal=True)
                st.button("Open my model", on_click=_open_local_model)
        if state.get("model_error"):
            st.error(state.pop("model_error"))
        if not state.model_key:
            return None
        try:
            token, ckpt = _resolve(state.model_key)
        except (CheckpointError, OSError) as exc:
            message = f"Could not open {choices.get(state.model_key, state.model_key)}: {exc}"
            state.get("external_models", {}).pop(state.model_key, None)  # a failed one leaves the picker
            previous = state.get("last_good_model")
            if previous and previous != state.model_key:
                state.model_error = f"{message}. Back on {choices.get(previous, previous)}."
                state.fallback_model = previous
                st.rerun()
            st.error(message)
            return None
        state.last_good_model = state.model_key
        own = ckpt.dataset.get("name") or "digits"
        options = [own] + [d for d in available_datasets() if d != own]
        dataset_key = f"dataset_for_{state.model_key}"
        dataset = st.selectbox("Dataset to encode", options, key=persistent(dataset_key, own), on_change=store,
                               args=(dataset_key,), help="The model's own dataset, or another with the same image shape")
        try:
            data = shared_dataset(dataset)
        except DatasetError as exc:
            st.error(str(exc))
            return None
        if data.image_shape != tuple(ckpt.config.input_shape):
            st.warning(f"{dataset} images are {data.image_shape}, the model takes {ckpt.config.input_shape}: "
                       f"using {own}.")
            dataset = own
        card = model_card(ckpt)
        st.caption(" · ".join(f"**{k}** {v}" for k, v in card.items()))
    sync_url()
    return Active(state.model_key, token, ckpt, dataset)


def frame(needs_model: bool = True) -> Active | None:
    """Every page starts here: page config, the sidebar's model picker, the active model.

    Pages call it themselves rather than rely on app.py having run first: with a pages/ folder,
    Streamlit runs page files directly (its legacy multipage mode) until a session reaches
    st.navigation, and AppTest does so on every run."""
    st.set_page_config(page_title="Latent Explorer", layout="wide")
    active = sidebar()
    if active is None and needs_model:
        st.info("Choose a model in the sidebar to begin.")
        st.stop()
    return active


# -- pictures ---------------------------------------------------------------------------------
INLINE_PICTURE_BYTES = 256 * 1024  # every picture the app draws is far smaller; bigger ones go to the media store


def show_images(images: torch.Tensor, ncols: int | None = None, caption: str | None = None, height: int = 96,
                width: str | int = "content") -> bytes:
    """Show a (N, C, H, W) batch as one crisp grid; returns the PNG so pages can offer it for download."""
    ncols = ncols or len(images)
    png = png_bytes(make_grid(images, ncols), upscale_factor(images.shape[-2], height))  # PNG: crisp pixels
    # Small pictures travel inside the page's own message as data: URIs. Through Streamlit's media
    # store, each is a second request for a file that the session's next run deletes: with a class
    # of 30 on one server, browsers asked for pictures already gone (bench/classroom.py, 404s).
    st.image(png_data_uri(png) if len(png) <= INLINE_PICTURE_BYTES else png, caption=caption, width=width)
    return png


def latent_order(active: Active) -> tuple[list[int], np.ndarray]:
    """Dimensions by KL (most informative first) and the KL per dimension, from the test set."""
    kl = kl_per_dimension(active.token, active.dataset_name, active.model)
    return [int(i) for i in np.argsort(-kl)], kl


@st.cache_resource(max_entries=16, show_spinner="Preparing the decoder for your browser…")
def _browser_decoder(model_token: str, _model) -> tuple[bytes | None, str]:
    from vae_core.onnx_decoder import DecoderExportError, decoder_onnx

    try:
        return decoder_onnx(_model), ""
    except DecoderExportError as exc:
        return None, str(exc)


def browser_decoder(active: Active) -> tuple[bytes | None, str]:
    """(the decoder as ONNX for the live pad, "") or (None, why it cannot be had); once per model."""
    return _browser_decoder(active.token, active.model)


@st.cache_data(max_entries=64, show_spinner=False)
def kl_per_dimension(model_token: str, dataset_name: str, _model) -> np.ndarray:
    from vae_core.metrics import evaluate

    data = shared_dataset(dataset_name)
    return np.asarray(evaluate(_model, data.x_test[:1000], data.y_test[:1000])["kl_per_dim"])


# -- the latent map, shared by the map, traversal and interpolation pages ----------------------
def current_map(active: Active):
    """(coords, z, labels) of the map this session computed for the active model, else None.
    A latent of at most 3 dimensions is its own map, so it is always there."""
    spec = st.session_state.get("map_spec")
    if spec and spec[:2] == (active.token, active.dataset_name):
        split, params = spec[2], spec[3]
    elif active.config.latent_dim <= 3:
        split, params = "test", astuple(ProjectionParams("pca", max(2, active.config.latent_dim)))
    else:
        return None
    z, y = active.encodings(split)
    return latent_map(active.token, active.dataset_name, split, params, z), z, y


def map_figure(coords: np.ndarray, labels: np.ndarray, label_names: list[str], marks=(), height: int = 520,
               thumbnails: tuple[np.ndarray, list[str]] | None = None):
    """Scatter (WebGL in 2-D) coloured by label; each point's customdata is its dataset index.

    marks: (name, coords (M, d), colour, mode) drawn on top — a current point or a path.
    thumbnails: (indices, data URIs) of images drawn at their points (2-D maps only)."""
    import plotly.graph_objects as go

    index = np.arange(len(coords))
    figure = go.Figure()
    three_d = coords.shape[1] == 3
    for label in sorted(set(labels.tolist())):
        sel = labels == label
        name = label_names[label] if label < len(label_names) else str(label)
        common = dict(mode="markers", name=name, customdata=index[sel],
                      hovertemplate=f"#%{{customdata}} · {name}<extra></extra>")
        if three_d:
            figure.add_trace(go.Scatter3d(x=coords[sel, 0], y=coords[sel, 1], z=coords[sel, 2],
                                          marker=dict(size=2.5), **common))
        else:
            figure.add_trace(go.Scattergl(x=coords[sel, 0], y=coords[sel, 1], marker=dict(size=5, opacity=0.75),
                                          **common))
    for name, points, colour, mode in marks:
        points = np.atleast_2d(points)
        style = dict(name=name, mode=mode, marker=dict(size=12 if mode == "markers" else 6, color=colour,
                                                       line=dict(width=1.5, color="black")),
                     line=dict(color=colour, width=3), hoverinfo="name")
        if three_d:
            figure.add_trace(go.Scatter3d(x=points[:, 0], y=points[:, 1], z=points[:, 2], **style))
        else:
            figure.add_trace(go.Scatter(x=points[:, 0], y=points[:, 1], **style))
    if thumbnails is not None and not three_d:
        indices, uris = thumbnails
        size = 0.03 * float(np.ptp(coords[:, :2], axis=0).max() or 1.0)
        figure.update_layout(images=[dict(source=uri, xref="x", yref="y", x=coords[i, 0], y=coords[i, 1], sizex=size,
                                          sizey=size, xanchor="center", yanchor="middle", layer="above")
                                     for i, uri in zip(indices, uris)])
    figure.update_layout(height=height, margin=dict(l=0, r=0, t=10, b=0), legend=dict(itemsizing="constant"),
                         dragmode="lasso" if not three_d else "orbit")
    return figure
