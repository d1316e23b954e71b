"""`make serve WORKERS=N`: app processes behind a real nginx (deploy/serve.py)."""
from __future__ import annotations

import asyncio
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "deploy"))

import serve  # noqa: E402
from browser import free_port  # noqa: E402
from protocol_client import ProtocolStudent, free_block, student  # noqa: E402

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


def test_students_through_the_proxy_keep_their_own_state_and_survive_a_dead_worker(two_workers):
    """Students speak Streamlit's protocol through nginx; when one worker dies, new sessions land on the
    other, and nobody sees an error."""
    url, processes = two_workers
    before = _students(url, 4)
    assert all(s.steps and not s.errors and s.kept_own_state for s in before), before
    processes[0].kill()
    processes[0].wait(10)
    after = _students(url, 4)
    assert all(s.steps and not s.errors and s.kept_own_state for s in after), after
    alive = processes[1].args[processes[1].args.index("--server.port") + 1]
    assert {_worker(url)[0] for _ in range(10)} == {f"127.0.0.1:{alive}"}
