#!/usr/bin/env python
"""Map benchmark: what whole-dataset latent maps cost, printed as Markdown tables from one run.

Data: the shipped shapes-vae (10-D latent) encodes the shapes train split, 58,982 images; smaller
sizes (--tsne-sizes, and UMAP's 10,000) are seeded random subsets of it. Every timing runs in a fresh `python` subprocess
(`--worker`), so imports, numba's compiler and its on-disk cache are as a new server meets them.

1. t-SNE engines, side by side: scikit-learn's Barnes-Hut (the app's engine before issue 13),
   openTSNE's Barnes-Hut and openTSNE's FFT-interpolated gradients throughout, each with its defaults
   on one thread (perplexity 30; sklearn: 1,000 iterations; openTSNE: 250 exaggerated + 500), and the
   app's recipe (vae_core.projection: openTSNE, 125 + 250 iterations, FFT while the exaggerated map is
   compact, then Barnes-Hut below 20,000 points) as a server runs it (the cores but one) and as the
   `map` CLI does (every core, up to 8). The exact KL divergence of each map, under openTSNE's affinities, says
   whether the fastest is as good. A run over --tsne-cap seconds is killed and says so.
2. UMAP's first map of 10,000 points: with an empty numba cache (a first server on a machine);
   with the on-disk cache the first run left (every later server); after the app's warm-up
   (vae_core.projection.warm_up_umap, what a server does once its first page is drawn: "server up
   for a while"); and asked for while the warm-up is still compiling ("server just started", with an
   empty numba cache: the worst case).
   transform() and inverse_transform() of one point after each fit: a slider's point, a click.
3. The app's own caches: a map read from the disk cache by a new process (vae_core.map_cache, what
   a restarted server or a `python -m vae_core map` precomputation gives), the app's in-memory
   revisit (pages.ui.models._latent_map, st.cache_resource outside a runtime), and the 60k map:
   UMAP of all 58,982 points, the figure's JSON, and the process's peak memory.
4. In a real server (Playwright + Chromium): the Overview's cold start with the warm-up off and on,
   and a 14,746-point UMAP map (the shapes test split) from the link's arrival to the map drawn:
   server just started, after --up seconds, restarted on the same disk cache, and revisited.

Usage (from the repository root; about 45 min on 2 cores, most of it t-SNE at 60k):
    .venv/bin/python bench/map_bench.py
    .venv/bin/python bench/map_bench.py --only tsne --tsne-sizes 5000,10000
    .venv/bin/python bench/map_bench.py --only umap,caches,server
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app_bench import log, machine_block, table  # noqa: E402
from browser import CHROMIUM, CHROMIUM_ARGS, MAP_FRAME, map_frame, running_streamlit, wait_idle  # noqa: E402

CHECKPOINT = ROOT / "checkpoints" / "shapes-vae.safetensors"
SECTIONS = ("tsne", "umap", "caches", "server")
TSNE_ENGINES = ("sklearn-bh", "opentsne-bh", "opentsne-fft", "app", "cli")
N_UMAP = 10_000
TARGETS = {  # issue 13, on this 2-core machine
    "first UMAP map of 10k points, server up for 2 minutes": "≤ 10 s",
    "first UMAP map of 10k points, server just started": "≤ 25 s",
    "a cached map in a new process": "≤ 3 s",
    "a revisit in the same process": "≤ 0.3 s",
    "t-SNE of 10k points": "≤ 15 s",
}


# -- workers: each runs in a fresh subprocess and prints one JSON line ---------------------------------
def encode(path: Path) -> None:
    import numpy as np
    import torch

    from vae_core.checkpoint import load_checkpoint
    from vae_core.datasets import load_dataset
    from vae_core.metrics import encode_all

    model = load_checkpoint(CHECKPOINT).model
    data = load_dataset("shapes")
    with torch.inference_mode():
        mu, _ = encode_all(model, data.x_train)
    np.savez(path, z=mu.numpy().astype(np.float32), labels=data.y_train.numpy(), digest=model.weights_digest())


def subset(data, n: int):
    import numpy as np

    z, labels = data["z"], data["labels"]
    if n >= len(z):
        return z, labels
    keep = np.sort(np.random.default_rng(0).permutation(len(z))[:n])
    return z[keep], labels[keep]


def tsne_worker(engine: str, n: int, data) -> dict:
    """One t-SNE engine on n points: seconds to fit, and the exact KL of its map under openTSNE's
    affinities (perplexity 30) whoever fitted it. For openTSNE's maps, the transform of one
    point as a slider places it, with openTSNE's default iterations and the app's."""
    import numpy as np
    from openTSNE import TSNE, affinity
    from threadpoolctl import threadpool_limits

    from vae_core.projection import (TSNE_EXACT_NEIGHBOURS_BELOW, TSNE_TRANSFORM_ITERATIONS, ProjectionParams,
                                     project_fitted, tsne_kl_divergence)
    from vae_core.threads import compute_threads

    z, _ = subset(data, n)
    neighbors = "exact" if n < TSNE_EXACT_NEIGHBOURS_BELOW else "annoy"
    with threadpool_limits(limits=1):
        start = time.perf_counter()
        if engine == "sklearn-bh":
            from sklearn.manifold import TSNE as SklearnTSNE

            coords = SklearnTSNE(n_components=2, perplexity=30, init="pca", random_state=0).fit_transform(z)
            seconds = time.perf_counter() - start
            p = affinity.PerplexityBasedNN(z, perplexity=30, method=neighbors, random_state=0).P
            return {"seconds": seconds, "kl": tsne_kl_divergence(coords, p), "n": len(z), "threads": 1}
        if engine in ("app", "cli"):  # the app's recipe as a server runs it, and as the `map` CLI does
            threads = compute_threads(spare_core=engine == "app")
            embedding = project_fitted(z, ProjectionParams("tsne", 2), threads=threads)[1]
        else:  # openTSNE's defaults
            threads = 1
            embedding = TSNE(n_components=2, perplexity=30, random_state=0, n_jobs=1,
                             negative_gradient_method=engine.split("-")[1], neighbors=neighbors).fit(z)
        seconds = time.perf_counter() - start
    out = {"seconds": seconds, "kl": tsne_kl_divergence(embedding, embedding.affinities.P), "n": len(z),
           "threads": threads}
    if engine == "cli":  # the app's map again, on more threads: its transforms are the app's
        return out
    embedding -= (embedding.max(0) + embedding.min(0)) / 2  # as the app does: transform re-centres
    out["span"] = float(np.ptp(embedding, axis=0).max())
    with threadpool_limits(limits=1):
        for name, iterations in (("default", 250), ("app", TSNE_TRANSFORM_ITERATIONS)):
            start = time.perf_counter()  # one point, as a slider places it; then 200 for the error
            embedding.transform(z[:1], n_iter=iterations)
            out[f"transform_{name}_s"] = time.perf_counter() - start
            placed = np.asarray(embedding.transform(z[:200], n_iter=iterations))
            out[f"transform_{name}_error"] = float(np.median(np.linalg.norm(placed - embedding[:200], axis=1)))
    return out


def umap_worker(mode: str, data) -> dict:
    """mode: first (nothing warmed in this process), warmed (warm-up first, then the map), racing
    (the warm-up starts, and the map is asked for at once), or 60k (all points, after the warm-up)."""
    import numpy as np

    from vae_core.projection import ProjectionParams, place_on_map, project_fitted, unproject, warm_up_umap

    z, _ = subset(data, len(data["z"]) if mode == "60k" else N_UMAP)
    out = {"n": len(z)}
    if mode in ("warmed", "60k"):
        start = time.perf_counter()
        warm_up_umap()
        out["warm_up"] = time.perf_counter() - start
    if mode == "racing":
        threading.Thread(target=warm_up_umap, daemon=True).start()
    start = time.perf_counter()
    coords, reducer = project_fitted(z, ProjectionParams("umap", 2))
    out["map"] = time.perf_counter() - start
    start = time.perf_counter()
    place_on_map(z[:1], z, coords, reducer)
    out["transform"] = time.perf_counter() - start
    start = time.perf_counter()
    unproject(coords[:1], z, coords, reducer, "umap")
    out["inverse"] = time.perf_counter() - start
    if mode == "60k":
        np.save(os.environ["MAP_BENCH_COORDS"], coords)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: a child started by
    fork and exec inherits its parent's peak there, and the parent encoded the whole dataset."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def caches_worker(mode: str, data) -> dict:
    """store: project 10k points with UMAP into the disk cache; load: read them back in this new
    process, then the app's in-memory revisit; figure: the 60k map's figure, as the page sends it."""
    import logging

    import numpy as np

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from vae_core.map_cache import MapKey, cached_projection
    from vae_core.projection import ProjectionParams

    z, labels = subset(data, N_UMAP)
    key = MapKey(str(data["digest"]), "shapes", "train-10k", ProjectionParams("umap", 2))
    out = {}
    if mode == "store":
        start = time.perf_counter()
        cached_projection(key, z, labels)
        out["store"] = time.perf_counter() - start
    elif mode == "load":
        start = time.perf_counter()
        coords, _ = cached_projection(key, z, labels, report=lambda line: out.setdefault("said", line))
        out["disk"] = time.perf_counter() - start
        from dataclasses import astuple

        from pages.ui.models import _latent_map

        arguments = ("bench", "shapes", "train-10k", astuple(key.params), key.digest, z, labels)
        start = time.perf_counter()
        _latent_map(*arguments).result()
        out["first_in_process"] = time.perf_counter() - start
        start = time.perf_counter()
        _latent_map(*arguments).result()
        out["revisit"] = time.perf_counter() - start
    else:
        from pages.ui.figures import map_figure

        coords = np.load(os.environ["MAP_BENCH_COORDS"])
        start = time.perf_counter()
        figure = map_figure(coords, data["labels"], ["square", "ellipse", "heart"])
        text = figure.to_json()
        out.update({"figure_s": time.perf_counter() - start, "figure_mb": len(text.encode()) / 1e6,
                    "points": len(coords)})
    return out


def run_worker(args: list[str], env: dict, timeout: float) -> dict | None:
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *args], cwd=ROOT,
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  {' '.join(args)}: over {timeout:.0f} s, killed")
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - start
    log(f"  {' '.join(args)}: {result}")
    return result


# -- sections -----------------------------------------------------------------------------------------
def s(value, digits: int = 1) -> str:
    """A number for a table; – where there is none (not measured, or the run was killed: the log says)."""
    return "–" if value is None else f"{value:,.{digits}f}"


def bench_tsne(work: Path, sizes: list[int], cap: float, engines: list[str]) -> tuple[str, dict]:
    from vae_core.projection import TSNE_FFT_FROM

    rows, found = [], {}
    for n in sizes:
        # OMP_NUM_THREADS: scikit-learn's Barnes-Hut took both cores under threadpool_limits(1) alone
        # (openTSNE's threads are its n_jobs, which the app and CLI engines set)
        results = found[n] = {engine: run_worker(["tsne", engine, str(n), str(work / "z.npz")],
                                                 {"OMP_NUM_THREADS": "1"}, cap)
                              for engine in engines}
        cells = [f"{r['seconds']:.1f} s (KL {r['kl']:.3f}, {r['threads']} thr.)" if r else
                 (f"over {cap:.0f} s" if engine in results else "–") for engine in TSNE_ENGINES
                 for r in [results.get(engine)]]
        app, sk = results.get("app"), results.get("sklearn-bh")
        ratio = f"{sk['seconds'] / app['seconds']:.1f}x" if sk and app else (
            f"> {cap / app['seconds']:.1f}x" if app and "sklearn-bh" in results else "–")
        n_done = next((r["n"] for r in results.values() if r), n)
        recipe = "FFT throughout" if n_done >= TSNE_FFT_FROM else "FFT, then BH"
        rows.append([f"{n_done:,}", *cells, ratio, recipe])
    placements = [[f"{r['n']:,}", engine, *(f"{r[f'transform_{k}_s']:.2f} s, {r[f'transform_{k}_error']:.2f}"
                                            for k in ("default", "app")), f"{r['span']:.0f}"]
                  for n, results in found.items() for engine, r in results.items() if r and "transform_app_s" in r]
    return ("### t-SNE (seconds to fit, exact KL divergence at the end, threads)\n\n"
            "openTSNE's and scikit-learn's defaults on one thread; `app`: the app's recipe as a server runs "
            "it (the cores but one); `cli`: the same as `python -m vae_core map` runs it (every core, up to 8).\n\n"
            + table(["points", *TSNE_ENGINES, "sklearn / app", "the app's gradients"], rows)
            + "\n\nopenTSNE's transform of one point (a slider's), and the median distance of 200 training "
              "points placed by it to their own map positions:\n\n"
            + table(["points", "engine", "250 iterations (openTSNE's default)", "the app's iterations",
                     "map width"], placements)), found


def bench_umap(work: Path) -> tuple[str, dict]:
    data = str(work / "z.npz")
    empty, shared = work / "numba-empty", work / "numba-shared"
    rows, found = [], {}
    cases = [("first map, empty numba cache (a first server on this machine)", "first", empty),
             ("first map, numba's on-disk cache from the run above (any later server)", "first", shared),
             ("after the warm-up (server up for a while)", "warmed", work / "numba-warmed"),
             ("asked for while the warm-up compiles (server just started, empty numba cache)", "racing",
              work / "numba-racing")]
    shutil.rmtree(shared, ignore_errors=True)
    for name, mode, cache in cases:
        cache.mkdir(exist_ok=True)
        if cache == shared:
            shutil.copytree(empty, shared, dirs_exist_ok=True)
        r = run_worker(["umap", mode, data], {"NUMBA_CACHE_DIR": str(cache)}, 900)
        found[name] = r
        if r is None:
            rows.append([name, "killed after 900 s", "", "", "", ""])
            continue
        rows.append([name, s(r.get("warm_up")), s(r["map"]), s(r["transform"], 2), s(r["inverse"], 2),
                     s(r["process"])])
    found["files"] = sum(1 for p in empty.rglob("*") if p.is_file())
    return ("### UMAP, 10,000 points, one new process per row (seconds)\n\n"
            + table(["", "warm-up", "map", "transform (1 point)", "inverse (1 point)", "whole process"], rows)
            + f"\n\nnumba's on-disk cache after the first run: {found['files']} files (umap-learn caches some of "
              "its kernels; the rest compile again in every process, which the warm-up does). UMAP's neighbours "
              "are scikit-learn's exact search, compiled ahead of time."), found


def bench_caches(work: Path) -> tuple[str, dict]:
    data = str(work / "z.npz")
    env = {"LATENT_EXPLORER_CACHE": str(work / "cache"), "NUMBA_CACHE_DIR": str(work / "numba-shared"),
           "MAP_BENCH_COORDS": str(work / "coords60k.npy")}
    store = run_worker(["caches", "store", data], env, 900)
    load = run_worker(["caches", "load", data], env, 300)
    big = run_worker(["umap", "60k", data], env, 1800)
    figure = run_worker(["caches", "figure", data], env, 300) if big else None
    rows = [["store a 10k UMAP map (project + write)", s(store and store["store"], 2), ""],
            ["a cached map in a new process (read from disk)", s(load and load["disk"], 3),
             (load or {}).get("said", "")[:60]],
            ["the app's first call in that process (disk cache, via st.cache_resource)",
             s(load and load["first_in_process"], 3), ""],
            ["a revisit in the same process (memory)", s(load and load["revisit"] * 1e3, 2) + " ms", ""],
            ["60k UMAP map: warm-up, then the fit", s(big and big["map"]),
             f"{big['n']:,} points; warm-up {big['warm_up']:.1f} s; peak RSS {big['peak_rss_mb']:.0f} MB" if big else ""],
            ["60k map's figure (what the page sends)", s(figure and figure["figure_s"], 2),
             f"{figure['figure_mb']:.2f} MB of JSON" if figure else ""]]
    return "### Caches and the 60k map (seconds)\n\n" + table(["", "seconds", "notes"], rows, "lrl"), \
        {"load": load, "big": big, "figure": figure}


def server_rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def open_map(browser, url: str, probe=None):
    """Seconds from opening the link in a new browser context to the map drawn in its frame; with a
    probe(page, frame), (seconds, what the probe measured on that map)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    try:
        page = context.new_page()
        start = time.perf_counter()
        page.goto(url, timeout=60_000)
        frame = map_frame(page, 900_000)
        seconds = time.perf_counter() - start
        return seconds if probe is None else (seconds, probe(page, frame))
    finally:
        context.close()
PAN = """async () => {  // six pans of 5% of the width, each until plotly has drawn it and a frame has passed
  const gd = document.getElementById('map'), range = gd._fullLayout.xaxis.range.slice(), times = [];
  for (let i = 0; i < 6; i++) {
    const shift = (range[1] - range[0]) * 0.05 * (i % 2 ? 1 : -1), start = performance.now();
    await Plotly.relayout(gd, {'xaxis.range': [range[0] + shift, range[1] + shift]});
    await new Promise(requestAnimationFrame);
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[3]; }"""


def pan_ms(page, frame) -> float:
    """Median milliseconds of a pan of the map, drawn (plotly.relayout, then one animation frame)."""
    return frame.evaluate(PAN)


def lasso(page, frame) -> dict:
    """A lasso drawn with the mouse round the middle of the map: milliseconds from releasing it to the
    selection known in the browser, and to the page showing the selected points (a server round trip)."""
    frame.locator('.modebar-btn[data-val="lasso"]').click()
    loop = frame.evaluate("""() => { const gd = document.getElementById('map'), xa = gd._fullLayout.xaxis,
        ya = gd._fullLayout.yaxis, cx = xa._offset + xa._length / 2, cy = ya._offset + ya._length / 2,
        r = Math.min(xa._length, ya._length) / 4;
        return Array.from({length: 25}, (_, i) => [cx + r * Math.cos(i * Math.PI / 12), cy + r * Math.sin(i * Math.PI / 12)]); }""")
    box = page.locator(MAP_FRAME).bounding_box()
    page.mouse.move(box["x"] + loop[0][0], box["y"] + loop[0][1])
    page.mouse.down()
    for x, y in loop[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
    start = time.perf_counter()
    page.mouse.up()
    frame.wait_for_function("() => window.mapState.selected !== null", timeout=60_000)
    known = time.perf_counter() - start
    page.wait_for_function("() => location.search.includes('selected=')", timeout=120_000)
    wait_idle(page, 120_000)  # the page has drawn the selected points' pictures
    shown = time.perf_counter() - start
    return {"known_ms": known * 1e3, "shown_ms": shown * 1e3,
            "points": frame.evaluate("() => window.mapState.selected")}


def overview_cold_start(browser, env: dict) -> float:
    with running_streamlit(env=env, log_prefix="map-bench") as server:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(server.url, timeout=60_000)
            page.locator("h1", has_text="Overview").wait_for(timeout=120_000)
            wait_idle(page, 120_000)
            return time.perf_counter() - server.launched
        finally:
            context.close()


def bench_server(work: Path, up: float, cold_starts: int) -> tuple[str, dict]:
    from playwright.sync_api import sync_playwright

    link = "/latent_map?model=file:shapes-vae&map=on&method=umap"
    base = {"NUMBA_CACHE_DIR": str(work / "numba-shared")}
    rows, cold, found = [], {"off": [], "on": []}, {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for i in range(cold_starts):
                for state in ("off", "on"):
                    log(f"Overview cold start, warm-up {state} ({i + 1}/{cold_starts})…")
                    cold[state].append(overview_cold_start(
                        browser, {**base, "LATENT_EXPLORER_WARM_UP": "0" if state == "off" else "1",
                                  "LATENT_EXPLORER_CACHE": str(work / f"cold-{state}-{i}")}))
            for name, wait in (("server just started: Overview, then the map at once", 0.0),
                               (f"server up {up:.0f} s: Overview, then the map", up)):
                env = {**base, "LATENT_EXPLORER_CACHE": str(work / f"server-{int(wait)}")}
                with running_streamlit(env=env, log_prefix="map-bench") as server:
                    open_map_after = time.perf_counter()
                    context = browser.new_context()
                    context.new_page().goto(server.url, timeout=60_000)  # the teacher opens the app
                    time.sleep(max(0.0, wait - (time.perf_counter() - open_map_after)))
                    log(f"{name}…")
                    seconds = open_map(browser, server.url + link)
                    context.close()
                    rows.append([name, f"{seconds:.1f}", f"{server_rss_mb(server.process.pid):.0f}"])
                    found["started" if not wait else "up"] = seconds
                    if wait:
                        found["revisit"], found["lasso"] = open_map(browser, server.url + link, lasso)
                        rows.append(["the same link again, same server (revisit)", f"{found['revisit']:.1f}",
                                     f"{server_rss_mb(server.process.pid):.0f}"])
                        lassoed = found["lasso"]
                        rows.append([f"a lasso round {lassoed['points']:,} of its points: selection known in the "
                                     "browser / shown by the page", f"{lassoed['known_ms'] / 1e3:.2f} / "
                                     f"{lassoed['shown_ms'] / 1e3:.2f}", ""])
                        log("the 58,982-point train split…")
                        found["60k"], found["pan_ms"] = open_map(browser, server.url + link + "&split=train", pan_ms)
                        found["60k_rss"] = server_rss_mb(server.process.pid)
                        rows.append(["the train split, 58,982 points, same server", f"{found['60k']:.1f}",
                                     f"{found['60k_rss']:.0f}"])
                        rows.append(["a pan of that 58,982-point map, drawn (median of 6)",
                                     f"{found['pan_ms'] / 1e3:.3f}", ""])
                if wait:
                    with running_streamlit(env=env, log_prefix="map-bench") as server:
                        log("restarted server, same disk cache…")
                        found["restart"] = seconds = open_map(browser, server.url + link)
                        rows.append(["a new server on the same disk cache (the link first thing)", f"{seconds:.1f}",
                                     f"{server_rss_mb(server.process.pid):.0f}"])
        finally:
            browser.close()
    cold_rows = [[f"warm-up {state}", *(f"{v:.1f}" for v in values), f"{statistics.median(values):.1f}"]
                 for state, values in cold.items()]
    return ("### In a real server (seconds; link opened in a new browser context until the map is drawn)\n\n"
            "Overview cold start: `streamlit run` launched → Overview usable (script idle).\n\n"
            + table(["", *(f"run {i + 1}" for i in range(cold_starts)), "median"], cold_rows)
            + "\n\nThe shapes test split (14,746 points), UMAP, on shapes-vae:\n\n"
            + table(["", "seconds", "server RSS MB after"], rows)), found


def summary(found: dict, up: float) -> str:
    """The issue's targets beside what this run measured (– where a section was skipped)."""
    def get(*path):
        value = found
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    umap = {mode: r for name, r in (found.get("umap") or {}).items() if isinstance(r, dict)
            for mode in [name.split(" (")[0]]}
    app_10k, cli_10k = get("tsne", 10_000, "app"), get("tsne", 10_000, "cli")
    sk_10k = get("tsne", 10_000, "sklearn-bh")
    measured = {
        "first UMAP map of 10k points, server up for 2 minutes":
            f"{s(get('server', 'up'))} s in a server up {up:.0f} s (14,746 points); "
            f"{s((umap.get('after the warm-up') or {}).get('map'))} s for 10k in a warmed process",
        "first UMAP map of 10k points, server just started":
            f"{s(get('server', 'started'))} s in a server (14,746 points); "
            f"{s((umap.get('asked for while the warm-up compiles') or {}).get('map'))} s for 10k in a new process",
        "a cached map in a new process":
            f"{s(get('caches', 'load', 'disk'), 3)} s from disk; {s(get('server', 'restart'))} s for the link "
            "in a restarted server (model, data, encoding and page included)",
        "a revisit in the same process":
            f"{s(get('caches', 'load', 'revisit') and get('caches', 'load', 'revisit') * 1e3, 2)} ms in memory; "
            f"{s(get('server', 'revisit'))} s for the link in a new browser context",
        "t-SNE of 10k points":
            f"{s(cli_10k and cli_10k['seconds'])} s with the `map` CLI ({s(cli_10k and cli_10k['threads'], 0)} "
            f"threads); {s(app_10k and app_10k['seconds'])} s in a server, which keeps a core for its pages "
            f"({s(app_10k and app_10k['threads'], 0)} thread(s)); scikit-learn {s(sk_10k and sk_10k['seconds'])} s",
    }
    rows = [[what, target, measured[what]] for what, target in TARGETS.items()]
    rows.append(["60k-point map, end to end", "report it",
                 f"{s(get('server', '60k'))} s in a server up {up:.0f} s, server RSS {s(get('server', '60k_rss'), 0)} MB "
                 f"after; UMAP fit {s(get('caches', 'big', 'map'))} s, figure "
                 f"{s(get('caches', 'figure', 'figure_mb'), 2)} MB; a pan drawn in "
                 f"{s(get('server', 'pan_ms'), 0)} ms"])
    lassoed = get("server", "lasso")
    rows.append(["lasso on a 14,746-point map", "responsive",
                 f"{lassoed['known_ms']:.0f} ms to the selection in the browser, {lassoed['shown_ms']:.0f} ms to the "
                 f"page showing it ({lassoed['points']:,} points)" if lassoed else "–"])
    return "### Targets (issue 13) and this run\n\n" + table(["what", "target", "measured"], rows, "lll")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    p.add_argument("--tsne-sizes", default="5000,10000,58982", help="t-SNE sizes (default 5000,10000,58982)")
    p.add_argument("--tsne-cap", type=float, default=600.0, help="seconds before a t-SNE run is killed")
    p.add_argument("--tsne-engines", default=",".join(TSNE_ENGINES), help=f"some of {', '.join(TSNE_ENGINES)}")
    p.add_argument("--up", type=float, default=120.0, help="seconds a server is up before the map is asked for")
    p.add_argument("--cold-starts", type=int, default=2, help="Overview cold starts per warm-up setting")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        import numpy as np

        kind, *rest = args.worker
        with np.load(rest[-1], allow_pickle=False) as data:
            data = dict(data)
        result = {"tsne": lambda: tsne_worker(rest[0], int(rest[1]), data),
                  "umap": lambda: umap_worker(rest[0], data),
                  "caches": lambda: caches_worker(rest[0], data)}[kind]()
        print(json.dumps(result), flush=True)
        return 0
    if unknown := set(args.tsne_engines.split(",")) - set(TSNE_ENGINES):
        p.error(f"unknown t-SNE engines {sorted(unknown)}")
    sections = [part for part in args.only.split(",") if part]
    if unknown := set(sections) - set(SECTIONS):
        p.error(f"unknown sections {sorted(unknown)}")
    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="map-bench-"))
    print("## Map benchmark (bench/map_bench.py)\n", flush=True)

    def emit(text: str) -> None:  # each section as soon as it is measured: a late failure keeps the rest
        print(text + "\n", flush=True)

    try:
        log("encoding the shapes train split with shapes-vae…")
        encode(work / "z.npz")
        found = {}
        if "tsne" in sections:
            text, found["tsne"] = bench_tsne(work, [int(n) for n in args.tsne_sizes.split(",")], args.tsne_cap,
                                             [e for e in TSNE_ENGINES if e in args.tsne_engines.split(",")])
            emit(text)
        if "umap" in sections or "caches" in sections or "server" in sections:
            text, found["umap"] = bench_umap(work)  # also fills the numba cache the later sections start from
            if "umap" in sections:
                emit(text)
        if "caches" in sections:
            text, found["caches"] = bench_caches(work)
            emit(text)
        if "server" in sections:
            if not os.access(CHROMIUM, os.X_OK):
                log(f"{CHROMIUM} is missing (`make chromium`): no server section")
            else:
                text, found["server"] = bench_server(work, args.up, args.cold_starts)
                emit(text)
        emit(summary(found, args.up))
        print(machine_block(load_start))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
