#!/usr/bin/env python
"""App benchmark: what a student waits for in Latent Explorer, measured on a real `streamlit run`.

Three measurements, printed as Markdown tables from one run:

1. Slider -> new image latency (browser). On /traversal, --changes keyboard steps of the first latent
   slider (ArrowRight / ArrowLeft alternating, so the value stays in range), each timed in the page's
   own clock (performance.now()) from the keydown event to the decode(z) <img> src changing (a
   MutationObserver), and to that new image's load event. WebSocket send/receive times are recorded
   too (the page's WebSocket is wrapped by an init script; the app is not touched) to split the
   latency into browser-side, server round trip and render. Two warm-up steps come first, unreported;
   each step starts once the previous run is over (script state "notRunning") plus --settle ms.
   Run twice: the server as shipped (.streamlit/config.toml turns Streamlit's hidden
   runner.postScriptGC off), and with `--runner.postScriptGC true` (Streamlit's default: a
   gc.collect(2) after every script run), unless --no-gc-compare.
   What the server computes per step (decode one z, PNG it) and what one gc.collect(2) costs in a
   process holding the app's imports are timed in a subprocess, for comparison.
2. Cold start. Subprocess start of `streamlit run app.py` (the same command line as
   bench/browser.py) to the Overview page usable in a fresh browser context: h1 "Overview"
   visible, the script-run state "notRunning" and no status widget. Repeated --cold-starts times
   (each a new server). After the page is usable, /proc/<pid>/maps of the server shows whether
   numba/llvmlite (=> umap) or sklearn.manifold's compiled modules were loaded at start-up.
3. Latent map of 10k points. 10,000 prior draws from checkpoints/digits-vae.safetensors, decoded,
   their mean images re-encoded (vae_core.metrics.encode_all, posterior means). UMAP via
   vae_core.projection.project in fresh subprocesses: once with an empty NUMBA_CACHE_DIR (true cold:
   import + numba JIT + fit), and once more with the cache that first process wrote (warm cache). In the cold process, after the first call, the app's latent_map
   (pages.ui, formerly pages/_ui.py; st.cache_data, outside a Streamlit runtime) is called twice with
   the same arguments: the miss is the second, compiled call of project() in that process (plus
   cache_data's bookkeeping), then the cached revisit. (A separate plain second project() call would
   cost one more full fit; the budget is spent on the warm-cache process instead.) PCA and t-SNE on
   the same 10k points; t-SNE (about 100 s for 10k on one core of the 2-core box this was written on)
   runs in a subprocess capped at --tsne-timeout seconds and, if the cap is hit, again on a
   2,000-point subsample under the same cap (the table says which).

Usage (from the repository root):
    .venv/bin/python bench/app_bench.py                      # everything: ~5 min of CPU; on 2 cores
                                                             # ~5-6 min, longer when they are shared
    .venv/bin/python bench/app_bench.py --skip-map           # browser parts only
    .venv/bin/python bench/app_bench.py --skip-browser --changes 50

Loopback only: servers listen on 127.0.0.1 and are always stopped; every wait has a timeout.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from browser import ARM, CHROMIUM, CHROMIUM_ARGS, INSTALL_PROBE, WS_HOOK, running_streamlit, wait_idle  # noqa: E402

CHECKPOINT = ROOT / "checkpoints" / "digits-vae.safetensors"
N_MAP = 10_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- statistics and tables --------------------------------------------------------------------
def percentile(values, q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(values) -> dict:
    return {"n": len(values), "median": statistics.median(values) if values else float("nan"),
            "p95": percentile(values, 95), "min": min(values, default=float("nan")),
            "max": max(values, default=float("nan"))}


def table(headers, rows, align: str = "") -> str:
    """Markdown table; align: one letter per column, l or r (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(v: float, digits: int = 1) -> str:
    return "–" if v != v else f"{v:,.{digits}f}"


# -- the machine ------------------------------------------------------------------------------
def chromium_version() -> str:
    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=20).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "missing"


def machine_block(load_start: float | None = None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
            mem = f", {kb / 2**20:.1f} GiB RAM"
    versions = []
    for name in ("streamlit", "torch", "numpy", "scikit-learn", "umap-learn", "numba", "pynndescent", "playwright"):
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} missing")
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    if load_start is not None:
        load = f"{load_start:.2f} at the start, {load} at the end"
    return (f"**Machine:** {cpu}, {os.cpu_count()} CPUs ({usable} usable){mem}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, load average (1 min) {load}  \n"
            f"**Versions:** {', '.join(versions)}, {chromium_version()}")


# -- a real `streamlit run` -------------------------------------------------------------------
@contextlib.contextmanager
def launch_server(timeout: float = 120.0, options: tuple[str, ...] = ()):
    """bench/browser.py's server, as (url, proc, t_launch, t_healthy)."""
    with running_streamlit(options=options, timeout=timeout, log_prefix="bench-streamlit") as server:
        yield server.url, server.process, server.launched, server.healthy


def mapped_libraries(pid: int) -> dict:
    """What the process has loaded, judged from its memory map (no change to the app needed)."""
    with open(f"/proc/{pid}/maps") as f:
        paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    return {
        "numba/llvmlite (umap)": any("libllvmlite" in p or "numba/_helperlib" in p for p in paths),
        "sklearn.manifold (t-SNE)": any("sklearn/manifold/" in p for p in paths),
    }


# -- 2. cold start ----------------------------------------------------------------------------
def bench_cold_start(browser, runs: int) -> list[dict]:
    results = []
    for i in range(runs):
        log(f"cold start {i + 1}/{runs}…")
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            with launch_server() as (url, proc, t_launch, t_healthy):
                page.goto(url, timeout=60_000)
                page.locator("h1", has_text="Overview").wait_for(state="visible", timeout=90_000)
                t_h1 = time.perf_counter()
                wait_idle(page, 90_000)
                t_usable = time.perf_counter()
                libs = mapped_libraries(proc.pid)
                errors = page.locator('[data-testid="stException"]').count()
                results.append({"healthy": t_healthy - t_launch, "h1": t_h1 - t_launch,
                                "usable": t_usable - t_launch, "libs": libs, "exceptions": errors})
        finally:
            context.close()
    return results


# -- 1. slider -> image latency -----------------------------------------------------------------
READ = """
() => { const b = window.__bench; b.armed = false;
  return {keyT: b.keyT, srcT: b.srcT, loadT: b.loadT, sends: [...window.__wslog.sends], recvs: [...window.__wslog.recvs],
          mutations: b.mutations}; }
"""


def bench_slider(browser, url: str, changes: int, settle_ms: int, warmups: int = 2, path: str = "/traversal") -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(WS_HOOK)
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(f"{url}{path}", timeout=60_000)
        page.locator("h1", has_text="Traversal").wait_for(timeout=90_000)
        wait_idle(page, 90_000)
        page_load = time.perf_counter() - t0
        page.get_by_text("Decode in this browser", exact=True).click()  # the server-side sliders
        page.locator('[data-testid="stImage"]', has_text="decode(z)").wait_for(timeout=30_000)
        wait_idle(page, 90_000)
        page.wait_for_timeout(settle_ms)
        if page.evaluate(INSTALL_PROBE) is None:
            raise RuntimeError("no decode(z) image on /traversal")
        slider = page.get_by_role("slider").first
        label = slider.get_attribute("aria-label") or "?"
        lo = float(slider.get_attribute("min") or slider.get_attribute("aria-valuemin") or -4)
        hi = float(slider.get_attribute("max") or slider.get_attribute("aria-valuemax") or 4)
        samples, misses, values = [], 0, []
        for i in range(warmups + changes):
            value = float(slider.evaluate("e => e.value ?? e.getAttribute('aria-valuenow')"))
            values.append(value)
            key = "ArrowRight" if (i % 2 == 0 and value + 0.05 <= hi + 1e-9) or value - 0.05 < lo - 1e-9 else "ArrowLeft"
            page.evaluate(ARM)
            slider.press(key)
            try:
                page.wait_for_function("() => { const b = window.__bench; return b.srcT !== null && b.loadT !== null; }",
                                       timeout=15_000, polling="raf")
            except Exception:  # playwright TimeoutError: the picture did not change
                page.evaluate(READ)
                misses += i >= warmups
                wait_idle(page)
                page.wait_for_timeout(settle_ms)
                continue
            r = page.evaluate(READ)
            wait_idle(page)
            page.wait_for_timeout(settle_ms)
            if i < warmups:
                continue
            key_t = r["keyT"]
            sends = [t for t in r["sends"] if t >= key_t]
            before_src = [t for t in r["recvs"] if t <= r["srcT"]]
            samples.append({
                "src": r["srcT"] - key_t,
                "load": (r["loadT"] - key_t) if r["loadT"] and r["loadT"] > 0 else float("nan"),
                "to_send": (sends[0] - key_t) if sends else float("nan"),
                "round_trip": (before_src[-1] - sends[0]) if sends and before_src and before_src[-1] >= sends[0]
                else float("nan"),
                "render": (r["srcT"] - before_src[-1]) if before_src else float("nan"),
                "messages": len([t for t in r["recvs"] if t >= key_t]),
            })
        url_has_z = "z=" in page.url
        return {"samples": samples, "misses": misses, "label": label, "page_load": page_load,
                "values": (min(values), max(values)) if values else None, "url_has_z": url_has_z}
    finally:
        context.close()


# -- 3. latent map ----------------------------------------------------------------------------
def build_latents(path: Path) -> dict:
    import numpy as np
    import torch

    from vae_core.checkpoint import load_checkpoint
    from vae_core.metrics import encode_all

    t = time.perf_counter()
    model = load_checkpoint(CHECKPOINT).model
    with torch.inference_mode():
        images = model.sample(N_MAP, generator=torch.Generator().manual_seed(0))  # decode(z), z ~ N(0, I)
    mu, _ = encode_all(model, images)
    z = mu.numpy().astype(np.float32)
    np.save(path, z)
    return {"shape": z.shape, "seconds": time.perf_counter() - t, "latent_dim": model.config.latent_dim}


def quiet_streamlit() -> None:
    import logging

    import streamlit.logger

    streamlit.logger.set_log_level(logging.ERROR)
    logging.getLogger("streamlit").setLevel(logging.ERROR)


def server_cost(out: dict, repeats: int = 200) -> dict:
    """In a fresh process holding what the server holds after a page (streamlit, torch, pandas, plotly,
    sklearn's digits, the app's helpers, the model and dataset): the work of one slider step, and one
    gc.collect(2) (Streamlit's runner.postScriptGC, after every script run)."""
    import gc
    import warnings

    warnings.filterwarnings("ignore")
    quiet_streamlit()
    import pandas  # noqa: F401
    import plotly.express  # noqa: F401
    import torch

    import pages.ui  # noqa: F401  (sets torch threads to 1 and freezes the import-time heap, as in the server)
    from vae_core.checkpoint import load_checkpoint
    from vae_core.datasets import load_dataset
    from vae_core.images import make_grid, png_bytes, upscale_factor

    model = load_checkpoint(CHECKPOINT).model
    load_dataset("digits")
    z = torch.zeros(1, model.config.latent_dim)
    dec, png, coll = [], [], []
    for i in range(repeats):
        z[0, 0] = -2 + 4 * i / repeats
        t = time.perf_counter()
        with torch.inference_mode():
            image = model.decode(z)
        t1 = time.perf_counter()
        png_bytes(make_grid(image, 1), upscale_factor(image.shape[-2], 220))
        t2 = time.perf_counter()
        dec.append((t1 - t) * 1e3)
        png.append((t2 - t1) * 1e3)
    for _ in range(7):
        t = time.perf_counter()
        gc.collect(2)
        coll.append((time.perf_counter() - t) * 1e3)
    out.update({"decode": summary(dec[10:]), "png": summary(png[10:]), "gc": summary(coll[1:]),
                "objects": len(gc.get_objects()), "torch_threads": torch.get_num_threads()})
    print(json.dumps(out), flush=True)
    return out


@contextlib.contextmanager
def clock(out: dict, key: str):
    """out[key] = wall seconds, out["cpu_" + key] = this process's CPU seconds (all threads): the CPU
    figure barely moves when other jobs share the cores, the wall figure does."""
    t, c = time.perf_counter(), time.process_time()
    yield
    out[key] = time.perf_counter() - t
    out["cpu_" + key] = time.process_time() - c


def worker(mode: str, z_path: str) -> dict:
    """Runs in a fresh subprocess; prints one JSON line."""
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    if mode == "server-cost":
        return server_cost({})
    z = np.load(z_path)
    out = {"numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR")}
    from vae_core.projection import ProjectionParams, project

    if mode in ("umap-cold", "umap-warm"):
        params = ProjectionParams("umap", 2)
        with clock(out, "import"):
            import umap  # noqa: F401  (project() imports it too; timed apart to split import from JIT)
        with clock(out, "first"):
            project(z, params)
        if mode == "umap-cold":  # the second call goes through the app's cache: a miss, then the revisit
            from dataclasses import astuple

            quiet_streamlit()
            from pages.ui.models import _latent_map as latent_map

            args = ("bench-token", "digits", "test", astuple(params))
            with clock(out, "cache_miss"):
                latent_map(*args, z)
            t = time.perf_counter()
            again = latent_map(*args, z)
            out["cache_hit"] = time.perf_counter() - t
            out["cache_hit_shape"] = list(again.shape)
    elif mode == "pca":
        with clock(out, "import"):
            from sklearn.decomposition import PCA  # noqa: F401
        times = []
        for _ in range(5):
            t = time.perf_counter()
            project(z, ProjectionParams("pca", 2))
            times.append(time.perf_counter() - t)
        out["first"], out["rest"] = times[0], times[1:]
    elif mode.startswith("tsne"):
        n = int(mode.split(":")[1])
        with clock(out, "import"):
            from sklearn.manifold import TSNE  # noqa: F401
        with clock(out, "first"):
            project(z[:n], ProjectionParams("tsne", 2))
        out["n"] = n
    print(json.dumps(out), flush=True)
    return out


def run_worker(mode: str, z_path: Path, env: dict, timeout: float) -> dict | None:
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--z", str(z_path or "")],
                              cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # subprocess.run kills the child it started
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"worker {mode} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - t
    log(f"  {mode}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items() if isinstance(v, float)))
    return result


def bench_map(tsne_timeout: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="app-bench-"))
    try:
        z_path = work / "z.npy"
        log(f"building {N_MAP} latent codes…")
        built = build_latents(z_path)
        cache = work / "numba-cache"
        cache.mkdir()
        log("UMAP, empty numba cache, then latent_map twice…")
        cold = run_worker("umap-cold", z_path, {"NUMBA_CACHE_DIR": str(cache)}, 400)
        files = sum(1 for _ in cache.rglob("*") if _.is_file())
        log("UMAP, warm numba cache…")
        warm = run_worker("umap-warm", z_path, {"NUMBA_CACHE_DIR": str(cache)}, 400)
        log("PCA…")
        pca = run_worker("pca", z_path, {}, 120)
        log(f"t-SNE on {N_MAP} (cap {tsne_timeout:.0f} s)…")
        tsne = run_worker(f"tsne:{N_MAP}", z_path, {}, tsne_timeout)
        tsne_note = f"all {N_MAP:,} points"
        if tsne is None:
            tsne_note = f"{N_MAP:,} points did not finish in {tsne_timeout:.0f} s (killed); first 2,000 points"
            log("t-SNE on 2000…")
            tsne = run_worker("tsne:2000", z_path, {}, tsne_timeout)
            if tsne is None:
                tsne_note = f"neither {N_MAP:,} nor 2,000 points finished in {tsne_timeout:.0f} s each (killed)"
        return {"built": built, "cold": cold, "warm": warm, "cache_files": files, "pca": pca, "tsne": tsne,
                "tsne_note": tsne_note}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- report -----------------------------------------------------------------------------------
SLIDER_ROWS = [("key → decode(z) src changed", "src"), ("key → new image loaded (load event)", "load"),
               ("· browser: key → WebSocket send", "to_send"),
               ("· server: send → last message before the src change", "round_trip"),
               ("· render: that message → src change", "render")]
GC_ON = ("--runner.postScriptGC", "true")


def report_slider(runs: dict, cost: dict, changes: int, settle_ms: int) -> str:
    names = list(runs)
    headers = ["ms"]
    for name in names:
        headers += [f"{name}: median", "p95", "min", "max"]
    rows = []
    for label, key in SLIDER_ROWS:
        row = [label]
        for name in names:
            st_ = summary([x[key] for x in runs[name]["samples"] if x[key] == x[key]])
            row += [f"**{fmt(st_['median'])}**" if key == "src" else fmt(st_["median"]), fmt(st_["p95"]),
                    fmt(st_["min"]), fmt(st_["max"])]
        rows.append(row)
    first = runs[names[0]]
    lo_hi = first["values"]
    text = ("### 1. Slider → new image (browser, /traversal)\n\n"
            f"{changes} keyboard steps per server (±0.05, alternating, on the first slider \"{first['label']}\", "
            f"values {lo_hi[0]:.2f}…{lo_hi[1]:.2f}), after 2 unreported warm-up steps; each step starts "
            f"{settle_ms} ms after the previous run is over. Page clock (performance.now()), ms. "
            f"Columns: {', '.join(f'**{n}**' for n in names)}.\n\n")
    text += table(headers, rows)
    notes = []
    for name in names:
        r = runs[name]
        msgs = statistics.median([x["messages"] for x in r["samples"]]) if r["samples"] else float("nan")
        notes.append(f"{name}: {len(r['samples'])} timed, {r['misses']} picture(s) unchanged after 15 s, "
                     f"median {msgs:g} WebSocket messages per step, first visit of /traversal {r['page_load']:.2f} s, "
                     f"URL mirrors z: {'yes' if r['url_has_z'] else 'no'}")
    text += "\n\n" + ";  \n".join(notes) + "."
    if cost:
        rows = [[label, fmt(cost[k]["median"], 3), fmt(cost[k]["p95"], 3), fmt(cost[k]["min"], 3), fmt(cost[k]["max"], 3),
                 cost[k]["n"]] for label, k in (("model.decode(one z) (torch threads: "
                                                 f"{cost['torch_threads']})", "decode"),
                                                ("PNG of the 8×8 picture at 220 px (show_images)", "png"),
                                                (f"gc.collect(2) ({cost['objects']:,} objects tracked)", "gc"))]
        text += ("\n\nWhat the server does per step, timed in a fresh process that holds the app's imports, "
                 "model and dataset (no Streamlit runtime):\n\n")
        text += table(["ms", "median", "p95", "min", "max", "n"], rows)
    return text


def report_cold(results: list[dict]) -> str:
    rows = []
    for key, name in (("healthy", "launch → /_stcore/health 200"), ("h1", "launch → h1 \"Overview\" visible"),
                      ("usable", "launch → page usable (script idle, no status widget)")):
        vals = [r[key] for r in results]
        st_ = summary(vals)
        rows.append([name, *(f"{v:.2f}" for v in vals), f"{st_['median']:.2f}", f"{st_['p95']:.2f}"])
    headers = ["seconds", *(f"run {i + 1}" for i in range(len(results))), "median", "p95"]
    text = ("### 2. Cold start (`streamlit run` subprocess start → Overview usable, default model digits-vae)\n\n"
            "Each run: a new server and a new browser context (browser launched beforehand, not timed). "
            "Python's and the OS's file caches are warm after the first run, so run 1 may be the slowest.\n\n")
    text += table(headers, rows)
    libs = [(name, [r["libs"][name] for r in results]) for name in ("numba/llvmlite (umap)", "sklearn.manifold (t-SNE)")]
    text += "\n\n" + table(["imported at start-up? (/proc/<pid>/maps once the page is usable)", "answer"],
                           [[name, ", ".join("yes" if v else "no" for v in vals)] for name, vals in libs], "ll")
    exc = sum(r["exceptions"] for r in results)
    text += f"\n\nTracebacks on the Overview page: {exc}."
    return text


def report_map(m: dict) -> str:
    c, w, p, t = m["cold"] or {}, m["warm"] or {}, m["pca"] or {}, m["tsne"]
    b = m["built"]
    killed = "– (killed at the cap)"

    def both(r, *keys):  # wall (CPU) seconds, summed over keys
        return f"{sum(r[k] for k in keys):.2f} ({sum(r['cpu_' + k] for k in keys):.2f})" if r else killed

    rows = [
        ["UMAP first call, **empty** NUMBA_CACHE_DIR (true cold)", both(c, "import", "first"),
         f"import umap {both(c, 'import')} + project {both(c, 'first')}: numba JIT + fit" if c else ""],
        ["UMAP second call, same process (compiled): the app's latent_map, cache miss", both(c, "cache_miss"),
         "the fit alone; pages.ui.models._latent_map → project()"],
        ["the app's latent_map again, same arguments (cached revisit)",
         f"{c['cache_hit'] * 1e3:.2f} ms" if c else killed,
         f"st.cache_data hit outside a runtime, returns {tuple(c['cache_hit_shape'])}" if c else ""],
        ["UMAP first call, **warm** NUMBA_CACHE_DIR (new process)", both(w, "import", "first"),
         (f"import umap {both(w, 'import')} + project {both(w, 'first')}; " if w else "")
         + f"the cold run left {m['cache_files']} cache files"],
        ["PCA, first call (new process)", f"{p['first'] * 1e3:.1f} ms" if p else killed,
         f"import sklearn.decomposition {p['import']:.2f} s; next 4 calls median "
         f"{statistics.median(p['rest']) * 1e3:.1f} ms" if p else ""],
        [f"t-SNE ({t['n']:,} points, sklearn Barnes-Hut)" if t else "t-SNE", both(t, "first"),
         m["tsne_note"] + (f"; import sklearn.manifold {t['import']:.2f} s" if t else "")],
    ]
    whole = ", ".join(f"{name} {r['process']:.1f} s" for name, r in (("cold", c), ("warm", w)) if r)
    text = (f"### 3. Latent map of {N_MAP:,} points (2-D)\n\n"
            f"Codes: {N_MAP:,} prior draws of digits-vae (latent {b['latent_dim']}), decoded, re-encoded to posterior "
            f"means ({b['seconds']:.2f} s to build). UMAP: vae_core.projection.project(z, ProjectionParams(\"umap\", 2)), "
            f"each UMAP/PCA/t-SNE row group in a fresh `python` subprocess (whole UMAP processes: {whole or '–'}). "
            "Seconds are wall clock, with the process's CPU seconds in brackets (less sensitive to other jobs "
            "on the machine).\n\n")
    text += table(["", "wall s (CPU s)", "notes"], rows, "lrl")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--changes", type=int, default=30, help="slider steps timed (default 30)")
    p.add_argument("--cold-starts", type=int, default=3, help="cold starts of the server (default 3)")
    p.add_argument("--skip-map", action="store_true", help="skip the 10k-point latent map timings")
    p.add_argument("--skip-browser", action="store_true", help="skip the slider and cold-start timings")
    p.add_argument("--settle", type=int, default=250, help="ms between a run's end and the next key press")
    p.add_argument("--no-gc-compare", action="store_true",
                   help="time the slider on the server as shipped only, not also with --runner.postScriptGC true")
    p.add_argument("--tsne-timeout", type=float, default=150.0,
                   help="cap on t-SNE, seconds (10k points; if hit, 2k points under the same cap)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--z", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.z)
        return 0

    started = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    sections = []
    if not args.skip_browser:
        if not os.access(CHROMIUM, os.X_OK):
            log(f"{CHROMIUM} is missing (`make chromium`)")
            return 2
        from playwright.sync_api import sync_playwright

        configs = {"as shipped": ()}
        if not args.no_gc_compare:
            configs["postScriptGC on (Streamlit's default)"] = GC_ON
        runs, libs_after = {}, {}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                cold = bench_cold_start(browser, max(1, args.cold_starts))
                for name, options in configs.items():
                    log(f"slider latency, {name}…")
                    with launch_server(options=options) as (url, proc, _, _):
                        runs[name] = bench_slider(browser, url, args.changes, args.settle)
                        libs_after[name] = mapped_libraries(proc.pid)
            finally:
                browser.close()
        log("server-side cost of a step…")
        cost = run_worker("server-cost", None, {}, 180) or {}
        sections.append(report_slider(runs, cost, args.changes, args.settle))
        after = libs_after["as shipped"]
        sections.append(report_cold(cold) + "\n\nAfter the slider run on a server: numba/llvmlite mapped: "
                        f"{'yes' if after['numba/llvmlite (umap)'] else 'no'}, sklearn.manifold mapped: "
                        f"{'yes' if after['sklearn.manifold (t-SNE)'] else 'no'}.")
    if not args.skip_map:
        sections.append(report_map(bench_map(args.tsne_timeout)))
    print("## Latent Explorer app benchmark\n")
    print(machine_block(load_start) + "\n")
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    shown = argv if argv is not None else sys.argv[1:]
    print(f"Command: `{' '.join([exe, 'bench/app_bench.py', *shown])}`")
    for s in sections:
        print("\n" + s)
    import resource

    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    print(f"\nTotal wall time {time.perf_counter() - started:.0f} s; CPU time of this benchmark and its "
          f"children (servers, workers, browser) {cpu:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
