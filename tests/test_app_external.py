"""Models trained elsewhere, opened in the app as their users have them (AppTest): a PyTorch-VAE-style
class with constructor arguments and a Lightning checkpoint, a model whose range is set wrong, and the
messages a failed model leaves."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from apptest_support import assert_clean, image_urls, session_of, start, view_of
from vanilla_vae import KWARGS

ALL_PAGES = sorted(str(p.relative_to(Path(__file__).resolve().parent.parent))
                   for p in (Path(__file__).resolve().parent.parent / "pages").glob("*.py") if p.stem != "__init__")


def _open_own_model(at, spec, weights, kwargs="", outputs="logits", input_range="0,1", dataset="digits"):
    at.sidebar.text_input(key="own_model.spec").input(spec)
    at.sidebar.text_input(key="own_model.model_kwargs").input(kwargs)
    at.sidebar.text_input(key="own_model.weights").input(str(weights))
    at.sidebar.selectbox(key="own_model.dataset").set_value(dataset)
    at.sidebar.radio(key="own_model.outputs").set_value(outputs)
    at.sidebar.radio(key="own_model.input_range").set_value(input_range)
    next(b for b in at.sidebar.button if b.label == "Open my model").click().run()
    return at


def test_pytorch_vae_style_model_opens_on_every_page(checkpoints, vanilla_vae):
    code, ckpt = vanilla_vae
    at = _open_own_model(start(), f"{code}:VanillaVAE", ckpt, json.dumps(KWARGS), "tanh", "-1,1")
    assert_clean(at)
    assert not at.sidebar.warning, "its reconstructions are close to its inputs: no range warning"
    assert view_of(at).model.startswith("external:")
    card = " ".join(c.value for c in at.sidebar.caption)
    assert re.search(r"measured here on [0-9,]+ images", card), "the test ELBO is computed for a model that brings none"
    assert "mean pixel error 0" in card
    for page in ALL_PAGES:
        at.switch_page(page).run()
        assert_clean(at)
        assert view_of(at).model.startswith("external:"), page
    at.switch_page("pages/traversal.py").run()
    assert image_urls(at), "the traversal decodes it"


def test_a_wrong_output_range_is_named_in_a_warning(checkpoints, vanilla_vae):
    code, ckpt = vanilla_vae
    at = _open_own_model(start(), f"{code}:VanillaVAE", ckpt, json.dumps(KWARGS), "logits", "-1,1")
    assert not at.exception
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert "output range" in warnings and "logits" in warnings


@pytest.mark.parametrize("kwargs, shown", [("", r"VanillaVAE.\_\_init\_\_\(\)"),  # escaped: not a bold "init"
                                            ("{in_channels: 1}", "not JSON")])
def test_constructor_arguments_that_fail_give_a_plain_message(checkpoints, vanilla_vae, kwargs, shown):
    code, ckpt = vanilla_vae
    at = _open_own_model(start(), f"{code}:VanillaVAE", ckpt, kwargs, "tanh", "-1,1")
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and shown in errors[0], errors
    assert view_of(at).model == "file:mnist-vae", "the app stays on the previous model"


def test_a_failed_command_line_model_is_named_by_its_file(checkpoints, tmp_path, monkeypatch):
    broken = tmp_path / "broken_vae.py"
    broken.write_text("raise RuntimeError('this file is broken')\n")
    monkeypatch.setattr(sys, "argv", ["app.py", "--model", f"{broken}:VAE", "--weights", str(tmp_path / "w.pt")])
    at = start()
    assert not at.exception
    errors = " ".join(e.value for e in at.sidebar.error)
    assert "broken\\_vae.py\\:VAE" in errors and "external:" not in errors and "this file is broken" in errors
    assert not session_of(at).external_models


def _zip(folder: Path, inside: str = "model") -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{inside}/{path.name}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory) -> Path:
    """mnist-vae exported as an ONNX pair: encoder.onnx, decoder.onnx, model.json."""
    from vae_core.checkpoint import load_checkpoint
    from vae_core.onnx_pair import export_pair

    ckpt = load_checkpoint(Path(__file__).resolve().parent.parent / "checkpoints" / "mnist-vae.safetensors")
    return export_pair(ckpt.model, ckpt.dataset, tmp_path_factory.mktemp("pair") / "mnist-vae-onnx", ckpt.metrics)


def _upload(at, name: str, data: bytes):
    at.sidebar.file_uploader[0].upload(name, data).run()
    next(b for b in at.sidebar.button if b.label == "Open upload").click().run()
    return at


def test_an_uploaded_onnx_zip_runs_every_page_in_classroom_mode(checkpoints, onnx_pair, monkeypatch):
    """A model that runs no Python: fine where local code is off (a classroom server)."""
    import pages.ui.sidebar

    monkeypatch.setattr(pages.ui.sidebar, "LOCAL_CODE_ALLOWED", False)
    at = _upload(start(), "mnist-vae-onnx.zip", _zip(onnx_pair))
    assert_clean(at)
    assert view_of(at).model.startswith("upload:")
    assert "mnist-vae-onnx.zip" in at.sidebar.selectbox(key="view.model").format_func(view_of(at).model)
    for page in ALL_PAGES:
        at.switch_page(page).run()
        assert_clean(at)
        assert view_of(at).model.startswith("upload:"), page
    at.switch_page("pages/traversal.py").run()
    assert image_urls(at) or at.get("iframe") or at.get("custom_component"), "the traversal shows the model"


@pytest.mark.parametrize("kind, message", [("outside", "points outside the zip"),
                                           ("truncated", "encoder.onnx: truncated or not an ONNX file"),
                                           ("other", "neither a pythae folder")])
def test_a_bad_zip_upload_is_refused_and_the_model_stays(checkpoints, onnx_pair, kind, message):
    import io
    import zipfile

    entries = {"outside": {"../../model.json": b"{}"}, "other": {"readme.txt": b"hello"},
               "truncated": {f"m/{p.name}": p.read_bytes()[:400] if p.name == "encoder.onnx" else p.read_bytes()
                             for p in onnx_pair.iterdir()}}[kind]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    at = _upload(start(), "bad.zip", buffer.getvalue())
    assert not at.exception
    errors = " ".join(e.value for e in at.sidebar.error)
    assert "Could not open the upload" in errors and message in errors.replace("\\", ""), errors
    assert view_of(at).model == "file:mnist-vae"


@pytest.mark.parametrize("kind", ["pythae", "onnx", "safetensors"])
def test_command_line_checkpoint_opens_a_model_from_anywhere(checkpoints, onnx_pair, tmp_path, monkeypatch, kind):
    """`streamlit run app.py -- --checkpoint PATH`: a pythae folder, an ONNX folder, or a checkpoint
    outside checkpoints/, each opened where it lies."""
    import shutil

    import torch
    from pythae.models import VAE as PythaeVAE, VAEConfig as PythaeConfig

    if kind == "pythae":
        torch.manual_seed(0)
        PythaeVAE(PythaeConfig(input_dim=(1, 28, 28), latent_dim=6)).save(str(tmp_path / "pythae-run"))
        path, latent = tmp_path / "pythae-run", 6
    elif kind == "onnx":
        path, latent = onnx_pair, 16
    else:
        path, latent = Path(shutil.copy(checkpoints / "mnist-vae-2d.safetensors", tmp_path / "elsewhere.safetensors")), 2
    monkeypatch.setattr(sys, "argv", ["app.py", "--checkpoint", str(path)])
    at = start()
    assert not at.exception and not at.sidebar.error
    assert view_of(at).model.startswith("external:")
    card = " ".join(c.value for c in at.sidebar.caption)
    assert "**dataset** mnist\\-5k" in card and f"**latent size** {latent}" in card
    assert f"📂 {path.name}" in at.sidebar.selectbox(key="view.model").format_func(view_of(at).model)


def test_editing_any_file_of_a_model_opens_it_afresh(tmp_path):
    """The cache key of a model from outside follows its Python file, its weights and every file of
    its folder: a model saved again in place (pythae's model.save) is not served stale."""
    import os

    from pages.ui.models import ModelPath, _newest_change
    from vae_core.external import OwnModel

    code, weights, folder = tmp_path / "m.py", tmp_path / "w.pt", tmp_path / "run"
    folder.mkdir()
    for path in (code, weights, folder / "model.pt"):
        path.write_text("x")
        os.utime(path, (1_000, 1_000))
    os.utime(folder, (1_000, 1_000))
    own, saved = OwnModel(f"{code}:VAE", str(weights)), ModelPath(str(folder))
    before = _newest_change(own), _newest_change(saved)
    os.utime(code, (2_000, 2_000))  # the class edited, the weights not
    os.utime(folder / "model.pt", (2_000, 2_000))  # a file rewritten in place: the folder's own time stays
    assert _newest_change(own) > before[0] and _newest_change(saved) > before[1]
