#!/usr/bin/env python
"""A conv net's training step with glibc's own malloc thresholds against vae_core.heap's.

Each row is a fresh process (the thresholds cannot be put back once set): the setup's net (channels-last
weights, fused Adam, one torch thread, as the Trainer trains it on the CPU) takes --warmup steps, then
--steps timed steps on the first batch of the training set, in the main thread or in a worker thread (a
training run in the app's server). Reported per step: the time, the minor page faults
(resource.getrusage) and the process's maximum RSS.

Usage (from the repository root; about 3 minutes on this 2-core machine):
    .venv/bin/python bench/allocator_bench.py
    .venv/bin/python bench/allocator_bench.py --setups shapes --batches 32
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from train_bench import load_average, machine_line  # noqa: E402


def child(setup_name: str, batch: int, kept: bool, thread: bool, warmup: int, steps: int) -> dict:
    """One row, measured in this process."""
    from train_bench import SETUPS, load_setup
    from vae_core.heap import keep_freed_memory
    from vae_core.trainer import AdamStep, _adam, prefer_channels_last

    torch.set_num_threads(1)
    applied = keep_freed_memory() if kept else False
    data, make_model = load_setup(SETUPS[setup_name], argparse.Namespace(seed=0))
    model = make_model()
    prefer_channels_last(model, torch.device("cpu"))
    optimizer = _adam(model.parameters(), 1e-3)
    adam_step = AdamStep(optimizer)
    x = data.x_train[:batch]
    result = {}

    def step():
        optimizer.zero_grad(set_to_none=True)
        model.loss(x)["loss"].backward()
        adam_step()

    def run():
        for _ in range(warmup):
            step()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        for _ in range(steps):
            step()
        result["ms"] = (time.perf_counter() - started) / steps * 1e3
        result["faults"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps

    if thread:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    else:
        run()
    return result | {"applied": applied, "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--setups", default="mnist-5k,shapes", help="comma-separated setups of bench/train_bench.py")
    p.add_argument("--batches", default="32,128", help="comma-separated batch sizes")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        setup, batch, kept, thread = json.loads(args.child)
        print(json.dumps(child(setup, batch, kept, thread, args.warmup, args.steps)))
        return 0
    rows, load_at_start = [], load_average()
    for setup in args.setups.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for thread in (False, True):
                found = {}
                for kept in (False, True):  # side by side: the machine's speed drifts
                    out = subprocess.run([sys.executable, __file__, "--child", json.dumps([setup, batch, kept, thread]),
                                          "--warmup", str(args.warmup), "--steps", str(args.steps)],
                                         capture_output=True, text=True, check=True).stdout
                    found[kept] = json.loads(out.strip().splitlines()[-1])
                rows.append((setup, batch, "worker thread" if thread else "main thread", found))
    torch.set_num_threads(1)  # what each row's process ran with, for the machine line
    print(machine_line(torch.device("cpu"), (load_at_start, load_average())))
    print()
    print("| setup | batch | thread | glibc's thresholds: ms per step | faults per step | max RSS "
          "| kept (vae_core.heap): ms per step | faults per step | max RSS | × faster |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for setup, batch, thread, found in rows:
        base, kept = found[False], found[True]
        note = "" if kept["applied"] else " (not applied: not glibc)"
        print(f"| {setup} | {batch} | {thread} | {base['ms']:.1f} | {base['faults']:,.0f} | {base['max_rss_mib']:,.0f} MiB "
              f"| {kept['ms']:.1f}{note} | {kept['faults']:,.0f} | {kept['max_rss_mib']:,.0f} MiB "
              f"| {base['ms'] / kept['ms']:.2f} |")
    print()
    print(f"**Command:** `{' '.join(sys.argv)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
