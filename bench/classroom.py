#!/usr/bin/env python
"""Classroom load benchmark: one teacher's `streamlit run`, N students' browsers at once.

One real server (bench/browser.py: `streamlit run app.py` on 127.0.0.1 only, with
LATENT_EXPLORER_CLASSROOM=1 and NUMBA_CACHE_DIR=.cache/numba as `make serve` sets them) for the whole
run. Before the rounds, one warm-up browser session visits Overview, Latent map, Traversal and
Interpolation (model load, encodings, the Latent map page's background UMAP compile) and the server
is left to go quiet, so every round meets a server that has already served one student.

Each round of N sessions uses a fresh headless Chromium (one browser process, N contexts, one page
each; --per-browser K spreads them over several processes), driven with Playwright's async API
(asyncio.gather), and runs, all sessions concurrently:
  1. open /traversal?sample=k, k distinct per session (k = 5 + 11·i mod the test-set size), and switch
     its "Decode in this browser" toggle off: the bench loads the server with the server-side sliders
     (the live pad decodes in the browser and reports to the server only when a control is released);
  2. switch pages through the sidebar links: Overview → Latent map → Traversal → Interpolation →
     Traversal. Each switch: click → h1 of the new page → script idle → the page's pictures loaded
     and the renderer idle (requestIdleCallback) → --look ms;
  -- all sessions wait for each other (a barrier), so the slider phase runs with all N active --
  3. for --seconds, press ArrowRight / ArrowLeft alternately on one latent slider (session i uses
     the i-th slider, cycling), each step timed in the page's own clock (performance.now()): keydown
     → decode(z) <img> src changed (MutationObserver) → that image's load event. WebSocket send and
     receive times (an init script wraps the page's WebSocket; the app is untouched) split it into
     browser (key → send), round trip (send → last message before the src change, as the renderer
     sees it) and render (that message → src change). After each step: script idle
     ([data-testid="stApp"] data-test-script-state == "notRunning", no status widget), then --think ms.
     Alternating keys revisit two values, so after the first two steps the browser has both pictures
     in its memory cache: "src → loaded" is ~0 and few /media/ GETs reach the server;
  -- barrier --
  4. check each session's own state: the "Test image #" field and the URL's ?sample= equal its k,
     the URL's ?z= matches its own sliders, every latent slider is where this session left it.

The server's own share is read off the wire: a raw socket on lo (root) records the packets to and
from the server's port with kernel time stamps; a fragment `rerun_script` BackMsg reaching the server
starts a step, the ForwardMsg delta carrying the decode(z) image and `script_finished` leaving it end
it (--no-wire to skip). --pin-server puts the server on CPU 0 and everything else on the other CPUs.

Errors (must be zero): tracebacks on the page ([data-testid="stException"]), console errors, page
errors, failed requests, HTTP ≥ 400, broken or stuck pictures on a settled page, decode(z) pictures
that fail to load, WebSocket closes/reconnects, timeouts. Three kinds of failure are expected on this
offline machine and listed apart as noise (see classify()). Server RSS (/proc/<pid>/status VmRSS) is
sampled every 0.25 s; CPU of the server, of the browsers + this script, of the machine and the
machine's CPU pressure (/proc/pressure/cpu) are read over the slider phase.

Usage (from the repository root):
    .venv/bin/python bench/classroom.py                 # N = 1, 10, 30; 30 s of sliders each (~5-6 min)
    .venv/bin/python bench/classroom.py --quick         # N = 1, 3; 10 s each (smoke run, ~1 min)
    .venv/bin/python bench/classroom.py --sessions 30 --pin-server --json /tmp/n30.json

Exit status 1 when any error was seen or a session lost its own sample. Loopback only; the server,
browsers and capture are always stopped; every wait has a timeout, each round a budget, and the whole
run a hard --timeout (a watchdog kills what this script started, by pid).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app_bench import fmt, machine_block, percentile, table  # noqa: E402
from browser import ARM, CHROMIUM, CHROMIUM_ARGS, INSTALL_PROBE, WS_HOOK, running_streamlit, stop  # noqa: E402
from browser import wait_idle_async as wait_idle  # noqa: E402

NAV = [("Overview", ""), ("Latent map", "latent_map"), ("Traversal", "traversal"), ("Interpolation", "interpolation"),
       ("Traversal", "traversal")]
STEP_TIMEOUT_MS = 15_000  # one slider step: the new picture must have loaded by then
OP_TIMEOUT_MS = 120_000  # opening a page, a page switch, script idle
CLK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- in the page --------------------------------------------------------------------------------
AWAIT_STEP = """
(ms) => { const b = window.__bench;
  return Promise.race([b.done, new Promise(r => setTimeout(() => r(false), ms))]).then(ok => {
    b.armed = false; b.resolve = null;
    return {ok, keyT: b.keyT, srcT: b.srcT, loadT: b.loadT, sends: [...window.__wslog.sends],
            recvs: [...window.__wslog.recvs]}; }); }
"""

# Streamlit 1.67's slider is a react-aria <input type="range"> (implicit role "slider"); its value
# property is snapped to the step grid, aria-valuetext is the value shown on the thumb (the session's).
LATENT_SLIDERS = """
() => [...document.querySelectorAll('input[type="range"]')]
  .filter(e => /^z\\d+ /.test(e.getAttribute('aria-label') || ''))
  .map(e => ({label: e.getAttribute('aria-label'),
              value: parseFloat(e.getAttribute('aria-valuetext') ?? e.getAttribute('aria-valuenow') ?? e.value)}))
"""

SLIDER_VALUE = "e => parseFloat(e.getAttribute('aria-valuetext') ?? e.getAttribute('aria-valuenow') ?? e.value)"

# A page is drawn once every picture in the main area has finished loading (or failed): resolves with the
# pictures that failed (broken images the student would see), or after `ms` with those still pending.
SETTLED = """
(ms) => new Promise(resolve => {
  const t0 = performance.now();
  const tick = () => {
    const imgs = [...document.querySelectorAll('[data-testid="stMain"] img')];
    const pending = imgs.filter(i => !i.complete);
    if (!pending.length || performance.now() - t0 > ms) {
      resolve({broken: imgs.filter(i => i.complete && i.naturalWidth === 0).map(i => i.src),
               pending: pending.map(i => i.src), images: imgs.length});
    } else setTimeout(tick, 50);
  };
  tick();
})
"""

FIELD_IS = """
(k) => { const e = [...document.querySelectorAll('input')].find(i => i.getAttribute('aria-label') === 'Test image #');
  return !!e && e.value === String(k); }
"""


# -- what one session saw -------------------------------------------------------------------------
@dataclass
class Session:
    index: int
    k: int
    steps: list = field(default_factory=list)  # dicts: src, load, to_send, round_trip, render
    switches: list = field(default_factory=list)  # (title, seconds)
    errors: list = field(default_factory=list)  # (kind, message)
    noise: list = field(default_factory=list)  # (kind, message): expected on this offline machine, see classify()
    flashes: int = 0  # times the "Test image #" field first showed another number, then k
    phase: str = "open"  # open, switch to <page>, slider, final: errors and noise are tagged with it
    own_values: dict = field(default_factory=dict)  # the latent sliders as this session left them
    media_loaded: set = field(default_factory=set)  # /media/ URLs this session's browser got with 200
    open_s: float = float("nan")
    slider: str = ""
    start_values: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    closing: bool = False

    def error(self, kind: str, message: str, url: str = "") -> None:
        if self.closing:
            return
        message = message.strip().replace("\n", " ")[:300]
        why = classify(kind, message, url)
        if why and kind == "console error":  # the console's "Failed to load resource" for a request above
            why += ": its console message"
        target = self.noise if why else self.errors
        if len(target) < 2000:
            target.append((why or kind, message + (f" [{url}]" if url and url not in message else ""), self.phase))


BASE_PATH_PROBE = re.compile(r"^/[^/]+/_stcore/(health|host-config)$")


def classify(kind: str, message: str, url: str) -> str | None:
    """Which failures are expected here rather than faults of the app (None: a real error).

    - Streamlit's frontend, opened at /<page>, first asks /<page>/_stcore/health and host-config (its
      base-path discovery) and gets a 404 before it tries /_stcore/...: every deep link does this.
    - Material-icon favicons (page_icon ":material/...:", the st.Page icons) are fetched from
      fonts.gstatic.com; this machine has no internet, so they fail (a missing favicon).
    - A request the browser itself aborted (net::ERR_ABORTED): an image dropped on a page switch or
      replaced by a newer one before it finished. A decode(z) picture that fails to load is counted
      apart, from its <img> error event."""
    target = url or (message.split()[1] if kind == "request failed" and len(message.split()) > 1 else "")
    if kind == "http error" and len(message.split()) > 1:
        target = message.split()[1]
    parsed = urlparse(target)
    if parsed.hostname and parsed.hostname not in ("127.0.0.1", "localhost"):
        return f"offline: external request ({parsed.hostname})"
    if kind in ("http error", "console error", "request failed") and BASE_PATH_PROBE.match(parsed.path or ""):
        return "Streamlit base-path probe (404)"
    if kind == "request failed" and "net::ERR_ABORTED" in message:
        return "request aborted by the browser"
    return None


def attach_listeners(page, s: Session) -> None:
    page.on("console", lambda m: s.error("console error", m.text, (m.location or {}).get("url", ""))
            if m.type == "error" else None)
    page.on("pageerror", lambda e: s.error("page error", str(e)))
    page.on("crash", lambda _: s.error("page crash", "the page's renderer crashed"))
    page.on("requestfailed", lambda r: s.error("request failed", f"{r.method} {r.url} {r.failure}"))
    page.on("response", lambda r: on_response(r, s))


def on_response(r, s: Session) -> None:
    if "/media/" in r.url and r.status < 400:
        s.media_loaded.add(r.url)
    elif r.status >= 400:
        again = ""
        if "/media/" in r.url:
            again = (" (a picture this session had already loaded: asked for again)" if r.url in s.media_loaded
                     else " (never loaded by this session before)")
        s.error("http error", f"{r.status} {r.url}{again}")


async def settle(page, s: Session, where: str, pause_ms: int) -> None:
    """Wait for the page's pictures, count broken ones as errors, then look at the page for pause_ms."""
    r = await page.evaluate(SETTLED, 15_000)
    # then until the renderer has nothing left to do (React's effects, e.g. a download button checking its
    # file, run after the paint): a starved renderer would otherwise still be drawing the page we leave
    await page.evaluate("() => new Promise(r => requestIdleCallback(() => requestAnimationFrame(() => r()), "
                        "{timeout: 10000}))")
    for src in r["broken"]:
        s.error("broken image shown", f"{where}: {src}")
    if r["pending"]:
        s.error("timeout", f"{where}: {len(r['pending'])} picture(s) still loading after 15 s")
    if pause_ms:
        await page.wait_for_timeout(pause_ms)


async def exceptions_on_page(page, s: Session, where: str) -> None:
    n = await page.locator('[data-testid="stException"]').count()
    if n:
        text = await page.locator('[data-testid="stException"]').first.inner_text()
        s.error("stException", f"{where}: {n} on the page: {text[:200]}")


class Barrier:
    """Like asyncio.Barrier, but a failed session can leave (arrive without waiting), and a wait never
    blocks past its timeout."""

    def __init__(self, parties: int):
        self.parties, self.count, self.event = parties, 0, asyncio.Event()

    def arrive(self) -> None:
        self.count += 1
        if self.count >= self.parties:
            self.event.set()

    async def wait(self, timeout: float) -> None:
        self.arrive()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)


async def run_session(browser, url: str, s: Session, nav_done: Barrier, slider_done: Barrier, seconds: float,
                      think_ms: int, phase: dict, look_ms: int) -> None:
    arrived_nav = arrived_slider = False
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        await context.add_init_script(WS_HOOK)
        page = await context.new_page()
        attach_listeners(page, s)
        # 1. open the app on this session's own sample
        t = time.perf_counter()
        try:
            await page.goto(f"{url}/traversal?sample={s.k}", timeout=OP_TIMEOUT_MS)
            await page.locator("h1", has_text="Traversal").wait_for(timeout=OP_TIMEOUT_MS)
            await wait_idle(page)
            s.open_s = time.perf_counter() - t
            got = await page.get_by_label("Test image #").input_value(timeout=OP_TIMEOUT_MS)
            if got != str(s.k):  # the field is drawn after the run is over, at first with 0, then k
                s.flashes += 1
                try:
                    await page.wait_for_function(FIELD_IS, arg=s.k, timeout=15_000, polling=50)
                except Exception:
                    got = await page.get_by_label("Test image #").input_value(timeout=10_000)
                    s.error("state", f"15 s after opening ?sample={s.k} the field says {got}")
            # the server-side sliders (the live pad decodes in the browser and would not load the server)
            await page.get_by_text("Decode in this browser", exact=True).click(timeout=OP_TIMEOUT_MS)
            await page.locator('[data-testid="stImage"]', has_text="decode(z)").wait_for(timeout=OP_TIMEOUT_MS)
            await settle(page, s, "open /traversal", look_ms)
            await exceptions_on_page(page, s, "open /traversal")
            # 2. page switches through the sidebar links
            for title, _ in NAV:
                s.phase = f"switch to {title}"
                t = time.perf_counter()
                await page.locator('[data-testid="stSidebar"] a', has_text=title).first.click(timeout=OP_TIMEOUT_MS)
                await page.locator("h1", has_text=title).wait_for(timeout=OP_TIMEOUT_MS)
                await wait_idle(page)
                s.switches.append((title, time.perf_counter() - t))
                await settle(page, s, f"after switching to {title}", look_ms)
                await exceptions_on_page(page, s, f"after switching to {title}")
        except Exception as exc:  # a timeout or a crash: count it, leave the barrier
            s.error("timeout" if "Timeout" in type(exc).__name__ else "navigation", f"{type(exc).__name__}: {exc}")
            nav_done.arrive()
            arrived_nav = True
            slider_done.arrive()
            arrived_slider = True
            return
        arrived_nav = True
        await nav_done.wait(timeout=OP_TIMEOUT_MS / 1000 * 2)
        if phase["end"] == math.inf:  # the barrier timed out: someone is stuck; go on alone
            phase["end"] = time.perf_counter() + seconds
        # 3. sliders, until the common deadline
        s.phase = "slider"
        try:
            if not await page.evaluate(INSTALL_PROBE):
                raise RuntimeError("no decode(z) picture on /traversal")
            latents = await page.evaluate(LATENT_SLIDERS)
            if not latents:
                raise RuntimeError("no latent sliders (z<d> · KL …) on /traversal")
            s.start_values = {x["label"]: x["value"] for x in latents}
            j = s.index % len(latents)
            s.slider = latents[j]["label"]
            slider = page.locator(f'input[type="range"][aria-label="{s.slider}"]')
            lo = float(await slider.get_attribute("min") or await slider.get_attribute("aria-valuemin") or -4)
            hi = float(await slider.get_attribute("max") or await slider.get_attribute("aria-valuemax") or 4)
            i = 0
            while time.perf_counter() < phase["end"]:
                value = float(await slider.evaluate(SLIDER_VALUE))
                right = (i % 2 == 0 and value + 0.05 <= hi + 1e-9) or value - 0.05 < lo - 1e-9
                await page.evaluate(ARM)
                await slider.press("ArrowRight" if right else "ArrowLeft", timeout=OP_TIMEOUT_MS)
                r = await page.evaluate(AWAIT_STEP, STEP_TIMEOUT_MS)
                i += 1
                if not r["ok"] or r["keyT"] is None:
                    s.error("timeout", f"step {i}: the decode(z) picture did not change within {STEP_TIMEOUT_MS} ms "
                            f"(key seen: {r['keyT'] is not None}, src changed: {r['srcT'] is not None})")
                elif r["loadT"] == -1:
                    s.error("image load", f"step {i}: the new decode(z) picture failed to load")
                else:
                    key_t = r["keyT"]
                    sends = [x for x in r["sends"] if x >= key_t]
                    before = [x for x in r["recvs"] if x <= r["srcT"]]
                    s.steps.append({
                        "src": r["srcT"] - key_t, "load": r["loadT"] - key_t,
                        "to_send": sends[0] - key_t if sends else math.nan,
                        "round_trip": before[-1] - sends[0] if sends and before and before[-1] >= sends[0] else math.nan,
                        "render": r["srcT"] - before[-1] if before else math.nan,
                        "at": time.perf_counter()})
                await wait_idle(page)
                if think_ms:
                    await page.wait_for_timeout(think_ms)
            s.own_values = {x["label"]: x["value"] for x in await page.evaluate(LATENT_SLIDERS)}
        except Exception as exc:
            s.error("timeout" if "Timeout" in type(exc).__name__ else "slider", f"{type(exc).__name__}: {exc}")
        arrived_slider = True
        s.phase = "final"
        await slider_done.wait(timeout=OP_TIMEOUT_MS / 1000 * 2)
        # 4. this session's own state, once everybody has stopped
        try:
            await wait_idle(page)
            with contextlib.suppress(Exception):
                await page.wait_for_function(FIELD_IS, arg=s.k, timeout=5_000, polling=50)
            final = {"field": await page.get_by_label("Test image #").input_value(timeout=10_000),
                     "query": parse_qs(urlparse(page.url).query),
                     "sliders": {x["label"]: x["value"] for x in await page.evaluate(LATENT_SLIDERS)},
                     "ws": await page.evaluate("() => ({opens: window.__wslog.opens, closes: window.__wslog.closes})")}
            s.final = final
            await settle(page, s, "end of the run", 0)
            await exceptions_on_page(page, s, "end of the run")
            if final["ws"]["opens"] != 1 or final["ws"]["closes"]:
                s.error("websocket", f"{final['ws']['opens']} WebSocket(s) opened, {final['ws']['closes']} closed")
        except Exception as exc:
            s.error("timeout" if "Timeout" in type(exc).__name__ else "final check", f"{type(exc).__name__}: {exc}")
    finally:
        if not arrived_nav:
            nav_done.arrive()
        if not arrived_slider:
            slider_done.arrive()
        s.closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(context.close(), 30)


def own_state(s: Session) -> dict:
    """Did the session keep its own sample, z and sliders?"""
    f = s.final
    if not f:
        return {"sample": False, "z": False, "why": "no final state read"}
    url_sample = (f["query"].get("sample") or [None])[0]
    sample_ok = f["field"] == str(s.k) and url_sample == str(s.k)
    why = [] if sample_ok else [f"field {f['field']}, URL sample={url_sample}, own {s.k}"]
    z_ok = True
    # every latent slider where this session left it (read before the others stopped), the one it moved
    # within a step or two of its start (the first key snaps an off-grid start onto the 0.05 grid)
    for label, v in s.own_values.items():
        if abs(f["sliders"].get(label, math.inf) - v) > 1e-6:
            z_ok = False
            why.append(f"{label} is {f['sliders'].get(label)} at the end, this session left it at {v}")
    for label, v in s.start_values.items():
        d = abs(f["sliders"].get(label, math.inf) - v)
        if d > 0.1 + 1e-6 or (label != s.slider and d > 1e-6):
            z_ok = False
            why.append(f"{label} moved {d:.2f} from its start")
    url_z = (f["query"].get("z") or [""])[0]
    if s.start_values and url_z:
        try:
            zs = [float(v) for v in url_z.split(",")]
            by_dim = {int(label.split()[0][1:]): v for label, v in f["sliders"].items()}
            if any(abs(zs[d] - v) > 0.006 for d, v in by_dim.items()):
                z_ok = False
                why.append(f"URL z={url_z} is not this session's sliders")
        except (ValueError, IndexError):
            z_ok = False
            why.append(f"URL z={url_z!r} unreadable")
    elif s.steps:
        z_ok = False
        why.append("no z= in the URL after moving a slider")
    return {"sample": sample_ok, "z": z_ok, "why": "; ".join(why)}


# -- /proc ----------------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_pressure() -> float:
    """Cumulative seconds during which at least one runnable task waited for a CPU (PSI), or nan."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return math.nan


def machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds of all CPUs since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK, sum(v[:8]) / CLK


class CpuMeter:
    """CPU seconds of the server, of everything else this script started (driver + browsers), and of
    the machine, between start() and stop()."""

    def __init__(self, server_pid: int):
        self.server = server_pid

    def _read(self):
        others = [os.getpid()] + [p for p in descendants(os.getpid()) if p != self.server and p not in self.server_tree]
        return {"server": sum(cpu_seconds(p) for p in [self.server, *self.server_tree]),
                "browser": {p: cpu_seconds(p) for p in others}, "machine": machine_cpu(), "psi": cpu_pressure(),
                "t": time.perf_counter()}

    def start(self):
        self.server_tree = descendants(self.server)
        self.a = self._read()

    def stop(self) -> dict:
        b = self._read()
        wall = b["t"] - self.a["t"]
        browser = sum(v - self.a["browser"].get(p, 0.0) for p, v in b["browser"].items())
        busy = b["machine"][0] - self.a["machine"][0]
        total = b["machine"][1] - self.a["machine"][1]
        n = os.cpu_count() or 1
        out = {"wall": wall, "server_pct": 100 * (b["server"] - self.a["server"]) / wall,
               "browser_pct": 100 * browser / wall, "machine_pct": 100 * busy / total * n if total else math.nan}
        out["other_pct"] = max(0.0, out["machine_pct"] - out["server_pct"] - out["browser_pct"])
        out["server_cpu_s"] = b["server"] - self.a["server"]
        out["browser_cpu_s"] = browser
        out["pressure_pct"] = 100 * (b["psi"] - self.a["psi"]) / wall
        return out


# The server: one process, or every worker behind nginx (--workers); its CPU and memory are their sums.
def server_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def server_rss(pids: list[int]) -> float:
    return sum(rss_mib(pid) for pid in pids)


async def sample_rss(pids: list[int], out: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(server_rss(pids))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def server_quiet(pids: list[int], timeout: float, below_pct: float = 5.0, window: float = 2.0) -> float:
    """Wait until the server's CPU use over `window` s is below below_pct (e.g. a background UMAP
    compile has finished); returns the seconds waited (timeout if it never got quiet)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        a = server_cpu(pids)
        await asyncio.sleep(window)
        if 100 * (server_cpu(pids) - a) / window < below_pct:
            break
    return time.perf_counter() - t0


# -- the wire: the server's own response times, from a loopback packet capture ------------------------
# The page's clock cannot tell the server's time from a busy renderer's: the WebSocket message is timed
# when the renderer's main thread gets to it. A raw socket on lo (root; kernel time stamps, so a late
# read does not matter) sees when a request reached the server's socket and when each reply left it.
def sniff(port: int, out: str) -> None:
    """--sniff mode (a subprocess): record TCP payloads to/from `port` on lo until SIGTERM, then pickle
    [(epoch seconds, from_server, client_port, payload[:8192])] to `out`."""
    import pickle
    import socket
    import struct

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE (root): no drops under load
    sock.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS: the kernel's receive time
    sock.bind(("lo", 0))
    sock.settimeout(0.2)
    records = []
    print("ready", flush=True)
    while not stop:
        try:
            data, anc, _, addr = sock.recvmsg(70_000, 64)
        except (socket.timeout, InterruptedError):
            continue
        if addr[2] != socket.PACKET_OUTGOING or data[12:14] != b"\x08\x00":  # each lo packet shows twice
            continue
        ip = data[14:]
        ihl, total = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            continue
        tcp = ip[ihl:]
        sport, dport = struct.unpack("!HH", tcp[:4])
        if port not in (sport, dport):
            continue
        payload = ip[ihl + (tcp[12] >> 4) * 4:total]
        if not payload:
            continue
        t = next((struct.unpack("qq", d[:16]) for lvl, typ, d in anc if lvl == socket.SOL_SOCKET and typ == 35), None)
        records.append((t[0] + t[1] / 1e9 if t else time.time(), sport == port, dport if sport == port else sport,
                        bytes(payload[:8192])))
    with open(out, "wb") as f:
        pickle.dump(records, f)


def ws_frames(buf: bytes, masked: bool):
    """(opcode, payload) of the whole WebSocket frames at the start of one TCP payload."""
    i = 0
    while i + 2 <= len(buf):
        b0, b1 = buf[i], buf[i + 1]
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = int.from_bytes(buf[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(buf[i:i + 8], "big"), i + 8
        key = None
        if b1 & 0x80:
            key, i = buf[i:i + 4], i + 4
        if masked != bool(key) or i + n > len(buf):
            return
        payload = buf[i:i + n]
        if key:
            payload = bytes(b ^ key[j % 4] for j, b in enumerate(payload))
        yield b0 & 0x0F, payload
        i += n


def wire_times(records: list, t0: float, t1: float) -> dict:
    """Per slider step seen on the wire (a fragment rerun_script between t0 and t1, epoch s): ms from the
    request reaching the server to the decode(z) image delta leaving it, and to script_finished; and
    per /media/ GET in that window, ms to the response's first byte."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    by_conn: dict[int, list] = {}
    for rec in records:
        by_conn.setdefault(rec[2], []).append(rec)
    first, image, finished, media, requests = [], [], [], [], 0
    for packets in by_conn.values():
        packets.sort(key=lambda r: r[0])
        pending = http = None
        for t, from_server, _, payload in packets:
            if not from_server:
                if payload.startswith(b"GET "):
                    path = payload.split(b" ", 2)[1]
                    http = t if path.startswith(b"/media/") and t0 <= t <= t1 else None
                    continue
                for op, body in ws_frames(payload, masked=True):
                    if op != 2:
                        continue
                    with contextlib.suppress(Exception):
                        msg = BackMsg.FromString(body)
                        if msg.WhichOneof("type") == "rerun_script" and msg.rerun_script.fragment_id \
                                and t0 <= t <= t1:
                            pending = {"t": t, "image": None, "first": None}
                            requests += 1
                continue
            if http is not None:
                media.append(1e3 * (t - http))
                http = None
                continue
            if pending is None:
                continue
            for op, body in ws_frames(payload, masked=False):
                if op != 2:
                    continue
                with contextlib.suppress(Exception):
                    fm = ForwardMsg.FromString(body)
                    kind = fm.WhichOneof("type")
                    if pending["first"] is None:
                        pending["first"] = t
                        first.append(1e3 * (t - pending["t"]))
                    if kind == "delta" and pending["image"] is None \
                            and fm.delta.new_element.WhichOneof("type") == "imgs" \
                            and any("decode(z)" in im.caption for im in fm.delta.new_element.imgs.imgs):
                        pending["image"] = t
                        image.append(1e3 * (t - pending["t"]))
                    elif kind == "script_finished":
                        finished.append(1e3 * (t - pending["t"]))
                        pending = None
                        break
    return {"requests": requests, "first": first, "image": image, "finished": finished, "media": media}


@contextlib.contextmanager
def capture(port: int, enabled: bool):
    """Run the sniffer subprocess for the block; yields a dict that gets "records" (or "error")."""
    out: dict = {}
    if not enabled:
        yield out
        return
    import pickle
    import subprocess
    import tempfile

    fd, path = tempfile.mkstemp(prefix="classroom-wire-", suffix=".pickle")
    os.close(fd)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--sniff", str(port), path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline().strip() == "ready"
        if not ready:
            out["error"] = (proc.stderr.read() or "the capture did not start").strip().splitlines()[-1]
        yield out
    finally:
        stop(proc, grace=60)
        if "error" not in out:
            try:
                with open(path, "rb") as f:
                    out["records"] = pickle.load(f)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                out["error"] = f"no capture: {exc}"
        os.unlink(path)


# -- a round --------------------------------------------------------------------------------------
def sample_for(i: int, n_test: int) -> int:
    return (5 + 11 * i) % n_test  # distinct for i < n_test when n_test is prime (359 for digits) or coprime to 11


PIN: dict = {}  # --pin-server: {"server": {cpu}, "others": {cpus}}


def pin_server(pid: int) -> None:
    """Every thread of the server onto PIN["server"] (threads it starts later inherit it)."""
    if PIN:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), PIN["server"])


async def launch(pw):
    return await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


async def warm_up(pw, url: str, pid: int) -> dict:
    log("warm-up session: Overview, Latent map, Traversal, Interpolation…")
    t = time.perf_counter()
    browser = await launch(pw)
    try:
        s = Session(-1, 0)
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        attach_listeners(page, s)
        for title, path in NAV[:4]:
            await page.goto(f"{url}/{path}", timeout=OP_TIMEOUT_MS)
            await page.locator("h1", has_text=title).wait_for(timeout=OP_TIMEOUT_MS)
            await wait_idle(page)
            await exceptions_on_page(page, s, f"warm-up {title}")
        await page.goto(f"{url}/traversal", timeout=OP_TIMEOUT_MS)
        await page.locator("h1", has_text="Traversal").wait_for(timeout=OP_TIMEOUT_MS)
        await wait_idle(page)
        field_ = page.get_by_label("Test image #")
        await field_.wait_for(timeout=OP_TIMEOUT_MS)
        n_max = await field_.get_attribute("max") or await field_.get_attribute("aria-valuemax")
        s.closing = True
        await context.close()
    finally:
        await browser.close()
    pages_s = time.perf_counter() - t
    quiet = await server_quiet([pid], 120)
    return {"pages_s": pages_s, "quiet_s": quiet, "n_test": int(n_max) + 1 if n_max else 359, "errors": s.errors,
            "noise": s.noise, "rss": rss_mib(pid)}


async def run_round(pw, url: str, pid: int, n: int, args, n_test: int) -> dict:
    pin_server(pid)
    sessions = [Session(i, sample_for(i, n_test)) for i in range(n)]
    per = args.per_browser or n
    n_browsers = math.ceil(n / per)
    res = {"n": n, "sessions": sessions, "browsers": n_browsers, "rss_before": rss_mib(pid), "rss": [],
           "cpu": None, "completed": False, "budget_hit": False}
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss([pid], res["rss"], stop))
    browsers = []
    meter = CpuMeter(pid)
    wire_cm = capture(int(urlparse(url).port), not args.no_wire)
    wire = wire_cm.__enter__()
    try:
        for _ in range(n_browsers):
            browsers.append(await launch(pw))
        nav_done, slider_done = Barrier(n), Barrier(n)
        phase = {"end": math.inf}

        async def slider_clock():
            await nav_done.event.wait()
            res["nav_s"] = time.perf_counter() - t0
            meter.start()
            res["wire_window"] = [time.time(), math.inf]
            phase["end"] = time.perf_counter() + args.seconds
            log(f"N={n}: all sessions navigated in {res['nav_s']:.1f} s; sliders for {args.seconds:g} s…")
            await slider_done.event.wait()
            res["wire_window"][1] = time.time()
            res["cpu"] = meter.stop()
            res["rss_end"] = rss_mib(pid)

        t0 = time.perf_counter()
        clock = asyncio.create_task(slider_clock())
        tasks = [run_session(browsers[i // per], url, s, nav_done, slider_done, args.seconds, args.think, phase, args.look)
                 for i, s in enumerate(sessions)]
        budget = 120 + 8 * n + args.seconds + 60
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), budget)
            res["completed"] = True
        except asyncio.TimeoutError:
            res["budget_hit"] = True
            for s in sessions:
                s.error("timeout", f"the round's budget of {budget:.0f} s ran out")
        clock.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clock
    finally:
        for b in browsers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(b.close(), 60)
        stop.set()
        await sampler
        wire_cm.__exit__(None, None, None)
    if "records" in wire and "wire_window" in res:
        res["wire"] = wire_times(wire["records"], *res["wire_window"])
    elif "error" in wire:
        res["wire"] = {"error": wire["error"]}
    await asyncio.sleep(2)
    res["rss_after_close"] = rss_mib(pid)
    return res


# -- report ---------------------------------------------------------------------------------------
def med(values) -> float:
    v = [x for x in values if x == x]
    return statistics.median(v) if v else math.nan


def p95(values) -> float:
    return percentile([x for x in values if x == x], 95)


def report(rounds: list[dict], warm: dict | None, args) -> str:
    rows, detail, error_lines, noise_lines, flash_notes = [], [], [], [], []
    for r in rounds:
        steps = [x for s in r["sessions"] for x in s.steps]
        errors = [(s.index, kind, msg) for s in r["sessions"] for kind, msg, _ in s.errors]
        noise = [(kind, msg, ph) for s in r["sessions"] for kind, msg, ph in s.noise]
        for kind in sorted({k for k, _, _ in noise}):
            example = next(m for k, m, _ in noise if k == kind)
            phases = {}
            for k, _, ph in noise:
                if k == kind:
                    phases[ph] = phases.get(ph, 0) + 1
            noise_lines.append(f"- N={r['n']}: {kind} ×{sum(phases.values())} "
                               f"({', '.join(f'{ph} {c}' for ph, c in phases.items())}), e.g. {example}")
        flashes = sum(s.flashes for s in r["sessions"])
        kinds: dict[str, int] = {}
        for _, kind, _ in errors:
            kinds[kind] = kinds.get(kind, 0) + 1
        kept = [own_state(s) for s in r["sessions"]]
        kept_sample = sum(k["sample"] for k in kept)
        kept_all = sum(k["sample"] and k["z"] for k in kept)
        peak = max([x for x in r["rss"] if x == x], default=math.nan)
        rss_end = r.get("rss_end", math.nan)
        rows.append([
            r["n"], len(steps), f"**{fmt(med([x['load'] for x in steps]), 0)}**", fmt(p95([x["load"] for x in steps]), 0),
            fmt(med([x["src"] for x in steps]), 0), fmt(p95([x["src"] for x in steps]), 0),
            f"{len(errors)}" + (f" ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})" if errors else ""),
            sum(not k.endswith(": its console message") for k, _, _ in noise),
            f"{fmt(r['rss_before'], 0)} / {fmt(peak, 0)} / {fmt(rss_end, 0)}",
            f"{kept_sample}/{r['n']}" + ("" if kept_all == kept_sample else f" (z kept: {kept_all})")])
        flash_notes.append(f"N={r['n']}: {flashes}/{r['n']}")
        cpu = r["cpu"] or {}
        switches = [t for s in r["sessions"] for _, t in s.switches]
        opens = [s.open_s for s in r["sessions"]]
        per_session = [len(s.steps) for s in r["sessions"]]
        wall = cpu.get("wall", math.nan)
        detail.append([
            r["n"], fmt(med([x["to_send"] for x in steps]), 0), fmt(med([x["round_trip"] for x in steps]), 0),
            fmt(p95([x["round_trip"] for x in steps]), 0), fmt(med([x["render"] for x in steps]), 0),
            fmt(med([x["load"] - x["src"] for x in steps]), 0),
            f"{len(steps) / wall:.1f}" if wall == wall and wall else "–",
            f"{min(per_session, default=0)}–{max(per_session, default=0)}",
            fmt(cpu.get("server_pct", math.nan), 0), fmt(cpu.get("browser_pct", math.nan), 0),
            fmt(cpu.get("machine_pct", math.nan), 0), fmt(cpu.get("other_pct", math.nan), 0),
            fmt(cpu.get("pressure_pct", math.nan), 0),
            fmt(1e3 * cpu["server_cpu_s"] / len(steps), 1) if cpu and steps else "–",
            fmt(1e3 * cpu["browser_cpu_s"] / len(steps), 0) if cpu and steps else "–",
            f"{fmt(med(opens))} / {fmt(max([o for o in opens if o == o], default=math.nan))}",
            f"{fmt(med(switches), 2)} / {fmt(p95(switches), 2)}",
            f"{fmt(r.get('nav_s', math.nan))}", fmt(r.get("rss_after_close", math.nan), 0)])
        # grouped by kind, what (media URLs collapsed to their type) and phase
        seen: dict = {}
        for s in r["sessions"]:
            for kind, msg, ph in s.errors:
                what = re.sub(r"/media/[0-9a-f]+\.(\w+)", r"/media/<id>.\1", re.sub(r"127\.0\.0\.1:\d+", "server", msg))
                what = re.sub(r"step \d+:", "step:", what)
                seen.setdefault((kind, what), {}).setdefault(ph, set()).add(s.index)
        for (kind, what), phases in list(seen.items())[:30]:
            count = sum(1 for s in r["sessions"] for k, m, _ in s.errors if k == kind and
                        re.sub(r"step \d+:", "step:", re.sub(r"/media/[0-9a-f]+\.(\w+)", r"/media/<id>.\1",
                               re.sub(r"127\.0\.0\.1:\d+", "server", m))) == what)
            where = "; ".join(f"{ph}: {len(ix)} session(s)" for ph, ix in phases.items())
            error_lines.append(f"- N={r['n']}: {kind} ×{count} — {what} ({where})")
        if len(seen) > 30:
            error_lines.append(f"- N={r['n']}: … {len(seen) - 30} more distinct errors")
        for s, k in zip(r["sessions"], kept):
            if not (k["sample"] and k["z"]):
                error_lines.append(f"- N={r['n']}: session {s.index} (k={s.k}) did not keep its own state: {k['why']}")
        if r["budget_hit"]:
            error_lines.append(f"- N={r['n']}: the round ran out of its time budget; figures are partial")
    text = (f"### Classroom load: slider → image on /traversal, N students at once\n\n"
            f"{args.seconds:g} s of slider steps per round (ArrowRight/ArrowLeft alternating, {args.think} ms after each "
            f"step's run is over), after each session opened /traversal?sample=k and switched pages "
            f"{' → '.join(t for t, _ in NAV)} through the sidebar (after each switch: the new page's h1, script idle, "
            f"its pictures loaded, then {args.look} ms looking at it). Latency in the page's clock (ms): keydown → the new "
            f"decode(z) picture has loaded (and → its src changed). RSS of the `streamlit run` process, MiB: at the round's "
            f"start / peak (sampled every 0.25 s) / at the end of the slider phase (sessions still open). Own state: "
            f"sessions whose \"Test image #\" field and URL ?sample= still equal their own k at the end.\n\n")
    text += table(["N", "slider changes measured", "key → image loaded, median", "p95", "key → src, median", "p95",
                   "errors", "expected noise (requests)", "server RSS MiB (start / peak / end)", "own state kept"], rows)
    text += ("\n\nWhere the time goes (medians, ms, from the page's WebSocket timestamps) and what was busy during "
             "the slider phase (CPU %, 100 = one core; machine: all CPUs):\n\n")
    text += table(["N", "key → WS send", "server round trip", "p95", "last message → src", "src → loaded",
                   "changes/s (all sessions)", "changes per session", "server CPU %", "browsers + bench CPU %",
                   "machine CPU %", "other processes CPU %", "CPU pressure % (some task waiting)",
                   "server CPU ms per change", "browsers + bench CPU ms per change", "open /traversal s (median / max)", "page switch s (median / p95)",
                   "open + switches, all sessions s", "server RSS after close MiB"], detail)
    wire_rows = []
    for r in rounds:
        w = r.get("wire") or {}
        if "error" in w:
            wire_rows.append([r["n"], f"no capture: {w['error']}", *["–"] * 9])
        elif w:
            wire_rows.append([r["n"], w["requests"], fmt(med(w["first"]), 1), fmt(p95(w["first"]), 1),
                              fmt(med(w["image"]), 1), fmt(p95(w["image"]), 1),
                              fmt(med(w["finished"]), 1), fmt(p95(w["finished"]), 1), len(w["media"]),
                              fmt(med(w["media"]), 1), fmt(p95(w["media"]), 1)])
    if wire_rows:
        text += ("\n\nThe server's own share, from a loopback packet capture during the slider phase (kernel time "
                 "stamps; a slider step = a fragment `rerun_script` BackMsg reaching the server's socket), ms:\n\n")
        text += table(["N", "slider requests", "request → first reply sent, median", "p95",
                       "request → decode(z) image delta sent, median", "p95",
                       "request → script_finished sent, median", "p95", "/media/ GETs",
                       "GET → first response byte, median", "p95"], wire_rows)
    browsers = ", ".join(f"N={r['n']}: {r['browsers']} Chromium process(es), {r['n']} contexts" for r in rounds)
    text += f"\n\nBrowsers: {browsers}" + (
        f"; the server pinned to CPU {sorted(PIN['server'])}, the browsers and this script to CPU(s) "
        f"{sorted(PIN['others'])}" if PIN else
        "; the server, the browsers and this script shared all CPUs (Chromium, run as root, puts its own browser "
        "and GPU processes at nice -8, above the server's 0)") + "."
    if warm:
        text += (f"  \nWarm-up (one session, before the rounds): 4 pages in {warm['pages_s']:.1f} s, then "
                 f"{warm['quiet_s']:.1f} s until the server's CPU went quiet; RSS {warm['rss']:.0f} MiB after it"
                 f"; errors: {len(warm['errors'])}"
                 f"{' (' + '; '.join(m for _, m, _ in warm['errors'][:5]) + ')' if warm['errors'] else ''}, "
                 f"expected noise: {len(warm['noise'])}.")
    text += "\n\n**Errors** (must be zero): " + ("none." if not error_lines else "\n\n" + "\n".join(error_lines))
    text += ("\n\n**Expected noise** (not counted as errors; see classify(): Streamlit's base-path probe, favicons "
             "from fonts.gstatic.com on an offline machine, requests the browser aborted): "
             + ("none." if not noise_lines else "\n\n" + "\n".join(noise_lines)))
    text += ("\n\nSessions whose \"Test image #\" field, once drawn after opening /traversal?sample=k, first showed "
             "another number (0) and then k: " + ", ".join(flash_notes) + ".")
    return text


# -- main -----------------------------------------------------------------------------------------
def kill_started(server_pid: int | None) -> None:
    """Watchdog: SIGKILL what this script started (its descendants), by pid."""
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


async def run_all(server, args, sizes: list[int]) -> tuple[list[dict], dict | None]:
    from playwright.async_api import async_playwright

    pid = server.process.pid
    rounds, warm = [], None
    async with async_playwright() as pw:
        n_test = 359
        if not args.no_warmup:
            warm = await warm_up(pw, server.url, pid)
            n_test = warm["n_test"]
            log(f"warm-up done: {warm['pages_s']:.1f} s of pages, {warm['quiet_s']:.1f} s to quiet, "
                f"RSS {warm['rss']:.0f} MiB, test images {n_test}")
        for n in sizes:
            log(f"N={n}: opening {n} session(s)…")
            r = await run_round(pw, server.url, pid, n, args, n_test)
            steps = sum(len(s.steps) for s in r["sessions"])
            errs = sum(len(s.errors) for s in r["sessions"])
            log(f"N={n}: {steps} slider changes, {errs} errors, RSS {r['rss_before']:.0f} → {r.get('rss_end', math.nan):.0f} MiB")
            rounds.append(r)
            if n != sizes[-1]:
                await server_quiet([pid], 30)
    return rounds, warm


def print_header(load_start: float, argv) -> None:
    print("## Latent Explorer classroom benchmark\n")
    print(machine_block(load_start) + "\n")
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    shown = argv if argv is not None else sys.argv[1:]
    print(f"Command: `{' '.join([exe, 'bench/classroom.py', *shown])}`  ")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", default="1,10,30", help="comma-separated N per round (default 1,10,30)")
    p.add_argument("--clients", choices=("browser", "protocol"), default="browser",
                   help="browser: one Chromium page per student (end to end, small N); protocol: WebSocket "
                        "sessions speaking Streamlit's protocol, no browser (bench/protocol_client.py)")
    p.add_argument("--workers", type=int, default=1,
                   help="with --clients protocol: the app as `make serve WORKERS=N` runs it, N processes behind "
                        "nginx (deploy/serve.py); default 1: one `streamlit run`")
    p.add_argument("--churn", type=int, default=0, metavar="CYCLES",
                   help="with --clients protocol: CYCLES classes of N (the first --sessions value) connecting, "
                        "moving sliders for --seconds and leaving, each followed by --idle s; reports the "
                        "server's RSS after each")
    p.add_argument("--idle", type=float, default=130.0,
                   help="--churn: seconds idle after each class (default 130: past the 120 s disconnected-session TTL)")
    p.add_argument("--tracemalloc", metavar="FOLDER",
                   help="--churn, one server: trace the server's Python allocations (slower), write a snapshot to "
                        "FOLDER after each class's idle period, and report what grew from the first to the last")
    p.add_argument("--seconds", type=float, default=30.0, help="slider phase per round, s (default 30)")
    p.add_argument("--think", type=int, default=250, help="ms between a step's run being over and the next key")
    p.add_argument("--per-browser", type=int, default=0,
                   help="sessions per Chromium process (default 0: all of a round in one browser)")
    p.add_argument("--look", type=int, default=500,
                   help="ms a session looks at a page once its pictures have loaded, before the next switch")
    p.add_argument("--pin-server", action="store_true",
                   help="give the server the first CPU to itself and run the browsers and this script on the "
                        "others (as if the students' browsers ran on their own machines). Not `nice`: Chromium, "
                        "run as root, sets its own browser and GPU processes to nice -8")
    p.add_argument("--quick", action="store_true", help="smoke run: N = 1,3 and 10 s")
    p.add_argument("--no-warmup", action="store_true", help="no warm-up session before the rounds")
    p.add_argument("--json", help="also write every step, switch, error and sample here (JSON)")
    p.add_argument("--no-wire", action="store_true",
                   help="no loopback packet capture (it needs root: a raw socket on lo)")
    p.add_argument("--sniff", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=0, help="hard limit for the whole run, s "
                   "(default: 240 + per round 120 + 8·N + seconds + 90)")
    args = p.parse_args(argv)
    if args.sniff:
        sniff(int(args.sniff[0]), args.sniff[1])
        return 0
    if args.quick:
        args.sessions, args.seconds = "1,3", 10.0
    sizes = [int(x) for x in args.sessions.split(",") if x.strip()]
    if not sizes or min(sizes) < 1:
        p.error("--sessions: positive integers")
    if args.clients == "browser" and not os.access(CHROMIUM, os.X_OK):
        log(f"{CHROMIUM} is missing (`make chromium`)")
        return 2
    hard = args.timeout or 240 + sum(120 + 8 * n + args.seconds + 90 for n in sizes) + args.churn * (
        120 + 8 * sizes[0] + args.seconds + args.idle)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()

    def watchdog():
        log(f"hard timeout of {hard:.0f} s: killing the server and browsers this run started")
        kill_started(None)
        os._exit(3)

    cpus = sorted(os.sched_getaffinity(0))
    if args.pin_server:
        if len(cpus) < 2:
            p.error("--pin-server needs at least 2 usable CPUs")
        os.sched_setaffinity(0, cpus[1:])  # this thread, and so everything started from now on
        PIN["server"], PIN["others"] = {cpus[0]}, set(cpus[1:])
    timer = threading.Timer(hard, watchdog)
    timer.daemon = True
    timer.start()
    env = {"LATENT_EXPLORER_CLASSROOM": "1", "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba")),
           "MPLCONFIGDIR": os.environ.get("MPLCONFIGDIR", str(ROOT / ".cache" / "matplotlib"))}
    if args.clients == "protocol":
        from protocol_client import run_protocol

        try:
            return run_protocol(args, sizes, env, lambda: print_header(load_start, argv))
        finally:
            timer.cancel()
    try:
        with running_streamlit(env=env, log_prefix="classroom-streamlit", timeout=120) as server:
            pin_server(server.process.pid)
            rss_start = rss_mib(server.process.pid)
            log(f"server {server.url} (pid {server.process.pid}), healthy after "
                f"{server.healthy - server.launched:.1f} s, RSS {rss_start:.0f} MiB")
            rounds, warm = asyncio.run(run_all(server, args, sizes))
            rss_end = rss_mib(server.process.pid)
    finally:
        timer.cancel()
    print_header(load_start, argv)
    print(f"Server: one `streamlit run app.py` on 127.0.0.1 for the whole run (LATENT_EXPLORER_CLASSROOM=1, "
          f"as `make serve`), RSS {rss_start:.0f} MiB when healthy, {rss_end:.0f} MiB at the end.\n")
    print(report(rounds, warm, args))
    print(f"\nTotal wall time {time.perf_counter() - started:.0f} s.")
    if args.json:
        import json
        from dataclasses import asdict

        dump = [{**{k: v for k, v in r.items() if k != "sessions"},
                 "sessions": [{**asdict(s), "own_state": own_state(s)} for s in r["sessions"]]} for r in rounds]
        Path(args.json).write_text(json.dumps({"warm_up": warm, "rounds": dump}, default=str))
    bad = sum(len(s.errors) for r in rounds for s in r["sessions"]) + sum(
        not (own_state(s)["sample"]) for r in rounds for s in r["sessions"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
