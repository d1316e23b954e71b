"""The live pad's frontend: the committed build is complete, offline, and what its source builds."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from apptest_support import ROOT

FRONTEND = ROOT / "pages" / "ui" / "live_pad" / "frontend"
BUILD = FRONTEND / "build"


def test_the_committed_build_has_everything_index_html_loads():
    html = (BUILD / "index.html").read_text()
    for name in re.findall(r'(?:src|href)="\./([^"]+)"', html):
        assert (BUILD / name).is_file(), name
    import brotli

    packed = (BUILD / "ort-wasm-simd-threaded.wasm.br").read_bytes()
    runtime = brotli.decompress(packed)
    assert runtime[:4] == b"\0asm", "the runtime onnxruntime-web loads, Brotli-compressed"
    installed = FRONTEND / "node_modules" / "onnxruntime-web" / "dist" / "ort-wasm-simd-threaded.wasm"
    if installed.is_file():  # after npm ci: exactly the runtime onnxruntime-web ships
        assert runtime == installed.read_bytes()
    script = (BUILD / "live_pad.js").read_text()
    # a class's browsers each download these: the runtime, the script (with its Brotli decoder)
    assert len(packed) + len(script.encode()) < 3_000_000
    assert "ort-wasm-simd-threaded.wasm.br" in script and "streamlit:componentReady" in script
    assert not re.search(r"""(import|from)\s*\(?\s*["']https?://""", script), "no module from a CDN"


@pytest.mark.slow
def test_npm_ci_and_build_reproduce_the_committed_files(tmp_path):
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("no Node/npm here; the app serves the committed build and needs neither")
    for name in ("package.json", "package-lock.json", "build.mjs"):
        shutil.copy(FRONTEND / name, tmp_path / name)
    shutil.copytree(FRONTEND / "src", tmp_path / "src")
    install = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)
    if install.returncode and re.search(r"ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNREFUSED|ECONNRESET", install.stderr):
        pytest.skip("the npm registry cannot be reached from here")
    assert install.returncode == 0, install.stderr[-2000:]
    build = subprocess.run([npm, "run", "build"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    built = sorted(p.name for p in (tmp_path / "build").iterdir())
    assert built == sorted(p.name for p in BUILD.iterdir())
    for name in built:
        assert (tmp_path / "build" / name).read_bytes() == (BUILD / name).read_bytes(), f"{name} differs: run make live-pad"
