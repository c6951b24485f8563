"""Fuzzing the Modbus response path with hypothesis: random and mutated
frames into the response check, byte streams in random chunks into the
master, garbage into a Meter. Nothing may raise, and nothing but a frame
with a good CRC, the right unit and function and the right length may
ever yield a value."""
import os
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evse import modbus as mb
from evse.meter import Meter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_cases"))
from busfake import ScriptBus, read_answer  # noqa: E402

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _request(unit, fc, addr, qty):
    req = bytearray(8)
    mb.build_read(req, unit, fc, addr, qty)
    return req


def _valid_for(buf, n, req):
    """Independent statement of what an acceptable answer is."""
    if n < 5:
        return None
    qty = (req[4] << 8) | req[5]
    length = 5 + 2 * qty
    if n < length or buf[0] != req[0] or buf[1] != req[1] or buf[2] != 2 * qty:
        return None
    c = mb.crc16(buf, 0, length - 2)
    if buf[length - 2] != c & 0xFF or buf[length - 1] != c >> 8:
        return None
    return length


units = st.integers(1, 247)
fcs = st.sampled_from([3, 4])
qtys = st.integers(1, 40)


@SETTINGS
@given(st.binary(max_size=300), units, fcs, st.integers(0, 0xFFFF), qtys)
def test_random_bytes(data, unit, fc, addr, qty):
    req = _request(unit, fc, addr, qty)
    r = mb.check_response(data, len(data), req)
    assert isinstance(r, int)
    if r > 0:
        assert r == _valid_for(data, len(data), req)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10000), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10000), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10000)),
    st.tuples(st.just("insert"), st.integers(0, 10000), st.integers(0, 255)),
    st.tuples(st.just("drop"), st.integers(0, 10000)),
    st.tuples(st.just("burst"), st.integers(0, 10000), st.integers(1, 0xFFFF)),
)


def _mutate(frame, muts):
    b = bytearray(frame)
    for m in muts:
        if not b:
            break
        i = m[1] % len(b)
        if m[0] == "flip":
            b[i] ^= 1 << m[2]
        elif m[0] == "set":
            b[i] = m[2]
        elif m[0] == "cut":
            del b[i:]
        elif m[0] == "insert":
            b.insert(i, m[2])
        elif m[0] == "drop":
            del b[i]
        else:  # an error burst of up to 16 bits
            b[i] ^= m[2] >> 8
            if i + 1 < len(b):
                b[i + 1] ^= m[2] & 0xFF
    return bytes(b)


@SETTINGS
@given(units, fcs, st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40),
       st.lists(mutation, min_size=1, max_size=4))
def test_mutated_answers(unit, fc, regs, muts):
    req = _request(unit, fc, 0x100, len(regs))
    good = read_answer(unit, fc, regs)
    bad = _mutate(good, muts)
    r = mb.check_response(bad, len(bad), req)
    if r > 0:
        assert r == _valid_for(bad, len(bad), req)
    if len(muts) == 1 and muts[0][0] in ("flip", "burst") and bad != good:
        # CRC-16 detects every error burst of 16 bits or less
        assert r <= 0


class Stream:
    """A transport that delivers `data` in the given chunk sizes, one chunk
    per poll, after the request went out."""

    def __init__(self, data, chunks):
        self.data = bytearray(data)
        self.chunks = list(chunks) or [len(data)]
        self.buf = bytearray()
        self.sent = 0

    def write(self, b):
        self.sent += 1
        return len(b)

    def tick(self):
        if self.sent and self.data:
            n = self.chunks.pop(0) if self.chunks else len(self.data)
            self.buf += self.data[:n]
            del self.data[:n]

    def any(self):
        return len(self.buf)

    def readinto(self, buf, n):
        n = min(n, len(self.buf))
        buf[:n] = self.buf[:n]
        del self.buf[:n]
        return n


@SETTINGS
@given(st.binary(max_size=200), st.lists(st.integers(1, 40), max_size=20),
       st.booleans(), units, st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20))
def test_master_on_random_streams(noise, chunks, with_answer, unit, regs):
    good = read_answer(unit, 4, regs)
    data = noise + good if with_answer else noise
    bus = Stream(data, chunks)
    m = mb.Master(bus, 9600, "N", retries=1, turnaround_ms=50)
    m.start_read(unit, 4, 0, len(regs))
    t = 0
    r = mb.BUSY
    while r == mb.BUSY and t < 2000:
        bus.tick()
        r = m.poll(t)
        t += 10
    assert r in (mb.DONE, mb.FAILED)
    if r == mb.DONE:
        n = 5 + 2 * len(regs)
        assert _valid_for(m.rx, n, m.tx) == n
        if not noise:
            assert bytes(m.rx[:n]) == good
    else:
        assert isinstance(m.error, mb.ModbusError)


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=80), max_size=12),
       st.sampled_from(["sdm630", "abb_b23", "em340", "orno_we514"]))
def test_meter_fed_garbage_never_raises_nor_reads(replies, profile):
    m = Meter(profile, ScriptBus(replies), unit=1, fail_polls=1, poll_ms=100)
    for t in range(0, 3000, 10):
        m.poll(t)
    # random bytes are (with overwhelming odds) no valid answer
    assert m.good == 0 and m.energy_wh is None and m.a_ma is None
    assert m.polls >= 1 and not m.ok
