"""Shared fixtures for the tests. Keep each fixture small and documented; append new ones below."""
from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_core import VAE, VAEConfig

# The servers and AppTests the tests start would each compile UMAP in the background (a minute of
# a core apiece); the warm-up has its own test, which turns it back on.
os.environ["LATENT_EXPLORER_WARM_UP"] = "0"

# Small enough that building and running one takes milliseconds on a CPU.
TINY_HIDDEN = {"mlp": (32, 16), "conv": (4, 8)}


def tiny_config(architecture: str = "mlp", num_classes: int = 0, input_shape=(1, 8, 8), **overrides) -> VAEConfig:
    """A small VAEConfig of the given kind; keyword overrides win."""
    fields = dict(input_shape=input_shape, latent_dim=3, architecture=architecture,
                  hidden_sizes=TINY_HIDDEN[architecture], num_classes=num_classes)
    fields.update(overrides)
    return VAEConfig(**fields)


@pytest.fixture(params=[("mlp", 0), ("mlp", 4), ("conv", 0), ("conv", 4)],
                ids=["mlp", "mlp-cond", "conv", "conv-cond"])
def tiny_model(request) -> VAE:
    """A freshly initialised, seeded, small VAE: (mlp, conv) x (unconditional, conditional with 4 classes)."""
    architecture, num_classes = request.param
    torch.manual_seed(0)
    return VAE(tiny_config(architecture, num_classes)).eval()


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """A private copy of the shipped checkpoints/ that the app reads (LATENT_EXPLORER_CHECKPOINTS),
    so a test can add broken or new files beside them without touching the repository."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(Path(__file__).resolve().parent.parent / "checkpoints", folder)
    monkeypatch.setenv("LATENT_EXPLORER_CHECKPOINTS", str(folder))
    return folder


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright, shared by the browser tests (`make test`
    installs it with apt-get; Playwright downloads no browser of its own)."""
    from streamlit_server import CHROMIUM, CHROMIUM_ARGS

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def app_url():
    """A real `streamlit run app.py` on 127.0.0.1 for one test module (the shipped checkpoints)."""
    from streamlit_server import streamlit_server

    with streamlit_server() as url:
        yield url


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format: magic (0x0000, type 0x08 = uint8, number of dims), big-endian int32 dims, bytes."""
    path.write_bytes(struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str, n_train=20, n_test=10, seed=0, images=None):
    """torchvision's MNIST layout under root/folder/raw: random digits-sized images, or the given
    (n, 28, 28) uint8 ones cycled over both splits. Returns {"train"|"t10k": (images, labels)}."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        split = (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) if images is None
                 else images[np.arange(n) % len(images)])
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", split)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[prefix] = (split, labels)
    return written


@pytest.fixture(scope="session")
def vanilla_vae(tmp_path_factory):
    """(vanilla_vae.py, vanilla.ckpt): a PyTorch-VAE-style VanillaVAE trained a few seconds on digits
    and saved as a Lightning checkpoint (see vanilla_vae.py)."""
    import vanilla_vae

    return vanilla_vae.write(tmp_path_factory.mktemp("vanilla"))


@pytest.fixture(autouse=True)
def every_apptest_run_is_a_page_the_browser_accepts(monkeypatch):
    """Each AppTest run's messages, coalesced as the server's queue coalesces a run that no flush
    interrupts, must build a page the browser accepts (apptest_support.assert_browser_accepts)."""
    from streamlit.testing.v1 import local_script_runner

    from apptest_support import assert_browser_accepts

    parse = local_script_runner.parse_tree_from_messages

    def checked(messages):
        assert_browser_accepts(messages)
        return parse(messages)

    monkeypatch.setattr(local_script_runner, "parse_tree_from_messages", checked)
