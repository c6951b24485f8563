"""Integer and tick arithmetic must agree between CPython and MicroPython.

Infrastructure check for the cross-implementation runner (runner.py): each test
returns a digest, and host_tests/test_micropython_core.py asserts both
implementations return the same ones.  Nothing here imports `evse`.
"""
import sys

MASK32 = 0xFFFFFFFF
TICKS_PERIOD = 1 << 30  # what evse.ticks assumes for MicroPython ports
TICKS_MAX = TICKS_PERIOD - 1
_HALF = TICKS_PERIOD // 2


def _crc32(data, crc=0):
    crc ^= MASK32
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ MASK32


def _lcg(seed):
    # Numerical Recipes LCG, 32-bit: exercises wrap-around past small ints.
    return (seed * 1664525 + 1013904223) & MASK32


def test_crc32_bitwise():
    assert _crc32(b"123456789") == 0xCBF43926  # the standard check value
    crc = _crc32(bytes(range(256)))
    assert crc == 0x29058C73
    return "%08x" % crc


def test_int_fold():
    # Floor division/modulo of negatives, shifts, big intermediates.
    acc = 0
    x = 12345
    for i in range(2000):
        x = _lcg(x)
        a = x - (1 << 31)          # signed 32-bit range
        b = (i % 97) - 48 or 7
        q, r = a // b, a % b
        assert q * b + r == a
        assert divmod(a, b) == (q, r)
        acc = (acc * 31 + q + (r << 3) + (a >> 5) + (x * x >> 40)) & MASK32
    return "%08x" % acc


def _ticks_add(t, delta):
    return (t + delta) & TICKS_MAX


def _ticks_diff(t1, t2):
    return ((t1 - t2 + _HALF) & TICKS_MAX) - _HALF


def test_ticks_arithmetic():
    native = None
    if sys.implementation.name == "micropython":
        import time
        native = (time.ticks_add, time.ticks_diff)
    acc = 0
    x = 1
    for i in range(2000):
        x = _lcg(x)
        t = x & TICKS_MAX
        delta = (_lcg(x) % TICKS_PERIOD) - _HALF  # any legal delta
        later = _ticks_add(t, delta)
        assert _ticks_diff(later, t) == delta
        if native is not None:
            assert native[0](t, delta) == later, (t, delta)
            assert native[1](later, t) == delta, (later, t)
        acc = (acc * 33 + later + (delta & MASK32)) & MASK32
    # The edges of the wrap.
    assert _ticks_add(TICKS_MAX, 1) == 0
    assert _ticks_diff(0, TICKS_MAX) == 1
    assert _ticks_diff(TICKS_MAX, 0) == -1
    assert _ticks_diff(_HALF, 0) == -_HALF
    return "%08x" % acc
