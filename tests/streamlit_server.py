"""Start a real `streamlit run app.py` on a free loopback port, for browser tests and benchmarks."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    launched: float  # time.perf_counter() at the launch
    healthy: float  # ... when /_stcore/health first answered 200


@contextlib.contextmanager
def running_streamlit(*app_args: str, options: tuple[str, ...] = (), timeout: float = 90.0,
                      env: dict | None = None, log_prefix: str = "streamlit"):
    """Yield a Server once it answers its health check; stop it afterwards. Loopback only.

    options: extra `streamlit run` flags (e.g. "--runner.postScriptGC", "true"); app_args go to app.py."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", *options]
    if app_args:
        cmd += ["--", *app_args]
    logs = ROOT / "tests" / "artifacts"
    logs.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    with open(logs / f"{log_prefix}-{port}.log", "w") as log:
        launched = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        try:
            deadline = launched + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {proc.returncode} (log: {log.name})")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.perf_counter() > deadline:
                    raise TimeoutError("streamlit did not become healthy in time")
                time.sleep(0.02)
            yield Server(url, proc, launched, time.perf_counter())
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def streamlit_server(*app_args: str, **options):
    """The base URL of a running app (see running_streamlit)."""
    with running_streamlit(*app_args, **options) as server:
        yield server.url


# -- driving the app in Chromium (Playwright pages) -------------------------------------------
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots, ignored by git


def wait_until_idle(page, timeout: int = 60_000) -> None:
    """The status widget ("Running…") is on screen only while a script runs: wait for it to go."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)
    page.wait_for_timeout(300)


def open_page(browser, url: str, title: str, height: int = 1000, **context):
    """A new page at url, once its h1 says `title` and its script is idle; no traceback on it."""
    page = browser.new_page(viewport={"width": 1400, "height": height}, **context)
    page.goto(url)
    page.locator("h1", has_text=title).wait_for(timeout=60_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0, f"{url} shows a traceback"
    return page
