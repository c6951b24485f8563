"""The charger's pure logic (nothing from machine or network, no side
effects at import), and here its millisecond tick arithmetic, the same on
the board and on the host (`from evse import ticks_diff`).

On MicroPython these are the `time` module's own functions, and the period
is the port's own (`ticks_add(0, -1) + 1`: 2**30 on the ESP32 and RP2040,
2**62 on the 64-bit unix port). On CPython (host tests, simulator) they are
re-implemented with the boards' period of 2**30, so the wrap-around behaves
as on a board (also for ticks_us, which only board adapters use). Code
compares times only through `ticks_diff` and computes deadlines only through
`ticks_add`, and keeps no tick value longer than a fraction of half the
period: the charger core keeps elapsed-ms counters instead.
"""
try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms, ticks_us  # MicroPython
except ImportError:  # CPython host
    import time as _time

    def sleep_ms(ms):
        _time.sleep(ms / 1000)

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
    TICKS_MAX = ticks_add(0, -1)
    TICKS_PERIOD = TICKS_MAX + 1
