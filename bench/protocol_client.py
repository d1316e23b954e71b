"""Students without browsers: WebSocket sessions that speak Streamlit's own protocol.

A browser on the same 2-core machine as the server measures the browsers (bench/classroom.py's
Chromium mode: 178% of the CPU for 30 pages). These sessions send what a browser sends, the
`BackMsg` protobufs of `streamlit.proto` (a script rerun with the widgets' states, a fragment's rerun
for a widget inside an `st.fragment`), and read the `ForwardMsg`s the server answers with, so one
asyncio process can stand for a lecture hall and the server's own cost shows.

Each session opens /traversal?sample=k (k its own test image), turns "Decode in this browser" off, so
the server decodes, and then moves one latent slider (the i-th, cycling) by one step, back and forth,
every 0.5-1 s (seeded), timing each move from sending it to the server's `script_finished`. A move
must bring a new picture; an `exception` element, a closed socket or a run over STEP_TIMEOUT_S is an
error. When every student has stopped moving, a full rerun checks each session's own state: its test
image, its slider where it left it, and its share link.

`churn` repeats a class (N students connecting, moving sliders, leaving) with the server left idle
past Streamlit's disconnected-session TTL after each: what the server's memory does over a day of
classes.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from app_bench import fmt, percentile, table
from classroom import log, sample_for, sample_rss, server_cpu, server_quiet, server_rss

PAGE = "traversal"
PAD_TOGGLE = "Decode in this browser"
SAMPLE_FIELD = "Test image #"
OPEN_TIMEOUT_S = 120.0  # the first session of a server loads the model and encodes the test set
STEP_TIMEOUT_S = 15.0


@dataclass
class Widget:
    id: str
    kind: str  # the Element field: slider, checkbox, number_input, ...
    label: str
    value: object
    fragment_id: str  # "" for a widget outside any st.fragment
    step: float = 0.0
    maximum: float | None = None


@dataclass
class Run:
    seconds: float
    pictures: int  # image elements the run sent
    exceptions: list[str]
    bytes: int


@dataclass
class ProtocolStudent:
    index: int
    k: int
    seed: int
    steps: list[float] = field(default_factory=list)  # seconds per slider move
    errors: list[str] = field(default_factory=list)
    open_s: float = float("nan")
    open_bytes: int = 0  # the page's first run, the live pad's decoder inside it
    bytes: int = 0
    slider: str = ""
    own_state: dict = field(default_factory=dict)  # {"sample", "slider", "link"}: each True when kept

    @property
    def kept_own_state(self) -> bool:
        """The final check ran, and the student's image, slider and link were all still theirs."""
        return len(self.own_state) == 3 and all(self.own_state.values())


class StreamlitSession:
    """One browser's worth of Streamlit protocol over one WebSocket."""

    def __init__(self, base_url: str, page: str, query: str):
        self.url = base_url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.page, self.query = page, query
        self.page_script_hash = ""
        self.widgets: dict[str, Widget] = {}  # by label, as the last run drew them
        self.states: dict[str, tuple[str, object]] = {}  # widget id -> (kind, value) this session set
        self.ws = None

    async def open(self, timeout: float = OPEN_TIMEOUT_S) -> Run:
        import websockets

        self.ws = await websockets.connect(self.url, subprotocols=["streamlit"], max_size=None, open_timeout=30)
        return await self.rerun(timeout=timeout)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    def set(self, widget: Widget, value) -> None:
        self.states[widget.id] = (widget.kind, value)

    async def rerun(self, fragment_id: str = "", timeout: float = STEP_TIMEOUT_S) -> Run:
        """Send a rerun with every state this session has set (as a browser sends all of its widgets'),
        and read the run's messages up to its script_finished."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        client = msg.rerun_script
        client.query_string = self.query
        if self.page_script_hash:
            client.page_script_hash = self.page_script_hash
        else:
            client.page_name = self.page
        client.fragment_id = fragment_id
        for widget_id, (kind, value) in self.states.items():
            state = client.widget_states.widgets.add()
            state.id = widget_id
            if kind == "checkbox":
                state.bool_value = bool(value)
            elif kind == "slider":
                state.double_array_value.data.extend([float(value)])
            elif kind == "number_input":
                state.double_value = float(value)
            else:
                raise ValueError(f"no state for a {kind}")
        start = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        return await asyncio.wait_for(self._read_run(start, bool(fragment_id)), timeout)

    async def _read_run(self, start: float, fragment_run: bool) -> Run:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        pictures, exceptions, received = 0, [], 0
        if not fragment_run:
            self.widgets = {}
        while True:
            raw = await self.ws.recv()
            received += len(raw)
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "navigation":  # the page this run drew: later reruns name it by its hash
                self.page_script_hash = msg.navigation.page_script_hash
            elif kind == "page_info_changed":
                self.query = msg.page_info_changed.query_string
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                which = element.WhichOneof("type")
                if which == "imgs":
                    pictures += 1
                elif which == "exception":
                    exceptions.append(f"{element.exception.type}: {element.exception.message}")
                elif which in ("slider", "checkbox", "number_input"):
                    proto = getattr(element, which)
                    value = list(proto.value) if which == "slider" else getattr(proto, "value", proto.default)
                    self.widgets[proto.label] = Widget(proto.id, which, proto.label, value, msg.delta.fragment_id,
                                                       getattr(proto, "step", 0.0), getattr(proto, "max", None))
            elif kind == "script_finished":
                return Run(time.perf_counter() - start, pictures, exceptions, received)


async def student(base_url: str, s: ProtocolStudent, seconds: float, ready: asyncio.Event | None = None,
                  slid: Arrivals | None = None) -> None:
    """One student's session (module doc); everything it saw goes into s. With `slid`, the student's
    final whole-page check waits until every student has stopped moving, as the Chromium mode's
    barrier does: 100 whole-page runs at once are not slider moves, and they delayed the last moves
    of the students still sliding (median 925 ms in the phase's last second, 30 ms before it)."""
    session = StreamlitSession(base_url, PAGE, f"sample={s.k}")
    rng = random.Random(s.seed)
    try:
        run = await session.open()
        s.open_s, s.open_bytes, s.bytes = run.seconds, run.bytes, run.bytes
        s.errors += run.exceptions
        pad = session.widgets.get(PAD_TOGGLE)
        if pad is not None and pad.value:
            session.set(pad, False)
            run = await session.rerun(fragment_id=pad.fragment_id, timeout=OPEN_TIMEOUT_S)
            s.bytes += run.bytes
            s.errors += run.exceptions
        latent = sorted((w for w in session.widgets.values() if w.kind == "slider" and w.label.startswith("z")),
                        key=lambda w: int(w.label[1:].split()[0]))
        if not latent:
            s.errors.append("no latent sliders on the page")
            return
        slider = latent[s.index % len(latent)]
        s.slider = slider.label.split()[0]
        if ready is not None:
            await ready.wait()
        value, direction = float(slider.value[0]), 1
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await asyncio.sleep(rng.uniform(0.5, 1.0))
            value = round(value + direction * (slider.step or 0.05), 4)
            direction = -direction
            session.set(slider, value)
            try:
                run = await session.rerun(fragment_id=slider.fragment_id)
            except asyncio.TimeoutError:
                s.errors.append(f"a slider move took over {STEP_TIMEOUT_S:.0f} s")
                continue
            s.steps.append(run.seconds)
            s.bytes += run.bytes
            s.errors += run.exceptions
            if not run.pictures:
                s.errors.append("a slider move brought no picture")
        if slid is not None:
            await slid.arrive_and_wait()
        run = await session.rerun(timeout=OPEN_TIMEOUT_S)  # the whole page again: is it still this student's?
        s.bytes += run.bytes
        s.errors += run.exceptions
        sample = session.widgets.get(SAMPLE_FIELD)
        moved = next((w for w in session.widgets.values() if w.id == slider.id), None)
        link = parse_qs(session.query).get("z", [""])[0].split(",")
        dim = int(s.slider[1:])
        s.own_state = {"sample": sample is not None and int(sample.value) == s.k,
                       "slider": moved is not None and abs(float(moved.value[0]) - value) < 1e-6,
                       "link": len(link) > dim and abs(float(link[dim]) - value) <= 0.005 + 1e-9}
    except Exception as exc:  # noqa: BLE001 - a closed socket, a timeout: the student's error, reported
        s.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if slid is not None:
            slid.leave()  # a student that failed early holds nobody up
        await session.close()


class Arrivals:
    """A barrier for `n` students that a student who failed can leave (asyncio.Barrier cannot)."""

    def __init__(self, n: int):
        self.waiting_for, self.arrived, self.all_in = n, set(), asyncio.Event()

    def _mark(self) -> None:
        me = asyncio.current_task()
        if me not in self.arrived:
            self.arrived.add(me)
            if len(self.arrived) >= self.waiting_for:
                self.all_in.set()

    async def arrive_and_wait(self) -> None:
        self._mark()
        await self.all_in.wait()

    def leave(self) -> None:
        self._mark()


async def count_test_images(base_url: str) -> int:
    """One session opens the page first (the model loads, the test set is encoded) and reads how many
    test images there are, so every student gets a distinct one."""
    session = StreamlitSession(base_url, PAGE, "")
    try:
        await session.open(timeout=600)  # the server's cold start (slow under --tracemalloc), not a student's
        return int(session.widgets[SAMPLE_FIELD].maximum) + 1
    finally:
        await session.close()


async def protocol_round(base_url: str, pids: list[int], n: int, seconds: float, n_test: int) -> dict:
    """N students at once (module doc): open, then `seconds` of slider moves with all N connected."""
    students = [ProtocolStudent(i, sample_for(i, n_test), seed=i) for i in range(n)]
    ready, rss, stop = asyncio.Event(), [], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pids, rss, stop))
    rss_start = server_rss(pids)
    slid = Arrivals(n)
    tasks = [asyncio.create_task(student(base_url, s, seconds, ready, slid)) for s in students]
    opened = [asyncio.create_task(_until_sliding(s)) for s in students]
    await asyncio.wait(opened, timeout=OPEN_TIMEOUT_S)
    cpu0, t0 = server_cpu(pids), time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    cpu = server_cpu(pids) - cpu0
    stop.set()
    await sampler
    return {"n": n, "students": students, "wall": wall, "cpu_pct": 100 * cpu / wall, "rss_start": rss_start,
            "rss_peak": max(rss, default=rss_start), "rss_end": server_rss(pids)}


async def _until_sliding(s: ProtocolStudent) -> None:
    while not s.slider and not s.errors:
        await asyncio.sleep(0.05)


async def protocol_rounds(base_url: str, pids: list[int], sizes: list[int], seconds: float) -> tuple[list[dict], dict]:
    n_test = await count_test_images(base_url)
    await server_quiet(pids, 60)
    rounds = []
    for n in sizes:
        log(f"protocol clients, N={n}: {seconds:.0f} s of slider moves…")
        r = await protocol_round(base_url, pids, n, seconds, n_test)
        log(f"N={n}: {sum(len(s.steps) for s in r['students'])} moves, "
            f"{sum(len(s.errors) for s in r['students'])} errors")
        rounds.append(r)
        await server_quiet(pids, 30)
    return rounds, await asyncio.to_thread(pad_download, base_url)


PAD_FILES = "/component/pages.ui.live_pad.live_pad/"


def pad_download(base_url: str) -> dict[str, int]:
    """Bytes a browser downloads for the live pad's files, as they travel (gzip accepted, as browsers
    do): index.html, what it loads, and the runtime its script fetches. The decoder comes inside the
    page's first message (ProtocolStudent.open_bytes)."""
    import gzip
    import re
    import urllib.request

    sizes = {}

    def get(name: str) -> str:
        """The file's text, its size on the wire noted in `sizes`."""
        request = urllib.request.Request(base_url + PAD_FILES + name, headers={"Accept-Encoding": "gzip, deflate"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            sizes[name] = len(body)
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
        return body.decode(errors="replace")

    for name in re.findall(r'(?:src|href)="\./([^"]+)"', get("index.html")):
        if name.endswith(".js"):
            for runtime in sorted(set(re.findall(r'"\./([\w.-]+\.wasm(?:\.gz|\.br)?)"', get(name)))):
                get(runtime)
        else:
            get(name)
    return sizes


async def churn(base_url: str, pids: list[int], n: int, cycles: int, seconds: float, idle: float,
                snapshots: Path | None = None) -> list[dict]:
    """Memory across classes: `cycles` times, N students open the page, move sliders for `seconds` and
    leave, then the server sits idle for `idle` s (longer than server.disconnectedSessionTTL, 120 s,
    so their closed sessions are gone). The server's RSS after each idle period should level off.
    snapshots: a folder where the (traced) server writes a tracemalloc snapshot after each idle period."""
    import os
    import signal

    n_test = await count_test_images(base_url)
    levels = []
    for cycle in range(1, cycles + 1):
        r = await protocol_round(base_url, pids, n, seconds, n_test)
        await asyncio.sleep(idle)
        if snapshots:
            os.kill(pids[0], signal.SIGUSR1)
            while not (snapshots / f"snapshot-{cycle:02d}.trace").exists():
                await asyncio.sleep(0.2)
        levels.append({"cycle": cycle, "rss": server_rss(pids), "peak": r["rss_peak"],
                       "moves": sum(len(s.steps) for s in r["students"]),
                       "errors": sum(len(s.errors) for s in r["students"])})
        log(f"churn cycle {cycle}/{cycles}: RSS {levels[-1]['rss']:.0f} MiB after {idle:.0f} s idle")
    return levels


TRACE_FRAMES = 6  # frames kept per traced allocation: enough to reach the app's code from a library's


def growth_report(folder: Path, top: int = 15) -> str:
    """What the server's Python heap gained from the first snapshot to the last, by the line that
    allocated it, with the app's or Streamlit's nearest frame for context."""
    import tracemalloc

    paths = sorted(folder.glob("snapshot-*.trace"))
    first, last = (tracemalloc.Snapshot.load(str(p)) for p in (paths[0], paths[-1]))
    stats = last.compare_to(first, "traceback")
    total = sum(s.size_diff for s in stats)
    rows = []
    for stat in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:top]:
        frames = list(stat.traceback)  # most recent call first
        own = next((f for f in frames if "/site-packages/" not in f.filename and "/lib/python3" not in f.filename),
                   None)
        where = f"{Path(frames[0].filename).name}:{frames[0].lineno}"
        context = f"{own.filename.split('/main/')[-1]}:{own.lineno}" if own and own is not frames[0] else ""
        rows.append([f"{stat.size_diff / 1024:+.0f}", f"{stat.count_diff:+d}", where, context])
    return (f"### Python heap from {paths[0].name} to {paths[-1].name}: {total / 2**20:+.1f} MiB in all "
            f"(tracemalloc, {TRACE_FRAMES} frames)\n\n"
            + table(["KiB", "blocks", "allocated at", "from the app's code"], rows))


def churn_report(levels: list[dict], n: int, idle: float) -> str:
    first = levels[0]["rss"]
    rows = [[c["cycle"], c["moves"], c["errors"], f"{c['peak']:.0f}", f"{c['rss']:.0f}",
             f"{100 * (c['rss'] - first) / first:+.1f}%"] for c in levels]
    return (f"### Memory across classes: {n} students per cycle, then {idle:.0f} s idle\n\n"
            + table(["cycle", "moves", "errors", "RSS MiB peak", f"RSS MiB after {idle:.0f} s idle",
                     "against cycle 1"], rows))


def protocol_report(rounds: list[dict], pad: dict[str, int] | None = None) -> str:
    rows = []
    for r in rounds:
        steps = [x * 1e3 for s in r["students"] for x in s.steps]
        kept = sum(s.kept_own_state for s in r["students"])
        rows.append([r["n"], fmt(len(steps) / r["wall"]), fmt(statistics.median(steps) if steps else float("nan"), 0),
                     fmt(percentile(steps, 95), 0), fmt(max(steps, default=float("nan")), 0),
                     sum(len(s.errors) for s in r["students"]), f"{r['cpu_pct']:.0f}%",
                     f"{r['rss_start']:.0f} / {r['rss_peak']:.0f} / {r['rss_end']:.0f}", f"{kept}/{r['n']}",
                     fmt(statistics.mean(s.bytes for s in r["students"]) / 1e3, 0)])
    errors = sorted({e for r in rounds for s in r["students"] for e in s.errors})
    return ("### Protocol clients: slider moves on /traversal, decoded by the server (ms from the move sent to "
            "the run finished)\n\n"
            + table(["sessions", "moves/s", "median", "p95", "max", "errors", "server CPU (mean)",
                     "server RSS MiB start / peak / end", "own state kept", "kB received per student"], rows)
            + ("\n\nErrors:\n" + "\n".join(f"- {e}" for e in errors[:20]) if errors else "")
            + ("" if not pad else _pad_report(pad, [s.open_bytes for r in rounds for s in r["students"]])))


def _pad_report(pad: dict[str, int], first_runs: list[int]) -> str:
    first_run = statistics.median(first_runs) if first_runs else 0
    files = ", ".join(f"{name} {size / 1e3:,.0f} kB" for name, size in pad.items())
    return (f"\n\nThe live pad, first load per student: its files {sum(pad.values()) / 1e6:.2f} MB ({files}) and "
            f"the page's first message {first_run / 1e6:.2f} MB (the decoder inside it, median): "
            f"{(sum(pad.values()) + first_run) / 1e6:.2f} MB. On a reload the runtime comes from the "
            "browser's IndexedDB (tests/test_browser_live_pad.py).")


@contextlib.contextmanager
def behind_nginx(workers: int):
    """`make serve WORKERS=workers` on loopback ports: yields (the proxy's URL, the workers' pids)."""
    import sys
    import tempfile
    from pathlib import Path

    from browser import free_port

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
    import serve

    port, first = free_port(), free_block(workers)
    processes = serve.start(workers, "127.0.0.1", port, Path(tempfile.mkdtemp(prefix="classroom-serve-")), first)
    try:
        yield f"http://127.0.0.1:{port}", [p.pid for p in processes[:-1]]
    finally:
        serve.stop(processes)


def free_block(n: int) -> int:
    """The first of n consecutive free loopback ports (the workers')."""
    import socket

    for base in random.Random().sample(range(20_000, 40_000, 16), 200):
        sockets = []
        try:
            for port in range(base, base + n):
                sockets.append(socket.socket())
                sockets[-1].bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {n} free consecutive ports")


def run_protocol(args, sizes: list[int], env: dict, print_header) -> int:
    """bench/classroom.py --clients protocol: the rounds (or --churn's classes) against one server or
    --workers behind nginx; prints the tables; 1 when anyone saw an error or lost their own state."""
    import os

    from browser import running_streamlit

    started = time.perf_counter()
    os.environ.update(env)  # the workers behind nginx inherit it, as `streamlit run` gets it below
    with contextlib.ExitStack() as stack:
        if args.workers > 1:
            url, pids = stack.enter_context(behind_nginx(args.workers))
            where = f"{args.workers} workers behind nginx (deploy/serve.py, as `make serve WORKERS={args.workers}`)"
        else:
            if args.tracemalloc:  # bench/tracemalloc_site/sitecustomize.py: a snapshot at each SIGUSR1
                Path(args.tracemalloc).mkdir(parents=True, exist_ok=True)
                env = {**env, "PYTHONTRACEMALLOC": str(TRACE_FRAMES), "LATENT_EXPLORER_SNAPSHOTS": args.tracemalloc,
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent / "tracemalloc_site"),
                                                                   os.environ.get("PYTHONPATH")]))}
            server = stack.enter_context(running_streamlit(env=env, log_prefix="classroom-streamlit", timeout=120))
            url, pids = server.url, [server.process.pid]
            where = "one `streamlit run app.py`"
        rss_start = server_rss(pids)
        log(f"server {url}: {where}, RSS {rss_start:.0f} MiB")
        if args.churn:
            snapshots = Path(args.tracemalloc) if args.tracemalloc and args.workers == 1 else None
            levels = asyncio.run(churn(url, pids, sizes[0], args.churn, args.seconds, args.idle, snapshots))
        else:
            rounds, pad = asyncio.run(protocol_rounds(url, pids, sizes, args.seconds))
        rss_end = server_rss(pids)
    print_header()
    print(f"Server: {where} on 127.0.0.1 (LATENT_EXPLORER_CLASSROOM=1), RSS {rss_start:.0f} MiB when healthy, "
          f"{rss_end:.0f} MiB at the end.\n")
    if args.churn:
        print(churn_report(levels, sizes[0], args.idle))
        if snapshots:
            print("\n" + growth_report(snapshots))
        bad = any(c["errors"] for c in levels)
    else:
        print(protocol_report(rounds, pad))
        bad = any(s.errors or not s.kept_own_state for r in rounds for s in r["students"])
    print(f"\nTotal wall time {time.perf_counter() - started:.0f} s.")
    return 1 if bad else 0
