"""The interim virtual meter.

Until the Modbus issue (#4) lands, the meter is simulated at the level of
the API that evse.app.App uses (`poll(now)`, `ok`, `a_ma`, `energy_wh`), not
on the wire: the firmware's Modbus RTU code path does not run yet. Issue #4
replaces this with a virtual Modbus RTU meter on a virtual UART answering
the configured profile's register map.

`MeterDevice` is the physical meter: it integrates energy from the vehicle's
current (230 V per phase) into an import register that starts at 1,000,000
Wh, and it can stop answering (`{"meter": "offline"}`). It lives as long as
the run. `Meter` is the firmware side of the link, new at every boot: one
poll per second; three polls in a row without an answer make `ok` False.
"""
from evse.ticks import ticks_diff

VOLTS = 230
START_WH = 1000000
_MAVMS_PER_WH = 3600 * 1000 * 1000  # mA x V x ms in one Wh
POLL_MS = 1000
MISSES = 3


class MeterDevice:
    def __init__(self):
        self.online = True
        self.wh = START_WH
        self.acc = 0  # below one Wh, in mA x V x ms
        self.a_ma = 0  # largest phase current now

    def integrate(self, dt_ms, per_phase_ma, phases):
        """Current `per_phase_ma` on `phases` phases flowed for `dt_ms`."""
        if per_phase_ma > 0 and dt_ms > 0:
            self.acc += per_phase_ma * phases * VOLTS * dt_ms
            if self.acc >= _MAVMS_PER_WH:
                self.wh += self.acc // _MAVMS_PER_WH
                self.acc = self.acc % _MAVMS_PER_WH

    def set_current(self, per_phase_ma):
        self.a_ma = per_phase_ma


class Meter:
    def __init__(self, device):
        self.device = device
        self.ok = None  # None until the first answer
        self.a_ma = 0
        self.energy_wh = None
        self._last = None
        self._misses = 0

    def poll(self, now):
        if self._last is not None and ticks_diff(now, self._last) < POLL_MS:
            return
        self._last = now
        d = self.device
        if d.online:
            self.ok = True
            self._misses = 0
            self.a_ma = d.a_ma
            self.energy_wh = d.wh
        else:
            self._misses += 1
            if self._misses >= MISSES:
                self.ok = False
