"""Training jobs for a server shared by a class: a queue per app process, one line per machine.

No Streamlit here: the Train page (pages/train.py) submits a Recipe (recipe.py), holds the job id in
its session, and polls JobQueue.view() for a JobView snapshot. A worker sizes its own torch threads
(threads.py) and, at the end, publishes its checkpoint under a fresh name (publish.py). A β sweep (one
recipe at several β) is one run: its members train together (sweep_trainer.py), take one place in the
line and one slot, and each publishes its own checkpoint; each member has its own job and view.

Queue. At most `max_concurrent` runs train at once on the machine (default 1, or
$LATENT_EXPLORER_TRAIN_CONCURRENCY), whichever app process took them: every process's runs stand in
one line kept in files beside the models (machine_line.py), first come first served, and a waiting
job's `position` is its place in that line (1 = next to start). A process with runs waiting looks at
the line every LINE_POLL_SECONDS, since another process's run may end at any time. Each job runs in
its own daemon thread, started when it gets a slot. A person sees and controls only the jobs submitted
under their `owner` token (the page keeps a random one in the session); everybody sees how many runs
are training and waiting on the machine. Finished jobs stay visible for `finished_ttl` seconds and at
most `max_finished` of them are kept; the queue refuses new jobs past `max_waiting` waiting in this
process, or a second active job from the same owner.
"""
from __future__ import annotations

import atexit
import copy
import logging
import math
import os
import secrets
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

from .catalog import checkpoint_dir
from .datasets import DatasetError, load_shared
from .generate import preview_grid
from .machine_line import MachineLine
from .publish import PublishError, publish
from .recipe import Recipe
from .threads import compute_threads, use_torch_threads_in_this_thread
from .sweep_trainer import SweepCallback, SweepTrainer
from .trainer import Callback, Trainer, TrainingDiverged

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, STOPPED, DIVERGED, FAILED = "queued", "running", "done", "stopped", "diverged", "failed"
ACTIVE = (QUEUED, RUNNING)
MAX_RUNS_PER_SUBMISSION = 8  # the βs of a sweep: the whole class waits behind it
LINE_POLL_SECONDS = 0.5  # how often a process with runs waiting looks whether the machine has a free slot
FINISHED = (DONE, STOPPED, DIVERGED, FAILED)


class QueueError(Exception):
    """A job the queue will not take (full, already running one, unwritable folder); says why."""


@dataclass(frozen=True)
class JobView:
    """A consistent snapshot of a job, safe to read from any thread."""
    id: str
    options: Recipe
    status: str
    position: int | None  # 0 while running, 1.. while waiting (1 = next), None once finished
    epoch: int  # finished epochs
    total_epochs: int
    progress: float  # 0..1, within-epoch steps included
    history: list  # the Trainer's per-epoch records
    seconds_per_epoch: float | None  # wall clock, the test-set evaluation included
    grid_png: bytes | None  # rows: test images, their reconstructions, prior samples (latest epoch)
    error: str | None
    checkpoint_path: Path | None
    created: float
    started: float | None
    finished: float | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def checkpoint_name(self) -> str | None:
        return self.checkpoint_path.stem if self.checkpoint_path else None


@dataclass(eq=False)
class Job:
    id: str
    owner: str
    options: Recipe
    folder: Path
    status: str = QUEUED
    epoch: int = 0
    step_fraction: float = 0.0
    history: list = field(default_factory=list)
    grid_png: bytes | None = None
    error: str | None = None
    checkpoint_path: Path | None = None
    created_ns: int = field(default_factory=time.time_ns)  # also its place in the machine's line
    started: float | None = None
    finished: float | None = None
    training_since: float | None = None  # when the first epoch began (after loading the data)
    last_epoch_end: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)  # one for a sweep's members
    thread: threading.Thread | None = None
    sweep: list["Job"] = field(default_factory=list)  # a β sweep's members, in β order, on its first member
    leader: "Job | None" = None  # a sweep member's first member (the one in the machine's line)

    @property
    def members(self) -> list["Job"]:
        """The jobs that train together with this one (itself included)."""
        return (self.leader or self).sweep or [self]


def _record_epoch(queue: "JobQueue", job: Job, record: dict, grid: bytes) -> None:
    """An epoch's record and picture grid into the job, for the page's next look."""
    with queue._lock:
        job.history.append(copy.deepcopy(record))
        job.epoch = int(record["epoch"])
        job.step_fraction = 0.0
        job.grid_png = grid
        job.last_epoch_end = time.monotonic()
        queue._changed.notify_all()


class _JobCallback(Callback):
    """Runs in the worker thread: feeds the job's progress, history and picture grid."""

    def __init__(self, queue: "JobQueue", job: Job, n_batches: int):
        self.queue, self.job, self.n_batches = queue, job, max(1, n_batches)

    def on_step(self, trainer, step, loss):
        with self.queue._lock:
            self.job.step_fraction = (step + 1) / self.n_batches

    def on_epoch_end(self, trainer, record):
        _record_epoch(self.queue, self.job, record, preview_grid(trainer.model, trainer.data))


class _SweepJobCallback(SweepCallback):
    """_JobCallback for the members of a sweep, each fed its own record and grid."""

    def __init__(self, queue: "JobQueue", jobs: list[Job], n_batches: int):
        self.queue, self.jobs, self.n_batches = queue, {job.options.beta: job for job in jobs}, max(1, n_batches)

    def on_step(self, sweep, step):
        with self.queue._lock:
            for i in sweep.training:
                self.jobs[sweep.members[i].beta].step_fraction = (step + 1) / self.n_batches

    def on_epoch_end(self, sweep, records):
        models = {member.beta: member.model for member in sweep.members}
        for beta, record in records.items():
            _record_epoch(self.queue, self.jobs[beta], record, preview_grid(models[beta], sweep.data))
        with self.queue._lock:  # a β that diverged says so now; it is published with the others at the end
            for member in sweep.members:
                if member.diverged and self.jobs[member.beta].error is None:
                    self.jobs[member.beta].error = _sentence(member.diverged)


class JobQueue:
    def __init__(self, max_concurrent: int = 1, *, folder: str | os.PathLike | None = None, device: str = "auto",
                 torch_threads: int | None = None, max_waiting: int = 50, max_active_per_owner: int = 1,
                 max_finished: int = 200, finished_ttl: float = 3600.0, trainer_factory=Trainer,
                 sweep_trainer_factory=SweepTrainer):
        """folder: where models are saved (None: checkpoint_dir() when each job is submitted).
        trainer_factory, sweep_trainer_factory: build the Trainer of a run and the SweepTrainer of a β
        sweep (tests pass ones that pause between epochs)."""
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent, self.folder, self.device = max_concurrent, Path(folder) if folder else None, device
        self.torch_threads = torch_threads or compute_threads(max_concurrent)
        self.max_waiting, self.max_active_per_owner = max_waiting, max_active_per_owner
        self.max_finished, self.finished_ttl, self.trainer_factory = max_finished, finished_ttl, trainer_factory
        self.sweep_trainer_factory = sweep_trainer_factory
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}  # insertion order = submission order
        self._waiting: list[str] = []  # this process's waiting runs, in the order they stand in the line
        self._lines: dict[Path, MachineLine] = {}  # per models folder
        self._poller: threading.Thread | None = None
        self._closed = False
        _live_queues.add(self)

    # -- what the page calls ----------------------------------------------------------------------
    def submit(self, options: Recipe, owner: str) -> str:
        """Queue a run; returns its id. Raises QueueError when the queue will not take it."""
        return self.submit_all([options], owner)[0]

    def submit_all(self, runs, owner: str) -> list[str]:
        """Queue one run, or a β sweep: runs of one recipe that differ in β (and name) alone, trained
        together in one run, one place in the line, one slot; all are queued or none. Their ids, in β
        order. Raises QueueError when the queue will not take them."""
        runs = list(runs)
        if not runs or not all(isinstance(options, Recipe) for options in runs):
            raise TypeError("runs must be one or more Recipes")
        if len(runs) > MAX_RUNS_PER_SUBMISSION:
            raise QueueError(f"at most {MAX_RUNS_PER_SUBMISSION} runs at once, got {len(runs)}")
        runs = sorted(runs, key=lambda options: options.beta)
        if len(runs) > 1:
            recipe = replace(runs[0], name="")
            if any(replace(options, beta=recipe.beta, name="") != recipe for options in runs):
                raise QueueError("the runs of a β sweep must be one recipe, at different values of β")
            if len({options.beta for options in runs}) < len(runs) or recipe.objective == "ae":
                raise QueueError("a β sweep trains each β once, and an autoencoder has no β")
        beyond = sorted({problem for options in runs for problem in options.server_limits()})
        if beyond:
            raise QueueError("; ".join(beyond))
        folder = self.folder or checkpoint_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueError(f"cannot create the model folder {folder}: {exc.strerror or exc}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise QueueError(f"the model folder {folder} is not writable by the server")
        with self._lock:
            if self._closed:
                raise QueueError("the training queue is shut down")
            self._prune()
            mine = {j.members[0].id for j in self._jobs.values() if j.owner == owner and j.status in ACTIVE}
            if len(mine) >= self.max_active_per_owner:  # a sweep is one run
                raise QueueError("you already have a run queued or training: wait for it, or stop it first")
            if len(self._waiting) + 1 > self.max_waiting:
                raise QueueError(f"the training queue is full ({len(self._waiting)} runs waiting); try again later")
            start = time.time_ns()
            jobs = [Job(id=secrets.token_urlsafe(12), owner=owner, options=options, folder=folder, created_ns=start)
                    for options in runs]
            leader = jobs[0]
            if len(jobs) > 1:
                leader.sweep = jobs
                for job in jobs[1:]:
                    job.leader, job.stop_event = leader, leader.stop_event
            line = self._line(folder)
            try:
                line.join(leader.id, owner, leader.created_ns)
            except OSError as exc:
                line.leave(leader.id)
                raise QueueError(f"cannot write the training line in {line.directory}: {exc.strerror or exc}") from None
            for job in jobs:
                self._jobs[job.id] = job
            self._waiting.append(leader.id)
            self._dispatch()
            if self._waiting and (self._poller is None or not self._poller.is_alive()):
                self._poller = threading.Thread(target=self._poll, name="train-line", daemon=True)
                self._poller.start()
            return [job.id for job in jobs]

    def view(self, job_id: str | None, owner: str) -> JobView | None:
        """The job's snapshot, or None if it is not this owner's or is no longer kept."""
        with self._lock:
            self._prune()
            job = self._jobs.get(job_id) if job_id else None
            if job is None or job.owner != owner:
                return None
            return self._view(job)

    def counts(self) -> tuple[int, int]:
        """(training now, waiting) on the whole machine: what everybody may see of the line."""
        with self._lock:
            line = self._line(self.folder or checkpoint_dir()).tickets()
        running = sum(t.running for t in line)
        return running, len(line) - running

    def stop(self, job_id: str, owner: str) -> bool:
        """Stop a waiting job at once, or ask a running one to stop after its current step.
        False if it is not this owner's job or it had already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.owner != owner or job.status not in ACTIVE:
                return False
            if job.status == QUEUED:
                self._waiting.remove(job.members[0].id)
                for member in job.members:
                    self._finish(member, STOPPED, None)
            else:
                job.stop_event.set()  # a sweep's members share it: they train together, and stop together
            return True

    def wait(self, job_id: str, timeout: float) -> JobView | None:
        """Block until the job has finished and its worker thread has ended (or timeout); its
        snapshot, whoever owns it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                job = self._jobs.get(job_id)
                if job is None or job.status in FINISHED:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._view(job)
                self._changed.wait(left)
            view = self._view(job) if job else None
            thread = job.thread if job else None
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        return view

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop everything, refuse new jobs, and wait (bounded) for the worker threads."""
        with self._lock:
            self._closed = True
            for job_id in list(self._waiting):
                self._waiting.remove(job_id)
                for member in self._jobs[job_id].members:
                    self._finish(member, STOPPED, None)
            threads = [j.thread for j in self._jobs.values() if j.thread is not None]
            for job in self._jobs.values():
                job.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for line in self._lines.values():
                line.close()

    # -- internals (callers hold self._lock) -----------------------------------------------------
    def _view(self, job: Job) -> JobView:
        if job.status == RUNNING:
            position = 0
        elif job.status == QUEUED:
            waiting = [t.job_id for t in self._line(job.folder).tickets() if not t.running]
            in_line = job.members[0].id  # a sweep stands in the line once
            position = waiting.index(in_line) + 1 if in_line in waiting else None
        else:
            position = None
        total = job.options.epochs
        done = job.status == DONE
        progress = 1.0 if done else min(1.0, (job.epoch + job.step_fraction) / total)
        per_epoch = None
        if job.epoch and job.training_since is not None and job.last_epoch_end is not None:
            per_epoch = (job.last_epoch_end - job.training_since) / job.epoch
        return JobView(job.id, job.options, job.status, position, job.epoch, total, progress, list(job.history),
                       per_epoch, job.grid_png, job.error, job.checkpoint_path, job.created_ns / 1e9, job.started,
                       job.finished)

    def _line(self, folder: Path) -> MachineLine:
        if folder not in self._lines:
            self._lines[folder] = MachineLine(folder, self.max_concurrent)
        return self._lines[folder]

    def _dispatch(self) -> None:
        """Start this process's runs that the machine's line gives the free slots to (machine_line.py:
        first come first served, one run at a time per owner)."""
        for folder in set() if self._closed else {self._jobs[job_id].folder for job_id in self._waiting}:
            line = self._line(folder)
            for job_id in line.next_to_start():
                if job_id not in self._waiting:
                    continue  # another process's run: that process starts it
                if not line.start(job_id):
                    break  # another process took the slot first
                self._waiting.remove(job_id)
                job = self._jobs[job_id]
                thread = threading.Thread(target=self._run, args=(job,), name=f"train-{job.id[:6]}", daemon=True)
                started = time.time()
                for member in job.members:
                    member.status, member.started, member.thread = RUNNING, started, thread
                thread.start()
        self._changed.notify_all()

    def _poll(self) -> None:
        """While runs wait: another process's run may end at any time, and only files tell."""
        with self._changed:
            while self._waiting and not self._closed:
                self._changed.wait(LINE_POLL_SECONDS)
                self._dispatch()
            self._poller = None

    def _finish(self, job: Job, status: str, error: str | None, path: Path | None = None) -> None:
        job.status, job.error, job.checkpoint_path, job.finished = status, error, path, time.time()
        job.step_fraction = 0.0
        self._line(job.folder).leave(job.id)
        self._dispatch()

    def _prune(self) -> None:
        now = time.time()
        finished = [j for j in self._jobs.values() if j.status in FINISHED]
        expired = {j.id for j in finished if now - j.finished > self.finished_ttl}
        excess = [j.id for j in sorted(finished, key=lambda j: j.finished) if j.id not in expired]
        expired.update(excess[:max(0, len(excess) - self.max_finished)])
        for job_id in expired:
            del self._jobs[job_id]

    # -- the worker thread ---------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        members = job.members
        line = self._line(job.folder)
        temporaries = [line.partial_path(job.id, i) for i in range(len(members))]
        outcomes = [(FAILED, None, None)] * len(members)
        try:
            outcomes = self._train(job, temporaries[0]) if len(members) == 1 else self._train_sweep(members, temporaries)
        except Exception as exc:  # a dataset, disk or device problem: the person sees the message
            log.exception("training job %s failed", job.id)
            error = str(exc) if isinstance(exc, (DatasetError, PublishError, ValueError)) else \
                f"{type(exc).__name__}: {exc}"
            outcomes = [(FAILED, error, None)] * len(members)
        finally:
            for temporary in temporaries:
                temporary.unlink(missing_ok=True)
            with self._lock:
                for member, (status, error, path) in zip(members, outcomes):
                    self._finish(member, status, error, path)

    def _prepare(self, runs: list[Recipe], stop_event: threading.Event):
        """(data, the runs' untrained models), or None if the run was stopped meanwhile."""
        use_torch_threads_in_this_thread(self.torch_threads)
        data = runs[0].load_data(load_shared)
        with _seed_lock:  # torch's global RNG: the same seed gives the same initial weights
            models = [options.build_model(data) for options in runs]
        return None if stop_event.is_set() else (data, models)

    def _started_training(self, jobs: list[Job]) -> None:
        with self._lock:
            for job in jobs:
                job.training_since = time.monotonic()

    def _train(self, job: Job, temporary: Path) -> list[tuple[str, str | None, Path | None]]:
        """[(status, error, published path)]. The model, data and trainer are released on return,
        before the job is marked finished: nothing heavy is left to free once a waiter sees it."""
        opts = job.options
        prepared = self._prepare([opts], job.stop_event)
        if prepared is None:
            return [(STOPPED, None, None)]
        data, (model,) = prepared
        callback = _JobCallback(self, job, math.ceil(len(data.x_train) / opts.batch_size))
        trainer = self.trainer_factory(model, data, opts.train_config(device=self.device), callbacks=[callback],
                                       checkpoint_path=temporary, stop_event=job.stop_event)
        self._started_training([job])
        diverged = None
        try:
            trainer.fit()
        except TrainingDiverged as exc:
            diverged = str(exc).split("; the checkpoint")[0]
        return [self._outcome(opts, len(trainer.history), diverged, temporary, job.folder)]

    def _train_sweep(self, jobs: list[Job], temporaries: list[Path]) -> list[tuple[str, str | None, Path | None]]:
        """_train for a β sweep's members, trained together: one outcome each, in β order."""
        runs = [job.options for job in jobs]
        prepared = self._prepare(runs, jobs[0].stop_event)
        if prepared is None:
            return [(STOPPED, None, None)] * len(jobs)
        data, models = prepared
        callback = _SweepJobCallback(self, jobs, math.ceil(len(data.x_train) / runs[0].batch_size))
        sweep = self.sweep_trainer_factory(models, data, runs[0].train_config(device=self.device),
                                           checkpoint_paths=temporaries, callbacks=[callback],
                                           stop_event=jobs[0].stop_event)
        self._started_training(jobs)
        outcomes = []
        for options, member, temporary, job in zip(runs, sweep.fit(), temporaries, jobs):
            try:  # one β's publish failing costs that β alone
                outcomes.append(self._outcome(options, len(member.history), member.diverged, temporary, job.folder))
            except PublishError as exc:
                outcomes.append((FAILED, str(exc), None))
        return outcomes

    @staticmethod
    def _outcome(opts: Recipe, epochs_saved: int, diverged: str | None, temporary: Path,
                 folder: Path) -> tuple[str, str | None, Path | None]:
        """(status, error, published path) of a run that saved `epochs_saved` epochs at `temporary`;
        `diverged`: how it diverged, if it did."""
        path = publish(temporary, opts.model_name, folder) if epochs_saved and temporary.exists() else None
        if diverged is None:
            return (DONE if epochs_saved >= opts.epochs else STOPPED), None, path
        return DIVERGED, _sentence(diverged) + (f" The last good epoch ({epochs_saved}) was saved." if path else
                                                " No epoch had finished, so nothing was saved."), path


def _sentence(diverged: str) -> str:
    """How a run diverged ("training diverged at …"), as a sentence for the page."""
    text = diverged.rstrip(".") + "."
    return text[:1].upper() + text[1:]


_seed_lock = threading.Lock()  # building a model seeds torch's global RNG: one run at a time, deterministic
_live_queues: "weakref.WeakSet[JobQueue]" = weakref.WeakSet()


@atexit.register
def _shutdown_at_exit() -> None:
    """At interpreter exit (a server stopped with Ctrl-C), stop the runs and wait a little for
    their threads: a daemon thread killed during finalisation, inside torch's C++, aborts the
    process ("terminate called without an active exception"). Stopped runs keep their epochs."""
    for queue in list(_live_queues):
        queue.shutdown(timeout=10.0)


_shared: JobQueue | None = None
_shared_lock = threading.Lock()


def shared_queue() -> JobQueue:
    """The server's one queue (process-wide). $LATENT_EXPLORER_TRAIN_CONCURRENCY runs at once (default 1)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            setting = os.environ.get("LATENT_EXPLORER_TRAIN_CONCURRENCY", "1")
            _shared = JobQueue(max(1, int(setting)) if setting.strip().isdigit() else 1)
        return _shared


def reset_shared_queue(timeout: float = 30.0) -> None:
    """Shut the shared queue down and forget it (tests; the next shared_queue() makes a new one)."""
    global _shared
    with _shared_lock:
        queue, _shared = _shared, None
    if queue is not None:
        queue.shutdown(timeout)