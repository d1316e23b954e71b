"""A folder written by pythae's `model.save(dir)`, opened without unpickling anything.

pythae writes model_config.json (the config, with its class name), model.pt (torch.save of
{"model_state_dict": ...}), environment.json and, only for a custom architecture, encoder.pkl /
decoder.pkl (cloudpickle). pythae's own loader unpickles those and calls torch.load without
weights_only; here the model is rebuilt from the config alone with pythae's own classes (their
default MLP encoder and decoder), the weights are read with torch.load(weights_only=True), and a
folder with a pickled architecture is refused without reading the pickle.

Supported: the pythae models whose posterior is the Gaussian their encoder outputs (embedding,
log_covariance), whose prior is N(0, I) and whose reconstruction term is pythae's "bce" or "mse",
so that the app's ELBO is the model's own: see SUPPORTED.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .archive import Bundle
from .checkpoint import Checkpoint, CheckpointError, first_line, read_state_dict
from .datasets import DatasetError, dataset_for_shape
from .external import ExternalVAE, fit_weights

PYTHAE_FILES = {"model_config.json", "model.pt", "environment.json"}
PICKLED = {"encoder.pkl", "decoder.pkl"}

# config "name" -> pythae model class. FactorVAE's discriminator only shapes training (it is loaded,
# never called); the importance-weighted models (IWAE, CIWAE, MIWAE, PIWAE) train a tighter bound
# but encode with the same Gaussian.
SUPPORTED = {
    "VAEConfig": "VAE",
    "BetaVAEConfig": "BetaVAE",
    "BetaTCVAEConfig": "BetaTCVAE",
    "DisentangledBetaVAEConfig": "DisentangledBetaVAE",
    "FactorVAEConfig": "FactorVAE",
    "INFOVAE_MMD_Config": "INFOVAE_MMD",
    "IWAEConfig": "IWAE",
    "CIWAEConfig": "CIWAE",
    "MIWAEConfig": "MIWAE",
    "PIWAEConfig": "PIWAE",
}
# Why the others are refused, in a few words each.
_UNSUPPORTED = {
    **dict.fromkeys(("AEConfig", "BaseAEConfig", "RAE_GP_Config", "RAE_L2_Config", "WAE_MMD_Config", "VQVAEConfig"),
                    "its encoder is deterministic (no posterior variance)"),
    **dict.fromkeys(("HVAEConfig", "RHVAEConfig", "VAE_IAF_Config", "VAE_LinNF_Config"),
                    "its posterior is the encoder's Gaussian transformed further by extra modules"),
    "VAMPConfig": "its prior is a learned VampPrior, not N(0, I)",
    "SVAEConfig": "its latent space is a hypersphere (von Mises-Fisher posterior)",
    "PoincareVAEConfig": "its latent space is hyperbolic (Poincaré ball)",
    "MSSSIM_VAEConfig": "its reconstruction loss is MS-SSIM, not a pixel likelihood",
    "VAEGANConfig": "its reconstruction loss is measured by a discriminator, not per pixel",
    "Adversarial_AE_Config": "it is trained adversarially, without a KL term",
}
_LIKELIHOODS = {"bce": "bernoulli", "mse": "gaussian"}
# pythae's "mse" term is 0.5 * sum((x - x_hat)^2): -log N(x; x_hat, 1), less its constant
# D/2 log(2 pi). obs_sigma = 1 is that likelihood, so the app's ELBO is -(pythae's recon + KL) - D/2 log(2 pi).
_MSE_OBS_SIGMA = 1.0

_CUSTOM_HOW = ("pass the architecture as a Python file instead: a class whose encode(x) returns pythae's encoder "
               "output (or (mu, log_var)) and decode(z) the decoder's, with --model my_arch.py:MyVAE "
               "--model-kwargs '{...}' --weights {folder}/model.pt --decoder-outputs probabilities")


def is_pythae(bundle: Bundle) -> bool:
    """Whether the folder looks like pythae's `model.save()`: it holds a model_config.json."""
    return "model_config.json" in bundle.names


class _PythaeAdapter(nn.Module):
    """A pythae model seen as encode(x) -> its encoder's output (ModelOutput with embedding and
    log_covariance) and decode(z) -> its decoder's (ModelOutput with reconstruction)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def encode(self, x):
        return self.model.encoder(x)

    def decode(self, z):
        return self.model.decoder(z)


def _read_config(bundle: Bundle) -> dict:
    name = bundle.name
    if "model_config.json" not in bundle.files:
        raise CheckpointError(f"{name}: no model_config.json, so not a folder written by pythae's model.save()")
    try:
        config = json.loads(bundle.files["model_config.json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{name}: model_config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{name}: model_config.json must hold a JSON object, not {type(config).__name__}")
    if not isinstance(config.get("name"), str):
        raise CheckpointError(f"{name}: model_config.json has no \"name\" (such as \"VAEConfig\"), "
                              "so it does not say which pythae model it configures")
    return config


def _read_weights(bundle: Bundle) -> dict[str, torch.Tensor]:
    """model.pt's state_dict, loaded with weights_only=True: tensors and containers, nothing else."""
    if "model.pt" not in bundle.files:
        raise CheckpointError(f"{bundle.name}: no model.pt, the weights pythae's model.save() writes beside "
                              "model_config.json")
    weights = read_state_dict(bundle.files["model.pt"], f"{bundle.name}/model.pt")
    if not weights or not all(torch.is_floating_point(v) for v in weights.values()):
        raise CheckpointError(f"{bundle.name}/model.pt: expected floating-point weights")
    return weights


def _build(config_dict: dict, name: str):
    """pythae's config and model (default architectures) for the config's "name"."""
    config_name = config_dict["name"]
    if config_name not in SUPPORTED:
        why = _UNSUPPORTED.get(config_name)
        model = config_name.removesuffix("Config").rstrip("_")
        what = f"a pythae {model}" if why else f"an unknown model {config_name!r}"
        supported = ", ".join(SUPPORTED.values())
        raise CheckpointError(f"{name}: {what}{f', which this app cannot show: {why}' if why else ''}. "
                              f"Supported pythae models: {supported}")
    try:
        import pythae.models as pythae_models
    except Exception as exc:  # ImportError, or a broken install
        raise CheckpointError(f"{name}: opening a pythae folder needs the pythae package "
                              f"(pip install pythae): {type(exc).__name__}: {exc}") from None
    model_class = getattr(pythae_models, SUPPORTED[config_name])
    config_class = getattr(pythae_models, config_name)
    fields = {k: v for k, v in config_dict.items() if k != "name"}  # as pythae's from_json_file does
    try:
        config = config_class.from_dict(fields)
    except Exception as exc:  # pydantic's ValidationError, TypeError for unknown fields
        raise CheckpointError(f"{name}: model_config.json is not a valid pythae {config_name}: "
                              f"{first_line(exc, 200)}") from None
    if not (config.uses_default_encoder and config.uses_default_decoder):
        raise CheckpointError(f"{name}: model_config.json says the model has a custom encoder/decoder, which pythae "
                              f"stores as a cloudpickle this app never opens; {_CUSTOM_HOW.replace('{folder}', name)}")
    shape = tuple(config.input_dim) if config.input_dim is not None else ()
    if len(shape) != 3:
        raise CheckpointError(f"{name}: input_dim {list(shape) if shape else None} in model_config.json is not an "
                              "image shape (channels, height, width); this app shows models of images only")
    if getattr(config, "reconstruction_loss", None) not in _LIKELIHOODS:
        raise CheckpointError(f"{name}: reconstruction_loss {getattr(config, 'reconstruction_loss', None)!r} "
                              f"is not one of {', '.join(_LIKELIHOODS)}")
    try:
        model = model_class(model_config=config)
    except Exception as exc:
        raise CheckpointError(f"{name}: pythae could not build the {SUPPORTED[config_name]}: "
                              f"{type(exc).__name__}: {exc}") from None
    return config, model, shape


def open_pythae(bundle: Bundle, dataset: str | None = None) -> Checkpoint:
    """The model in a pythae folder as a Checkpoint; CheckpointError (one line, naming the folder) if not."""
    name = bundle.name
    pickled = sorted(PICKLED & bundle.names)
    if pickled:  # refused on the name alone: the pickle is never read
        raise CheckpointError(
            f"{name}: refused: it stores a custom encoder/decoder as a cloudpickle ({', '.join(pickled)}), which runs "
            f"code when opened, so this app will not open it; {_CUSTOM_HOW.replace('{folder}', name)}")
    config, model, shape = _build(_read_config(bundle), name)
    fit_weights(model, _read_weights(bundle), f"{name}/model.pt")
    likelihood = _LIKELIHOODS[config.reconstruction_loss]
    try:
        # pythae's default decoder ends in a Sigmoid: its reconstruction is pixel probabilities.
        wrapped = ExternalVAE(_PythaeAdapter(model), shape, decoder_outputs="probabilities",
                              likelihood=likelihood, obs_sigma=_MSE_OBS_SIGMA if likelihood == "gaussian" else 0.1)
    except Exception as exc:
        raise CheckpointError(f"{name}: the pythae model failed on a {shape} batch: "
                              f"{type(exc).__name__}: {exc}") from None
    try:
        dataset_name = dataset or dataset_for_shape(shape)
    except DatasetError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    return Checkpoint(model=wrapped.eval(), dataset={"name": dataset_name, "label_names": []}, path=Path(name))
