"""bench/train_bench.py: its device check, the FLOPs its floor counts, and the sweep's floor against
the engines' measured times."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def _bench(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/train_bench.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("device", ["mps", "bogus", *([] if torch.cuda.is_available() else ["cuda"])])
def test_a_device_it_cannot_train_on_is_refused_in_one_line(device):
    done = _bench("--device", device)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"train_bench.py: error: --device {device}:"), done.stderr


@pytest.mark.slow
def test_no_engine_beats_the_sweeps_floor():
    """The floor is 4 runs' counted FLOPs at the measured sgemm peak: every engine's time, as a multiple of
    one run, is at or above it (a floor counted from the wrong run, or a peak taken too low, breaks this)."""
    done = _bench("--setups", "digits", "--sections", "sweep", "--sweep-repeats", "1", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    header = next(line for line in done.stdout.splitlines() if line.startswith("| setup | epochs |"))
    row = next(line for line in done.stdout.splitlines() if line.startswith("| digits,"))
    names = [cell.strip() for cell in header.strip("|").split("|")]
    values = [cell.strip() for cell in row.strip("|").split("|")]
    floor = float(values[names.index("floor, × one")])
    ratios = [float(value) for name, value in zip(names, values) if name == "× one"]
    assert len(ratios) == 3 and 0 < floor <= min(ratios), row


def test_the_floor_counts_one_whole_run_its_training_and_its_scoring():
    """A one-epoch digits run: every training image once, at the step's counted FLOPs per image (the MLP's
    products are linear in the batch), plus one scoring of the test images, which runs the forward pass
    once and at most once more (the encoder, for the active units): no more members, epochs or passes."""
    import train_bench
    from torch.utils.flop_counter import FlopCounterMode
    from vae_core.trainer import EVAL_LIMIT

    class Args:
        seed = 0

    setup = replace(train_bench.SETUPS["digits"], sweep_epochs=1)
    data, make_model = train_bench.load_setup(setup, Args)
    batch = train_bench.Recipe(architecture=setup.architecture, epochs=1).batch_size
    training = len(data.x_train) * train_bench.step_flops(make_model, data, batch) // batch
    with FlopCounterMode(display=False) as counter:
        make_model().loss(data.x_test[:1])
    scoring = min(len(data.x_test), EVAL_LIMIT) * counter.get_total_flops()
    counted = train_bench.run_flops(make_model, data, setup, torch.device("cpu"))
    assert training + scoring <= counted <= training + 2 * scoring, (counted, training, scoring)
