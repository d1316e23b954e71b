#!/usr/bin/env python
"""Live pad benchmark: the decoder in the browser against the server round trip, in one run.

One real `streamlit run` (bench/browser.py, 127.0.0.1 only) and one headless Chromium (Debian's
/usr/bin/chromium through Playwright). For each model (--models; default the MLP digits-vae (8x8), the
conv mnist-vae (28x28) and the Burgess-style conv shapes-vae (64x64)) and each of --rounds rounds:

  live    /traversal?model=file:<model> with the live pad. The mouse presses the first latent slider of
          the component and drags it back and forth (a sine over the slider's width, one mouse move every
          --move-ms) for --seconds, then releases. The page itself records, for every input event, the
          time from the event (event.timeStamp) to the canvas holding its picture (after putImageData),
          and to the requestAnimationFrame callback of the frame that paints it; frames per second = animation frames
          that showed a new picture / drag time.
  server  the same page with the live pad switched off (Streamlit's own sliders, decoded on the
          server): (a) the same drag on the first latent slider, counting decode(z) pictures that
          changed while the button was down — Streamlit sends a slider's value on release only — and
          (b) --changes keyboard steps, each timed from keydown to the new picture loaded
          (bench/app_bench.py's slider measurement).

  class   (--classroom N ...) N browser contexts open /traversal with the live pad at once (the default
          model), as a class would at the start of a lesson: seconds until every pad has drawn its first
          picture, errors (console errors, page errors, failed requests, HTTP >= 400; Streamlit's
          base-path probe 404 and requests the browser aborted are not errors, as in classroom.py),
          server RSS; then each session in turn drags its first slider for a second and releases, and
          its new vector must reach the server (the page's ?z= share link).

Usage (from the repository root):
    .venv/bin/python bench/live_pad_bench.py                    # 2 models x 2 rounds, 5 s drags (~3 min)
    .venv/bin/python bench/live_pad_bench.py --models digits-vae --rounds 1 --seconds 2
    .venv/bin/python bench/live_pad_bench.py --models --classroom 10 30   # only the class opening
    .venv/bin/python bench/live_pad_bench.py --models --classroom 10 10 10 10 10 --idle 135   # memory over classes
Loopback only; the server and browser are always stopped; every wait has a timeout.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app_bench import bench_slider, fmt, log, machine_block, percentile, table  # noqa: E402
from classroom import classify, rss_mib  # noqa: E402
from browser import CHROMIUM, CHROMIUM_ARGS, running_streamlit, wait_idle  # noqa: E402

FRAME_BUDGET_MS = 1000 / 60
PAD_FRAME = 'iframe[title="pages.ui.live_pad.live_pad"]'


def pad_frame(page, timeout_ms: int = 90_000):
    """The live pad's frame once its first picture is drawn (or it gave up: livePad.error)."""
    page.locator(PAD_FRAME).wait_for(timeout=timeout_ms)
    frame = next(f for f in page.frames if "/component/pages.ui.live_pad.live_pad/" in f.url)
    frame.wait_for_function("window.livePad && (livePad.ready || livePad.error)", timeout=timeout_ms)
    if frame.evaluate("livePad.error"):
        raise RuntimeError(f"live pad: {frame.evaluate('livePad.error')}")
    return frame


def class_opens(browser, url: str, pid: int, n: int, model: str = "digits-vae") -> dict:

    errors: list[str] = []

    def error(kind: str, message: str, target: str = "") -> None:
        if classify(kind, message, target) is None:
            errors.append(f"{kind}: {message}")

    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(n)]
    try:
        pages = [c.new_page() for c in contexts]
        for page in pages:
            page.on("console", lambda m: m.type == "error" and error("console error", m.text, (m.location or {}).get("url", "")))
            page.on("pageerror", lambda e: error("page error", str(e)))
            page.on("requestfailed", lambda r: error("request failed", f"{r.method} {r.url} {r.failure}"))
            page.on("response", lambda r: r.status >= 400 and error("http error", f"{r.status} {r.url}"))
        rss_start, t0 = rss_mib(pid), time.perf_counter()
        for page in pages:  # all at once: the next goto does not wait for the previous page
            page.goto(f"{url}/traversal?model=file:{model}", wait_until="commit", timeout=60_000)
        frames, ready_s = [], []
        for page in pages:
            frames.append(pad_frame(page, 300_000))
            ready_s.append(time.perf_counter() - t0)
        rss_ready = rss_mib(pid)
        reached = 0
        for page, frame in zip(pages, frames):
            wait_idle(page, 120_000)
            box = frame.locator("input[type=range]").first.bounding_box()
            sweep(page, box, 1.0, 8)
            z = frame.evaluate("livePad.reported && livePad.reported.z")
            try:
                page.wait_for_function("(z) => location.search.includes('z=' + z)", arg=f"{z[0]:.2f}", timeout=60_000)
                reached += 1
            except Exception:  # playwright's TimeoutError: counted below
                errors.append(f"the released vector never reached the server's share link ({z[0]:.2f})")
        return {"n": n, "all_ready_s": max(ready_s), "median_ready_s": percentile(ready_s, 50), "errors": errors,
                "reached": reached, "rss": (rss_start, rss_ready, rss_mib(pid))}
    finally:
        for c in contexts:
            c.close()


def open_traversal(browser, url: str, model: str, live: bool):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/traversal?model=file:{model}", timeout=60_000)
    page.locator("h1", has_text="Traversal").wait_for(timeout=90_000)
    wait_idle(page, 90_000)
    if not live:
        page.get_by_text("Decode in this browser", exact=True).click()
        page.locator('[data-testid="stImage"]', has_text="decode(z)").wait_for(timeout=30_000)
        wait_idle(page, 90_000)
    return page


def sweep(page, box: dict, seconds: float, move_ms: float) -> int:
    """Hold the mouse down on the middle of box and swing it across for `seconds`; returns moves made."""
    y = box["y"] + box["height"] / 2
    centre, amplitude = box["x"] + box["width"] / 2, 0.45 * box["width"]
    page.mouse.move(centre, y)
    page.mouse.down()
    start, moves = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        page.mouse.move(centre + amplitude * math.sin(2 * math.pi * elapsed / 1.5), y)
        moves += 1
        rest = move_ms / 1000 - (time.perf_counter() - start - elapsed)
        if rest > 0:
            time.sleep(rest)
    page.mouse.up()
    return moves


def live_round(browser, url: str, model: str, seconds: float, move_ms: float) -> dict:
    page = open_traversal(browser, url, model, live=True)
    try:
        frame = pad_frame(page)
        page.wait_for_timeout(500)
        frame.evaluate("livePad.latencies = []; livePad.frameLatencies = []; livePad.frames = 0; livePad.decodes = 0")
        box = frame.locator("input[type=range]").first.bounding_box()
        t = time.perf_counter()
        moves = sweep(page, box, seconds, move_ms)
        drag_s = time.perf_counter() - t
        page.wait_for_timeout(300)  # the last pictures and frames
        stats = frame.evaluate("({latencies: livePad.latencies, frameLatencies: livePad.frameLatencies, "
                               "frames: livePad.frames, decodes: livePad.decodes})")
        return {"moves": moves, "drag_s": drag_s, **stats}
    finally:
        page.close()


def server_drag(browser, url: str, model: str, seconds: float, move_ms: float) -> dict:
    """The same drag on Streamlit's own slider: how many new pictures arrive while the button is down."""
    page = open_traversal(browser, url, model, live=False)
    try:
        page.evaluate("""() => { window.__changes = 0; const picture = () => [...document.querySelectorAll(
            '[data-testid="stImage"]')].find(e => e.innerText.includes('decode(z)'))?.querySelector('img')?.src;
            let last = picture(); new MutationObserver(() => { const now = picture();
            if (now && now !== last) { window.__changes++; last = now; } })
            .observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']}); }""")
        # Streamlit 1.67's slider is react-aria's: a group whose first child is the track
        box = page.locator('[data-testid="stSlider"]').first.locator('[role="group"] > div').first.bounding_box()
        moves = sweep(page, box, seconds, move_ms)
        during = page.evaluate("window.__changes")
        try:  # the value goes to the server on release: one picture, a moment later
            page.wait_for_function("(n) => window.__changes > n", arg=during, timeout=15_000)
        except Exception:  # playwright's TimeoutError: none came; the table shows it
            pass
        wait_idle(page, 60_000)
        return {"moves": moves, "during": during, "after": page.evaluate("window.__changes") - during}
    finally:
        page.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["digits-vae", "mnist-vae", "shapes-vae"])
    p.add_argument("--classroom", nargs="*", type=int, default=[], metavar="N",
                   help="also open the live pad in N browser contexts at once, for each N")
    p.add_argument("--idle", type=float, default=0.0, metavar="S",
                   help="after each class, wait S seconds and read the server's RSS again (Streamlit keeps a "
                        "closed session for server.disconnectedSessionTTL = 120 s: S > 120 shows what stays)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="length of each drag")
    p.add_argument("--move-ms", type=float, default=8.0, help="time between mouse moves while dragging")
    p.add_argument("--changes", type=int, default=30, help="keyboard steps for the server-side latency")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    rows, rows_server, rows_class = [], [], []
    with running_streamlit() as server, sync_playwright() as pw:
        url = server.url
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for model in args.models:
                live = {"latencies": [], "frameLatencies": [], "frames": 0, "drag_s": 0.0, "moves": 0, "decodes": 0}
                drags, keyboard = [], []
                for r in range(args.rounds):
                    log(f"{model}: round {r + 1}, live pad drag…")
                    got = live_round(browser, url, model, args.seconds, args.move_ms)
                    for key in ("latencies", "frameLatencies"):
                        live[key] += got[key]
                    for key in ("frames", "drag_s", "moves", "decodes"):
                        live[key] += got[key]
                    log(f"{model}: round {r + 1}, server sliders…")
                    drags.append(server_drag(browser, url, model, args.seconds, args.move_ms))
                    keyboard += bench_slider(browser, url, args.changes, 100, path=f"/traversal?model=file:{model}")["samples"]
                lat, frame_lat = live["latencies"], live["frameLatencies"]
                within = sum(v <= FRAME_BUDGET_MS for v in lat) / len(lat) if lat else float("nan")
                rows.append([model, f"{len(lat):,}", fmt(len(lat) / live["drag_s"]), f"**{fmt(live['frames'] / live['drag_s'])}**",
                             fmt(percentile(lat, 50), 2), fmt(percentile(lat, 95), 2), fmt(max(lat), 2),
                             f"{100 * within:.1f}%", fmt(percentile(frame_lat, 50)), fmt(percentile(frame_lat, 95))])
                src = [s["src"] for s in keyboard]
                rows_server.append([model, f"{sum(d['moves'] for d in drags):,}", str(sum(d["during"] for d in drags)),
                                    str(sum(d["after"] for d in drags)), str(len(src)),
                                    f"**{fmt(percentile(src, 50))}**", fmt(percentile(src, 95))])
            for n in args.classroom:
                log(f"class of {n}: opening the live pad at once…")
                c = class_opens(browser, url, server.process.pid, n)
                time.sleep(args.idle)
                rows_class.append([str(n), fmt(c["median_ready_s"]), fmt(c["all_ready_s"]), str(len(c["errors"])),
                                   f"{c['reached']}/{n}", " / ".join(f"{v:,.0f}" for v in c["rss"]),
                                   f"{rss_mib(server.process.pid):,.0f}"])
                for e in c["errors"][:5]:
                    log(f"  error: {e}")
        finally:
            browser.close()
    command = f"`.venv/bin/python bench/live_pad_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
    parts = [f"### Live pad: decode in the browser — {command}"]
    if rows:
        parts += [f"{args.rounds} round(s) per model; each drag {args.seconds:g} s with a mouse move every "
                  f"{args.move_ms:g} ms (headless Chromium).",
                  table(["model", "input events", "events/s", "frames/s with a new picture", "event → canvas, median ms",
                         "p95", "max", f"events drawn within {FRAME_BUDGET_MS:.1f} ms",
                         "event → the frame that paints it, median ms", "p95"], rows),
                  "The server path in the same run (Streamlit's sliders, the picture decoded on the server):",
                  table(["model", "mouse moves while dragging", "new pictures while the button was down",
                         "after release", "keyboard steps", "key → picture loaded, median ms", "p95"], rows_server)]
    if rows_class:
        parts += ["A class opening the live pad at once (one Chromium, one context per student, on this machine):",
                  table(["students", "first picture, median s", "all pads ready s", "errors",
                         "released vector reached the server", "server RSS MiB (start / all ready / end)",
                         f"RSS MiB after {args.idle:g} s idle"], rows_class)]
    text = "\n\n".join(parts + [machine_block()])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
