#!/usr/bin/env python
"""App benchmark: what a student waits for in Latent Explorer, measured on a real `streamlit run`.

Two measurements, printed as Markdown tables from one run:

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
   numba/llvmlite (=> umap) or openTSNE's compiled modules were loaded at start-up. The servers run
   with LATENT_EXPLORER_WARM_UP=0: these are the pages' own costs (bench/map_bench.py measures the
   cold start with the UMAP warm-up on and off).
Latent maps have their own benchmark: bench/map_bench.py.

Usage (from the repository root):
    .venv/bin/python bench/app_bench.py                      # everything: ~5 min of CPU; on 2 cores
                                                             # ~5-6 min, longer when they are shared
    .venv/bin/python bench/app_bench.py --changes 50

Loopback only: servers listen on 127.0.0.1 and are always stopped; every wait has a timeout.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from browser import ARM, CHROMIUM, CHROMIUM_ARGS, INSTALL_PROBE, WS_HOOK, running_streamlit, wait_idle  # noqa: E402

CHECKPOINT = ROOT / "checkpoints" / "digits-vae.safetensors"


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
    for name in ("streamlit", "torch", "numpy", "scikit-learn", "umap-learn", "openTSNE", "numba", "pynndescent",
                 "playwright"):
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
    with running_streamlit(options=options, timeout=timeout, log_prefix="bench-streamlit",
                           env={"LATENT_EXPLORER_WARM_UP": "0"}) as server:
        yield server.url, server.process, server.launched, server.healthy


def mapped_libraries(pid: int) -> dict:
    """What the process has loaded, judged from its memory map (no change to the app needed)."""
    with open(f"/proc/{pid}/maps") as f:
        paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    return {
        "numba/llvmlite (umap)": any("libllvmlite" in p or "numba/_helperlib" in p for p in paths),
        "openTSNE (t-SNE)": any("openTSNE/" in p for p in paths),
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


def worker(mode: str) -> dict:
    """Runs in a fresh subprocess; prints one JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    return server_cost({})


def run_worker(mode: str, env: dict, timeout: float) -> dict | None:
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", mode],
                              cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # subprocess.run kills the child it started
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"worker {mode} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - t
    log(f"  {mode}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items() if isinstance(v, float)))
    return result


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
    libs = [(name, [r["libs"][name] for r in results]) for name in ("numba/llvmlite (umap)", "openTSNE (t-SNE)")]
    text += "\n\n" + table(["imported at start-up? (/proc/<pid>/maps once the page is usable)", "answer"],
                           [[name, ", ".join("yes" if v else "no" for v in vals)] for name, vals in libs], "ll")
    exc = sum(r["exceptions"] for r in results)
    text += f"\n\nTracebacks on the Overview page: {exc}."
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--changes", type=int, default=30, help="slider steps timed (default 30)")
    p.add_argument("--cold-starts", type=int, default=3, help="cold starts of the server (default 3)")
    p.add_argument("--settle", type=int, default=250, help="ms between a run's end and the next key press")
    p.add_argument("--no-gc-compare", action="store_true",
                   help="time the slider on the server as shipped only, not also with --runner.postScriptGC true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0

    started = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    sections = []
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
    cost = run_worker("server-cost", {}, 180) or {}
    sections.append(report_slider(runs, cost, args.changes, args.settle))
    after = libs_after["as shipped"]
    sections.append(report_cold(cold) + "\n\nAfter the slider run on a server: numba/llvmlite mapped: "
                    f"{'yes' if after['numba/llvmlite (umap)'] else 'no'}, openTSNE mapped: "
                    f"{'yes' if after['openTSNE (t-SNE)'] else 'no'}.")
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
