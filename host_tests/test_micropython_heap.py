"""The firmware with its backend link in a fixed heap, in MicroPython's 32-bit
unix port with the GIL (`make mp32`, built by `make setup` from
../shared/vendor/micropython-1.28.0-unix-src.tar.xz or MICROPYTHON_SRC).

bench/mp_heap_unix.py boots the firmware as a board would (.mpy files,
main.py as source, the real umqtt.simple as .mpy) on the fake machine,
starts Wi-Fi (host_tests/fakes/network.py) and the Link, connects to a real
mosquitto, and runs the control loop through a charging session, the link
stepped beside it; this test answers a command over the broker meanwhile.
It must run to the end without a MemoryError in `-X heapsize=` made of:

    FIRMWARE_HEAP                  what the firmware may use (the goal: 64 KB)
  + the baseline                   interpreter and test rig, measured here in
                                   a large heap (gc.mem_alloc() before the firmware)
  / the collector's usable share   gc.mem_alloc() + gc.mem_free() of that heap,
                                   over its -X heapsize (the rest is the
                                   collector's own tables)

Issue 11's goal is 64 KB for the firmware as .mpy files with the link, so
that a stock ESP32 (about 110 KB of MicroPython heap with Wi-Fi and a TLS
session) keeps 40 KB or more for Wi-Fi, TLS and fragmentation. The firmware
does not fit it yet: FIRMWARE_HEAP is what it needs today (measured, see
the constant), and test_fits_the_goal is expected to fail until it fits (it
is strict: once the firmware fits, it fails as XPASS, and FIRMWARE_HEAP is
to be lowered to FIRMWARE_HEAP_GOAL).
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

FIRMWARE_HEAP_GOAL = 64 * KB  # issue 11: .mpy files with the link
# What the firmware is given today (a named constant to tighten). Measured on
# 2026-12-02 by bisecting this test's run: the firmware then needed 152 KB
# (about 118 KB in use after boot with the link connected, the rest transient
# during the boot: the run fails at 0 ticks below it). Lower it as the
# firmware shrinks, down to FIRMWARE_HEAP_GOAL.
FIRMWARE_HEAP = 160 * KB
MINUTES = 3  # fake minutes of control loop: plug in, charge, unplug


def _bench():
    # bench/bench.py (its rig and staging); it puts bench/ and tools/ on sys.path
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import bench

    return bench


B = _bench()
PORT = B.MP32_PORT["plain"]



@pytest.fixture(scope="module")
def port():
    if os.access(PORT, os.X_OK):
        return PORT
    if os.path.isdir(SHARED) or os.environ.get("MICROPYTHON_SRC"):
        pytest.fail("%s is missing although a MicroPython source is there: run `make setup` "
                    "(it builds the 32-bit unix port: `make mp32-plain`)" % B.rel(PORT))
    pytest.skip("no 32-bit MicroPython unix port (%s): `make mp32-plain` needs a MicroPython "
                "source, ../shared/vendor/micropython-1.28.0-unix-src.tar.xz or "
                "MICROPYTHON_SRC=DIR|TARBALL" % B.rel(PORT))


@pytest.fixture(scope="module")
def rig(port, tmp_path_factory):
    d = tmp_path_factory.mktemp("heap32")
    return {"dir": d, "fw": B.stage_firmware(str(d / "fw")), "runs": 0}


def _run(rig, heap, minutes, command=None):
    """The driver in `heap` bytes; with `command`, published once the charger
    has published its first status, and its reply waited for. Returns
    (results, replies, status messages)."""
    rig["runs"] += 1  # a fresh broker each run: nothing retained from the last one
    broker = Mosquitto(rig["dir"] / ("broker-%d" % rig["runs"]))
    root = B.rig_files(str(rig["dir"] / "flash"), broker.port)
    w = Watcher(broker.port, topics=("evse/heap32/#",))
    replies = []
    try:
        import subprocess
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
        r = B.heap32(PORT, root, minutes, [rig["fw"], B.FAKES], heap=heap, timeout=300)
        if t is not None:  # the reply came while the driver ran, or never
            t.join(5)
        status = w.on("/status")
    finally:
        w.close()
        broker.stop()
    return r, replies, status


@pytest.fixture(scope="module")
def baseline(rig):
    """Interpreter and rig in a 1 MB heap: the baseline and the usable share."""
    r, _, _ = _run(rig, 1024 * KB, 1)
    assert r["_rc"] == 0, r["_out"]
    return r["heap_base"], r["heap_total"] / float(1024 * KB)


def _heap_for(firmware, baseline):
    base, usable = baseline
    return int(math.ceil((firmware + base) / usable / 16.0)) * 16


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


def test_firmware_with_link_runs_in_a_fixed_heap(rig, baseline):
    heap = _heap_for(FIRMWARE_HEAP, baseline)
    r, replies, status = _run(rig, heap, MINUTES,
                              {"cmd": "set_current", "id": "heap-1", "amps": 10})
    _check_run(r, replies, status, heap)


@pytest.mark.xfail(FIRMWARE_HEAP > FIRMWARE_HEAP_GOAL, strict=True,
                   reason="the firmware does not fit issue 11's goal yet (64 KB with the "
                          "link, as .mpy files): see FIRMWARE_HEAP")
def test_fits_the_goal(rig, baseline):
    heap = _heap_for(FIRMWARE_HEAP_GOAL, baseline)
    r, replies, status = _run(rig, heap, MINUTES,
                              {"cmd": "set_current", "id": "heap-1", "amps": 10})
    _check_run(r, replies, status, heap)
