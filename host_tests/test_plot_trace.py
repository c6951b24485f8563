"""tools/plot_trace.py: the title names the scenario, labels close in time
do not share a lane, and the measured current after the contactor opened
is drawn as the meter's last reading, apart from current flowing."""
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import plot_trace as P  # noqa: E402


def test_labels_close_in_time_go_on_separate_lanes():
    xs = [0, 1, 2, 10, 10.5, 30]
    got = P.lanes(xs, 5, 3)
    assert got == [0, 1, 2, 0, 1, 0], got
    for k in range(3):
        mine = [x for x, lane in zip(xs, got) if lane == k]
        assert all(b - a >= 5 for a, b in zip(mine, mine[1:])), (k, mine)
    assert P.lanes([0, 0, 0, 0], 5, 2) == [0, 1, 0, 1]  # full: the one farthest back


def test_current_while_open_is_the_meters_last_reading():
    rows = [{"t": 0, "contactor": False, "ev_a": None},
            {"t": 1, "contactor": True, "ev_a": 16.0},
            {"t": 5, "contactor": False, "ev_a": 16.0},  # opened; the meter has not polled
            {"t": 6, "contactor": False, "ev_a": 0.0}]
    (fx, fy), (lx, ly) = P.meter_lag(rows)
    assert math.isnan(fy[0]) and fy[1:] == [16.0, 0.0, 0.0]
    assert [math.isnan(v) for v in ly] == [True, True, False, True] and ly[2] == 16.0


def test_title_is_the_scenario_and_the_plot_is_drawn(tmp_path):
    scen = os.path.join(ROOT, "scenarios", "fault-rcd.json")
    assert P.title_for("x/rcd.jsonl").startswith("rcd")
    assert P.title_for("x/rcd.jsonl", scen).startswith("fault-rcd")
    trace = tmp_path / "rcd.jsonl"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sim.py"), "--scenario",
                        scen, "--trace", str(trace)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    png = tmp_path / "rcd.png"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "plot_trace.py"), str(trace),
                        str(png), "--scenario", scen], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
