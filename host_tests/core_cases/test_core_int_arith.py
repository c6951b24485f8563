"""Integer and tick arithmetic must agree between CPython and MicroPython.

Infrastructure check for the cross-implementation runner (runner.py): each test
returns a digest, and host_tests/test_micropython_core.py asserts both
implementations return the same ones.  Nothing here imports `evse`.
"""
import sys

MASK32 = 0xFFFFFFFF
BOARD_PERIOD = 1 << 30  # ESP32 and RP2040; evse (its tick functions) emulates it on CPython


def _period():
    """The ticks period here: the port's own on MicroPython (2**30 on the
    boards and the WebAssembly port, 2**62 on the 64-bit unix port)."""
    if sys.implementation.name == "micropython":
        import time
        return time.ticks_add(0, -1) + 1
    return BOARD_PERIOD


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


def test_ticks_arithmetic():
    """The ticks functions against a reference for this port's period, with
    deltas legal on every port (|delta| < 2**29); the digest is of what is
    the same whatever the period (the diffs, and the later tick mod 2**30),
    so every port gives the same one."""
    period = _period()
    tmax = period - 1
    half = period // 2

    def add(t, delta):
        return (t + delta) & tmax

    def diff(t1, t2):
        return ((t1 - t2 + half) & tmax) - half

    native = None
    if sys.implementation.name == "micropython":
        import time
        native = (time.ticks_add, time.ticks_diff)
    acc = 0
    x = 1
    for i in range(2000):
        x = _lcg(x)
        t = x & tmax
        delta = (_lcg(x) % BOARD_PERIOD) - BOARD_PERIOD // 2
        later = add(t, delta)
        assert diff(later, t) == delta
        if native is not None:
            assert native[0](t, delta) == later, (t, delta)
            assert native[1](later, t) == delta, (later, t)
        acc = (acc * 33 + (later & (BOARD_PERIOD - 1)) + (delta & MASK32)) & MASK32
    # The edges of the wrap.
    assert add(tmax, 1) == 0
    assert diff(0, tmax) == 1
    assert diff(tmax, 0) == -1
    assert diff(half, 0) == -half
    if native is not None:
        assert native[0](tmax, 1) == 0 and native[1](0, tmax) == 1
    return "%08x" % acc
