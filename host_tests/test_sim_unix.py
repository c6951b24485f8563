"""The simulator under MicroPython's unix port (tools/sim.py --micropython unix).

- Every scenario (shared/scenarios/examples/ when ../shared is there, and
  scenarios/) runs in virtual time inside the unix port (64-bit, ticks period
  2**62) and must write the CPython trace byte for byte, as
  test_sim.py requires of the WebAssembly port (32-bit, 2**30).
- `--realtime --broker HOST:PORT --micropython` runs the simulator and the
  firmware with its Link (a `_thread`, micropython-lib's umqtt.simple) in
  the unix port against a real mosquitto, with the proxy and the backend
  client in sim.py: a command answered through the broker, the broker cut
  by the scenario (the link lost, refused, back, the session record
  delivered after it), and the trace held to the rules and the IEC
  timings every trace keeps.
"""
import json
import os
import subprocess
import sys

import pytest

from mqtt_env import ROOT, Mosquitto, Watcher, finish, write_scenario
from test_sim import SCENARIOS, SIM, check_iec_timing, check_rules, cpython_trace

import sim  # noqa: E402  (tools/sim.py, on the path through test_sim)

UMQTT = os.path.join(ROOT, "build", "umqtt-1.8.0", "umqtt", "simple.py")


def _need_port():
    assert os.access(sim.unix_port(), os.X_OK), "no %s: run `make setup`" % sim.unix_port()


@pytest.mark.parametrize("path", SCENARIOS)
def test_unix_port_trace_is_identical(path):
    _need_port()
    raw, scen, text = cpython_trace(path)
    lines = []
    sim.run_unix(scen, lines.append, timeout=300)
    mp = "".join([s + "\n" for s in lines])
    if mp != text:
        a, b = text.splitlines(), mp.splitlines()
        for i in range(min(len(a), len(b))):
            assert a[i] == b[i], "line %d differs:\nCPython:   %s\nunix port: %s" % (
                i + 1, a[i], b[i])
        assert len(a) == len(b), "CPython %d lines, unix port %d" % (len(a), len(b))


def test_wasm_port_refuses_realtime(tmp_path):
    r = subprocess.run([sys.executable, SIM, "--scenario",
                        os.path.join(ROOT, "scenarios", "demo.json"), "--trace",
                        str(tmp_path / "t.jsonl"), "--realtime", "--micropython", "wasm"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "--micropython wasm" in r.stderr


def test_realtime_broker_in_the_unix_port(tmp_path):
    _need_port()
    assert os.path.exists(UMQTT), "no %s: run `make setup`" % UMQTT
    mosq = Mosquitto(tmp_path / "mosq")
    w = Watcher(mosq.port, ["evse/simu-1/#"])
    try:
        events = [{"t": 0, "ev": "A"}, {"t": 0.3, "ev": "B"}, {"t": 0.8, "ev": "C"},
                  {"t": 5.0, "cmd": {"cmd": "set_current", "amps": 10, "id": "c-1"}},
                  {"t": 5.5, "broker": "down"},
                  {"t": 6.0, "ev": "B"}, {"t": 6.5, "ev": "A"},  # session 1 ends, link down
                  {"t": 7.0, "broker": "up"}]
        scen = write_scenario(tmp_path, "unix-rt", 11, events,
                              {"mqtt_device_id": "simu-1", "meter": "sdm630"})
        trace = tmp_path / "t.jsonl"
        p = subprocess.Popen([sys.executable, SIM, "--scenario", scen, "--trace", str(trace),
                              "--realtime", "--no-live", "--micropython",
                              "--broker", "127.0.0.1:%d" % mosq.port], cwd=ROOT,
                             stdin=subprocess.DEVNULL, stdout=open(tmp_path / "out", "w"),
                             stderr=subprocess.STDOUT)
        p.out_path = str(tmp_path / "out")
        out = finish(p, 60)
        assert p.returncode == 0, out
        rec = w.wait_for(lambda t, x: t.endswith("/session"), 10, "session 1's record")
    finally:
        w.close()
        mosq.stop()
    print("\n" + "\n".join(l for l in out.splitlines() if l.startswith(("Control", "Backend"))))
    assert "MicroPython unix port" in out and "Traceback" not in out, out
    assert "Backend link: 1 boot(s), 2 connection(s)" in out, out
    assert "Control steps: " in out, out
    rows = [json.loads(s) for s in trace.read_text().splitlines()]
    replies = [r for row in rows for r in row.get("replies", ())]
    assert replies == [{"id": "c-1", "ok": True}], replies  # through the broker
    notes = [n for row in rows for n in row.get("notes", ())]
    assert notes.count("boot") == 1 and "mqtt: link lost" in notes, notes
    assert len([n for n in notes if n.startswith("mqtt: connected")]) == 2, notes
    r = json.loads(rec[1])
    assert r["id"] == 1 and r["reason"] == "unplugged" and r["energy_status"] == "measured", r
    assert any(row["offer_a"] == 10.0 for row in rows if row["t"] >= 5.0), "the limit applied"
    scen_n = {"duration_ms": 11000}
    check_rules(rows, scen_n)
    check_iec_timing(rows, scen_n)
