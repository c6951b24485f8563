"""The firmware's Modbus code against real peers on a serial line: a
pymodbus RTU server (another implementation of the protocol) and a
hand-written misbehaving peer, each on one end of a socat pty pair, read
through tools/meter.py's serial transport and through tools/meter.py
itself.

Register images are built here with struct from physical values, in each
vendor's encoding, independently of the firmware's decoder and of the
simulator's encoder.
"""
import importlib.util
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import threading
import time
from fractions import Fraction

import pytest

from evse import meter, meter_maps
from evse import modbus as mb
from evse.meter import Meter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests", "core_cases"))
from busfake import frame, read_answer  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools"))
from modbus_tools import describe  # noqa: E402
TOOL = os.path.join(ROOT, "tools", "meter.py")
PEER = os.path.join(ROOT, "host_tests", "modbus_peer.py")
START_S = 10  # bound on every wait for a helper process

_spec = importlib.util.spec_from_file_location("meter_tool", TOOL)
meter_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(meter_tool)

# What every meter measures in these tests.
VOLTS = (230.1, 229.8, 231.0)
AMPS = (16.02, 15.98, 16.0)
WATTS = 11040
KWH = Fraction(1234567, 1000)
UNITS = dict((name, 11 + i) for i, name in enumerate(meter_maps.NAMES))


def _round(x):
    """Half away from zero, as the firmware rounds."""
    return int(x + Fraction(1, 2)) if x >= 0 else -int(-x + Fraction(1, 2))


def _image(p):
    """({address: register}, {role: value the firmware must decode}) for
    profile p."""
    phys = {meter.WH: KWH * 1000, meter.W: Fraction(WATTS)}
    for i in range(3):
        phys[meter.V1 + i] = Fraction(VOLTS[i]).limit_denominator(100) * 1000
        phys[meter.A1 + i] = Fraction(AMPS[i]).limit_denominator(100) * 1000
    regs = {}
    want = {}
    for role, addr, kind, num, den in p["fields"]:
        raw = phys[role] * den / num  # in the meter's own unit
        if kind == meter.F32:
            b = struct.pack(">f", float(raw))
            words = [int.from_bytes(b[0:2], "big"), int.from_bytes(b[2:4], "big")]
            want[role] = _round(Fraction(struct.unpack(">f", b)[0]) * num / den)
        else:
            r = int(raw) if role == meter.WH else _round(raw)  # counters truncate
            want[role] = r * num // den if den == 1 else _round(Fraction(r * num, den))
            nregs = meter.WIDTH[kind]
            v = r & ((1 << (16 * nregs)) - 1)
            words = [(v >> (16 * (nregs - 1 - i))) & 0xFFFF for i in range(nregs)]
        if p["words"] == "lo":
            words.reverse()
        for i, w in enumerate(words):
            regs[addr + i] = w
    for start, count in meter.plan_blocks(p["fields"], p["max_regs"]):
        for a in range(start, start + count):
            regs.setdefault(a, 0)  # registers the map does not name read 0
    return regs, want


def _expected(p, want):
    n = p["phases"]
    mv = [want.get(meter.V1 + i) for i in range(n)] + [None] * (3 - n)
    ma = [want.get(meter.A1 + i) for i in range(n)] + [None] * (3 - n)
    return mv, ma, want[meter.W], want[meter.WH]


# ------------------------------------------------------------- fixtures
def _wait_for(pred, what, limit=START_S):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > limit:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.02)


class PtyPair:
    def __init__(self, d):
        socat = shutil.which("socat")
        assert socat, "socat is not installed (make setup installs it)"
        self.peer = str(d / "peer")
        self.host = str(d / "host")
        self.proc = subprocess.Popen(
            [socat, "pty,raw,echo=0,link=%s" % self.peer, "pty,raw,echo=0,link=%s" % self.host],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: os.path.exists(self.peer) and os.path.exists(self.host), "socat ptys")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def pymodbus_line(tmp_path_factory):
    """A pymodbus server with one device per profile (unit 11, 12, ...)."""
    d = tmp_path_factory.mktemp("pymodbus")
    pair = PtyPair(d)
    devices = {}
    for p in [meter_maps.load(_n) for _n in meter_maps.NAMES]:
        regs, _ = _image(p)
        table = "input" if p["fc"] == 4 else "holding"
        devices[str(UNITS[p["id"]])] = {table: dict((str(a), w) for a, w in regs.items())}
    spec = d / "spec.json"
    spec.write_text(json.dumps({"port": pair.peer, "baud": 9600, "devices": devices}))
    proc = subprocess.Popen([sys.executable, PEER, str(spec)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], START_S)
        line = proc.stdout.readline().decode() if ready else ""
        assert line.strip() == "READY", "pymodbus peer did not start: %r %s" % (
            line, proc.stderr.read1(4000) if proc.poll() is not None else "")
        yield pair.host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pair.close()


class FakePeer(threading.Thread):
    """A hand-written peer on the pty: answers reads of unit 11 from the
    sdm630 image, misbehaving as `mode` says."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.mode = "good"
        self.stop = threading.Event()
        self.regs, _ = _image(meter_maps.load("sdm630"))
        self.requests = 0

    def answer(self, req):
        addr, qty = (req[2] << 8) | req[3], (req[4] << 8) | req[5]
        regs = [self.regs.get(addr + i, 0) for i in range(qty)]
        mode = self.mode
        right = read_answer(req[0], req[1], regs)
        if mode == "good":
            return right
        if mode == "silent":
            return b""
        if mode == "crc":
            return right[:-1] + bytes([right[-1] ^ 0x81])
        if mode == "short":
            return right[:-3]
        if mode == "exception":
            return frame(req[0], req[1] | 0x80, 4)
        if mode == "second-unit":
            return read_answer(req[0] + 1, req[1], regs)
        if mode == "second-then-right":
            return read_answer(req[0] + 1, req[1], [0xFFFF] * qty) + right
        if mode == "collision":  # both answer at once: the bytes mix
            other = read_answer(req[0] + 1, req[1], [0x1234] * qty)
            return bytes(a | b for a, b in zip(right, other))
        raise AssertionError(mode)

    def run(self):
        buf = b""
        while not self.stop.is_set():
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            try:
                buf += os.read(self.fd, 256)
            except BlockingIOError:
                continue
            while len(buf) >= 8:
                req, buf = buf[:8], buf[8:]
                if req[0] != 11 or not mb.crc_ok(req, 8):
                    continue  # not for us: a real meter keeps quiet
                self.requests += 1
                out = self.answer(req)
                if out:
                    os.write(self.fd, out)

    def close(self):
        self.stop.set()
        self.join(timeout=5)
        os.close(self.fd)


@pytest.fixture(scope="module")
def fake_line(tmp_path_factory):
    pair = PtyPair(tmp_path_factory.mktemp("fake"))
    peer = FakePeer(pair.peer)
    peer.start()
    try:
        yield pair.host, peer
    finally:
        peer.close()
        pair.close()


def _read(port, profile, unit, parity="N"):
    ser = meter_tool.open_port(port, 9600, parity)
    try:
        m = Meter(profile, meter_tool.SerialTransport(ser), unit=unit, parity=parity,
                  fail_polls=1)
        t0 = time.monotonic()
        meter_tool.read_once(m)
        return m, time.monotonic() - t0
    finally:
        ser.close()


def _tool(*args):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True,
                       timeout=30)
    return r, time.monotonic() - t0


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("name", meter_maps.NAMES)
def test_every_profile_against_pymodbus(pymodbus_line, name):
    p = meter_maps.load(name)
    m, took = _read(pymodbus_line, name, UNITS[name])
    assert m.last_good, (name, describe(m.error))
    mv, ma, w, wh = _expected(p, _image(p)[1])
    assert (m.phase_mv, m.phase_ma, m.power_w, m.energy_wh) == (mv, ma, w, wh)
    assert m.master.n_ok == len(m.blocks) and m.master.n_crc == m.master.n_frame == 0
    assert took < 2


def test_tool_reads_a_meter(pymodbus_line):
    r, took = _tool("--port", pymodbus_line, "--profile", "abb_b23", "--unit",
                    str(UNITS["abb_b23"]))
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and len(r.stdout.splitlines()) == 1
    assert json.loads(r.stdout) == {"v": [230.1, 229.8, 231.0], "a": [16.02, 15.98, 16.0],
                                    "w": 11040, "energy_wh": 1234560}
    r, _ = _tool("--port", pymodbus_line, "--profile", "orno_we514", "--unit",
                 str(UNITS["orno_we514"]))
    assert json.loads(r.stdout) == {"v": [230.1], "a": [16.02], "w": 11040,
                                    "energy_wh": 1234560}


def test_exception_response_from_pymodbus(pymodbus_line):
    # the sdm630 device has no 0x5B00.. holding registers: exception 02
    m, took = _read(pymodbus_line, "abb_b23", UNITS["sdm630"])
    assert m.error.args[0] == mb.EXCEPTION and m.error.code == 2
    assert m.energy_wh is None and took < 1
    r, _ = _tool("--port", pymodbus_line, "--profile", "abb_b23", "--unit",
                 str(UNITS["sdm630"]))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "exception response 2" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("mode,error", [
    ("silent", mb.NO_RESPONSE),
    ("crc", mb.BAD_CRC),
    ("short", mb.BAD_FRAME),
    ("exception", mb.EXCEPTION),
    ("second-unit", mb.NO_RESPONSE),
    ("collision", None),
])
def test_faults_never_yield_a_value(fake_line, mode, error):
    port, peer = fake_line
    peer.mode = mode
    n0 = peer.requests
    m, took = _read(port, "sdm630", 11)
    assert not m.last_good and m.energy_wh is None and m.a_ma is None
    assert m.phase_mv == [None] * 3
    if error is not None:
        assert m.error.args[0] == error, (mode, m.error)
    else:
        assert m.error.args[0] in (mb.BAD_CRC, mb.BAD_FRAME), m.error
    retries = 0 if mode == "exception" else 1
    assert peer.requests - n0 == 1 + retries
    assert took < 2  # two attempts of 168 ms on the wire + 200 ms


def test_a_foreign_frame_before_the_answer_is_skipped(fake_line):
    port, peer = fake_line
    peer.mode = "second-then-right"
    m, _ = _read(port, "sdm630", 11)
    assert m.last_good and m.master.n_other == 1
    assert m.energy_wh == 1234567 and m.phase_ma == [16020, 15980, 16000]


@pytest.mark.parametrize("mode,needle", [("silent", "no answer"), ("crc", "garbled")])
def test_tool_fails_in_one_line_within_seconds(fake_line, mode, needle):
    port, peer = fake_line
    peer.mode = mode
    r, took = _tool("--port", port, "--profile", "sdm630", "--unit", "11")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and took < 5


def test_tool_good_read_on_the_fake_line(fake_line):
    port, peer = fake_line
    peer.mode = "good"
    r, _ = _tool("--port", port, "--profile", "sdm630", "--unit", "11")
    assert r.returncode == 0 and json.loads(r.stdout)["energy_wh"] == 1234567


def test_tool_command_line():
    r, _ = _tool("--list")
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert names == list(meter_maps.NAMES)
    r, _ = _tool("--port", "/nonexistent/tty", "--profile", "sdm630", "--unit", "1")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "cannot open /nonexistent/tty" in r.stderr and "Traceback" not in r.stderr
    for bad in (["--profile", "sdm999"], ["--unit", "0"], ["--baud", "1234"],
                ["--parity", "X"], []):
        args = {"--port": "x", "--profile": "sdm630", "--unit": "1"}
        for i in range(0, len(bad), 2):
            args[bad[i]] = bad[i + 1]
        argv = [] if not bad else sum([[k, v] for k, v in args.items()], [])
        r, _ = _tool(*argv)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (bad, r.stderr)
