"""The README's "Bring your own model" commands, run as written from a fresh directory: each route
(a class with arguments and a Lightning .ckpt, a pythae folder, an ONNX pair) works as documented."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _commands(program: str) -> list[list[str]]:
    """The README section's commands that start with `program`, continuation lines joined."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Bring your own model"):]
    section = section[:section.index("\n## ", 3)]
    lines = re.sub(r"\\\n\s*", " ", section).splitlines()
    return [shlex.split(line) for line in lines if line.startswith(program)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A fresh directory holding what a clone holds that the commands name (docs/, checkpoints/),
    after running every `.venv/bin/python` command of the section in order."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("docs", "checkpoints"):
        (folder / name).symlink_to(ROOT / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in _commands(".venv/bin/python"):
        result = subprocess.run([sys.executable, *command[1:]], cwd=folder, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "warning" not in result.stderr.lower(), (command, result.stderr)
    return folder


@pytest.mark.slow
def test_every_route_evaluates(workdir):
    commands = _commands(".venv/bin/python")
    assert sum(c[1:3] == ["-m", "vae_core"] and c[3] == "eval" for c in commands) == 3, "one eval per route"
    assert (workdir / "vanilla.ckpt").is_file() and (workdir / "my-pythae-vae" / "model_config.json").is_file()
    assert {p.name for p in (workdir / "mnist-vae-onnx").iterdir()} == {"encoder.onnx", "decoder.onnx", "model.json"}


@pytest.mark.slow
@pytest.mark.parametrize("index", range(3))
def test_every_app_command_opens_its_model(workdir, checkpoints, monkeypatch, index):
    from apptest_support import assert_clean, start, view_of

    command = _commands(".venv/bin/streamlit")[index]
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["app.py", *command[command.index("--") + 1:]])
    at = start()
    assert_clean(at)
    assert view_of(at).model.startswith("external:"), command
