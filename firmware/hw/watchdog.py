"""Watchdog supervisor: feed machine.WDT only while the control step is on time.

The control step stamps the tick time after every step (`stamp(now)`); the
supervisor (`poll(now)`), called from wherever the runtime schedules it,
feeds the hardware watchdog only when the last stamp is at most `max_age_ms`
old. If the control step hangs or stalls, the stamps stop, the feeding
stops, and the WDT resets the board into the same safe boot (main.py).
Nothing else may feed the WDT.
"""
from micropython import const

MAX_AGE_MS = const(500)  # 50 missed 10 ms ticks
WDT_TIMEOUT_MS = const(2000)  # ESP32: >= 1 s; RP2040: <= 8388 ms


class Supervisor:
    def __init__(self, wdt, ticks_diff, max_age_ms=MAX_AGE_MS):
        self._wdt = wdt
        self._diff = ticks_diff
        self.max_age_ms = max_age_ms
        self.stamp_ms = 0
        self.stamped = False
        self.fed = 0  # feeds given
        self.withheld = 0  # polls that found the control step late

    def stamp(self, now):
        """The control step finished a step at `now`."""
        self.stamp_ms = now
        self.stamped = True

    def poll(self, now):
        """Feed the WDT if the control step ran recently; True when fed."""
        if self.stamped and self._diff(now, self.stamp_ms) <= self.max_age_ms:
            self._wdt.feed()
            self.fed += 1
            return True
        self.withheld += 1
        return False
