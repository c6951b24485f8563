"""Enclosure temperature from an ADC voltage, in 0.1 degC, integers only.

Two sensor kinds (profile key `temp`):

- `ntc`: an NTC thermistor in a divider with a fixed resistor. The table of
  ADC voltages from -40 to +150 degC in 5 degC steps is computed once at
  start-up (floats and math.exp are fine there); a reading is a search and a
  linear interpolation in integers.
- `linear`: a linear sensor such as the MCP9700A (500 mV at 0 degC,
  10 mV/degC): integer arithmetic.

A reading outside the sensor's range (open or shorted sensor, missing NTC)
is reported as FAULT_DC, 150.0 degC: the charger then raises `overtemp` and
stops, which is the safe reaction to a temperature it cannot know.
"""
from micropython import const

FAULT_DC = const(1500)
_T_MIN_C = const(-40)
_T_MAX_C = const(150)
_T_STEP_C = const(5)


class NtcTable:
    """ADC input (10 uV units) -> 0.1 degC for an NTC divider."""

    def __init__(self, r25, beta, r_fixed, ntc_to, vref_mv):
        import math

        volts = []
        vref = vref_mv * 100  # 10 uV units
        t = _T_MIN_C
        while t <= _T_MAX_C:
            r = r25 * math.exp(beta * (1.0 / (t + 273.15) - 1.0 / 298.15))
            if ntc_to == "gnd":  # fixed resistor to vref, NTC to ground
                v = vref * r / (r + r_fixed)
            else:  # NTC to vref, fixed resistor to ground
                v = vref * r_fixed / (r + r_fixed)
            volts.append(int(v + 0.5))
            t += _T_STEP_C
        # the temperature of entry i is _T_MIN_C + i * _T_STEP_C (no table);
        # the voltages are kept ascending, so with `rev` entry i is the
        # temperature of the other end
        self.rev = volts[0] > volts[-1]
        if self.rev:
            volts.reverse()
        self.volts = tuple(volts)

    def _temp(self, i):
        if self.rev:
            i = len(self.volts) - 1 - i
        return (_T_MIN_C + i * _T_STEP_C) * 10

    def dc(self, v):
        volts = self.volts
        if v < volts[0] or v > volts[-1]:
            return FAULT_DC
        lo = 0
        hi = len(volts) - 1
        while hi - lo > 1:  # binary search: volts[lo] <= v <= volts[hi]
            mid = (lo + hi) >> 1
            if volts[mid] <= v:
                lo = mid
            else:
                hi = mid
        v0 = volts[lo]
        v1 = volts[hi]
        t0 = self._temp(lo)
        t1 = self._temp(hi)
        if v1 == v0:
            return t0
        return t0 + (t1 - t0) * (v - v0) // (v1 - v0)


class LinearSensor:
    """ADC input (10 uV units) -> 0.1 degC for a linear sensor."""

    def __init__(self, mv_at_0c, uv_per_c):
        self.uv0 = mv_at_0c * 1000
        self.uv_per_c = uv_per_c

    def dc(self, v):
        t = (v * 10 - self.uv0) * 10 // self.uv_per_c
        if t < _T_MIN_C * 10 or t > _T_MAX_C * 10:
            return FAULT_DC
        return t


def sensor(t):
    """The converter for a validated profile's `temp` dict (or None)."""
    if t is None:
        return None
    if t["type"] == "ntc":
        return NtcTable(t["r25"], t["beta"], t["r_fixed"], t["ntc_to"], t["vref_mv"])
    return LinearSensor(t["mv_at_0c"], t["uv_per_c"])
