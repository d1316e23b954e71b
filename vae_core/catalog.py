"""The models the app can open: shipped checkpoints, user checkpoints, and their cards."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .archive import Bundle, read_folder, read_zip
from .checkpoint import MAX_CHECKPOINT_BYTES, Checkpoint, CheckpointError, load_checkpoint, load_state_dict_pt, parse_checkpoint
from .datasets import DatasetError, dataset_for_shape

# The files a model folder may hold that this app reads: a pythae folder's and an ONNX pair's.
FOLDER_FILES = {"model_config.json", "model.pt", "environment.json", "encoder.onnx", "decoder.onnx", "model.json"}
OPENABLE = "a .safetensors checkpoint, a pythae folder (model_config.json, model.pt) or an ONNX folder " \
           "(encoder.onnx, decoder.onnx, model.json), or a zip of either folder"

DEFAULT_MODEL = "mnist-vae"


def checkpoint_dir() -> Path:
    """The shipped checkpoints/ folder, or $LATENT_EXPLORER_CHECKPOINTS."""
    default = Path(__file__).resolve().parent.parent / "checkpoints"
    return Path(os.environ.get("LATENT_EXPLORER_CHECKPOINTS", default))


def list_checkpoints(folder: Path | None = None) -> dict[str, Path]:
    """name -> path for every .safetensors under folder (sub-folders too), sorted, default first."""
    folder = folder or checkpoint_dir()
    found = {p.relative_to(folder).with_suffix("").as_posix(): p for p in sorted(folder.rglob("*.safetensors"))
             if not any(part.startswith(".") for part in p.relative_to(folder).parts)}
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != DEFAULT_MODEL, kv[0])))


def safe_name(name: str, fallback: str = "model") -> str:
    """A file name safe to create under checkpoints/: no folders, no dots in front, plain characters."""
    stem = Path(str(name).replace("\\", "/")).name
    stem = re.sub(r"\.safetensors$", "", stem)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-_")[:64]
    return stem or fallback


def unique_path(name: str, folder: Path | None = None) -> Path:
    """folder/<safe name>.safetensors, with -2, -3, ... appended rather than overwrite anything."""
    folder = folder or checkpoint_dir()
    stem = safe_name(name)
    path, n = folder / f"{stem}.safetensors", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.safetensors", n + 1
    return path


def objective_label(config) -> str:
    """What the model was trained to do, in the words of the papers: VAE, β-VAE or β-TCVAE, with β."""
    if config.objective == "ae":
        return "autoencoder (no KL)"
    if config.objective == "beta-tcvae":
        return f"β-TCVAE (β = {config.beta:g})"
    return "VAE" if config.beta == 1 else f"β-VAE (β = {config.beta:g})"


def units_note(likelihood: str, obs_sigma: float) -> str:
    """One line on what the ELBO's numbers mean under this p(x|z), for every page that shows them."""
    if likelihood == "gaussian":
        return (f"Gaussian p(x|z), σ = {obs_sigma:g}: the ELBO is a log-*density* in nats per image and can be "
                "positive; the reconstruction term is a squared error over 2σ² plus a constant, and can fall below "
                "zero. Compare these numbers only between models with the same σ.")
    return ("Bernoulli p(x|z): the ELBO is a log-probability in nats per image, always ≤ 0 (closer to 0 is "
            "better); the reconstruction term is the cross-entropy of the pixels, a positive number of nats.")


def open_bundle(bundle: Bundle) -> Checkpoint:
    """A pythae folder or an ONNX pair, read from a folder or a zip."""
    if bundle.names & {"model.json", "encoder.onnx", "decoder.onnx"}:
        from .onnx_pair import open_onnx_pair

        return open_onnx_pair(bundle)
    from .pythae_folder import is_pythae, open_pythae

    if is_pythae(bundle):
        return open_pythae(bundle)
    raise CheckpointError(f"{bundle.name}: neither a pythae folder (model_config.json, model.pt) nor an ONNX "
                          "folder (encoder.onnx, decoder.onnx, model.json)")


def open_model_path(path: str | Path, dataset: str | None = None) -> Checkpoint:
    """The one entry point for a model on disk (see OPENABLE). `dataset` names the data its images
    come from, over what the files say (a pythae folder says nothing: its image shape chooses)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors" and not path.is_dir():
        ckpt = load_checkpoint(path)
    elif path.is_dir() or (path.suffix == ".zip" and path.is_file()):
        if path.is_dir():
            bundle = read_folder(path, FOLDER_FILES)
        elif path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path.name}: larger than any model this app loads")
        else:
            bundle = read_zip(path.read_bytes(), path.name, FOLDER_FILES)
        ckpt = open_bundle(bundle)
        ckpt.path = path
    elif not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    else:
        raise CheckpointError(f"{path.name}: not {OPENABLE}. Weights of your own class (.pt, .pth, .ckpt) open "
                              "with --model file.py:Class --weights FILE")
    if dataset:
        ckpt.dataset = {**ckpt.dataset, "name": dataset}
    return ckpt


def model_card(ckpt: Checkpoint, measured: dict | None = None) -> dict:
    """What a person needs to know about a model at a glance; `measured` holds the test ELBO and
    reconstruction computed here for a model that does not carry its own (one trained elsewhere)."""
    cfg = ckpt.config
    card = {
        "dataset": ckpt.dataset.get("name", "unknown"),
        "architecture": cfg.architecture,
        "latent size": cfg.latent_dim,
        "β": cfg.beta,
        "objective": objective_label(cfg),
        "conditional": f"yes ({cfg.num_classes} classes)" if cfg.conditional else "no",
        "likelihood": cfg.likelihood,
        "input": "×".join(map(str, cfg.input_shape)),
        "epochs": len(ckpt.history) or "—",  # a model trained elsewhere brings no history
        "test ELBO": round(ckpt.metrics["test_elbo"], 1) if "test_elbo" in ckpt.metrics else "—",
    }
    if not cfg.probabilistic:  # no posterior, no ELBO: its reconstruction is the score that applies
        card["β"] = "— (no KL term)"
        card["test ELBO"] = "none (an autoencoder)"
        recon = ckpt.metrics.get("test_recon", (measured or {}).get("recon"))
        if recon is not None:
            card["reconstruction"] = f"{recon:.1f} nats"
    elif "test_elbo" not in ckpt.metrics and measured:
        card["test ELBO"] = f"{measured['test_elbo']:.1f} (measured here on {measured['images']:,} images)"
        card["reconstruction"] = f"{measured['recon']:.1f} nats, mean pixel error {measured['pixel_error']:.3f}"
    return card


def open_uploaded(name: str, data: bytes, config_json: str = "") -> Checkpoint:
    """A checkpoint from an upload's bytes: .safetensors as is, or a .pt state_dict with its config
    as JSON (which may also name the "dataset"), or a zip of a pythae or ONNX folder. Never unpickles;
    raises CheckpointError."""
    if name.lower().endswith(".zip"):
        ckpt = open_bundle(read_zip(data, name, FOLDER_FILES))
        ckpt.path = Path(safe_name(name[:-4]) + ".zip")
        return _no_server_paths(ckpt)
    is_pt = name.lower().endswith(".pt")
    if is_pt:
        if not config_json.strip():
            raise CheckpointError(f"{name}: a .pt state_dict needs its config as JSON, e.g. "
                                  '{"input_shape": [1, 8, 8], "latent_dim": 8, "dataset": "digits"}')
        try:
            config = json.loads(config_json)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"the config is not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise CheckpointError("the config must be a JSON object")
        dataset = str(config.pop("dataset", "digits"))
        ckpt = load_state_dict_pt(data, config, name=name)
        ckpt.dataset = {"name": dataset}
    else:
        ckpt = parse_checkpoint(data, name)
    # safe_name drops only a .safetensors suffix, so cut ".pt" first (not "x.pt.pt"), then add it back
    stem, suffix = (name[:-3], ".pt") if is_pt else (name, ".safetensors")
    ckpt.path = Path(safe_name(stem) + suffix)
    return _no_server_paths(ckpt)


def _no_server_paths(ckpt: Checkpoint) -> Checkpoint:
    """An upload names its dataset, but never a path on the server (folder:..., npz:...): the app
    would read that path and show its images to whoever uploaded. Such a name gives way to the
    dataset of the model's image shape."""
    name = str(ckpt.dataset.get("name", ""))
    if ":" in name:
        try:
            fallback = dataset_for_shape(ckpt.config.input_shape)
        except DatasetError:
            fallback = ""
        ckpt.dataset = {**ckpt.dataset, "name": fallback}
    return ckpt
