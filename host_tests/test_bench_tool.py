"""tools/bench_check.py end to end: against a real mosquitto (mqtt_env) with
--sim (the firmware's real MQTT link in tools/sim.py --realtime), and the
one-line errors when no device or no broker answers."""
import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

from mqtt_env import ROOT, Mosquitto, Watcher, free_port

BENCH = os.path.join(ROOT, "tools", "bench_check.py")
# tools/bench_check.py under its own name: `bench` is bench/bench.py (test_bench.py)
_spec = importlib.util.spec_from_file_location("bench_tool", BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    m = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield m
    m.stop()


def run_bench(*args, timeout=90):
    return subprocess.run([sys.executable, BENCH] + list(args), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def report_rows(text):
    """{step: (limit_s, measured_s, verdict, notes)} from report.md's table."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| \d+ \| ([^|]+) \|[^|]*\|[^|]*\| ([\d.]+) s \([^|]*\) \| ([\d.]+) s \| "
                     r"(PASS|FAIL) \| ([^|]*) \|$", line)
        if m:
            rows[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)), m.group(4),
                                        m.group(5))
    return rows


def test_sim_run_passes_every_step_within_the_limits(broker, tmp_path):
    out = tmp_path / "report"
    t = time.monotonic()
    r = run_bench("--broker", "127.0.0.1:%d" % broker.port, "--device", "bench-t1",
                  "--report", str(out), "--sim")
    took = time.monotonic() - t
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and took < 60
    text = (out / "report.md").read_text()
    assert "**PASS** (13 of 13 steps pass)" in text
    rows = report_rows(text)
    assert list(rows) == [s["key"] for s in bench.steps()], list(rows)
    for key, (limit, measured, verdict, notes) in rows.items():
        assert verdict == "PASS", (key, notes)
        # the measured time is an upper bound at MQTT's resolution
        assert measured <= limit + bench.STATUS_GRANULARITY_S + bench.LATENCY_ALLOWANCE_S, key
    # the IEC limits proper: contactor closed within 3 s of C (seq. 4) ...
    assert rows["B->C"][1] <= 3.0 and rows["B->C (2)"][1] <= 3.0
    # ... and open with the state change after C->B (seq. 8.1), a diode
    # fault and a CP short, each with its fault event
    for key in ("C->B", "diode fault", "CP short"):
        assert "contactor open in the first status" in rows[key][3], key
    assert "`fault` event `diode`" in rows["diode fault"][3]
    assert "`fault` event `cp_short`" in rows["CP short"][3]
    png = (out / "timeline.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 10000
    # the IHDR chunk: a sensible image size
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert w >= 800 and h >= 400


def test_a_device_that_never_reports_fails_with_one_line(broker, tmp_path):
    t = time.monotonic()
    r = run_bench("--broker", "127.0.0.1:%d" % broker.port, "--device", "nobody-here",
                  "--report", str(tmp_path / "r"), "--status-timeout", "2", timeout=30)
    assert r.returncode == 1
    assert time.monotonic() - t < 15
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "no status from device 'nobody-here'" in r.stderr, r.stderr


def test_no_broker_fails_with_one_line(tmp_path):
    r = run_bench("--broker", "127.0.0.1:%d" % free_port(), "--device", "x",
                  "--report", str(tmp_path / "r"), "--sim", timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert r.stderr.startswith("bench_check.py: cannot reach the broker at 127.0.0.1:"), r.stderr


def test_interactive_mode_without_an_operator_says_so(broker, tmp_path):
    """A device that is online (retained `online` and status) is found;
    with stdin closed the operator's Enter never comes: one line, exit 1."""
    w = Watcher(broker.port, ["evse/idle-1/#"])
    try:
        for topic, text in (("evse/idle-1/online", "online"),
                            ("evse/idle-1/status", '{"state": "A", "duty": 100.0, '
                             '"offer_a": 0.0, "contactor": false, "error": null}')):
            w.c.publish(topic, text, qos=1, retain=True).wait_for_publish(10)
        r = run_bench("--broker", "127.0.0.1:%d" % broker.port, "--device", "idle-1",
                      "--report", str(tmp_path / "r"), "--status-timeout", "5", timeout=30)
    finally:
        for topic in ("evse/idle-1/online", "evse/idle-1/status"):
            w.c.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        w.close()
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "Step 1/13" in r.stdout
    assert r.stderr.strip() == ("bench_check.py: stdin closed: the interactive mode needs an "
                                "operator (or use --sim)"), r.stderr
