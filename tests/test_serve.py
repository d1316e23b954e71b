"""`make serve WORKERS=N`: app processes behind a real nginx (deploy/serve.py)."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "deploy"))

import serve  # noqa: E402
from browser import free_port  # noqa: E402
from protocol_client import ProtocolStudent, free_block, student  # noqa: E402
from streamlit_server import open_page, wait_until_idle  # noqa: E402
from test_browser_links import pictures, query  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    if not Path(serve.NGINX).exists():
        pytest.fail(f"{serve.NGINX} is missing: `make test` installs it (apt-get install nginx-light)")
    processes = serve.start(2, "127.0.0.1", port := free_port(), tmp_path_factory.mktemp("serve"),
                            first_worker_port=free_block(2))
    yield f"http://127.0.0.1:{port}", processes
    serve.stop(processes)


def _worker(url: str, cookie: str | None = None) -> tuple[str, str]:
    """(the worker that answered, the sticky cookie nginx set). nginx lists every worker it tried: after
    a failed one, the one that answered comes last."""
    request = urllib.request.Request(url + "/_stcore/health", headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        cookies = response.headers.get_all("Set-Cookie")
        sticky = next(c.split(";")[0] for c in cookies if c.startswith("le_worker="))
        return response.headers["X-Latent-Explorer-Worker"].split(", ")[-1], sticky


def _students(url: str, n: int) -> list[ProtocolStudent]:
    """n protocol students at once, on an event loop of their own thread: Playwright's sync API (the
    browser tests' session fixture) keeps one running in this one."""
    students = [ProtocolStudent(i, 5 + 11 * i, seed=i) for i in range(n)]

    async def run():
        await asyncio.gather(*(student(url, s, 3.0) for s in students))

    worker = threading.Thread(target=asyncio.run, args=(run(),))
    worker.start()
    worker.join(120)
    return students


def test_nginx_spreads_new_browsers_over_the_workers_and_keeps_each_on_its_own(two_workers):
    url, _ = two_workers
    first_answers = {_worker(url)[0] for _ in range(20)}
    assert len(first_answers) == 2, "new browsers land on both workers"
    worker, cookie = _worker(url)
    assert {_worker(url, cookie)[0] for _ in range(10)} == {worker}, "a browser's cookie keeps it on its worker"


def test_a_class_arriving_together_is_split_evenly_over_the_workers(two_workers):
    """Students connect one after another, each holding its WebSocket open (no cookie yet, as a student's
    first connection): nginx sends each to the worker holding fewer, so 12 students are 6 and 6. A
    hash of a random id splits them by chance (exactly even one time in four)."""
    import websockets

    url, _ = two_workers
    stream = url.replace("http://", "ws://") + "/_stcore/stream"

    async def arrive(n: int) -> list[str]:
        sockets, workers = [], []
        try:
            for _ in range(n):
                ws = await websockets.connect(stream, subprotocols=["streamlit"], open_timeout=30)
                sockets.append(ws)
                workers.append(ws.response.headers["X-Latent-Explorer-Worker"].split(" ")[-1])
        finally:
            for ws in sockets:
                await ws.close()
        return workers

    result = []
    worker = threading.Thread(target=lambda: result.extend(asyncio.run(arrive(12))))
    worker.start()
    worker.join(120)
    assert sorted(result.count(w) for w in set(result)) == [6, 6], result


# -- faults, with real browsers: the proxy restarted, a worker killed while students are connected ----------
LINK = "/interpolation?model=file:mnist-vae&from=3&to=5"


def _worker_of(url: str, page) -> str:
    """The worker nginx sends this browser to (its sticky cookie)."""
    cookie = next(c for c in page.context.cookies() if c["name"] == "le_worker")
    return _worker(url, f"le_worker={cookie['value']}")[0]


def _address(process: subprocess.Popen) -> str:
    return f"127.0.0.1:{process.args[process.args.index('--server.port') + 1]}"


def _disconnected(page):
    """A context manager that returns once Streamlit's frontend has seen its WebSocket close."""
    return page.expect_event("console", predicate=lambda m: "WebSocket onclose" in m.text, timeout=30_000)


def _to_image(page, value: int, timeout: int = 60_000) -> None:
    """Type an end of the interpolation, as a student does, and wait for the link to name it."""
    field = page.locator('[data-testid="stNumberInput"]', has_text="To test image #").locator("input").first
    field.fill(str(value))
    field.press("Enter")
    page.wait_for_function("(v) => new URLSearchParams(location.search).get('to') === v", arg=str(value),
                           timeout=timeout)
    wait_until_idle(page)


@pytest.mark.browser
def test_a_restarted_proxy_gives_the_students_their_sessions_back(two_workers, browser):
    url, processes = two_workers
    page = open_page(browser, url + LINK, "Interpolation", height=1400)
    worker = _worker_of(url, page)
    _to_image(page, 6)
    proxy = processes[-1]
    with _disconnected(page):
        proxy.terminate()
        proxy.wait(15)
    processes[-1] = subprocess.Popen(proxy.args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not serve.healthy(url):
        assert time.monotonic() < deadline, "nginx did not come back"
        time.sleep(0.1)
    before = pictures(page)
    _to_image(page, 7)
    assert query(page)["from"] == ["3"], "the rest of the view is as it was"
    assert pictures(page) != before and page.locator('[data-testid="stException"]').count() == 0
    assert _worker_of(url, page) == worker, "back on the same worker, where the session lives"


@pytest.mark.browser
def test_students_of_a_dead_worker_go_on_elsewhere_and_nobody_else_notices(two_workers, browser):
    """Students with browsers open when a worker dies: its students' frontends reconnect through nginx to
    the live worker, which rebuilds their view from the URL (their first move after the switch can be
    lost: the live worker starts their session from the URL; they press again); the other worker's
    students notice nothing. Then students speaking Streamlit's protocol connect and keep
    their own state, on the live worker only."""
    url, processes = two_workers
    on = {}
    for _ in range(16):  # new browsers land on a worker by the hash of a random id: open until both have one
        page = open_page(browser, url + LINK, "Interpolation", height=1400)
        on.setdefault(_worker_of(url, page), page)
        if len(on) == 2:
            break
    assert len(on) == 2, "new browsers never reached both workers"
    victim = processes[0]
    moved, stayed = on[_address(victim)], on[_address(processes[1])]
    _to_image(moved, 6)
    view, shown = query(moved), pictures(moved)
    before = _students(url, 4)
    assert all(s.steps and not s.errors and s.kept_own_state for s in before), before
    with _disconnected(moved):
        victim.kill()
        victim.wait(10)
    _to_image(stayed, 8)  # nobody else notices: the other worker's student goes on at once
    assert _worker_of(url, stayed) == _address(processes[1])
    for attempt in range(3):  # the first move may be lost: the live worker had no session to apply it to
        try:
            _to_image(moved, 7, timeout=15_000)
            break
        except PlaywrightTimeout:
            assert attempt < 2, "the moved student's page never answered on the live worker"
    assert query(moved) == {**view, "to": ["7"]} and pictures(moved) != shown
    fresh = open_page(browser, moved.url, "Interpolation", height=1400)
    fresh.wait_for_function("n => document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')"
                            ".length >= n", arg=len(pictures(moved)), timeout=60_000)  # drawn, whatever the timing
    assert pictures(fresh) == pictures(moved), "the view its link names, drawn by the live worker"
    for page in (moved, stayed):
        assert page.locator('[data-testid="stException"]').count() == 0
    assert _worker_of(url, moved) == _address(processes[1])
    after = _students(url, 4)
    assert all(s.steps and not s.errors and s.kept_own_state for s in after), after
    assert {_worker(url)[0] for _ in range(10)} == {_address(processes[1])}
