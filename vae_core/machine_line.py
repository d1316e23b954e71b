"""The machine's one line of training runs, shared by every app process through files beside the models.

`make serve` runs several app processes, each with its own JobQueue (jobs.py), on the same cores and
the same models folder. So the line and its training slots live in files, in `<models>/.training/`:

- `process-<token>.lock`: each queue holds an exclusive flock on its own file while it lives. The
  kernel drops a flock when its process dies, however it dies (SIGKILL included), so anyone who can
  take that lock knows the queue is gone. The file is locked under a temporary name and then renamed
  into place, so no reader ever sees it unlocked while its queue lives.
- `slot-<i>.lock`, i < slots: a training run holds an exclusive flock on one; at most `slots` runs
  train on the machine at once, and a killed worker's slot frees itself with its process.
- `<ns>-<process>-<job>.ticket`: one per waiting or training run, named by the time it was submitted
  so that the names sort first come, first served. Its JSON holds whose it is (a digest of the owner
  token, never the token) and whether it trains.
- `<job>.partial`: the run's per-epoch checkpoint until it is published among the models.

Whoever reads the line deletes what dead queues left: their tickets, lock files and partial
checkpoints. flock conflicts between two open files even inside one process, so two queues in one
process share the line as two processes do (the tests use that). POSIX only (fcntl).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import write_atomic

LINE_FOLDER = ".training"


@dataclass(frozen=True)
class Ticket:
    """One waiting or training run, as every process sees it."""
    created_ns: int
    process: str
    job_id: str
    owner: str  # a digest of the owner token
    running: bool


def owner_digest(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class MachineLine:
    """This queue's place in the machine's line (see the module docstring). Thread-safe."""

    def __init__(self, models_folder: Path, slots: int):
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.directory = Path(models_folder) / LINE_FOLDER
        self.slots = slots
        self.process = secrets.token_hex(6)
        self._lock = threading.Lock()
        self._alive_fd: int | None = None  # opened on the first join: reading the line writes nothing
        self._slot_fds: dict[str, int] = {}  # job id -> the slot lock it holds
        self._tickets: dict[str, Path] = {}  # job id -> its ticket file

    # -- this process's runs --------------------------------------------------------------------
    def partial_path(self, job_id: str, member: int = 0) -> Path:
        """Where the run saves its checkpoint until it is published; a β sweep's run, one per member."""
        return self.directory / (f"{job_id}.partial" if member == 0 else f"{job_id}.{member}.partial")

    def join(self, job_id: str, owner: str, created_ns: int) -> None:
        """Put a run at the end of the line (in order of created_ns). Raises OSError if the folder is
        not writable."""
        with self._lock:
            self._announce()
            path = self.directory / f"{created_ns:020d}-{self.process}-{job_id}.ticket"
            write_atomic(path, json.dumps({"owner": owner_digest(owner), "running": False}).encode())
            self._tickets[job_id] = path

    def start(self, job_id: str) -> bool:
        """Take a free training slot for this run and mark it training; False when every slot is held."""
        with self._lock:
            for i in range(self.slots):
                fd = os.open(self.directory / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o666)
                if _try_lock(fd):
                    self._slot_fds[job_id] = fd
                    ticket = json.loads(self._tickets[job_id].read_text())
                    write_atomic(self._tickets[job_id], json.dumps({**ticket, "running": True}).encode())
                    return True
                os.close(fd)
            return False

    def leave(self, job_id: str) -> None:
        """The run has finished or left the line: its ticket goes and its slot frees."""
        with self._lock:
            path = self._tickets.pop(job_id, None)
            if path is not None:
                path.unlink(missing_ok=True)
            fd = self._slot_fds.pop(job_id, None)
            if fd is not None:
                os.close(fd)  # closing the file drops its flock

    def close(self) -> None:
        """Leave the line altogether (the queue is shut down)."""
        for job_id in list(self._tickets):
            self.leave(job_id)
        with self._lock:
            if self._alive_fd is not None:
                (self.directory / f"process-{self.process}.lock").unlink(missing_ok=True)
                os.close(self._alive_fd)
                self._alive_fd = None

    # -- the whole machine's line ---------------------------------------------------------------
    def tickets(self) -> list[Ticket]:
        """Every live queue's waiting and training runs, first come first; deletes dead queues' files."""
        try:
            names = sorted(p.name for p in self.directory.glob("*.ticket"))
        except OSError:
            return []
        alive: dict[str, bool] = {}
        line = []
        for name in names:
            try:
                created, process, job_id = name.removesuffix(".ticket").split("-", 2)
                created_ns = int(created)
            except ValueError:
                continue  # not one of ours
            if process not in alive:
                alive[process] = self._is_alive(process)
            if not alive[process]:
                self._remove_dead_run(name, job_id)
                continue
            try:
                fields = json.loads((self.directory / name).read_text())
            except (OSError, ValueError):
                continue  # left between listing and reading
            line.append(Ticket(created_ns, process, job_id, str(fields.get("owner")), bool(fields.get("running"))))
        return line

    def next_to_start(self, line: list[Ticket] | None = None) -> list[str]:
        """The waiting runs that the free slots go to now, in order: first come, first served, but an
        owner trains one run at a time."""
        line = self.tickets() if line is None else line
        busy = {t.owner for t in line if t.running}
        free = self.slots - sum(t.running for t in line)
        chosen = []
        for ticket in line:
            if len(chosen) >= free:
                break
            if not ticket.running and ticket.owner not in busy:
                chosen.append(ticket.job_id)
                busy.add(ticket.owner)
        return chosen

    # -- internals ------------------------------------------------------------------------------
    def _announce(self) -> None:
        """Hold this queue's process lock (created under a temporary name, locked, then renamed)."""
        if self._alive_fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".process-", suffix=".tmp", dir=self.directory)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(tmp, self.directory / f"process-{self.process}.lock")
        self._alive_fd = fd

    def _is_alive(self, process: str) -> bool:
        if process == self.process:
            return self._alive_fd is not None
        path = self.directory / f"process-{process}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            if not _try_lock(fd):
                return True
            path.unlink(missing_ok=True)  # dead: its lock file goes while we hold the lock
            return False
        finally:
            os.close(fd)

    def _remove_dead_run(self, ticket_name: str, job_id: str) -> None:
        (self.directory / ticket_name).unlink(missing_ok=True)
        self.partial_path(job_id).unlink(missing_ok=True)
        for leftover in [*self.directory.glob(f"{job_id}.*.partial"),  # a sweep's other members
                         *self.directory.glob(f".{job_id}.*.tmp")]:  # a save cut short
            leftover.unlink(missing_ok=True)
