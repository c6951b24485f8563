"""The OCPP link's network-thread step allocates nothing while nothing is
due (the guide's "neither thread allocates in steady state"; issue 16):
host_tests/core_cases/ocpp_alloc.py in MicroPython's unix port against the
`ocpp` package's central system (test_ocpp.py's, over ws:// on loopback).

Connected and registered with nothing to send, during a transaction
between two messages, and with a charging profile in force (its limit
evaluated every second, renewed every minute), a step allocates 0 bytes.
A Heartbeat and its answer do allocate (JSON text): printed, and bounded
only as a check that the windows see what the step does.
"""
import asyncio
import os
import subprocess
import threading

from ocpp.v16 import call

import pytest

from test_micropython_core import UNIX_PORT
from test_micropython_heap import ports  # noqa: F401 (the 32-bit ports, a fixture)
from ocpp_env import Env
from ocpp_env import charging_profile as _cs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=["64-bit", "32-bit"])
def port(request):
    """The prebuilt unix port, and the 32-bit one (`make mp32`), where Unix
    time is past the small-int range: a sum of it would allocate."""
    if request.param == "64-bit":
        return UNIX_PORT
    return request.getfixturevalue("ports")["mpy"]


def test_ocpp_link_allocates_nothing_while_nothing_is_due(port):
    env = Env()

    class St:  # what test_ocpp's handlers read
        t = 0

    env.station = St()
    env.station.rig = St()
    try:
        envp = dict(os.environ)
        envp["MICROPYPATH"] = os.pathsep.join([os.path.join(ROOT, "firmware"),
                                               os.path.join(ROOT, "host_tests", "core_cases")])
        script = os.path.join(ROOT, "host_tests", "core_cases", "ocpp_alloc.py")
        p = subprocess.Popen([port, "-X", "heapsize=1M", script,
                              env.server.url("/ocpp/CP1")], cwd=ROOT, env=envp,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             stdin=subprocess.DEVNULL)
        out = []
        timer = threading.Timer(120, p.kill)
        timer.start()
        for line in p.stdout:
            out.append(line.rstrip("\n"))
            if line.startswith("WAITING profile"):
                fut = asyncio.run_coroutine_threadsafe(env.csms.call(call.SetChargingProfile(
                    connector_id=1, cs_charging_profiles=_cs(1, "TxDefaultProfile", 10))),
                    env.server.loop)
                assert fut.result(30).status == "Accepted"
        p.wait(10)
        timer.cancel()
    finally:
        env.server.stop()
    text = "\n".join(out)
    print(text)
    assert p.returncode == 0, text
    got = {}
    for line in out:
        f = line.split()
        if f and f[0] == "ALLOC":
            got[f[1]] = int(f[2])
    assert set(got) == {"idle", "heartbeat", "charging_idle", "profile_idle"}, text
    assert got["idle"] == 0, got
    assert got["charging_idle"] == 0, got
    assert got["profile_idle"] == 0, got
    assert 0 < got["heartbeat"] < 4096, got  # the window sees a message's JSON
    assert "STATE C2 10000" in text, text
    assert env.errors_sent() == []
