"""Folders written by pythae's own model.save(), opened without unpickling anything."""
from __future__ import annotations

import io
import json
import logging
import math
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from vae_core.archive import read_folder, read_zip
from vae_core.checkpoint import CheckpointError
from vae_core.datasets import load_dataset
from vae_core.metrics import evaluate
from vae_core.pythae_folder import PICKLED, PYTHAE_FILES, SUPPORTED, is_pythae, open_pythae

pythae_models = pytest.importorskip("pythae.models")
from pythae.models.base.base_utils import ModelOutput  # noqa: E402
from pythae.models.nn import BaseEncoder  # noqa: E402

logging.getLogger("pythae").setLevel(logging.WARNING)
SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _train(model, x, steps=300, seed=0):
    """A plain Adam loop over pythae's own forward and loss."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        batch = x[torch.randint(len(x), (64,))]
        optimizer.zero_grad()
        model({"data": batch}).loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A pythae VAE (BCE) trained briefly on digits, and the folder its model.save() wrote."""
    torch.manual_seed(0)
    model = pythae_models.VAE(pythae_models.VAEConfig(input_dim=SHAPE, latent_dim=3, reconstruction_loss="bce"))
    _train(model, digits.x_train)
    folder = tmp_path_factory.mktemp("saved") / "pythae_vae"
    model.save(str(folder))
    return model, folder


@pytest.fixture
def folder_copy(trained, tmp_path):
    """A private copy of the saved folder, for a test to damage."""
    return Path(shutil.copytree(trained[1], tmp_path / "pythae_vae"))


def _open(folder, **kwargs):
    return open_pythae(read_folder(folder, PYTHAE_FILES), **kwargs)


def test_folder_has_what_pythae_writes(trained):
    _, folder = trained
    assert {p.name for p in folder.iterdir()} == PYTHAE_FILES  # default architectures: no pickles
    assert is_pythae(read_folder(folder, PYTHAE_FILES))


def test_opens_as_the_pythae_model(trained, digits):
    model, folder = trained
    checkpoint = _open(folder)
    wrapped = checkpoint.model
    assert wrapped.config.latent_dim == 3
    assert wrapped.input_shape == SHAPE
    assert wrapped.config.likelihood == "bernoulli"
    assert checkpoint.dataset == {"name": "digits", "label_names": []}
    assert checkpoint.path == Path("pythae_vae")
    assert not wrapped.training
    x = digits.x_test[:100]
    with torch.no_grad():
        reference = model.encoder(x)
        mu, logvar = wrapped.encode(x)
        torch.testing.assert_close(mu, reference.embedding)
        torch.testing.assert_close(logvar, reference.log_covariance)
        torch.testing.assert_close(wrapped.reconstruct(x), model.decoder(reference.embedding).reconstruction,
                                   atol=1e-5, rtol=0)
    # The training moved the weights: a freshly built model encodes differently.
    fresh = pythae_models.VAE(pythae_models.VAEConfig(input_dim=SHAPE, latent_dim=3, reconstruction_loss="bce"))
    assert not torch.allclose(fresh.encoder(x).embedding, mu, atol=1e-3)


def test_elbo_is_minus_pythaes_loss(trained, digits):
    model, folder = trained
    wrapped = _open(folder).model
    x = digits.x_test
    with torch.no_grad():
        # At z = mu (no sampling) the two objectives agree exactly.
        out = model.encoder(x)
        mu, log_var = out.embedding, out.log_covariance
        loss, _, _ = model.loss_function(model.decoder(mu).reconstruction, x, mu, log_var, mu)
        ours = wrapped.loss(x, eps=torch.zeros(len(x), 3))["elbo"]
        assert ours.item() == pytest.approx(-loss.item(), abs=0.05)
        # Sampled: pythae's own forward against the app's evaluate, averaged over the test split.
        torch.manual_seed(1)
        pythae_loss = sum(model({"data": x}).loss.item() for _ in range(5)) / 5
    elbo = evaluate(wrapped, x, None)["elbo"]
    assert elbo > -35  # trained: predicting 0.5 everywhere scores 64 log 2 = -44 nats or less
    assert elbo == pytest.approx(-pythae_loss, abs=0.5)


def test_zip_of_the_folder_opens(trained, digits):
    model, folder = trained
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"pythae_vae/{path.name}")
    bundle = read_zip(buffer.getvalue(), "m.zip", PYTHAE_FILES)
    assert is_pythae(bundle)
    checkpoint = open_pythae(bundle)
    assert checkpoint.path == Path("m.zip")
    x = digits.x_test[:20]
    with torch.no_grad():
        torch.testing.assert_close(checkpoint.model.encode(x)[0], model.encoder(x).embedding)


def test_dataset_given_wins(trained):
    assert _open(trained[1], dataset="npz:mine.npz").dataset["name"] == "npz:mine.npz"


def test_mse_beta_vae_opens_gaussian(digits, tmp_path):
    torch.manual_seed(0)
    model = pythae_models.BetaVAE(pythae_models.BetaVAEConfig(input_dim=SHAPE, latent_dim=2, beta=4.0,
                                                              reconstruction_loss="mse"))
    _train(model, digits.x_train, steps=50)
    model.save(str(tmp_path / "beta"))
    wrapped = _open(tmp_path / "beta").model
    assert wrapped.config.likelihood == "gaussian"
    assert wrapped.config.obs_sigma == 1.0
    assert wrapped.config.latent_dim == 2
    x = digits.x_test[:50]
    with torch.no_grad():
        out = model.encoder(x)
        mu, log_var = out.embedding, out.log_covariance
        _, recon, kld = model.loss_function(model.decoder(mu).reconstruction, x, mu, log_var, mu)
        parts = wrapped.loss(x, eps=torch.zeros(len(x), 2))
    # pythae's mse term is -log N(x; x_hat, I) less its constant 64/2 log(2 pi).
    assert parts["recon"].item() == pytest.approx(recon.item() + 32 * math.log(2 * math.pi), abs=0.02)
    assert parts["kl"].item() == pytest.approx(kld.item(), abs=1e-3)


@pytest.mark.parametrize("model_name", ["BetaTCVAE", "FactorVAE", "IWAE"])
def test_other_supported_models_open(model_name, digits, tmp_path):
    torch.manual_seed(0)
    config = getattr(pythae_models, f"{model_name}Config")(input_dim=SHAPE, latent_dim=3, reconstruction_loss="bce")
    model = getattr(pythae_models, model_name)(config).eval()
    model.save(str(tmp_path / model_name))
    wrapped = _open(tmp_path / model_name).model
    x = digits.x_test[:10]
    with torch.no_grad():
        torch.testing.assert_close(wrapped.encode(x)[0], model.encoder(x).embedding)


class _CustomEncoder(BaseEncoder):
    def __init__(self):
        BaseEncoder.__init__(self)
        self.body = nn.Linear(64, 6)

    def forward(self, x):
        h = self.body(x.reshape(len(x), -1))
        return ModelOutput(embedding=h[:, :3], log_covariance=h[:, 3:])


class _Payload:
    """Unpickling this opens (creates) a file: what a hostile encoder.pkl would do, harmlessly."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def custom_folder(tmp_path):
    model = pythae_models.VAE(pythae_models.VAEConfig(input_dim=SHAPE, latent_dim=3, reconstruction_loss="bce"),
                              encoder=_CustomEncoder())
    model.save(str(tmp_path / "custom"))
    return tmp_path / "custom"


def test_custom_encoder_is_refused_without_unpickling(custom_folder, tmp_path):
    assert (custom_folder / "encoder.pkl").is_file()  # pythae really wrote a cloudpickle
    marker = tmp_path / "pickle_ran"
    armed = tmp_path / "armed"
    pickle.loads(pickle.dumps(_Payload(armed)))  # the payload does run when unpickled...
    assert armed.exists()
    (custom_folder / "encoder.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    bundle = read_folder(custom_folder, PYTHAE_FILES)
    assert "encoder.pkl" in bundle.names and not PICKLED & set(bundle.files)
    with pytest.raises(CheckpointError) as info:
        open_pythae(bundle)
    assert not marker.exists()  # ...but opening the folder never unpickled it
    message = str(info.value)
    assert "\n" not in message and message.startswith("custom: refused")
    assert "cloudpickle" in message and "encoder.pkl" in message
    assert "--model my_arch.py:MyVAE" in message and "--weights custom/model.pt" in message
    assert "--decoder-outputs probabilities" in message


def test_custom_encoder_refused_even_without_its_pickle(custom_folder):
    (custom_folder / "encoder.pkl").unlink()
    with pytest.raises(CheckpointError, match="custom encoder/decoder.*--model"):
        _open(custom_folder)


@dataclass
class _Foreign:
    weights: list


def test_model_pt_with_a_foreign_class_is_refused(folder_copy):
    torch.save({"model_state_dict": _Foreign([1.0])}, folder_copy / "model.pt")
    with pytest.raises(CheckpointError) as info:
        _open(folder_copy)
    message = str(info.value)
    assert message.startswith("pythae_vae/model.pt: ") and "_Foreign" in message
    assert "weights_only" not in message and "\n" not in message


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must hold a JSON object"),
    (b'{"latent_dim": 3}', 'no "name"'),
    (b'{"name": "FooConfig", "latent_dim": 3}', "unknown model 'FooConfig'.*Supported pythae models: VAE, BetaVAE"),
])
def test_bad_model_config_is_refused(folder_copy, content, expected):
    (folder_copy / "model_config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=f"^pythae_vae: .*{expected}"):
        _open(folder_copy)


def test_config_that_does_not_validate(folder_copy):
    config = json.loads((folder_copy / "model_config.json").read_text())
    config["reconstruction_loss"] = "l1"
    (folder_copy / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="^pythae_vae: model_config.json is not a valid pythae VAEConfig"):
        _open(folder_copy)


def test_weights_that_do_not_fit_list_names(folder_copy):
    config = json.loads((folder_copy / "model_config.json").read_text())
    config["latent_dim"] = 4
    (folder_copy / "model_config.json").write_text(json.dumps(config))
    fits = (r"^pythae_vae/model.pt does not fit the model: wrong shapes "
            r".*encoder\.embedding\.weight \(3, 512\) != \(4, 512\)")
    with pytest.raises(CheckpointError, match=fits):
        _open(folder_copy)


def test_real_pythae_ae_is_refused(tmp_path):
    model = pythae_models.AE(pythae_models.AEConfig(input_dim=SHAPE, latent_dim=3))
    model.save(str(tmp_path / "ae"))
    with pytest.raises(CheckpointError) as info:
        _open(tmp_path / "ae")
    message = str(info.value)
    assert message.startswith("ae: a pythae AE") and "deterministic" in message
    assert all(name in message for name in SUPPORTED.values())


def test_flat_input_dim_is_refused(tmp_path):
    model = pythae_models.VAE(pythae_models.VAEConfig(input_dim=(64,), latent_dim=3))
    model.save(str(tmp_path / "flat"))
    with pytest.raises(CheckpointError, match=r"^flat: input_dim \[64\] .* not an image shape"):
        _open(tmp_path / "flat")


def test_shape_without_a_dataset(tmp_path):
    model = pythae_models.VAE(pythae_models.VAEConfig(input_dim=(1, 5, 5), latent_dim=3))
    model.save(str(tmp_path / "odd"))
    with pytest.raises(CheckpointError, match="^odd: no dataset here has 1x5x5 images"):
        _open(tmp_path / "odd")
    assert _open(tmp_path / "odd", dataset="npz:five.npz").model.input_shape == (1, 5, 5)


def test_missing_or_empty_model_pt(folder_copy):
    (folder_copy / "model.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="^pythae_vae/model.pt: the file is empty"):
        _open(folder_copy)
    (folder_copy / "model.pt").unlink()
    with pytest.raises(CheckpointError, match="^pythae_vae: no model.pt"):
        _open(folder_copy)


def test_damaged_model_pt(folder_copy):
    data = (folder_copy / "model.pt").read_bytes()
    (folder_copy / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="^pythae_vae/model.pt: not a PyTorch weights file, or damaged"):
        _open(folder_copy)


def test_not_a_pythae_folder(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.pt").write_bytes(b"x")
    bundle = read_folder(tmp_path / "other", PYTHAE_FILES)
    assert not is_pythae(bundle)
    with pytest.raises(CheckpointError, match="^other: no model_config.json"):
        open_pythae(bundle)
