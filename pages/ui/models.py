"""Models and data every session shares, and the handle a page works through.

Models and datasets are shared, read-only objects (st.cache_resource, eval mode, used only under
torch.inference_mode); encodings and maps are cached data keyed by a token naming the exact
weights. A student's own upload lives in their session only. Nothing per-user is a module global.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import sys
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from vae_core.analysis import anomaly_scores
from vae_core.catalog import DEFAULT_MODEL, list_checkpoints, open_model_path
from vae_core.checkpoint import Checkpoint, CheckpointError, first_line, load_checkpoint
from vae_core.datasets import ImageDataset, load_dataset
from vae_core.external import DECODER_OUTPUTS, INPUT_RANGES, OwnModel, load_external, reconstruction_warning
from vae_core.metrics import ACTIVE_UNIT_THRESHOLD, encode_all, evaluate, measure
from vae_core.map_cache import MapJob, MapKey
from vae_core.projection import ProjectionParams, place_on_map

from .state import session
from .view import COLOUR_BY, Z_RANGE, View


# -- command line: `streamlit run app.py -- --model my_vae.py:VAE --weights w.pt --dataset digits` --
def cli_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamlit run app.py --", add_help=False)
    parser.add_argument("--model", help="your own model: path/to/file.py:ClassName")
    parser.add_argument("--model-kwargs", default="", help="its constructor's keyword arguments, as a JSON object")
    parser.add_argument("--weights", help="its weights (.safetensors, .pt state_dict or Lightning .ckpt)")
    parser.add_argument("--dataset", default="", help="dataset its inputs come from")
    parser.add_argument("--decoder-outputs", default="logits", choices=DECODER_OUTPUTS)
    parser.add_argument("--input-range", default="0,1", choices=list(INPUT_RANGES))
    parser.add_argument("--checkpoint", help="open this model first: a .safetensors checkpoint, a pythae folder, "
                        "an ONNX folder, or a zip of either")
    return parser.parse_known_args(sys.argv[1:])[0]


@dataclass(frozen=True)
class ModelPath:
    """A model opened from where it lies (see open_model_path); frozen: it is a cache key."""
    path: str
    dataset: str = ""  # "": the one the files name, or their image shape suggests

    @property
    def label(self) -> str:
        return Path(self.path).name


def cli_model() -> OwnModel | ModelPath | None:
    """The model the command line names: the user's class, a path, or None."""
    opts = cli_options()
    if opts.model and opts.weights:
        return OwnModel(opts.model, opts.weights, opts.model_kwargs, opts.decoder_outputs, opts.input_range,
                        opts.dataset or "digits")
    if opts.checkpoint and Path(opts.checkpoint).stem not in list_checkpoints():
        return ModelPath(opts.checkpoint, opts.dataset)  # outside checkpoints/: opened from where it is
    return None


# -- shared caches ---------------------------------------------------------------------------
def _read_only(ckpt: Checkpoint) -> Checkpoint:
    """A model every session shares: eval mode, and no parameter asks for gradients, so no session
    can build an autograd graph on it (or, by mistake, train it). A conv decoder keeps its weights
    channels-last, where oneDNN's CPU kernels are faster and give the same bits: the Traversal grid's
    72 decodes took 6.2 ms instead of 7.3 on mnist-vae and 15.1 instead of 22.6 on shapes-vae (one
    thread, in-process; the encoders, whose results differ in the 6th decimal, stay as they are)."""
    ckpt.model.eval().requires_grad_(False)
    decoder = getattr(ckpt.model, "decoder_body", None)
    if isinstance(decoder, torch.nn.Module):
        decoder.to(memory_format=torch.channels_last)
    return ckpt


@st.cache_resource(max_entries=16, show_spinner="Loading model…")
def file_checkpoint(path: str, mtime: float) -> Checkpoint:
    """A checkpoint file, loaded once per server (and again when the file changes)."""
    return _read_only(load_checkpoint(path))


@st.cache_resource(max_entries=4, show_spinner="Loading your model…")
def _external_checkpoint(source: OwnModel | ModelPath, version: float) -> Checkpoint:
    """A model from outside checkpoints/: the user's class and weights, or a path open_model_path reads."""
    if isinstance(source, ModelPath):
        return _read_only(open_model_path(source.path, source.dataset or None))
    data = shared_dataset(source.dataset)
    return _read_only(load_external(source, data.image_shape, data.label_names))


@st.cache_resource(max_entries=8, show_spinner="Loading dataset…")
def shared_dataset(name: str) -> ImageDataset:
    return load_dataset(name)


@st.cache_data(max_entries=64, ttl="2h", show_spinner="Encoding the dataset…")
def _encodings(model_token: str, dataset_name: str, split: str, _model) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means of a split and its labels; `_model` is not hashed, model_token names it."""
    data = shared_dataset(dataset_name)
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    mu, _ = encode_all(_model, x, y if _model.config.conditional else None)
    return mu.numpy(), y.numpy()


@st.cache_resource(max_entries=64, show_spinner=False)
def _weights_digest(model_token: str, _model) -> str:
    return _model.weights_digest()


@st.cache_resource(max_entries=8, ttl="2h", show_spinner=False)
def _latent_map(model_token: str, dataset_name: str, split: str, params: tuple, digest: str, _z: np.ndarray,
                _y: np.ndarray) -> MapJob:
    """The job computing a map (from the disk cache, which survives restarts, else projected now),
    started in the background: every session asking for this map watches the same job, and its
    result is shared read-only, like the models."""
    return MapJob(MapKey(digest, dataset_name, split, ProjectionParams(*params)), _z, _y)


def _wait_for(job: MapJob) -> None:
    """Draw the job's progress (steps done, time left) until its map is ready."""
    if job.wait(0.05):
        return
    bar = st.empty()
    while not job.wait(0.25):
        bar.progress(job.fraction(), text=job.status())
    bar.empty()


@st.cache_data(max_entries=32, show_spinner="Scoring every image…")
def _point_scores(model_token: str, dataset_name: str, split: str, _model) -> dict[str, np.ndarray]:
    data = shared_dataset(dataset_name)
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return anomaly_scores(_model, x, y if _model.config.conditional else None)


@st.cache_data(max_entries=64, show_spinner=False)
def _kl_per_dimension(model_token: str, dataset_name: str, _model) -> np.ndarray:
    data = shared_dataset(dataset_name)
    return np.asarray(evaluate(_model, data.x_test[:1000], data.y_test[:1000])["kl_per_dim"])


@st.cache_data(max_entries=64, show_spinner="Scoring the model on the test set…")
def _measured(model_token: str, dataset_name: str, scores: bool, _model) -> tuple[dict, str]:
    """(test scores if asked, a warning when its reconstructions look like a wrong output range)."""
    data = shared_dataset(dataset_name)
    y = data.y_test if _model.config.conditional else None
    return (measure(_model, data.x_test, y) if scores else {}), reconstruction_warning(_model, data.x_test, y)


@st.cache_resource(max_entries=16, show_spinner="Preparing the decoder for your browser…")
def _browser_decoder(model_token: str, _model) -> tuple[bytes | None, str]:
    from vae_core.onnx_decoder import DecoderExportError, decoder_onnx

    if getattr(_model, "onnx_decoder", None):  # an ONNX pair: the browser runs its own decoder graph
        return _model.onnx_decoder, ""
    try:
        return decoder_onnx(_model), ""
    except DecoderExportError as exc:
        return None, str(exc)


# -- which models a session can open ------------------------------------------------------------
def resolve(key: str) -> tuple[str, Checkpoint]:
    """(cache token, checkpoint) of a picker key; CheckpointError says why it cannot be opened."""
    if key.startswith("file:"):
        name = key.removeprefix("file:")
        path = list_checkpoints().get(name)
        if path is None:
            raise CheckpointError(f"no checkpoint named {name!r} in checkpoints/")
        return f"{path}:{path.stat().st_mtime}", file_checkpoint(str(path), path.stat().st_mtime)
    if key.startswith("upload:"):
        upload = session().uploads.get(key)
        if upload is None:
            raise CheckpointError("that upload is no longer in this session; upload it again")
        return key, upload
    if key.startswith("external:"):
        source = session().external_models.get(key)
        if source is None:
            raise CheckpointError("that model is no longer in this session; open it again")
        version = _newest_change(source)
        return f"{key}:{version}", _external_checkpoint(source, version)
    raise CheckpointError(f"unknown model {key!r}")


def _newest_change(source: OwnModel | ModelPath) -> float:
    """The newest modification time among the files a model from outside is built from (its Python
    file and weights, or every file of its folder): editing any of them opens it afresh."""
    paths = [source.path] if isinstance(source, ModelPath) else [source.spec.rpartition(":")[0], source.weights]
    files = []
    for path in map(lambda p: Path(p).expanduser(), paths):
        files += list(path.iterdir()) if path.is_dir() else [path]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


def model_choices() -> dict[str, str]:
    """key -> label for the picker: shipped/user checkpoints, this session's uploads, models from outside."""
    choices = {f"file:{name}": name for name in list_checkpoints()}
    for key, ckpt in session().uploads.items():
        choices[key] = f"⬆ {ckpt.path.name if ckpt.path else key[7:15]}"
    for key, source in session().external_models.items():
        choices[key] = f"{'🐍' if isinstance(source, OwnModel) else '📂'} {source.label}"
    return choices


def external_key(source: OwnModel | ModelPath) -> str:
    """Register a model from outside checkpoints/ (local files) in this session; returns its picker key."""
    key = "external:" + hashlib.sha256(repr(source).encode()).hexdigest()[:12]
    session().external_models[key] = source
    return key


def default_model(choices: dict[str, str]) -> str:
    """The model a session opens without a link: the command line's, else the shipped default."""
    opts, source = cli_options(), cli_model()
    if source is not None:
        return external_key(source)
    if opts.checkpoint and f"file:{Path(opts.checkpoint).stem}" in choices:
        return f"file:{Path(opts.checkpoint).stem}"
    if f"file:{DEFAULT_MODEL}" in choices:
        return f"file:{DEFAULT_MODEL}"
    return next(iter(choices), "")  # "": no model at all yet (an empty checkpoints folder)


# -- the model a page works with ------------------------------------------------------------------
@dataclass
class ModelHandle:
    """The session's open model and the data it encodes, with the operations pages need. Every
    call runs under torch.inference_mode; results of whole splits are cached across sessions."""
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
    def name(self) -> str:
        return self.ckpt.path.stem if self.ckpt.path else self.key

    @property
    def data(self) -> ImageDataset:
        return shared_dataset(self.dataset_name)

    @property
    def label_names(self) -> list[str]:
        return self.ckpt.dataset.get("label_names") or self.data.label_names

    def label_name(self, i: int) -> str:
        names = self.label_names
        return names[i] if 0 <= i < len(names) else str(i)

    def _label(self, label, n: int):
        """The labels a conditional model decodes with (one for all, or one each); None otherwise."""
        if not self.config.conditional:
            return None
        return torch.full((n,), int(label or 0)) if label is None or np.ndim(label) == 0 else torch.as_tensor(label)

    def decode(self, z, label=None) -> torch.Tensor:
        """decode() of one code (D,) or a batch (N, D); a conditional model decodes as `label`
        (a class for all, or one per code; None: class 0). A plain model ignores it."""
        z = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(-1, self.config.latent_dim)
        with torch.inference_mode():
            return self.model.decode(z, self._label(label, len(z)))

    def embed(self, x: torch.Tensor, labels=None) -> np.ndarray:
        """Posterior means μ (N, D) of images: where they sit in latent space."""
        with torch.inference_mode():
            return self.model.embed(x, self._label(labels, len(x))).numpy()

    def reconstruct(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.reconstruct(x, self._label(labels, len(x)))

    def prior(self, n: int, seed: int, temperature: float = 1.0) -> torch.Tensor:
        """n seeded draws z ~ N(0, temperature² I), shape (n, D): the same seed gives the same draws."""
        return temperature * torch.randn(n, self.config.latent_dim, generator=torch.Generator().manual_seed(int(seed)))

    def encodings(self, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """(posterior means μ (N, D), labels (N,)) of a split."""
        return _encodings(self.token, self.dataset_name, split, self.model)

    def point_scores(self, split: str = "test") -> dict[str, np.ndarray]:
        """Every image's negative ELBO, reconstruction error and KL (vae_core.analysis.anomaly_scores)."""
        return _point_scores(self.token, self.dataset_name, split, self.model)

    def colour_options(self) -> dict[str, str]:
        """What the map's points can be coloured by (View.map_colour values), in words; an autoencoder
        has no KL."""
        factors = {f"factor:{name}": f"{name} (ground-truth factor)" for name in self.data.factor_names or []}
        return {k: v for k, v in COLOUR_BY.items() if k != "kl" or self.config.probabilistic} | factors

    def colour_values(self, colour: str, split: str) -> tuple[str, np.ndarray] | None:
        """(title, one number per image of the split) for a colour_options() key; None: by label."""
        if colour in ("recon_error", "kl") and colour in self.colour_options():
            return COLOUR_BY[colour], self.point_scores(split)[colour]
        if colour.startswith("factor:"):
            name = colour.removeprefix("factor:")
            factors = self.data.factors_test if split == "test" else self.data.factors_train
            return name, factors[:, self.data.factor_names.index(name)].numpy()
        return None

    def images(self, indices, split: str = "test") -> torch.Tensor:
        x = self.data.x_test if split == "test" else self.data.x_train
        return x[torch.as_tensor(indices, dtype=torch.long)]

    def labels(self, indices, split: str = "test") -> torch.Tensor:
        y = self.data.y_test if split == "test" else self.data.y_train
        return y[torch.as_tensor(indices, dtype=torch.long)]

    def kl_order(self) -> tuple[list[int], np.ndarray]:
        """Dimensions by KL (most informative first) and the KL per dimension, from the test set. An
        autoencoder has no KL: its dimensions by the spread (σ) of their codes over the test set."""
        if self.config.probabilistic:
            kl = _kl_per_dimension(self.token, self.dataset_name, self.model)
        else:
            kl = self.encodings("test")[0].std(0).astype(np.float64)
        return [int(i) for i in np.argsort(-kl)], kl

    @functools.cached_property  # a handle lives one run; its Traversal reads this once per slider
    def z_range(self) -> float:
        """The traversal's ± range: the prior's ±4σ, or as far as the farthest test code reaches (an
        autoencoder's codes keep whatever scale training gave them)."""
        return max(Z_RANGE, float(np.ceil(np.abs(self.encodings("test")[0]).max())))

    @property
    def order_by(self) -> str:
        """What kl_order() orders by, for a label: KL, or an autoencoder's code spread."""
        return "KL" if self.config.probabilistic else "σ"

    def active_dims(self) -> np.ndarray:
        """(D,) bool: the dimensions whose μ varies over the test set (Burda et al.'s active units)."""
        z, _ = self.encodings("test")
        return z.var(0) > ACTIVE_UNIT_THRESHOLD

    def measured(self) -> tuple[dict, str]:
        """(test ELBO, reconstruction and pixel error on this dataset for a model that brought none,
        a warning when its reconstructions look like a wrong output range, else "")."""
        score = "test_elbo" if self.config.probabilistic else "test_recon"  # an autoencoder has no ELBO
        return _measured(self.token, self.dataset_name, score not in self.ckpt.metrics, self.model)

    def browser_decoder(self) -> tuple[bytes | None, str]:
        """(the decoder as ONNX for the live pad, "") or (None, why it cannot be had); once per model."""
        return _browser_decoder(self.token, self.model)

    def latent_map(self, view: View):
        """(coords, z, labels) of the map the view has on screen, else None. A latent of at most 3
        dimensions is its own map, so it is always there."""
        found = self._map_job(view)
        if found is None:
            return None
        job, z, y = found
        return job.result()[0], z, y

    def place_on_map(self, view: View, z_new) -> np.ndarray:
        """Where latent points (a slider's z, a path) land on the map the view has on screen: the
        method's own transform where its fitted reducer is at hand, else the neighbour average."""
        job, z, _ = self._map_job(view)
        coords, reducer = job.result()
        return place_on_map(np.asarray(z_new, dtype=np.float32), z, coords, reducer)

    def placed_by(self, view: View) -> str:
        """How place_on_map puts points on the map on screen, in words for a caption."""
        job, z, _ = self._map_job(view)
        coords, reducer = job.result()
        if z.shape[1] <= coords.shape[1]:
            return "their own coordinates (the latent space is the map)"
        if reducer is not None:
            return {"umap": "UMAP's own transform", "tsne": "openTSNE's own transform"}.get(
                view.map_method, "PCA's own transform")
        return ("the average position of their nearest encoded points (the fallback: a map read from the disk "
                "cache keeps no fitted model)")

    def unproject(self, view: View, points) -> tuple[np.ndarray, str] | None:
        """(latents, how they were found) at positions of the map on screen, or None where its method
        has no inverse (t-SNE): what a click on an empty spot decodes."""
        job, _, _ = self._map_job(view)
        return job.unproject(points, "pca" if self.config.latent_dim <= 3 else view.map_method)

    def _map_job(self, view: View) -> tuple[MapJob, np.ndarray, np.ndarray] | None:
        """(the finished job of the map on screen, z, labels), else None. While the map is computed,
        its progress is drawn where this is called. A failed map says why, is forgotten (the next
        try computes it again) and is switched off, so that no rerun of a page starts it again."""
        if self.config.latent_dim <= 3:
            split, params = "test", ProjectionParams("pca", max(2, self.config.latent_dim))
        elif view.map_on:
            split = view.map_split
            params = ProjectionParams(view.map_method, view.map_dims, view.map_neighbors, view.map_min_dist,
                                      view.map_perplexity)
        else:
            return None
        z, y = self.encodings(split)
        digest = _weights_digest(self.token, self.model)
        arguments = (self.token, self.dataset_name, split, astuple(params), digest, z, y)
        job = _latent_map(*arguments)
        _wait_for(job)
        if job.error is None:
            return job, z, y
        if _latent_map(*arguments) is job:  # not a newer job another session started meanwhile
            _latent_map.clear(*arguments)
        view.map_on = False
        st.warning(f"The {params.method.upper()} map could not be computed ({first_line(job.error)}). It is off "
                   "until you compute it again.")
        return None

    def map_split(self, view: View) -> str:
        return view.map_split if view.map_on and self.config.latent_dim > 3 else "test"


def other_checkpoints(handle: ModelHandle, keep: Callable[[Checkpoint], bool]) -> dict[str, ModelHandle]:
    """The models folder's other checkpoints that take `handle`'s images and pass `keep`, by name, each
    on `handle`'s dataset (to compare side by side). A broken file is the sidebar's business, not this list's."""
    found = {}
    current = handle.ckpt.path.resolve() if handle.ckpt.path and handle.key.startswith("file:") else None
    for name, path in list_checkpoints().items():
        try:
            mtime = path.stat().st_mtime
            if current is not None and path.resolve() == current:
                continue
            other = file_checkpoint(str(path), mtime)
        except (CheckpointError, OSError):
            continue
        if tuple(other.config.input_shape) == handle.data.image_shape and keep(other):
            found[name] = ModelHandle(f"file:{name}", f"{path}:{mtime}", other, handle.dataset_name)
    return found
