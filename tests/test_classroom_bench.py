"""bench/classroom.py --clients protocol: students speaking Streamlit's protocol, no browser."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_three_protocol_students_move_sliders_and_keep_their_own_state():
    """A real server, three WebSocket sessions at once, each on its own test image: every move is decoded
    by the server and answered, nobody sees an error, and each keeps its image, slider and link."""
    done = subprocess.run([sys.executable, "bench/classroom.py", "--clients", "protocol", "--sessions", "3",
                           "--seconds", "4", "--timeout", "300"], cwd=ROOT, capture_output=True, text=True,
                          timeout=360)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    moves_per_s, median_ms, errors, kept = float(cells[1]), float(cells[2].replace(",", "")), int(cells[5]), cells[8]
    assert moves_per_s >= 2.0, row  # each of the 3 moves every 0.5-1 s, plus the answer
    assert 0 < median_ms < 15_000 and errors == 0 and kept == "3/3", row
    assert re.search(r"RSS \d+ MiB when healthy", done.stdout)


@pytest.mark.slow
def test_the_churn_mode_reports_the_servers_memory_after_each_class():
    """--churn: classes connect, move sliders and leave, one after another; the server's RSS after each
    idle period is the table's row, and an error in any class fails the run."""
    done = subprocess.run([sys.executable, "bench/classroom.py", "--clients", "protocol", "--sessions", "2",
                           "--seconds", "2", "--churn", "2", "--idle", "1", "--timeout", "300"], cwd=ROOT,
                          capture_output=True, text=True, timeout=360)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if re.match(r"\| [12] \|", line)]
    assert len(rows) == 2, done.stdout
    for row in rows:
        cycle, moves, errors, peak, after, change = [c.strip() for c in row.strip("|").split("|")]
        assert int(moves) >= 2 and int(errors) == 0 and float(after) > 100, row
    assert rows[0].endswith("+0.0% |")


def test_the_tracemalloc_report_names_the_line_whose_memory_grew(tmp_path):
    """--tracemalloc: the server writes a snapshot after each class; the report ranks what grew between the
    first and the last by the line that allocated it."""
    import tracemalloc

    sys.path.insert(0, str(ROOT / "bench"))
    from protocol_client import growth_report

    tracemalloc.start(6)
    try:
        tracemalloc.take_snapshot().dump(str(tmp_path / "snapshot-01.trace"))
        kept = [bytearray(64 * 1024) for _ in range(32)]  # what a class would leave behind: 2 MiB
        tracemalloc.take_snapshot().dump(str(tmp_path / "snapshot-02.trace"))
    finally:
        tracemalloc.stop()
    report = growth_report(tmp_path)
    top = next(line for line in report.splitlines() if line.startswith("| +"))
    assert "test_classroom_bench.py" in top and int(top.split("|")[1].strip().lstrip("+")) >= 2000, report
    assert "snapshot-01.trace to snapshot-02.trace" in report and len(kept) == 32


def test_the_final_check_waits_for_every_student_and_a_failed_one_holds_nobody_up():
    """Arrivals: students' whole-page checks start only once all have stopped moving; a student that
    failed before arriving leaves, and the others go on."""
    import asyncio

    sys.path.insert(0, str(ROOT / "bench"))
    from protocol_client import Arrivals

    async def main():
        gate, order = Arrivals(3), []

        async def slider_phase(name: str, seconds: float, fails: bool = False):
            try:
                await asyncio.sleep(seconds)
                if fails:
                    raise RuntimeError("socket closed")
                order.append(f"{name} stopped")
                await gate.arrive_and_wait()
                order.append(f"{name} checks")
            except RuntimeError:
                pass
            finally:
                gate.leave()

        await asyncio.wait_for(asyncio.gather(slider_phase("a", 0.0), slider_phase("b", 0.05),
                                              slider_phase("c", 0.02, fails=True)), timeout=5)
        return order

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # its own thread: a browser test's event loop may be running in this one
        order = pool.submit(asyncio.run, main()).result()
    assert order[:2] == ["a stopped", "b stopped"] and sorted(order[2:]) == ["a checks", "b checks"], order
