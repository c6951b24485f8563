"""A small test rig for the charger core: a vehicle's pilot levels, the RCD
test loop and the contactor's mirror contact, ticked in steps of 10 ms.

Plain Python that runs under CPython and MicroPython alike (no pytest), so
the same cases run on both.
"""
from evse import config
from evse.charger import PILOT_LOW, PILOT_PWM, Charger
from evse import ticks_add

LEVEL_MV = {"A": 12000, "B": 9000, "C": 6000, "D": 3000}
TICK_MS = 10


BOOT_MS = 3000  # the charger keeps X1 for 3 s after boot (T_X1_MIN)


class Rig:
    """`Rig(**cfg)` boots a charger and runs it BOOT_MS in state A, so that
    a case starts where a vehicle may be offered PWM at once; `t` counts
    from the end of that. `Rig(boot=False)` starts at the boot itself."""

    def __init__(self, start=0, boot=True, **cfg):
        self.cfg = config.validate(cfg)
        self.now = start
        self.t = 0  # ms since the start, for assertions
        self.ch = Charger(self.cfg, start)
        self.out = self.ch.out
        self.ev = "A"
        self.diode = True
        self.short = False
        self.noise_mv = 0
        self.rcd_fault = False
        self.rcd_test_works = True
        self.weld = False
        self.no_close = False
        self.fb_fitted = True
        self.temp_dc = None
        self.ev_ma = None
        self.meter_ok = None
        self.pp_ohm = None
        self.pe_ok = True
        self.events = []
        self.log = []
        self.keep_log = True  # False: only `h`, a running digest of the rows (long runs)
        self.h = 0
        self.h_cols = 7  # the row's columns after t that go into `h`
        self._seed = 12345
        if boot:
            self.run(BOOT_MS)
            self.t = 0
            self.events = []
            self.log = []

    def _noise(self):
        if not self.noise_mv:
            return 0
        self._seed = (self._seed * 1103515245 + 12345) & 0x7FFFFFFF
        return self._seed % (2 * self.noise_mv + 1) - self.noise_mv

    def sample(self):
        out = self.out
        inp = self.ch.inp
        if out.pilot == PILOT_LOW:
            hi = lo = -12000
        else:
            hi = 0 if self.short else LEVEL_MV[self.ev]
            if out.pilot != PILOT_PWM:
                lo = hi
            elif self.short:
                lo = 0
            elif self.diode or self.ev == "A":
                lo = -12000
            else:  # no diode: the negative half sees the vehicle's divider
                lo = -hi
        inp.cp_high_mv = hi + self._noise()
        inp.cp_low_mv = lo + self._noise()
        inp.rcd = self.rcd_fault or (out.rcd_test and self.rcd_test_works)
        if self.fb_fitted:
            inp.fb = self.weld or (out.contactor and not self.no_close)
        else:
            inp.fb = None
        inp.temp_dc = self.temp_dc
        inp.ev_ma = self.ev_ma
        inp.meter_ok = self.meter_ok
        inp.pp_ohm = self.pp_ohm
        inp.pe_ok = self.pe_ok

    def tick(self):
        self.now = ticks_add(self.now, TICK_MS)
        self.t += TICK_MS
        self.sample()
        o = self.ch.step(self.now)
        for e in self.ch.take_events():
            self.events.append((self.t,) + e)
        row = (self.t, o.state, o.duty, o.offer_ma, o.contactor, o.error, o.session)
        if self.keep_log:
            self.log.append(row)
        else:
            self.h = mix(self.h, row[1:self.h_cols])
        return o

    def run(self, ms):
        for _ in range(ms // TICK_MS):
            self.tick()
        return self.out

    def until(self, pred, max_ms):
        """Tick until pred(out) holds; the ms it took, or None."""
        t0 = self.t
        while self.t - t0 < max_ms:
            if pred(self.tick()):
                return self.t - t0
        return None

    def cmd(self, **msg):
        return self.ch.command(msg, self.now)

    def charging(self, **kw):
        """Plug in, go to C and wait until the contactor is closed."""
        self.ev = "B"
        self.run(1000)
        self.ev = "C"
        took = self.until(lambda o: o.contactor, 3000)
        if took is None:
            raise AssertionError("contactor did not close: %s" % (self.log[-1],))
        return took

    def event_names(self):
        return [e[1] for e in self.events]


def mix(h, row):
    """`h` with one more row of ints/str/bool/None mixed in."""
    for b in repr(row).encode():
        h = ((h * 31) + b) & 0xFFFFFFFF
    return h


def digest(rows):
    """A checksum of rows of ints/str/bool/None, identical on both Pythons."""
    h = 0
    for row in rows:
        h = mix(h, row)
    return "%08x" % h
