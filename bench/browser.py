"""What the browser benches and the browser tests share: a real `streamlit run app.py` on a free
loopback port, Debian's Chromium, and the probes a page runs to time itself.

bench/ scripts import it as `browser` (their own folder is on sys.path); tests import bench.browser.
"""
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
    logs = ROOT / "tests" / "artifacts"  # ignored by git
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
            stop(proc)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Ask a child process to end (SIGTERM); kill it if it has not within `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def streamlit_server(*app_args: str, **options):
    """The base URL of a running app (see running_streamlit)."""
    with running_streamlit(*app_args, **options) as server:
        yield server.url


# -- the Latent map's clickable map component (pages/ui/map_view) ---------------------------------
MAP_FRAME = 'iframe[title="pages.ui.map_view.map_view"]'


def map_frame(page, timeout_ms: int = 60_000):
    """Playwright (sync): the map component's frame, once plotly has drawn the map in it."""
    page.locator(MAP_FRAME).wait_for(timeout=timeout_ms)
    frame = next(f for f in page.frames if "/component/pages.ui.map_view.map_view/" in f.url)
    frame.wait_for_function("() => window.mapState && document.querySelector('#map canvas')", timeout=timeout_ms)
    return frame


# -- probes run inside the page -------------------------------------------------------------------
# Every WebSocket message the page sends and receives, time-stamped (installed before the app's
# scripts run: context.add_init_script(WS_HOOK)).
WS_HOOK = """
(() => {
  const Orig = window.WebSocket;
  const log = window.__wslog = {sends: [], recvs: [], opens: 0, closes: 0};
  const send = Orig.prototype.send;
  Orig.prototype.send = function (data) { if (log.sends.length < 2000) log.sends.push(performance.now()); return send.call(this, data); };
  window.WebSocket = class extends Orig {
    constructor(...args) {
      super(...args);
      log.opens++;
      this.addEventListener('message', () => { if (log.recvs.length < 2000) log.recvs.push(performance.now()); });
      this.addEventListener('close', () => { log.closes++; });
    }
  };
})();
"""

# True once no script runs and the "Running…" widget is gone.
SCRIPT_IDLE = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
               " return !!a && a.getAttribute('data-test-script-state') === 'notRunning'"
               " && !document.querySelector('[data-testid=\"stStatusWidget\"]'); }")

# Times one slider step on the Traversal page's server-side sliders, event-driven (a MutationObserver,
# no polling): the key press, the decode(z) picture's new src, and that picture loaded (or failed).
# Returns the picture's src (null: no decode(z) picture on the page); installing it twice is harmless.
INSTALL_PROBE = """
() => {
  const findImg = () => {
    const f = [...document.querySelectorAll('[data-testid="stImage"]')].find(e => e.textContent.includes('decode(z)'));
    return f ? f.querySelector('img') : null;
  };
  if (window.__bench) return findImg() ? findImg().src : null;
  const b = window.__bench = {findImg, armed: false, keyT: null, srcT: null, loadT: null, oldSrc: null, newSrc: null,
                              mutations: 0, imgErrors: 0, resolve: null, done: null};
  document.addEventListener('keydown', () => { if (b.armed && b.keyT === null) b.keyT = performance.now(); }, true);
  const finish = () => { if (b.resolve) { const r = b.resolve; b.resolve = null; r(true); } };
  const check = () => {
    if (!b.armed || b.srcT !== null) return;
    const img = findImg();
    if (!img || !img.getAttribute('src') || img.src === b.oldSrc) return;
    b.srcT = performance.now();
    b.newSrc = img.src;
    const loaded = () => { if (b.loadT === null) { b.loadT = performance.now(); finish(); } };
    if (img.complete && img.naturalWidth > 0) loaded(); else {
      img.addEventListener('load', loaded, {once: true});
      img.addEventListener('error', () => { if (b.loadT === null) { b.loadT = -1; b.imgErrors++; finish(); } }, {once: true});
    }
  };
  new MutationObserver(() => { b.mutations++; check(); }).observe(document.body,
      {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
  return findImg() ? findImg().src : null;
}
"""

# Start timing the next step: forget the last one, and make `window.__bench.done` resolve when it ends.
ARM = """
() => { const b = window.__bench; const img = b.findImg();
  b.oldSrc = img ? img.src : null; b.keyT = b.srcT = b.loadT = b.newSrc = null; b.mutations = 0;
  window.__wslog.sends.length = 0; window.__wslog.recvs.length = 0;
  b.done = new Promise(r => { b.resolve = r; }); b.armed = true; }
"""


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Playwright (sync): until SCRIPT_IDLE holds."""
    page.wait_for_function(SCRIPT_IDLE, timeout=timeout_ms, polling="raf")


async def wait_idle_async(page, timeout_ms: int = 120_000) -> None:
    """Playwright (async): until SCRIPT_IDLE holds."""
    await page.wait_for_function(SCRIPT_IDLE, timeout=timeout_ms, polling=50)
