"""Control-pilot sampling: a burst of ADC readings spanning a PWM period.

Design (docs/boards.md, "Sampling the pilot"): each control tick reads the
CP measuring divider `n` times back to back into a preallocated array, the
burst lasting at least _BURST_US (1.2 periods of the 1 kHz PWM), so it always
contains both plateaus whatever the phase of the PWM. The high plateau is
the mean of the samples above the mid level whose neighbours are above it
too (samples next to an edge may catch the 2-10 us transition and are left
out); the low plateau likewise below. With no edge in the burst (steady
+12 V, steady -12 V, or a pilot shorted to PE) both plateaus are the mean of
all samples. If a plateau is too short to have an inner sample (the 96 %
duty of 80 A leaves 40 us low), its extreme sample is taken.

No interrupt is involved: on the ESP32 an ADC read may not run in a hard
interrupt handler (the IDF driver takes a lock) and soft interrupts are
delayed by milliseconds, so an edge-triggered sample would land anywhere in
the period; a burst is phase independent and costs about 1.3 ms per 10 ms
tick. Everything in sample() is integer arithmetic on preallocated storage:
it allocates nothing. The buffer holds `size` samples until calibrate() has
sized the burst, then exactly `n`.
"""
from array import array

from micropython import const

_BURST_US = const(1200)  # at least 1.2 PWM periods
_MIN_SAMPLES = const(8)
_STEADY_SPAN_MV = const(2000)  # less than this between min and max: no edge


class CpSampler:
    """`read` is the ADC's bound read method, `div` what to divide it by to
    get the profile's raw unit (read_uv: 1000 -> mV; read_u16: 1)."""

    def __init__(self, read, div, prof, size=160):
        self._read = read
        self._div = div
        self._buf = array("H", [0] * size)
        self.size = size
        self.n = size
        self.us_per_sample = 0
        self.mv = prof.cp_mv  # a raw reading -> mV at the CP, the profile's transfer
        self.high_mv = 0
        self.low_mv = 0
        self.steady = True
        self.samples_high = 0  # inner samples behind the last plateaus
        self.samples_low = 0

    def calibrate(self, ticks_us, ticks_diff):
        """Time 32 reads; size the burst to cover _BURST_US. Returns n."""
        buf = self._buf
        rd = self._read
        d = self._div
        k = 32 if self.size >= 32 else self.size
        t0 = ticks_us()
        for i in range(k):
            buf[i] = rd() // d
        dt = ticks_diff(ticks_us(), t0)
        per = dt // k if dt >= k else 1
        n = (_BURST_US + per - 1) // per
        if n < _MIN_SAMPLES:
            n = _MIN_SAMPLES
        if n > self.size:
            n = self.size
        self.us_per_sample = per
        self.n = n
        if len(buf) > n:  # the burst's length is known: keep no more buffer than it
            self._buf = array("H", [0] * n)
        return n

    def sample(self):
        buf = self._buf
        rd = self._read
        d = self._div
        n = self.n
        for i in range(n):
            buf[i] = rd() // d
        lo = hi = buf[0]
        total = 0
        for i in range(n):
            v = buf[i]
            total += v
            if v < lo:
                lo = v
            elif v > hi:
                hi = v
        lo_mv = self.mv(lo)
        hi_mv = self.mv(hi)
        if hi_mv - lo_mv < _STEADY_SPAN_MV:
            self.high_mv = self.low_mv = self.mv(total // n)
            self.steady = True
            self.samples_high = self.samples_low = n
            return
        self.steady = False
        mid = (lo + hi) >> 1
        sh = ch = sl = cl = 0
        prev = buf[0] > mid
        cur = buf[1] > mid
        for i in range(1, n - 1):
            v = buf[i + 1]
            nxt = v > mid
            if prev == cur and cur == nxt:
                if cur:
                    sh += buf[i]
                    ch += 1
                else:
                    sl += buf[i]
                    cl += 1
            prev = cur
            cur = nxt
        self.samples_high = ch
        self.samples_low = cl
        self.high_mv = self.mv(sh // ch) if ch else hi_mv
        self.low_mv = self.mv(sl // cl) if cl else lo_mv
