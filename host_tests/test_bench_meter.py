"""tools/bench_meter.py: bytes and physical minimum per profile, and a poll
whose measured time is at or above that minimum."""
import json
import os
import subprocess
import sys

from evse import meter, meter_maps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "tools", "bench_meter.py")


def _bench(*args):
    r = subprocess.run([sys.executable, BENCH, "--repeat", "1"] + list(args),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_bench_json_at_9600_8n1_and_8e1():
    res = json.loads(_bench("--json", "-"))
    assert res["bits_per_char"] == 10 and res["baud"] == 9600
    rows = dict((r["profile"], r) for r in res["profiles"])
    assert sorted(rows) == sorted(meter_maps.NAMES)
    sdm = rows["sdm630"]
    # one read of 74 registers: 8 bytes out, 5 + 148 back; 161 x 10 bits
    assert (sdm["reads"], sdm["regs"], sdm["bytes_out"], sdm["bytes_in"]) == (1, 74, 8, 153)
    assert sdm["wire_min_ms"] == 167.71 and sdm["tick10_ms"] == 180
    for r in rows.values():
        assert r["wire_min_ms"] < r["with_silences_ms"] <= r["tick10_ms"]
        # the real-time poll can never beat the wire (the UART is paced in
        # real time); it can beat the 10 ms-tick model after a stall of this
        # shared machine, when the loop catches up with ticks back to back.
        # Above: a stall of the machine, not of the poll, can add to it; the
        # bound only says the poll is not lost (the figure is the bench's)
        assert r["with_silences_ms"] <= r["wall_ms"] < r["tick10_ms"] + 250, r
        assert r["cpu_us_cpython"] > 0
    res = json.loads(_bench("--parity", "E", "--json", "-"))
    assert res["bits_per_char"] == 11
    sdm = [r for r in res["profiles"] if r["profile"] == "sdm630"][0]
    assert sdm["wire_min_ms"] == 184.48  # 161 x 11 bits at 9600


def test_bench_table(tmp_path):
    out = _bench("--json", str(tmp_path / "b.json"))
    lines = out.splitlines()
    assert lines[0].startswith("One meter poll at 9600 baud 8N1 (10 bits per character")
    assert len([l for l in lines if l.startswith("| ")]) == 1 + len(meter_maps.NAMES)
    assert json.loads((tmp_path / "b.json").read_text())["profiles"]
