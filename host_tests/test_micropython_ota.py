"""The board's update code under real MicroPython, both unix ports
(.venv/bin/micropython, 64-bit; build/mp32/plain/micropython, 32-bit with
the GIL): evse.p256 accepts the signature tools/release.py made and refuses
a changed signature or digest; evse.ota.Stager stages the whole compiled
firmware into slot 1 with every file's hash checked, and refuses a bundle
with one file byte changed without pointing the state at it. The time,
the bytes allocated and the longest gap of a 10 ms loop in a second thread
during a verification are printed (pytest -s) for docs/ota.md, never
asserted (a shared machine)."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from test_micropython_core import UNIX_PORT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import release as R  # noqa: E402

MP32 = os.path.join(ROOT, "build", "mp32", "plain", "micropython")
SCRIPT = os.path.join(ROOT, "host_tests", "mp_ota.py")
PORTS = {"unix64": UNIX_PORT, "mp32": MP32}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpota")
    key, pub = str(d / "ota_key.pem"), str(d / "ota_key.bin")
    R.keygen(key, pub)
    files = R.compile_firmware("linux", str(d / "stage"))
    man = R.manifest_bytes("0.6.0", "linux", R.mpy_version(), files)
    out = str(d / "b.evu")
    with open(out, "wb") as f:
        for chunk in R.bundle(R._load_private(key), man, files):
            f.write(chunk)
    return pub, out, json.loads(man), d


def run(port, what, pub, out, work, heap="512K"):
    exe = PORTS[port]
    assert os.path.isfile(exe), "%s missing: `make setup` builds it" % exe
    env = dict(os.environ)
    env["MICROPYPATH"] = os.path.join(ROOT, "firmware")
    p = subprocess.run([exe, "-X", "heapsize=" + heap, SCRIPT, pub, out, work, what],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    res = {}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            _, k, v = line.split(" ", 2)
            res[k] = v
    return res


@pytest.mark.parametrize("port", sorted(PORTS))
def test_verifies_the_tools_signature_and_refuses_a_changed_one(port, bundle):
    pub, out, _, d = bundle
    r = run(port, "verify", pub, out, str(d), heap="8M")  # the collector off: all it allocates
    ok, ms, used = (int(x) for x in r["good"].split())
    assert ok == 1 and r["bad_sig"] == "0" and r["bad_digest"] == "0"
    assert r["verify_gc_on"] == "1"
    print("\n%s: one verification %d ms on this host, %d bytes allocated" % (port, ms, used))
    g = run(port, "gap", pub, out, str(d))
    ok, ms, gap, steps = (int(x) for x in g["gap"].split())
    assert ok == 1
    print("%s: longest gap of a 10 ms loop during it: %d ms (%d steps, verify %d ms)"
          % (port, gap, steps, ms))


@pytest.mark.parametrize("port", sorted(PORTS))
def test_refuses_a_changed_file_and_stages_the_firmware_into_slot_1(port, bundle):
    pub, out, man, d = bundle
    work = d / ("flash-" + port)
    work.mkdir()
    r = run(port, "stage", pub, out, str(work))
    assert r["changed"] == "7"  # E_HASH, first
    assert r["state_changed"] == "0 -1 0 0"  # the state names no trial
    slot, ms = (int(x) for x in r["staged"].split())
    assert slot == 1 and r["state"] == "0 1 0 1"  # committed 0, trial 1, not armed, staged
    assert r["runner_staged"] == man["version"]
    assert r["runner_C2"] == "0 0 1 0 1"  # charging: no reset asked, not armed
    assert r["runner_A"] == "1 0 1 1 1"  # no vehicle: armed, one reset asked
    for path, size, digest in man["files"]:
        data = (work / "ota_b" / path).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == digest
    assert json.loads((work / "ota_b" / "ota.json").read_bytes()) == man
    print("\n%s: staged %d files in %d ms" % (port, len(man["files"]), ms))
