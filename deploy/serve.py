#!/usr/bin/env python
"""A classroom on one machine: N app processes behind nginx (`make serve WORKERS=N`).

One Streamlit process runs Python on one core at a time (the GIL): a hall of students queues behind
it while the machine's other cores idle (bench/classroom.py --clients protocol). This starts N
`streamlit run app.py` workers on loopback ports and Debian's nginx in front of them on HOST:PORT.

- Sticky sessions: a Streamlit session lives in the process that holds its WebSocket, and the
  files a session serves (downloads) live there too. A browser without the `le_worker` cookie goes
  to the worker with the fewest open connections (`least_conn`: the WebSockets of the students it
  holds), and the response sets the cookie to that worker's name, so everything after goes there.
  Hashing a random id instead split a class by chance: 58 of 100 students on one worker in one run
  of bench/classroom.py --clients protocol. A cookie that names no worker counts as none. When a
  worker stops, its students' requests fail over to the least busy live worker, which their
  cookie then names; their browsers reconnect, and the page rebuilds their view from its URL.
- WebSockets: HTTP/1.1 upgrade passed through, no buffering, hour-long timeouts.
- One cookie secret for every worker (a random one per start), so any worker accepts the XSRF
  cookie another one set.
- Shared between workers: the checkpoints folder and the caches on disk. Per process: models, data
  and maps in memory.

Ctrl-C (or SIGTERM) stops nginx and every worker. Files of the run (nginx.conf, logs) go to
.cache/serve/. With --workers 1 the app itself listens on HOST:PORT, without nginx.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
FIRST_WORKER_PORT = 8600

CONFIG = """\
# Written by deploy/serve.py for this run: {workers} Streamlit workers behind one nginx.
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi;
  uwsgi_temp_path {run}/uwsgi;
  scgi_temp_path {run}/scgi;
  client_max_body_size 64m;  # .streamlit/config.toml: maxUploadSize
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  # The worker a browser's cookie names; without one (or with one naming no worker): the least busy.
  map $cookie_le_worker $le_worker {{
    default latent_explorer;
{cookie_to_worker}
  }}
  # The worker that answered (the last one nginx tried), named for the cookie.
  map $upstream_addr $le_answered {{
    default "";
{answered_to_cookie}
  }}
  upstream latent_explorer {{
    least_conn;
{servers}
  }}
  server {{
    listen {host}:{port};
    location / {{
      proxy_pass http://$le_worker;
      error_page 502 504 = @least_busy;  # the cookie's worker is gone: on to a live one
{proxy}
    }}
    location @least_busy {{
      proxy_pass http://latent_explorer;
{proxy}
    }}
  }}
}}
"""
PROXY = """\
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_buffering off;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      proxy_next_upstream error timeout;
      add_header Set-Cookie "le_worker=$le_answered; Path=/; HttpOnly; SameSite=Lax" always;
      add_header X-Latent-Explorer-Worker $upstream_addr always;  # which worker answered: for the tests"""


def nginx_config(host: str, port: int, worker_ports: list[int], run: Path) -> str:
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in worker_ports)
    cookie_to_worker = "\n".join(f"    w{i} 127.0.0.1:{p};" for i, p in enumerate(worker_ports))
    answered_to_cookie = "\n".join(f'    "~127\\.0\\.0\\.1:{p}$" w{i};' for i, p in enumerate(worker_ports))
    return CONFIG.format(workers=len(worker_ports), run=run, host=host, port=port, servers=servers, proxy=PROXY,
                         cookie_to_worker=cookie_to_worker, answered_to_cookie=answered_to_cookie)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(workers: int, host: str, port: int, run: Path, first_worker_port: int = FIRST_WORKER_PORT,
          timeout: float = 120.0) -> list[subprocess.Popen]:
    """Start the workers and nginx; return their processes (nginx last) once the proxy answers."""
    if not os.access(NGINX, os.X_OK):
        raise SystemExit(f"nginx is missing ({NGINX}): `make serve` installs it (apt-get install nginx-light)")
    run.mkdir(parents=True, exist_ok=True)
    worker_ports = [first_worker_port + i for i in range(workers)]
    env = {**os.environ, "LATENT_EXPLORER_CLASSROOM": os.environ.get("LATENT_EXPLORER_CLASSROOM", "1")}
    secret = secrets.token_hex(32)
    processes = []
    try:  # whatever stops the start (a worker that dies, a timeout, Ctrl-C, SIGTERM) stops what it started
        for i, worker_port in enumerate(worker_ports):
            log = open(run / f"worker-{i}.log", "w")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1",
                 "--server.port", str(worker_port)], cwd=ROOT, env={**env, "STREAMLIT_SERVER_COOKIE_SECRET": secret},
                stdout=log, stderr=subprocess.STDOUT))
        for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):  # nginx's workers write these: as root,
            (run / temp).mkdir(exist_ok=True)                       # they run as nobody
            if os.geteuid() == 0:
                import pwd

                nobody = pwd.getpwnam("nobody")
                os.chown(run / temp, nobody.pw_uid, nobody.pw_gid)
        config = run / "nginx.conf"
        config.write_text(nginx_config(host, port, worker_ports, run))
        deadline = time.monotonic() + timeout
        for worker_port, process in zip(worker_ports, processes):
            while not healthy(f"http://127.0.0.1:{worker_port}"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"worker on port {worker_port} did not start (log: {run})")
                time.sleep(0.2)
        proxy = subprocess.Popen([NGINX, "-c", str(config), "-p", str(run), "-e", str(run / "nginx-error.log")],
                                 cwd=run, stdout=open(run / "nginx.log", "w"), stderr=subprocess.STDOUT)
        processes.append(proxy)
        local = "127.0.0.1" if host in ("0.0.0.0", "") else host
        while not healthy(f"http://{local}:{port}"):
            if proxy.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nginx did not start: {(run / 'nginx-error.log').read_text()[-2000:]}")
            time.sleep(0.1)
    except BaseException:
        stop(processes)
        raise
    return processes


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):  # the proxy first: no new requests reach a stopping worker
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=default_workers(), help="app processes (default: the cores)")
    p.add_argument("--host", default="0.0.0.0", help="where nginx listens (default 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--first-worker-port", type=int, default=FIRST_WORKER_PORT,
                   help=f"workers listen on 127.0.0.1 from this port up (default {FIRST_WORKER_PORT})")
    p.add_argument("--run-dir", default=str(ROOT / ".cache" / "serve"), help="nginx.conf and the logs")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers: at least 1")
    if args.workers == 1:  # nothing to balance: the app itself on HOST:PORT, no proxy
        os.environ.setdefault("LATENT_EXPLORER_CLASSROOM", "1")
        os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                                  "--server.address", args.host, "--server.port", str(args.port)])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as Ctrl-C: stop the workers and nginx, even mid-start
    processes = start(args.workers, args.host, args.port, Path(args.run_dir).resolve(), args.first_worker_port)
    print(f"Latent Explorer: {args.workers} workers behind nginx on http://{args.host}:{args.port} "
          f"(logs in {args.run_dir}); Ctrl-C stops them", flush=True)
    try:
        while processes[-1].poll() is None:  # nginx, started last
            time.sleep(1)
        print("nginx stopped; stopping the workers", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
