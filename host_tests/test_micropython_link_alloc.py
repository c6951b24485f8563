"""The network thread allocates nothing while it is idle (issue 11, part 4).

Runs host_tests/core_cases/link_alloc.py in MicroPython's unix port with the real
umqtt.simple (1.7.0 and 1.8.0, from `make setup`) against a real mosquitto:
connected, with nothing to send, a Link step (check for a command, the
snapshot, the journal, the keepalive) allocates 0 bytes, also with a
vehicle charging; a keepalive ping and its answer allocate 0 bytes. A
status publication does allocate (its JSON text): that is printed, bounded
as a check that the windows see what the step does.
"""
import os
import subprocess

import pytest

from mqtt_env import Mosquitto
from test_micropython_core import UNIX_PORT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UMQTT_VERSIONS = ("1.7.0", "1.8.0")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Mosquitto(tmp_path_factory.mktemp("mosq_alloc"))
    yield b
    b.stop()


@pytest.mark.parametrize("version", UMQTT_VERSIONS)
def test_network_thread_allocates_nothing_at_idle(broker, version):
    lib = os.path.join(ROOT, "build", "umqtt-" + version)
    assert os.path.isfile(os.path.join(lib, "umqtt", "simple.py")), (
        "umqtt.simple %s is missing: run `make setup`" % version)
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([os.path.join(ROOT, "firmware"),
                                          os.path.join(ROOT, "host_tests", "core_cases"), lib])
    script = os.path.join(ROOT, "host_tests", "core_cases", "link_alloc.py")
    p = subprocess.run([UNIX_PORT, "-X", "heapsize=1M", script, str(broker.port)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    got = {}
    for line in p.stdout.splitlines():
        f = line.split()
        if f and f[0] == "ALLOC":
            got[f[1]] = int(f[2])
    assert set(got) == {"waiting_ack", "idle", "ping", "status", "charging_idle"}, p.stdout
    assert got["waiting_ack"] == 0, got
    assert got["idle"] == 0, got
    assert got["charging_idle"] == 0, got
    assert got["ping"] == 0, got
    # a status message does allocate (its text and the pieces it is built
    # from): the window does measure the publication it contains
    assert got["status"] > 0, got
    assert "STATE C2 16000" in p.stdout
