"""Millisecond tick arithmetic, the same on the board and on the host.

On MicroPython these are the `time` module's own functions. On CPython (host
tests, simulator) they are re-implemented with the ports' period of 2**30, so
the wrap-around behaves identically everywhere (also for ticks_us, which
only board adapters use). Charger code compares times only through
`ticks_diff` and computes deadlines only through `ticks_add`.
"""
try:
    from time import ticks_add, ticks_diff, ticks_ms, ticks_us  # MicroPython
except ImportError:  # CPython host
    import time as _time

    TICKS_PERIOD = 1 << 30
    TICKS_MAX = TICKS_PERIOD - 1
    _HALF = TICKS_PERIOD // 2

    def ticks_add(ticks, delta):
        return (ticks + delta) & TICKS_MAX

    def ticks_diff(ticks1, ticks2):
        return ((ticks1 - ticks2 + _HALF) & TICKS_MAX) - _HALF

    def ticks_ms():
        return int(_time.monotonic() * 1000) & TICKS_MAX

    def ticks_us():
        return int(_time.monotonic() * 1000000) & TICKS_MAX
else:
    TICKS_PERIOD = 1 << 30
    TICKS_MAX = TICKS_PERIOD - 1
