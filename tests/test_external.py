"""Bring your own model: a user's VAE class and weights, seen through the VAE interface."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from conftest import tiny_config
from vanilla_vae import KWARGS as VANILLA_KWARGS
from vae_core import VAE
from vae_core.checkpoint import CheckpointError
from vae_core.datasets import load_dataset
from vae_core.external import ExternalVAE, OwnModel, load_external, reconstruction_warning

SHAPE = (1, 8, 8)

# pytorch/examples vae/main.py, shrunk to 8x8 images and a 3-D latent: flattened input, sigmoid output.
MLP_SOURCE = '''
import torch
from torch import nn
from torch.nn import functional as F


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc21 = nn.Linear(32, 3)
        self.fc22 = nn.Linear(32, 3)
        self.fc3 = nn.Linear(3, 32)
        self.fc4 = nn.Linear(32, 64)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 64))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


class NeedsArgs(VAE):
    def __init__(self, width):
        super().__init__()


class BrokenInit(VAE):
    def __init__(self):
        raise RuntimeError("no GPU found")


class NoDecode(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def encode(self, x):
        return self.fc(x), self.fc(x)


class NoEncode(VAE):
    encode = None


class OneTensorEncode(VAE):
    def encode(self, x):
        return self.fc21(F.relu(self.fc1(x)))


class ThreeTensorEncode(VAE):
    def encode(self, x):
        mu, logvar = super().encode(x)
        return mu, mu, logvar


class NotAModule:
    def encode(self, x):
        return x[:, :3], x[:, :3]

    def decode(self, z):
        return z


NOT_A_CLASS = 3
'''

# A convolutional VAE: encode takes (N, 1, 8, 8) images, decode returns logits of the same shape.
CONV_SOURCE = '''
from torch import nn
from torch.nn import functional as F


class ConvVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.mu = nn.Linear(64, 3)
        self.logvar = nn.Linear(64, 3)
        self.up = nn.Linear(3, 64)
        self.deconv = nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1)

    def encode(self, x):
        h = F.relu(self.conv(x)).flatten(1)
        return self.mu(h), self.logvar(h)

    def decode(self, z):
        return self.deconv(F.relu(self.up(z)).view(-1, 4, 4, 4))
'''

KINDS = {  # kind -> (source, class, decoder_outputs, flattens input)
    "mlp-probabilities": (MLP_SOURCE, "VAE", "probabilities", True),
    "conv-logits": (CONV_SOURCE, "ConvVAE", "logits", False),
}


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def _build(source: str, class_name: str, seed: int = 0) -> torch.nn.Module:
    """The user's model, built here independently of vae_core.external, with seeded weights."""
    namespace: dict = {"__name__": "reference"}
    exec(compile(textwrap.dedent(source), "reference.py", "exec"), namespace)
    torch.manual_seed(seed)
    return namespace[class_name]().eval()


@pytest.fixture(params=list(KINDS), ids=list(KINDS))
def user_model(request, tmp_path):
    """(kind, spec, reference module, {".pt": path, ".safetensors": path}, decoder_outputs, flattens)."""
    source, class_name, outputs, flattens = KINDS[request.param]
    code = _write(tmp_path, "my_vae.py", source)
    module = _build(source, class_name)
    weights = {".pt": tmp_path / "weights.pt", ".safetensors": tmp_path / "weights.safetensors"}
    torch.save(module.state_dict(), weights[".pt"])
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights[".safetensors"]))
    return request.param, f"{code}:{class_name}", module, weights, outputs, flattens


@pytest.fixture
def mlp_files(tmp_path):
    """my_vae.py with all the MLP classes and weights for its VAE class."""
    code = _write(tmp_path, "my_vae.py", MLP_SOURCE)
    weights = tmp_path / "weights.pt"
    torch.save(_build(MLP_SOURCE, "VAE").state_dict(), weights)
    return code, weights


def _load(spec, weights, shape=SHAPE, decoder_outputs="logits", **options):
    return load_external(OwnModel(str(spec), str(weights), decoder_outputs=decoder_outputs, **options), shape)


def _error(spec, weights, match, decoder_outputs="probabilities", **options) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        _load(spec, weights, SHAPE, decoder_outputs, **options)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message
    return message


# -- a working model -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_load_external(user_model, suffix):
    kind, spec, module, weights, outputs, _ = user_model
    ckpt = load_external(OwnModel(spec, str(weights[suffix]), decoder_outputs=outputs, dataset="digits"), SHAPE,
                         label_names=list("0123"))
    model = ckpt.model
    assert isinstance(model, VAE) and not model.training
    assert model.config.latent_dim == 3
    assert model.config.architecture == "external" and model.config.input_shape == SHAPE
    assert not model.config.conditional
    assert ckpt.path == weights[suffix]
    assert ckpt.dataset == {"name": "digits", "label_names": list("0123")}
    for key, value in module.state_dict().items():
        assert torch.equal(model.state_dict()[f"inner.{key}"], value)


def test_wrapper_shapes(user_model):
    _, spec, _, weights, outputs, _ = user_model
    model = _load(spec, weights[".pt"], SHAPE, outputs).model
    x = torch.rand(5, *SHAPE)
    torch.manual_seed(0)
    with torch.no_grad():
        recon = model.reconstruct(x)
        assert recon.shape == (5, *SHAPE) and recon.min() >= 0 and recon.max() <= 1
        samples = model.sample(7)
        assert samples.shape == (7, *SHAPE) and samples.min() >= 0 and samples.max() <= 1
        assert model.embed(x).shape == (5, 3)
        losses = model.loss(x)
        for key in ("loss", "recon", "kl", "elbo"):
            assert losses[key].shape == () and torch.isfinite(losses[key])
        assert losses["kl_per_dim"].shape == (3,)
        bound = model.iwae_bound(x, k=4)
        assert bound.shape == (5,) and torch.isfinite(bound).all()
        # log p(x) bounds: the IWAE bound (k=4) sits above the ELBO on average, up to sampling noise
        assert bound.mean() > losses["elbo"] - 5


def test_wrapper_follows_the_users_encode_and_decode(user_model):
    _, spec, module, weights, outputs, flattens = user_model
    model = _load(spec, weights[".pt"], SHAPE, outputs).model
    x = torch.rand(6, *SHAPE)
    z = torch.randn(6, 3) * 2
    with torch.no_grad():
        mu, logvar = module.encode(x.flatten(1) if flattens else x)
        got_mu, got_logvar = model.encode(x)
        torch.testing.assert_close(got_mu, mu, rtol=0, atol=1e-6)
        torch.testing.assert_close(got_logvar, logvar, rtol=0, atol=1e-6)
        own = module.decode(z).reshape(6, *SHAPE)
        expected = own if outputs == "probabilities" else torch.sigmoid(own)
        torch.testing.assert_close(model.decode(z), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(model.reconstruct(x), model.decode(mu), rtol=0, atol=1e-6)


def test_loss_is_the_bernoulli_elbo_of_the_users_model(user_model):
    """With eps = 0 (z = mu) the reconstruction term is the user's own BCE, whichever output they give."""
    _, spec, module, weights, outputs, flattens = user_model
    model = _load(spec, weights[".safetensors"], SHAPE, outputs).model
    x = torch.rand(4, *SHAPE).round()
    with torch.no_grad():
        mu, logvar = module.encode(x.flatten(1) if flattens else x)
        out = module.decode(mu).reshape(4, -1)
        probs = out if outputs == "probabilities" else torch.sigmoid(out)
        bce = F.binary_cross_entropy(probs, x.flatten(1), reduction="sum") / 4
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
        losses = model.loss(x, eps=torch.zeros(4, 3))
    torch.testing.assert_close(losses["recon"], bce, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(losses["kl"], kl, rtol=1e-4, atol=1e-4)


def test_the_same_file_loads_twice(user_model):
    _, spec, _, weights, outputs, _ = user_model
    a = _load(spec, weights[".pt"], SHAPE, outputs).model
    b = _load(spec, weights[".safetensors"], SHAPE, outputs).model
    z = torch.randn(3, 3)
    with torch.no_grad():
        assert torch.equal(a.decode(z), b.decode(z))


def test_wrapped_state_dict_layout_of_a_pt_checkpoint(tmp_path):
    """The common {"state_dict": ...} wrapping of a .pt file is understood too."""
    code = _write(tmp_path, "conv.py", CONV_SOURCE)
    module = _build(CONV_SOURCE, "ConvVAE")
    weights = tmp_path / "wrapped.pt"
    torch.save({"state_dict": module.state_dict(), "epoch": 7}, weights)
    model = _load(f"{code}:ConvVAE", weights, SHAPE, "logits").model
    z = torch.randn(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z), torch.sigmoid(module.decode(z)), rtol=0, atol=1e-6)


def test_spec_with_a_user_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _write(tmp_path, "home_vae.py", CONV_SOURCE)
    weights = tmp_path / "w.pt"
    torch.save(_build(CONV_SOURCE, "ConvVAE").state_dict(), weights)
    assert _load("~/home_vae.py:ConvVAE", weights, SHAPE, "logits").model.config.latent_dim == 3


# -- what goes wrong, and what the person is told ------------------------------------------------


@pytest.mark.parametrize("spec", ["my_vae.py", "my_vae.py:", "my_vae:VAE", "my_vae.txt:VAE", ":VAE",
                                  "my_vae.py:VAE()", "my_vae.py:1VAE", "my_vae.py:V A E"])
def test_malformed_spec(mlp_files, spec):
    code, weights = mlp_files
    message = _error(code.parent / spec if spec[0] != ":" else spec, weights, "file.py:ClassName")
    assert spec in message


def test_missing_python_file(mlp_files):
    code, weights = mlp_files
    message = _error(f"{code.parent / 'nowhere.py'}:VAE", weights, "no such Python file")
    assert "nowhere.py" in message
    code.parent.joinpath("folder.py").mkdir()
    _error(f"{code.parent / 'folder.py'}:VAE", weights, "no such Python file")


@pytest.mark.parametrize("class_name", ["Missing", "vae"])
def test_missing_class(mlp_files, class_name):
    code, weights = mlp_files
    message = _error(f"{code}:{class_name}", weights, f"defines no {class_name}")
    assert "my_vae.py" in message


@pytest.mark.parametrize("class_name, match", [
    ("NeedsArgs", r"NeedsArgs\(\*\*\{\}\) failed: TypeError.*width.*constructor's arguments as a JSON object"),
    ("BrokenInit", r"BrokenInit\(\*\*\{\}\) failed: RuntimeError: no GPU found"),
    ("NOT_A_CLASS", "failed: TypeError.*not callable")])
def test_class_that_does_not_build(mlp_files, class_name, match):
    code, weights = mlp_files
    _error(f"{code}:{class_name}", weights, match)


@pytest.mark.parametrize("source, match", [
    ("raise ImportError('needs the lab_utils package')\n", "failed to import: ImportError: needs the lab_utils"),
    ("import a_package_that_does_not_exist_here\n", "failed to import: ModuleNotFoundError"),
    ("class VAE(:\n", "failed to import: SyntaxError"),
    ("x = 1 / 0\n", "failed to import: ZeroDivisionError"),
], ids=["raises", "missing-import", "syntax", "zero-division"])
def test_module_that_fails_on_import(tmp_path, mlp_files, source, match):
    code = _write(tmp_path, "broken.py", source)
    _error(f"{code}:VAE", mlp_files[1], match)


@pytest.mark.parametrize("class_name, method", [("NoDecode", "decode"), ("NoEncode", "encode")])
def test_missing_encode_or_decode(mlp_files, class_name, method):
    code, weights = mlp_files
    _error(f"{code}:{class_name}", weights, rf"needs an {method}\(\) method")


@pytest.mark.parametrize("class_name", ["OneTensorEncode", "ThreeTensorEncode"])
def test_encode_that_does_not_return_mu_and_logvar(mlp_files, class_name):
    code, weights = mlp_files
    message = _error(f"{code}:{class_name}", weights, r"must return \(mu, logvar\)")
    assert f"my_vae.py:{class_name}" in message


def test_class_that_is_not_a_torch_module(mlp_files):
    code, weights = mlp_files
    _error(f"{code}:NotAModule", weights, "torch.nn.Module|nn.Module")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_that_do_not_fit(tmp_path, mlp_files, suffix):
    code, _ = mlp_files
    other = _build(CONV_SOURCE, "ConvVAE").state_dict()  # another model's keys
    resized = _build(MLP_SOURCE, "VAE").state_dict()
    resized["fc21.weight"] = torch.zeros(4, 32)  # the right keys, a wrong shape
    resized["fc21.bias"] = torch.zeros(4)
    for i, state in enumerate([other, resized]):
        weights = tmp_path / f"w{i}{suffix}"
        if suffix == ".pt":
            torch.save(state, weights)
        else:
            save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
        message = _error(f"{code}:VAE", weights, f"{weights.name} does not fit")
        assert "\n" not in message


def test_weights_for_another_input_size(mlp_files):
    """Weights that fit the class, opened for images of another size: encode() fails on the probe batch."""
    code, weights = mlp_files
    with pytest.raises(CheckpointError, match=r"encode\(\) and decode\(\) on a \(1, 28, 28\) batch failed"):
        _load(f"{code}:VAE", weights, (1, 28, 28), "probabilities")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_malicious_pickle_weights_never_run(tmp_path, mlp_files):
    code, _ = mlp_files
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    torch.save({"fc1.weight": _Evil(marker)}, weights)
    assert not marker.exists()
    _error(f"{code}:VAE", weights, "evil.pt.*never unpickles")
    assert not marker.exists()
    torch.save(VAE(tiny_config()), weights)  # a whole pickled module, not a state_dict
    _error(f"{code}:VAE", weights, "evil.pt")


def test_bad_weight_files(tmp_path, mlp_files):
    code, _ = mlp_files
    spec = f"{code}:VAE"
    _error(spec, tmp_path / "missing.pt", "missing.pt: no such file")
    _error(spec, tmp_path / "missing.safetensors", "missing.safetensors: no such file")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a safetensors file" * 10)
    _error(spec, garbage, "garbage.safetensors: not a readable safetensors")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a pickle")
    _error(spec, junk, "junk.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _error(spec, empty, "empty")
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listing)
    _error(spec, listing, "state_dict")


@pytest.mark.parametrize("decoder_outputs", ["sigmoid", "Logits", "", None])
def test_bad_decoder_outputs(mlp_files, decoder_outputs):
    code, weights = mlp_files
    message = _error(f"{code}:VAE", weights, "decoder outputs must be one of", decoder_outputs=decoder_outputs)
    assert "logits" in message and "probabilities" in message
    assert "encode()" not in message  # the message is about the argument, not a failed probe


def test_external_vae_rejects_bad_decoder_outputs_directly():
    module = _build(MLP_SOURCE, "VAE")
    with pytest.raises(ValueError, match="decoder outputs"):
        ExternalVAE(module, SHAPE, "sigmoid")
    assert ExternalVAE(module, SHAPE, "logits").config.latent_dim == 3


# -- models in the shapes other people's code leaves them ---------------------------------------

SHAPES_SOURCE = '''
from types import SimpleNamespace

import torch
from torch import nn


class Recorder(nn.Module):
    """Remembers the range of what encode() was given; encode/decode return containers."""
    def __init__(self, latent_dim, encode_as="dict", decode_as="object"):
        super().__init__()
        self.encode_as, self.decode_as = encode_as, decode_as
        self.enc = nn.Linear(64, 2 * latent_dim)
        self.dec = nn.Linear(latent_dim, 64)
        self.seen = None

    def encode(self, x):
        self.seen = (float(x.min()), float(x.max()))
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)
        if self.encode_as == "dict":
            return {"mu": mu, "log_var": logvar}
        if self.encode_as == "pythae":
            return SimpleNamespace(embedding=mu, log_covariance=logvar)
        return [mu, logvar]

    def decode(self, z):
        out = torch.tanh(self.dec(z)).view(-1, 1, 8, 8)
        if self.decode_as == "object":
            return SimpleNamespace(reconstruction=out)
        if self.decode_as == "dict":
            return {"sample": out}
        return out
'''


@pytest.mark.parametrize("encode_as, decode_as", [("dict", "object"), ("pythae", "dict"), ("list", "tensor")])
def test_containers_keyword_arguments_and_ranges(tmp_path, encode_as, decode_as):
    code = _write(tmp_path, "shapes.py", SHAPES_SOURCE)
    kwargs = {"latent_dim": 2, "encode_as": encode_as, "decode_as": decode_as}
    reference = _build(SHAPES_SOURCE.replace("latent_dim, encode_as", "latent_dim=2, encode_as"), "Recorder")
    weights = tmp_path / "w.pt"
    torch.save(reference.state_dict(), weights)
    model = _load(f"{code}:Recorder", weights, decoder_outputs="tanh", input_range="-1,1",
                  model_kwargs=json.dumps(kwargs)).model
    x = torch.rand(5, *SHAPE)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        assert model.inner.seen[0] < 0 and model.inner.seen[1] > 0  # [0, 1] images reached it in [-1, 1]
        expected_mu, _ = reference.enc((2 * x - 1).flatten(1)).chunk(2, dim=1)
        torch.testing.assert_close(mu, expected_mu)
        image = model.decode(mu)
        assert image.min() >= 0 and image.max() <= 1  # tanh's [-1, 1] comes back as [0, 1]
        torch.testing.assert_close(image, (torch.tanh(reference.dec(mu)).view(-1, 1, 8, 8) + 1) / 2)
        assert torch.isfinite(model.loss(x)["elbo"])


@pytest.mark.parametrize("kwargs, match", [
    ("{latent_dim: 2}", "not JSON.*as an object such as"),
    ("[2]", "must be a JSON object.*not list"),
    ('{"latent_dim": 2, "width": 9}', r"Recorder\(\*\*\{.*\}\) failed: TypeError.*width"),
])
def test_bad_model_kwargs(tmp_path, mlp_files, kwargs, match):
    code = _write(tmp_path, "shapes.py", SHAPES_SOURCE)
    message = _error(f"{code}:Recorder", mlp_files[1], match, model_kwargs=kwargs)
    assert "--model-kwargs" not in message or "JSON" in message


@pytest.mark.parametrize("bad", ["decoder_outputs", "input_range"])
def test_bad_ranges(mlp_files, bad):
    code, weights = mlp_files
    options = {"decoder_outputs": "probabilities", "input_range": "0,1", bad: "0,255"}
    with pytest.raises(CheckpointError, match="must be one of"):
        load_external(OwnModel(f"{code}:VAE", str(weights), **options), SHAPE)


def test_pytorch_vae_style_lightning_checkpoint(vanilla_vae):
    """PyTorch-VAE's VanillaVAE as that repository trains and saves it opens as it is: constructor
    arguments, the LightningModule's `model.` prefix stripped, tanh output, inputs in [-1, 1]."""
    code, ckpt_path = vanilla_vae
    x = load_dataset("digits").x_test
    model = _load(f"{code}:VanillaVAE", ckpt_path, decoder_outputs="tanh", input_range="-1,1",
                  model_kwargs=json.dumps(VANILLA_KWARGS)).model
    with torch.no_grad():
        error = (model.reconstruct(x) - x).abs().mean()
    average = (x - x.mean(0)).abs().mean()
    assert error < 0.7 * average  # its reconstructions are close to its inputs, not the average digit
    assert reconstruction_warning(model, x) == ""
    # Opened with the wrong output range, the same weights draw washed-out grey: the check says so.
    wrong = _load(f"{code}:VanillaVAE", ckpt_path, decoder_outputs="logits", input_range="-1,1",
                  model_kwargs=json.dumps(VANILLA_KWARGS)).model
    assert "output range" in reconstruction_warning(wrong, x) and "logits" in reconstruction_warning(wrong, x)
    # Without its constructor arguments, the message says how to give them.
    _error(f"{code}:VanillaVAE", ckpt_path, r"VanillaVAE\(\*\*\{\}\) failed: TypeError.*in_channels.*as a JSON object")


def test_lightning_prefix_and_mismatch_messages(tmp_path, mlp_files):
    code, _ = mlp_files
    state = _build(MLP_SOURCE, "VAE").state_dict()
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": {**{f"vae.{k}": v for k, v in state.items()}, "metric.total": torch.zeros(1)},
                "epoch": 2, "hyper_parameters": {"lr": 1e-3}}, ckpt)
    model = _load(f"{code}:VAE", ckpt, decoder_outputs="probabilities").model
    assert torch.equal(model.inner.fc21.weight, state["fc21.weight"])  # `vae.` stripped, the metric left out
    del state["fc4.bias"]
    torch.save({"state_dict": {**{f"model.{k}": v for k, v in state.items()},
                               **{f"model.extra{i}": torch.zeros(1) for i in range(5)}}}, ckpt)
    message = _error(f"{code}:VAE", ckpt, "run.ckpt does not fit the model")
    assert "missing fc4.bias" in message and "extra0" in message and "(5 in all)" in message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_lightning_checkpoint_with_foreign_objects(tmp_path, mlp_files):
    """Lightning may save hyper-parameters as its own classes: refused without unpickling them."""
    code, _ = mlp_files
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": _build(MLP_SOURCE, "VAE").state_dict(), "hyper_parameters": _Evil(marker)}, ckpt)
    message = _error(f"{code}:VAE", ckpt, "foreign.ckpt: it holds Python objects .*never unpickles")
    assert "torch.save(model.state_dict()" in message
    assert not marker.exists()


def test_how_a_model_is_opened_is_part_of_its_digest(tmp_path):
    """Caches on disk (maps, the exported decoder) key on weights_digest(): the same weights opened
    with another input range, or with edited code, compute other things."""
    code = _write(tmp_path, "shapes.py", SHAPES_SOURCE)
    weights = tmp_path / "w.pt"
    reference = _build(SHAPES_SOURCE.replace("latent_dim, encode_as", "latent_dim=2, encode_as"), "Recorder")
    torch.save(reference.state_dict(), weights)
    kwargs = json.dumps({"latent_dim": 2})

    def digest(**options):
        return _load(f"{code}:Recorder", weights, model_kwargs=kwargs, **options).model.weights_digest()

    base = digest()
    assert digest() == base
    assert digest(input_range="-1,1") != base and digest(decoder_outputs="tanh") != base
    code.write_text(code.read_text() + "\n# edited\n")
    assert digest() != base
