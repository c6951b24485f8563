"""The firmware with its backend link in a fixed heap, in MicroPython's 32-bit
unix port with the GIL (`make mp32`, built by `make setup` from
../shared/vendor/micropython-1.28.0-unix-src.tar.xz or MICROPYTHON_SRC).

bench/mp_heap_unix.py boots the firmware as a board would on the fake
machine, starts Wi-Fi (host_tests/fakes/network.py) and the Link, connects
the real umqtt.simple to a real mosquitto, and runs the control loop through
a charging session, the link stepped beside it; this test answers a command
over the broker meanwhile. It must run to the end without a MemoryError in
`-X heapsize=` made of:

    the firmware's allowance       FIRMWARE_HEAP_FROZEN or FIRMWARE_HEAP_MPY
  + the baseline                   interpreter and test rig, measured here in
                                   a large heap of the same port
                                   (gc.mem_alloc() before the firmware)
  / the collector's usable share   gc.mem_alloc() + gc.mem_free() of that heap,
                                   over its -X heapsize (the rest is the
                                   collector's own tables)

Two runs:

- the firmware frozen into the binary (build/mp32/frozen/micropython,
  firmware/manifest.py), the way a plain ESP32 without PSRAM runs it
  (docs/boards.md). Issue 11's goal for it is 24 KB in use with the link
  (FROZEN_GOAL, a `make bench` figure: heap32_session_frozen_link). A fixed
  heap needs more than what is in use after a collection: the peak of the
  transient allocations (a journal write, a publish) and fragmentation
  come on top. FIRMWARE_HEAP_FROZEN is the measured need plus a margin.
- the firmware as .mpy files (build/mp32/plain/micropython), a regression
  guard at FIRMWARE_HEAP_MPY, just above its measured need. Its 64 KB goal
  is a bench figure (heap32_session_mpy_link, said met or missed there).

Each constant is the heap the run was measured to need (bisected to 1 KB
with bench/bench.py's driver), rounded up to the next KB step given: lower
it as the firmware shrinks; a run that fails means the firmware grew.
"""
import json
import math
import os
import sys

import pytest

from mqtt_env import Mosquitto, Watcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KB = 1024
SHARED = os.path.join(ROOT, "..", "shared", "vendor")

FROZEN_GOAL = 24 * KB  # issue 11: frozen with the link, in use (bench figure)
MPY_GOAL = 64 * KB  # issue 11: .mpy files with the link, in use (bench figure)
# Measured on 2026-12-02 by bisecting this test's run (-X heapsize to 1 KB):
# frozen, 53.0 KB of -X heapsize (51.8 KB usable) less the 14.0 KB baseline:
# 37.7 KB for the firmware, of which 26.5 KB is in use after boot with the
# link connected (27.2 KB after the session), the rest the peak of the
# session's end (a 512-byte journal read) and fragmentation;
# .mpy: 143.0 KB of -X heapsize less 15.9 KB: 123.8 KB (107.5 KB in use
# after boot). From the heap cuts and site energy of 2026-12-02 on, the .mpy
# run ended in a MemoryError at the session's end (tick 15118, "allocating
# 1280 bytes" while jsonw wrote the session record) in every allowance from
# 128 to 168 KB, though only some 105 KB were in use. Found on 2026-12-04:
# that was the qstr pool growing (the count is of entries: a 1,280-entry
# pool is about 9 KB in one block), because iterating a str interns each
# character (docs/development.md); jsonw and the checks of outside text now
# work on bytes. Measured on 2026-12-04: the run needs 162 KB of allowance
# (fails at 160: below it the backend link is not made, so start_network
# leaves it off and the charger charges without it, as it must; the link's
# .mpy modules are each loaded as one block of bytecode into a heap the
# boot has fragmented). Measured again later on 2026-12-04, with the .mpy
# files compiled and loaded under their names on a board ("evse/app.py",
# "evse/app.mpy": bench.stage_firmware, bench.heap32) instead of this
# machine's paths to them: frozen needs 34 KB (22.2 KB in use after boot,
# 23.3 KB after the session), .mpy 158 KB (104.9, 106.0 KB); after the next
# two commits (a few constants folded, OCPP's command bound) frozen needs
# 35 KB with the same bytes in use. The need moves by a few KB with where
# the boot's blocks land (it is set by one 512-byte block at the session's
# end), so the allowances are the needs plus 4 KB.
FIRMWARE_HEAP_FROZEN = 39 * KB
FIRMWARE_HEAP_MPY = 162 * KB
MINUTES = 3  # fake minutes of control loop: plug in, charge, unplug


def _bench():
    # bench/bench.py (its rig and staging); it puts bench/ and tools/ on sys.path
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import bench

    return bench


B = _bench()
PORTS = {"frozen": B.MP32_PORT["frozen"], "mpy": B.MP32_PORT["plain"]}
ALLOWANCE = {"frozen": FIRMWARE_HEAP_FROZEN, "mpy": FIRMWARE_HEAP_MPY}


@pytest.fixture(scope="module")
def ports():
    if all(os.access(p, os.X_OK) for p in PORTS.values()):
        return PORTS
    missing = ", ".join(B.rel(p) for p in PORTS.values() if not os.access(p, os.X_OK))
    if os.path.isdir(SHARED) or os.environ.get("MICROPYTHON_SRC"):
        pytest.fail("%s missing although a MicroPython source is there: run `make mp32` "
                    "(the 32-bit unix port, plain and with the firmware frozen)" % missing)
    pytest.skip("no 32-bit MicroPython unix port (%s): `make mp32` needs a MicroPython "
                "source, ../shared/vendor/micropython-1.28.0-unix-src.tar.xz or "
                "MICROPYTHON_SRC=DIR|TARBALL" % missing)


@pytest.fixture(scope="module")
def rig(ports, tmp_path_factory):
    d = tmp_path_factory.mktemp("heap32")
    return {"dir": d, "path": {"mpy": B.stage_firmware(str(d / "fw")), "frozen": ".frozen"},
            "runs": 0}


def _run(rig, kind, heap, minutes, command=None):
    """The driver in `heap` bytes of the `kind` port ("frozen" or "mpy");
    with `command`, published once the charger has published its first
    status, and its reply waited for. Returns (results, replies, status
    messages)."""
    rig["runs"] += 1  # a fresh broker each run: nothing retained from the last one
    broker = Mosquitto(rig["dir"] / ("broker-%d" % rig["runs"]))
    root = B.rig_files(str(rig["dir"] / "flash"), broker.port)
    w = Watcher(broker.port, topics=("evse/heap32/#",))
    replies = []
    try:
        import threading

        def answer():
            try:
                # the first status comes after the subscription (online comes before it)
                w.wait_for(lambda t, m: t == "evse/heap32/status", 60, "the first status")
                w.publish("evse/heap32/cmd", json.dumps(command))
                replies.append(w.wait_for(lambda t, m: t == "evse/heap32/reply", 60,
                                          "the reply")[1])
            except AssertionError as e:
                replies.append(e)

        t = None
        if command is not None:
            t = threading.Thread(target=answer, daemon=True)
            t.start()
        r = B.heap32(PORTS[kind], root, minutes, [rig["path"][kind], B.FAKES], heap=heap,
                     timeout=300)
        if t is not None:  # the reply came while the driver ran, or never
            t.join(5)
        status = w.on("/status")
    finally:
        w.close()
        broker.stop()
    return r, replies, status


_baselines = {}


def _baseline(rig, kind):
    """Interpreter and rig in a 1 MB heap of that port: (baseline bytes, usable share)."""
    if kind not in _baselines:
        r, _, _ = _run(rig, kind, 1024 * KB, 1)
        assert r["_rc"] == 0, r["_out"]
        _baselines[kind] = (r["heap_base"], r["heap_total"] / float(1024 * KB))
    return _baselines[kind]


def heap_for(firmware, baseline):
    """-X heapsize for `firmware` bytes beside `baseline` (bytes, usable share),
    rounded up to the collector's 16-byte block."""
    base, usable = baseline
    return int(math.ceil((firmware + base) / usable / 16.0)) * 16


def test_heap_arithmetic():
    # 24 KB for the firmware beside a 14 KB baseline, 97.7 % of the heap usable
    assert heap_for(FROZEN_GOAL, (14352, 0.977)) == 39856
    assert heap_for(0, (16, 1.0)) == 16
    assert FIRMWARE_HEAP_FROZEN < FIRMWARE_HEAP_MPY


def _check_run(r, replies, status, heap):
    assert "memory_error" not in r, "MemoryError in -X heapsize=%d:\n%s" % (heap, r["_out"])
    assert r["_rc"] == 0, r["_out"]
    assert r["link_connected"] == 1 and r["connects"] == 1, r["_out"]
    assert r["sessions"] == 1 and r["meter_good"] >= MINUTES * 55, r
    assert r["ticks"] == MINUTES * 6000
    assert status, "no status published"
    assert len(replies) == 1 and not isinstance(replies[0], AssertionError), replies
    rep = json.loads(replies[0])
    assert rep["id"] == "heap-1" and rep["ok"] is True, rep


@pytest.mark.parametrize("kind", ["frozen", "mpy"])
def test_firmware_with_link_runs_in_a_fixed_heap(rig, kind):
    """Boot, connect, a command answered, a charging session: no MemoryError
    in the firmware's allowance beside the measured baseline."""
    heap = heap_for(ALLOWANCE[kind], _baseline(rig, kind))
    r, replies, status = _run(rig, kind, heap, MINUTES,
                              {"cmd": "set_current", "id": "heap-1", "amps": 10})
    _check_run(r, replies, status, heap)


# ------------------------------------------------- the OCPP backend (issue 16)
# Measured on 2026-12-04 by bisecting this test's run to 1 KB: frozen, the
# firmware needs 34 KB beside the baseline (26.6 KB in use after boot with
# the WebSocket up, 27.7 KB after the session: the OCPP link costs about
# 4 KB more than the MQTT one); .mpy, 165 KB (133.8 KB, 138.4 KB in use).
# Before the WebSocket made its message buffers per message (2026-12-03):
# 43 KB frozen (30.6, 31.7 KB in use), 165 KB .mpy. Two commits later (a few
# constants folded, the command bound) frozen needs 38 KB with the same bytes
# in use: where the blocks land decides (the failure is one 512-byte block at
# the session's end). A smaller allowance ends in a MemoryError: the link is
# not made (start_network leaves it off), or first inside an answer to the
# central system, then at the session's end. The allowances are the needs
# plus 4 and 3 KB; the test prints what is in use.
FIRMWARE_HEAP_OCPP = {"frozen": 42 * KB, "mpy": 168 * KB}


def _run_ocpp(rig, kind, heap, minutes):
    """The driver with `backend` "ocpp" against the `ocpp` package's
    central system, a charging profile set during the run (bench.ocpp_heap32).
    Returns (results, the profile's answer, the calls seen, the
    Authorization headers)."""
    return B.ocpp_heap32(PORTS[kind], str(rig["dir"] / "flash"), minutes,
                         [rig["path"][kind], B.FAKES], heap=heap)


@pytest.mark.parametrize("kind", ["frozen", "mpy"])
def test_firmware_with_the_ocpp_link_runs_in_a_fixed_heap(rig, kind):
    """The OCPP configuration as a board runs it: boot, the WebSocket up,
    BootNotification accepted, a charging profile answered, a charging
    session with its transaction: no MemoryError in the allowance beside
    the measured baseline."""
    heap = heap_for(FIRMWARE_HEAP_OCPP[kind], _baseline(rig, kind))
    r, answer, calls, auth = _run_ocpp(rig, kind, heap, MINUTES)
    assert "memory_error" not in r, "MemoryError in -X heapsize=%d:\n%s" % (heap, r["_out"])
    assert r["_rc"] == 0, r["_out"]
    print("ocpp %s: %d B in use after boot, %d B after the session (-X heapsize=%d)"
          % (kind, r["heap_start"], r["heap_session"], heap))
    assert r["link_connected"] == 1 and r["connects"] == 1, r["_out"]
    assert r["sessions"] == 1 and r["ticks"] == MINUTES * 6000, r
    assert answer == ["Accepted"], answer
    assert calls[0] == "BootNotification" and "StartTransaction" in calls, calls
    assert auth and auth[0].startswith("Basic "), auth
