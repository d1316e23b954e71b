"""Training jobs for a server shared by a class: a process-wide queue, one worker thread per run.

No Streamlit here: the Train page (pages/train.py) submits JobOptions, holds the job id in its
session, and polls JobQueue.view() for a JobView snapshot.

Queue. At most `max_concurrent` runs train at once (default 1, or $LATENT_EXPLORER_TRAIN_CONCURRENCY);
the others wait first-come first-served, and a waiting job's `position` is its place in that line
(1 = next to start). Each job runs in its own daemon thread, started when a slot frees up. A person
sees and controls only the jobs submitted under their `owner` token (the page keeps a random one in
st.session_state); everybody sees how many runs are training and waiting. Finished jobs stay
visible for `finished_ttl` seconds and at most `max_finished` of them are kept; the queue refuses
new jobs past `max_waiting` waiting, or a second active job from the same owner.

Threads. torch.set_num_threads is process-wide in effect: it sets a process default that every
thread copies, lazily, the first time it runs a parallel op, and it also sets the calling thread's
own OpenMP and MKL pools. The app decodes on one thread per session (pages/ui calls
torch.set_num_threads(1)), which must stay so. A worker therefore (1) lets torch initialise its own
pools from the process default, (2) calls torch.set_num_threads(n), which sizes its own pools to n,
and (3) at once has a short-lived helper thread put the process default back, so threads started
later (Streamlit runs every script run in a new thread) still start with 1. Only a thread whose
very first parallel op falls in the microseconds between (2) and (3) would copy n instead; a lock
keeps workers from interleaving. n = min(8, (usable cores - 1) // max_concurrent), at least 1:
one core stays free for serving pages, and small VAEs gain little beyond 8 threads.

Files. A run writes its per-epoch checkpoints (atomic, via save_checkpoint) to a hidden temporary
file beside the models, ".train-<id>.partial", which list_checkpoints() ignores. When it ends with
at least one finished epoch (done, stopped, or diverged: the last good epoch) that file is
published under a fresh, sanitised name: catalog.unique_path() picks the name, and os.link, which
fails rather than replace an existing file, puts it in place. A checkpoint is never half-written
and never overwrites another model.

Side effects on the process, all torch's: training seeds torch's global RNG (as the CLI and
Trainer do), under a lock so concurrent runs build their initial weights deterministically.
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
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .catalog import checkpoint_dir, safe_name, unique_path
from .config import OBJECTIVES, TrainConfig, VAEConfig
from .datasets import DATASETS, DatasetError, ImageDataset, default_data_root, load_dataset
from .images import make_grid, png_bytes, upscale_factor
from .model import VAE
from .trainer import Callback, Trainer, TrainingDiverged

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, STOPPED, DIVERGED, FAILED = "queued", "running", "done", "stopped", "diverged", "failed"
ACTIVE = (QUEUED, RUNNING)
FINISHED = (DONE, STOPPED, DIVERGED, FAILED)

ARCHITECTURES = ("mlp", "conv")
DEFAULT_HIDDEN = {"mlp": (256, 128), "conv": (32, 64)}
OFFLINE_DATASETS = ("mnist-5k", "digits", "shapes")
MAX_EPOCHS = 500
MAX_LATENT = 64
MAX_LAYERS = 4
MAX_WIDTH = 1024
MAX_BATCH = 4096

# The files torchvision's loaders need under the data root, for the datasets that are not bundled.
_MNIST_FILES = [f"{split}-{kind}" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
DATASET_FILES = {
    "mnist": [f"MNIST/raw/{f}" for f in _MNIST_FILES],
    "fashion-mnist": [f"FashionMNIST/raw/{f}" for f in _MNIST_FILES],
    "kmnist": [f"KMNIST/raw/{f}" for f in _MNIST_FILES],
    "cifar10": [f"cifar-10-batches-py/{f}" for f in
                ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")],
}


class QueueError(Exception):
    """A job the queue will not take (full, already running one, unwritable folder); says why."""


def available_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Dataset names a job may train on: the bundled ones, and registry datasets whose files are
    present under the data root. Never folder:/npz: specs, which name paths on the server."""
    root = Path(root) if root else default_data_root()
    present = [name for name, files in DATASET_FILES.items()
               if name in DATASETS and all((root / f).is_file() for f in files)]
    return list(OFFLINE_DATASETS) + present


def default_name(dataset: str, architecture: str, latent_dim: int, beta: float, conditional: bool,
                 holdout_class: int | None, objective: str = "vae") -> str:
    kind = "tcvae" if objective == "beta-tcvae" else ("betavae" if beta != 1 else "vae")
    parts = [dataset, "cvae" if conditional else kind, architecture, f"z{latent_dim}"]
    if beta != 1:
        parts.append(f"b{beta:g}")
    if holdout_class is not None:
        parts.append(f"without-{holdout_class}")
    return safe_name("-".join(parts))


@dataclass(frozen=True)
class JobOptions:
    """What a person chooses on the Train page. Checked on creation (ValueError says what is wrong)."""
    dataset: str = "digits"
    architecture: str = "mlp"
    latent_dim: int = 8
    hidden_sizes: tuple[int, ...] | None = None  # None: DEFAULT_HIDDEN[architecture]
    beta: float = 1.0
    objective: str = "vae"  # "vae" (beta weighs the KL) or "beta-tcvae" (beta weighs the total correlation)
    conditional: bool = False
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    kl_warmup: int = 0  # epochs over which the KL weight ramps from 0 to beta
    holdout_class: int | None = None  # left out of training, for anomaly experiments
    name: str = ""  # "" picks default_name(); always passed through catalog.safe_name
    likelihood: str = "bernoulli"
    obs_sigma: float = 0.1
    seed: int = 0

    def __post_init__(self):
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        problems = []
        if not isinstance(self.dataset, str) or ":" in self.dataset or self.dataset not in DATASETS:
            problems.append(f"dataset must be one of {', '.join(d for d in DATASETS if ':' not in d)}, "
                            f"got {self.dataset!r}")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        hidden = self.hidden_sizes if self.hidden_sizes is not None else DEFAULT_HIDDEN.get(self.architecture, (1,))
        try:
            hidden = tuple(int(h) for h in hidden)
        except (TypeError, ValueError):
            hidden = ()
        if not 1 <= len(hidden) <= MAX_LAYERS or not all(1 <= h <= MAX_WIDTH for h in hidden):
            problems.append(f"hidden sizes must be 1 to {MAX_LAYERS} widths between 1 and {MAX_WIDTH}, "
                            f"got {self.hidden_sizes}")
        fix("hidden_sizes", hidden)
        ints = {"latent_dim": (1, MAX_LATENT), "epochs": (1, MAX_EPOCHS), "batch_size": (1, MAX_BATCH),
                "kl_warmup": (0, 10 * MAX_EPOCHS), "seed": (0, 2**31 - 1)}
        for name, (low, high) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
                    or value != int(value):  # the range check first: int() of inf or NaN would raise
                problems.append(f"{name} must be a whole number from {low} to {high}, got {value!r}")
            else:
                fix(name, int(value))
        for name, low_ok in (("lr", False), ("beta", True), ("obs_sigma", False)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                and (value >= 0 if low_ok else value > 0)
            if not ok:
                problems.append(f"{name} must be a finite number {'>= 0' if low_ok else '> 0'}, got {value!r}")
            else:
                fix(name, float(value))
        if self.holdout_class is not None:
            if isinstance(self.holdout_class, bool) or not isinstance(self.holdout_class, int) \
                    or self.holdout_class < 0:
                problems.append(f"holdout_class must be a class index >= 0 or None, got {self.holdout_class!r}")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.likelihood not in ("bernoulli", "gaussian"):
            problems.append(f"likelihood must be 'bernoulli' or 'gaussian', got {self.likelihood!r}")
        fix("conditional", bool(self.conditional))
        fix("name", str(self.name or "")[:200])
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def model_name(self) -> str:
        """The sanitised name the checkpoint gets (before a -2, -3 … that avoids existing files)."""
        return safe_name(self.name) if self.name.strip() else default_name(
            self.dataset, self.architecture, self.latent_dim, self.beta, self.conditional, self.holdout_class,
            self.objective)


@dataclass(frozen=True)
class JobView:
    """A consistent snapshot of a job, safe to read from any thread."""
    id: str
    options: JobOptions
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
    options: JobOptions
    folder: Path
    status: str = QUEUED
    epoch: int = 0
    step_fraction: float = 0.0
    history: list = field(default_factory=list)
    grid_png: bytes | None = None
    error: str | None = None
    checkpoint_path: Path | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    training_since: float | None = None  # when the first epoch began (after loading the data)
    last_epoch_end: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class _JobCallback(Callback):
    """Runs in the worker thread: feeds the job's progress, history and picture grid."""

    def __init__(self, queue: "JobQueue", job: Job, n_batches: int):
        self.queue, self.job, self.n_batches = queue, job, max(1, n_batches)

    def on_step(self, trainer, step, loss):
        with self.queue._lock:
            self.job.step_fraction = (step + 1) / self.n_batches

    def on_epoch_end(self, trainer, record):
        grid = preview_grid(trainer.model, trainer.data)
        with self.queue._lock:
            self.job.history.append(copy.deepcopy(record))
            self.job.epoch = int(record["epoch"])
            self.job.step_fraction = 0.0
            self.job.grid_png = grid
            self.job.last_epoch_end = time.monotonic()
            self.queue._changed.notify_all()


@torch.inference_mode()
def preview_grid(model: VAE, data: ImageDataset, n: int = 10, seed: int = 0) -> bytes:
    """PNG: n test images, their reconstructions, and 2n decoded prior draws (fixed noise, so from
    epoch to epoch only the model changes). A conditional model draws class 0, 1, 2 … per column."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        cfg = model.config
        x = data.x_test[:n].to(device)
        y = data.y_test[:n].to(device) if cfg.conditional else None
        recon = model.reconstruct(x, y)
        generator = torch.Generator().manual_seed(seed)
        labels = (torch.arange(2 * n) % cfg.num_classes).to(device) if cfg.conditional else None
        samples = model.sample(2 * n, labels, generator=generator)
        images = torch.cat([x, recon, samples]).float().cpu()
        return png_bytes(make_grid(images, n), upscale_factor(cfg.input_shape[1], 48))
    finally:
        model.train(was_training)


def default_torch_threads(max_concurrent: int = 1) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(8, (cores - 1) // max(1, max_concurrent)))


_threads_lock = threading.Lock()


def use_torch_threads_in_this_thread(n: int) -> None:
    """Give the calling thread n torch threads, leaving the process default as it was (module doc)."""
    with _threads_lock:
        process_default = torch.get_num_threads()  # also makes torch initialise this thread's pools now
        if n == process_default:
            return
        torch.set_num_threads(n)
        restore = threading.Thread(target=torch.set_num_threads, args=(process_default,), name="torch-threads-restore")
        restore.start()
        restore.join()


_dataset_lock = threading.Lock()
_datasets: OrderedDict[str, ImageDataset] = OrderedDict()


def _dataset(name: str) -> ImageDataset:
    """Read-only, shared by concurrent jobs; the two most recent stay in memory. Always split with
    seed 0, as the app's pages and `python -m vae_core eval` do, so their test set is never trained on."""
    with _dataset_lock:
        if name in _datasets:
            _datasets.move_to_end(name)
            return _datasets[name]
    data = load_dataset(name, seed=0)
    with _dataset_lock:
        _datasets[name] = data
        while len(_datasets) > 2:
            _datasets.popitem(last=False)
    return data


_publish_lock = threading.Lock()


def publish(temporary: Path, name: str, folder: Path) -> Path:
    """Move a finished temporary checkpoint to folder/<safe unique name>.safetensors, never
    replacing a file: os.link fails if the name was taken meanwhile (then the next name is tried)."""
    with _publish_lock:
        for _ in range(1000):
            target = unique_path(name, folder)
            try:
                os.link(temporary, target)
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: check, then rename (tiny race, other processes only)
                if target.exists():
                    continue
                os.replace(temporary, target)
                return target
            temporary.unlink(missing_ok=True)
            return target
    raise QueueError(f"no free name for {name!r} in {folder}")


class JobQueue:
    def __init__(self, max_concurrent: int = 1, *, folder: str | os.PathLike | None = None, device: str = "auto",
                 torch_threads: int | None = None, max_waiting: int = 50, max_active_per_owner: int = 1,
                 max_finished: int = 200, finished_ttl: float = 3600.0, trainer_factory=Trainer):
        """folder: where models are saved (None: checkpoint_dir() when each job is submitted).
        trainer_factory: builds the Trainer (tests pass one that pauses between epochs)."""
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        self.folder = Path(folder) if folder else None
        self.device = device
        self.torch_threads = torch_threads or default_torch_threads(max_concurrent)
        self.max_waiting, self.max_active_per_owner = max_waiting, max_active_per_owner
        self.max_finished, self.finished_ttl = max_finished, finished_ttl
        self.trainer_factory = trainer_factory
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}  # insertion order = submission order
        self._waiting: list[str] = []
        self._closed = False
        _live_queues.add(self)

    # -- what the page calls ----------------------------------------------------------------------
    def submit(self, options: JobOptions, owner: str) -> str:
        """Queue a run; returns its id. Raises QueueError when the queue will not take it."""
        if not isinstance(options, JobOptions):
            raise TypeError("options must be JobOptions")
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
            mine = [j for j in self._jobs.values() if j.owner == owner and j.status in ACTIVE]
            if len(mine) >= self.max_active_per_owner:
                raise QueueError("you already have a run queued or training: wait for it, or stop it first")
            if len(self._waiting) >= self.max_waiting:
                raise QueueError(f"the training queue is full ({len(self._waiting)} runs waiting); try again later")
            job = Job(id=secrets.token_urlsafe(12), owner=owner, options=options, folder=folder)
            self._jobs[job.id] = job
            self._waiting.append(job.id)
            self._dispatch()
            return job.id

    def view(self, job_id: str | None, owner: str) -> JobView | None:
        """The job's snapshot, or None if it is not this owner's or is no longer kept."""
        with self._lock:
            self._prune()
            job = self._jobs.get(job_id) if job_id else None
            if job is None or job.owner != owner:
                return None
            return self._view(job)

    def jobs_of(self, owner: str) -> list[JobView]:
        with self._lock:
            self._prune()
            return [self._view(j) for j in self._jobs.values() if j.owner == owner]

    def counts(self) -> tuple[int, int]:
        """(training now, waiting): what everybody may see of the queue."""
        with self._lock:
            return sum(j.status == RUNNING for j in self._jobs.values()), len(self._waiting)

    def stop(self, job_id: str, owner: str) -> bool:
        """Stop a waiting job at once, or ask a running one to stop after its current step.
        False if it is not this owner's job or it had already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.owner != owner or job.status not in ACTIVE:
                return False
            if job.status == QUEUED:
                self._waiting.remove(job.id)
                self._finish(job, STOPPED, None)
            else:
                job.stop_event.set()
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
                self._finish(self._jobs[job_id], STOPPED, None)
            threads = [j.thread for j in self._jobs.values() if j.thread is not None]
            for job in self._jobs.values():
                job.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- internals (callers hold self._lock) -----------------------------------------------------
    def _view(self, job: Job) -> JobView:
        if job.status == RUNNING:
            position = 0
        elif job.status == QUEUED:
            position = self._waiting.index(job.id) + 1
        else:
            position = None
        total = job.options.epochs
        done = job.status == DONE
        progress = 1.0 if done else min(1.0, (job.epoch + job.step_fraction) / total)
        per_epoch = None
        if job.epoch and job.training_since is not None and job.last_epoch_end is not None:
            per_epoch = (job.last_epoch_end - job.training_since) / job.epoch
        return JobView(job.id, job.options, job.status, position, job.epoch, total, progress, list(job.history),
                       per_epoch, job.grid_png, job.error, job.checkpoint_path, job.created, job.started, job.finished)

    def _dispatch(self) -> None:
        running = sum(j.status == RUNNING for j in self._jobs.values())
        while self._waiting and running < self.max_concurrent and not self._closed:
            job = self._jobs[self._waiting.pop(0)]
            job.status, job.started = RUNNING, time.time()
            job.thread = threading.Thread(target=self._run, args=(job,), name=f"train-{job.id[:6]}", daemon=True)
            job.thread.start()
            running += 1
        self._changed.notify_all()

    def _finish(self, job: Job, status: str, error: str | None, path: Path | None = None) -> None:
        job.status, job.error, job.checkpoint_path, job.finished = status, error, path, time.time()
        job.step_fraction = 0.0
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
        temporary = job.folder / f".train-{job.id}.partial"
        status, error, path = FAILED, None, None
        try:
            status, error, path = self._train(job, temporary)
        except Exception as exc:  # a dataset, disk or device problem: the person sees the message
            log.exception("training job %s failed", job.id)
            error = str(exc) if isinstance(exc, (DatasetError, QueueError, ValueError)) else \
                f"{type(exc).__name__}: {exc}"
        finally:
            temporary.unlink(missing_ok=True)
            with self._lock:
                self._finish(job, status, error, path)

    def _train(self, job: Job, temporary: Path) -> tuple[str, str | None, Path | None]:
        """(status, error, published path). The model, data and trainer are released on return,
        before the job is marked finished: nothing heavy is left to free once a waiter sees it."""
        opts = job.options
        use_torch_threads_in_this_thread(self.torch_threads)
        data = _dataset(opts.dataset)
        if opts.holdout_class is not None:
            if opts.holdout_class >= data.num_classes:
                raise DatasetError(f"{opts.dataset} has no class {opts.holdout_class} "
                                   f"(it has {data.num_classes}: 0 to {data.num_classes - 1})")
            data = data.without_class(opts.holdout_class)
        config = VAEConfig(input_shape=data.image_shape, latent_dim=opts.latent_dim,
                           architecture=opts.architecture, hidden_sizes=opts.hidden_sizes,
                           likelihood=opts.likelihood, obs_sigma=opts.obs_sigma, beta=opts.beta,
                           objective=opts.objective,
                           num_classes=data.num_classes if opts.conditional else 0)
        with _seed_lock:  # torch's global RNG: the same seed gives the same initial weights
            torch.manual_seed(opts.seed)
            model = VAE(config)
        train_config = TrainConfig(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed,
                                   kl_warmup_epochs=opts.kl_warmup, device=self.device)
        if job.stop_event.is_set():
            return STOPPED, None, None
        callback = _JobCallback(self, job, math.ceil(len(data.x_train) / opts.batch_size))
        trainer = self.trainer_factory(model, data, train_config, callbacks=[callback],
                                       checkpoint_path=temporary, stop_event=job.stop_event)
        with self._lock:
            job.training_since = time.monotonic()
        error = None
        try:
            history = trainer.fit()
        except TrainingDiverged as exc:
            status = DIVERGED
            error = str(exc).split("; the checkpoint")[0].rstrip(".") + "."
            error = error[:1].upper() + error[1:]
        else:
            status = DONE if len(history) >= opts.epochs else STOPPED
        epochs_saved = len(trainer.history)
        path = publish(temporary, opts.model_name, job.folder) if epochs_saved and temporary.exists() else None
        if status == DIVERGED:
            error += (f" The last good epoch ({epochs_saved}) was saved." if path else
                      " No epoch had finished, so nothing was saved.")
        return status, error, path


_seed_lock = threading.Lock()
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
            try:
                concurrent = max(1, int(os.environ.get("LATENT_EXPLORER_TRAIN_CONCURRENCY", "1")))
            except ValueError:
                concurrent = 1
            _shared = JobQueue(concurrent)
        return _shared


def reset_shared_queue(timeout: float = 30.0) -> None:
    """Shut the shared queue down and forget it (tests; the next shared_queue() makes a new one)."""
    global _shared
    with _shared_lock:
        queue, _shared = _shared, None
    if queue is not None:
        queue.shutdown(timeout)


__all__ = ["JobOptions", "JobQueue", "JobView", "QueueError", "available_datasets", "default_name", "shared_queue",
           "reset_shared_queue", "publish", "preview_grid", "ACTIVE", "FINISHED", "QUEUED", "RUNNING", "DONE",
           "STOPPED", "DIVERGED", "FAILED", "DEFAULT_HIDDEN", "ARCHITECTURES", "MAX_EPOCHS"]
