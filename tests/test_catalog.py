"""The model catalog: safe file names, the checkpoint list, model cards, and opening uploads safely."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from vae_core import VAE
from vae_core.catalog import (DEFAULT_MODEL, checkpoint_dir, list_checkpoints, model_card, open_uploaded, safe_name,
                              unique_path)
from vae_core.checkpoint import Checkpoint, CheckpointError, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
HOSTILE = ["../../etc/passwd", "/abs/x", "..", "a/../../b", ".hidden", "con:x", "..\\..\\windows\\x",
           "~/x.safetensors", "x\x00y", "./.", "-", " ", "" , "../", "a/b/", "dir/.safetensors"]


# -- safe_name -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("model", "model"),
    ("model.safetensors", "model"),
    ("digits_vae-2.v3", "digits_vae-2.v3"),
    ("runs/exp1/model.safetensors", "model"),
    ("../../etc/passwd", "passwd"),
    ("/abs/path/x.safetensors", "x"),
    ("C:\\Users\\me\\vae.safetensors", "vae"),
    ("..\\..\\evil", "evil"),
    (".bashrc", "bashrc"),
    ("...hidden", "hidden"),
], ids=lambda v: repr(v))
def test_safe_name_keeps_only_the_file_name(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["my model (v2)!.safetensors", "con:x", "a*b?c|d<e>f\"g", "modèle β",
                                  "x\x00y\nz", "tab\there", "semi;colon$HOME`id`"])
def test_safe_name_replaces_odd_characters(name):
    safe = safe_name(name)
    assert SAFE.fullmatch(safe), safe
    # the ordinary letters survive, in order
    kept = re.sub(r"[^A-Za-z0-9]", "", safe)
    assert kept == re.sub(r"[^A-Za-z0-9]", "", Path(name.replace("\\", "/")).name.removesuffix(".safetensors"))


@pytest.mark.parametrize("name", ["", "..", "../", "/", "///", ".", "...", "-", "_._", " ", "!!!", "ééé",
                                  ".safetensors", "a/..", "dir/..", "\\"])
def test_safe_name_falls_back_when_nothing_is_left(name):
    assert safe_name(name) == "model"
    assert safe_name(name, fallback="upload") == "upload"


def test_safe_name_caps_long_names():
    long = "a" * 300 + ".safetensors"
    assert safe_name(long) == "a" * 64
    assert len(safe_name("x" * 1000)) <= 64
    mixed = "b" * 50 + "-" * 5 + "c" * 50
    assert safe_name(mixed).startswith("b" * 50) and len(safe_name(mixed)) <= 64


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_safe_name_of_hostile_names_is_a_plain_file_name(name):
    safe = safe_name(name)
    assert SAFE.fullmatch(safe), safe
    assert "/" not in safe and "\\" not in safe and not safe.startswith(".")
    assert safe not in (".", "..") and len(safe) <= 64


def test_safe_name_accepts_non_strings():
    assert safe_name(Path("a/b/c.safetensors")) == "c"
    assert safe_name(42) == "42"


# -- unique_path ---------------------------------------------------------------------------------


def test_unique_path_never_overwrites(tmp_path):
    seen = []
    for _ in range(4):
        path = unique_path("model", tmp_path)
        assert not path.exists()
        path.write_bytes(b"x")
        seen.append(path.name)
    assert seen == ["model.safetensors", "model-2.safetensors", "model-3.safetensors", "model-4.safetensors"]


def test_unique_path_skips_any_taken_name(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / "model-2.safetensors").mkdir()  # a folder of that name counts as taken too
    (tmp_path / "model-4.safetensors").write_bytes(b"x")
    path = unique_path("model.safetensors", tmp_path)
    assert path == tmp_path / "model-3.safetensors"
    path.write_bytes(b"x")
    assert unique_path("model", tmp_path) == tmp_path / "model-5.safetensors"


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_unique_path_stays_in_the_folder(tmp_path, name):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for _ in range(3):
        path = unique_path(name, folder)
        assert path.resolve().parent == folder.resolve()
        assert path.suffix == ".safetensors" and not path.name.startswith(".")
        assert not path.exists()
        path.write_bytes(b"x")
    assert len(list(folder.iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints"]  # nothing written outside


def test_unique_path_defaults_to_the_checkpoint_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_EXPLORER_CHECKPOINTS", str(tmp_path))
    assert checkpoint_dir() == tmp_path
    assert unique_path("../mine") == tmp_path / "mine.safetensors"


# -- list_checkpoints ----------------------------------------------------------------------------


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def test_list_checkpoints_finds_nested_files_default_first(tmp_path):
    _touch(tmp_path, "zeta.safetensors", "alpha.safetensors", f"{DEFAULT_MODEL}.safetensors",
           "runs/exp1/best.safetensors", "runs/b.safetensors")
    found = list_checkpoints(tmp_path)
    assert list(found) == [DEFAULT_MODEL, "alpha", "runs/b", "runs/exp1/best", "zeta"]
    assert found["runs/exp1/best"] == tmp_path / "runs" / "exp1" / "best.safetensors"
    assert all(path.is_file() for path in found.values())


def test_list_checkpoints_without_the_default(tmp_path):
    _touch(tmp_path, "b.safetensors", "a.safetensors", f"sub/{DEFAULT_MODEL}.safetensors")
    assert list(list_checkpoints(tmp_path)) == ["a", "b", f"sub/{DEFAULT_MODEL}"]


def test_list_checkpoints_skips_dotfiles_and_other_files(tmp_path):
    _touch(tmp_path, "good.safetensors", ".hidden.safetensors", "sub/.x.safetensors",
           f".{DEFAULT_MODEL}.safetensors.abc123.tmp",  # what an interrupted save leaves behind
           "notes.txt", "weights.pt", "old.safetensors.bak", "sub/model.safetensors.json")
    assert list(list_checkpoints(tmp_path)) == ["good"]


def test_list_checkpoints_of_an_empty_or_missing_folder(tmp_path):
    assert list_checkpoints(tmp_path) == {}
    assert list_checkpoints(tmp_path / "nowhere") == {}


def test_list_checkpoints_honours_the_environment(tmp_path, monkeypatch):
    _touch(tmp_path, "mine.safetensors", "nested/theirs.safetensors")
    monkeypatch.setenv("LATENT_EXPLORER_CHECKPOINTS", str(tmp_path))
    assert list(list_checkpoints()) == ["mine", "nested/theirs"]


def test_shipped_checkpoints_are_listed_default_first(monkeypatch):
    monkeypatch.delenv("LATENT_EXPLORER_CHECKPOINTS", raising=False)
    assert checkpoint_dir() == ROOT / "checkpoints"
    found = list_checkpoints()
    assert next(iter(found)) == DEFAULT_MODEL
    assert {p.stem for p in (ROOT / "checkpoints").glob("*.safetensors")} <= set(found)


# -- model cards ---------------------------------------------------------------------------------


def test_model_card_of_a_conditional_checkpoint():
    model = VAE(tiny_config("conv", 4, beta=4.0))
    ckpt = Checkpoint(model=model, dataset={"name": "shapes"}, history=[{"epoch": 1}, {"epoch": 2}, {"epoch": 3}],
                      metrics={"test_elbo": -31.26})
    card = model_card(ckpt)
    assert card["dataset"] == "shapes"
    assert card["architecture"] == "conv"
    assert card["latent size"] == 3
    assert card["β"] == 4.0
    assert card["conditional"].startswith("yes") and "4" in card["conditional"]
    assert card["likelihood"] == "bernoulli"
    assert card["input"] == "1×8×8"
    assert card["epochs"] == 3
    assert card["test ELBO"] == pytest.approx(-31.3)


def test_model_card_of_an_unconditional_checkpoint_without_extras():
    model = VAE(tiny_config("mlp", 0, input_shape=(3, 10, 12), likelihood="gaussian"))
    card = model_card(Checkpoint(model=model))
    assert card["conditional"] == "no"
    assert card["dataset"] == "unknown"
    assert card["architecture"] == "mlp"
    assert card["likelihood"] == "gaussian"
    assert card["input"] == "3×10×12"
    assert card["epochs"] == "—", "no history: trained elsewhere"
    assert card["test ELBO"] == "—" and "reconstruction" not in card
    measured = {"test_elbo": -41.26, "recon": 30.5, "pixel_error": 0.0912, "images": 2000}
    card = model_card(Checkpoint(model=model), measured)
    assert card["test ELBO"] == "-41.3 (measured here on 2,000 images)"
    assert card["reconstruction"] == "30.5 nats, mean pixel error 0.091"
    stored = Checkpoint(model=model, metrics={"test_elbo": -30.0})
    assert model_card(stored, measured)["test ELBO"] == -30.0, "a model's own score is shown, not re-measured"
    assert card["β"] == 1.0


def test_model_card_of_a_saved_checkpoint(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, VAE(tiny_config("mlp", 2)), dataset={"name": "digits"}, history=[{"epoch": 1}],
                    metrics={"test_elbo": -40.04})
    card = model_card(open_uploaded(path.name, path.read_bytes()))
    assert (card["dataset"], card["epochs"], card["test ELBO"]) == ("digits", 1, -40.0)
    assert "2" in card["conditional"]


# -- uploads -------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _state_dict_bytes(model: VAE, tmp_path: Path) -> bytes:
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    return path.read_bytes()


def _same_weights(a: VAE, b: VAE) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("architecture, num_classes", [("mlp", 0), ("conv", 4)])
def test_safetensors_upload_round_trip(tmp_path, architecture, num_classes):
    torch.manual_seed(1)
    model = VAE(tiny_config(architecture, num_classes))
    path = tmp_path / "saved.safetensors"
    save_checkpoint(path, model, dataset={"name": "shapes", "label_names": list("abcd")},
                    history=[{"epoch": 1, "loss": 3.5}], metrics={"test_elbo": -12.5})
    ckpt = open_uploaded("my upload.safetensors", path.read_bytes())
    assert _same_weights(ckpt.model, model)
    assert ckpt.config == model.config and not ckpt.model.training
    assert ckpt.dataset == {"name": "shapes", "label_names": list("abcd")}
    assert ckpt.history == [{"epoch": 1, "loss": 3.5}] and ckpt.metrics == {"test_elbo": -12.5}
    assert ckpt.path == Path("my-upload.safetensors")
    x = torch.rand(2, 1, 8, 8)
    y = torch.tensor([0, 3]) if num_classes else None
    with torch.no_grad():
        assert torch.equal(ckpt.model.reconstruct(x, y), model.eval().reconstruct(x, y))


@pytest.mark.parametrize("with_dataset", [True, False])
def test_pt_upload_with_its_config(tmp_path, with_dataset):
    torch.manual_seed(2)
    model = VAE(tiny_config("conv", 4))
    config = model.config.to_dict()
    if with_dataset:
        config["dataset"] = "shapes"
    ckpt = open_uploaded("weights.pt", _state_dict_bytes(model, tmp_path), json.dumps(config))
    assert _same_weights(ckpt.model, model)
    assert ckpt.config == model.config
    assert ckpt.dataset == {"name": "shapes" if with_dataset else "digits"}
    assert ckpt.path == Path("weights.pt")


def test_pt_upload_with_a_minimal_config(tmp_path):
    model = VAE(tiny_config())
    config = {"input_shape": [1, 8, 8], "latent_dim": 3, "hidden_sizes": [32, 16], "dataset": "digits"}
    ckpt = open_uploaded("w.pt", _state_dict_bytes(model, tmp_path), "  \n" + json.dumps(config) + "\n")
    assert _same_weights(ckpt.model, model) and ckpt.config.architecture == "mlp"


@pytest.mark.parametrize("config_json, match", [
    ("", "needs its config as JSON"),
    ("   \n\t", "needs its config as JSON"),
    ("{latent_dim: 3}", "not valid JSON"),
    ('{"latent_dim": 3', "not valid JSON"),
    ("[1, 8, 8]", "JSON object"),
    ('"digits"', "JSON object"),
    ("3", "JSON object"),
    ("null", "JSON object"),
    ('{"latent_dim": 0}', "config for"),
    ('{"latent_dim": 3, "colour": "red"}', "unknown fields"),
    ('{"latent_dim": 5, "hidden_sizes": [32, 16]}', "shape|size|fit|match"),
], ids=["empty", "blank", "bad-json", "truncated-json", "list", "string", "number", "null", "invalid-value",
        "unknown-field", "wrong-latent"])
def test_pt_upload_config_problems(tmp_path, config_json, match):
    data = _state_dict_bytes(VAE(tiny_config()), tmp_path)
    with pytest.raises(CheckpointError, match=match):
        open_uploaded("weights.pt", data, config_json)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pt_upload_with_a_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"
    control = tmp_path / "control.pt"
    torch.save({"to_mu.weight": torch.zeros(3, 16), "x": _Evil(tmp_path / "control-marker")}, control)
    torch.load(control, weights_only=False)  # proves the payload is live: an unsafe load runs it
    assert (tmp_path / "control-marker").exists()

    path = tmp_path / "evil.pt"
    torch.save({"to_mu.weight": torch.zeros(3, 16), "x": _Evil(marker)}, path)
    config = json.dumps(tiny_config().to_dict())
    with pytest.raises(CheckpointError, match="evil.pt"):
        open_uploaded("evil.pt", path.read_bytes(), config)
    assert not marker.exists()


@pytest.mark.parametrize("data", [b"", b"garbage" * 100, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
                                  b"\xff" * 8 + b"{}"], ids=["empty", "text", "empty-header", "huge-header"])
@pytest.mark.parametrize("name", ["x.safetensors", "x.bin"])
def test_garbage_safetensors_upload(name, data):
    with pytest.raises(CheckpointError):
        open_uploaded(name, data)


def test_pt_bytes_named_safetensors_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil(marker)}, path)
    with pytest.raises(CheckpointError):
        open_uploaded("evil.safetensors", path.read_bytes())
    assert not marker.exists()


@pytest.mark.parametrize("name, expected", [
    ("../../evil.safetensors", "evil.safetensors"),
    ("/etc/cron.d/evil.safetensors", "evil.safetensors"),
    ("..\\..\\evil.safetensors", "evil.safetensors"),
    ("../.evil.safetensors", "evil.safetensors"),
    ("../../.safetensors", "model.safetensors"),
    ("my model!.safetensors", "my-model.safetensors"),
], ids=repr)
def test_upload_name_is_sanitised(tmp_path, name, expected):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, VAE(tiny_config()))
    ckpt = open_uploaded(name, path.read_bytes())
    assert ckpt.path == Path(expected)
    assert len(ckpt.path.parts) == 1


@pytest.mark.parametrize("name, expected", [
    ("weights.pt", "weights.pt"),
    ("../../evil.pt", "evil.pt"),
    ("C:\\models\\vae.pt", "vae.pt"),
    (".pt", "model.pt"),
    ("WEIGHTS.PT", "WEIGHTS.pt"),
], ids=repr)
def test_pt_upload_name_is_sanitised(tmp_path, name, expected):
    model = VAE(tiny_config())
    ckpt = open_uploaded(name, _state_dict_bytes(model, tmp_path), json.dumps(model.config.to_dict()))
    assert ckpt.path == Path(expected)
    assert _same_weights(ckpt.model, model)


def test_an_upload_never_names_a_path_on_the_server(tmp_path):
    """A checkpoint whose metadata names `folder:/...` would make the app read and show that folder."""
    path = save_checkpoint(tmp_path / "m.safetensors", VAE(tiny_config()), dataset={"name": "folder:/etc"})
    assert open_uploaded("m.safetensors", path.read_bytes()).dataset["name"] == "digits"  # 8x8: digits
    path = save_checkpoint(tmp_path / "m.safetensors", VAE(tiny_config()), dataset={"name": "digits-without-3"})
    assert open_uploaded("m.safetensors", path.read_bytes()).dataset["name"] == "digits-without-3"
