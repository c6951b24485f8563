"""Site energy: the charger's share of the grid connection (docs/site.md).

Imported only when the configuration's `mode` is "smart" or "solar". Each
control tick the App calls `site.step(dt, meter, closed, phases)`: the
Site's `grid` is the meter at the grid connection (an evse.meter.Meter on
the charger meter's bus, or the backend's feed, evse.site.Feed), `meter`
the charger's own meter. Both
give the values of their last good poll: `ok`, `good_seq`, `phase_ma`,
`phase_mv`, `power_w`. Afterwards:

  limit_ma  the most the site allows per phase now (mA); 0 pauses the
            charger (no PWM: the vehicle stops, the contactor opens; the
            C1 rule of Table A.6). The charger takes the smallest of its
            limits, lowers the PWM at once and raises it at most every 5 s.
  grid_ok   False while the grid reading is lost: the charger raises the
            `grid_meter` fault, and limit_ma is the fallback current.

The readings are taken as a poll of the grid meter brings them (1 s).

Smart, with M = `mains_max_a`. The grid meter reads house plus charger. A
fuse trips on the magnitude of a phase's current, and a meter's phase
current carries no sign, so the rest of the site on phase i is taken as
|g_i| - e_i (g: grid meter, e: charger meter), never less than what it
really draws while the charger imports:

    room = min over the charger's phases of (M - |g_i| + e_i)

and the charger may draw `room` on each phase. Below 6 A it drops to 6 A at
once and pauses at the next reading that says the same (the house has
priority; see step() for why not at the first), and resumes once the room has allowed
6 A + _HYST_MA for _RESUME_MS, so that a load near the limit does not cycle
the contactor.

Solar. The surplus is the export at the grid connection summed over the
phases (what a bidirectional meter nets and bills), from the grid meter's
total active power P_g (negative: export) and the charger's own P_c, at the
grid's voltage V:

    budget = solar_import - (P_g - P_c) / V       (A, over all phases)

shared by the phases the vehicle draws on (those with at least 1 A; all the
charger's before it draws), raised halfway towards a higher reading (it settles
within a few polls) and lowered to a lower one at once, and never above
the smart room. Charging starts once the budget has allowed 6 A for
`solar_start_s` and at least `solar_min_pause_s` after the last stop; while
it runs, a budget below 6 A is met with 6 A (from the grid), and charging
stops once that has lasted `solar_stop_s` and the contactor has been closed
for `solar_min_run_s` of the run (`closed`: the contactor, as the App
reports it; with no vehicle charging there is nothing to wait for).
The smart room below 6 A stops it as in smart mode, whatever the timers say.

Integers only, no allocation in `step`.
"""
from micropython import const

from evse import ticks_diff
from evse.pilot import MIN_MA
from evse.pilot import age as _age

_HYST_MA = const(1000)  # smart: the room must allow 6 A + this to resume
_RESUME_MS = const(30000)  # ... for this long
_DRAWS_MA = const(1000)  # a phase with this much current is one the vehicle draws on
_VOLTS = const(230)  # when the grid meter gives no voltage
_STALE_MS = const(30000)  # Feed: a reading older than this is lost
_STEADY_MA = const(100)  # the charger's draw moved more than this around a grid reading:
_HOLD_MAX = const(1)  # ... the reading is not taken, at most this many in a row
_HELD = const(2)  # _read: a reading not taken

# The status snapshot's site fields (evse.bus), after its N_FIELDS: the App
# writes them and the link's status shows them only with site energy.
S_MODE = const(31)  # 1 smart, 2 solar
S_PHASES = const(32)  # phases in use
S_LIMIT = const(33)  # the site's limit per phase, mA (NONE while the grid reading is lost)
S_G1 = const(34)  # the grid meter's phase currents, mA (S_G1 + 0..2; NONE: not read)
N_SITE = const(37)
MODES = ("normal", "smart", "solar")  # S_MODE's names


def _mag(ma):
    """A charger meter's phase current as a magnitude, mA (None: 0)."""
    if ma is None:
        return 0
    return ma if ma >= 0 else -ma


class Site:
    def __init__(self, cfg):
        self.solar = cfg["mode"] == "solar"
        self.phases = cfg["phases"]
        self.mains_ma = int(cfg["mains_max_a"] * 1000)
        self.import_ma = int(cfg["solar_import_a"] * 1000)
        self.fallback_ma = int(cfg["fallback_current_a"] * 1000)
        self.start_ms = cfg["solar_start_s"] * 1000
        self.stop_ms = cfg["solar_stop_s"] * 1000
        self.min_run_ms = cfg["solar_min_run_s"] * 1000
        self.min_pause_ms = cfg["solar_min_pause_s"] * 1000
        self.limit_ma = 0  # nothing before the first reading
        self.feed = None  # the backend's grid feed (Feed), when grid_meter is "mqtt"
        self.grid = None  # the grid source the App polls (a Meter, the feed, or None)
        self.grid_ok = True
        self.room_ma = None  # smart room per phase at the last reading
        self.budget_ma = None  # solar: smoothed budget per phase
        self.on = False  # the site lets the charger charge
        self._first = True  # smart: the first reading starts without the wait
        self._low = False  # on, and the last reading's room was below 6 A
        self._seq = 0  # the grid poll the values come from
        self._mark = -1  # the charger meter's polls started when it came (-1: taken)
        self._e0 = [0, 0, 0]  # the charger's phase currents then, mA
        self._pc0 = 0  # and its power, W
        self._held = 0  # grid readings in a row not taken (_STEADY_MA)
        self._taken = False  # a grid reading has been taken
        self._good_ms = 0  # the condition to (re)start has held this long
        self._bad_ms = 0  # solar, on: the budget has been below 6 A this long
        self._run_ms = 0  # since on
        self._off_ms = self.min_pause_ms  # since off (boot: long ago)
        self._closed = False  # the contactor is closed (the App says)
        # 1p/3p (solar, a board with the L2/L3 contactor: `phase_switch`)
        self.switch = self.solar and cfg["phase_switch"] and self.phases == 3
        self.phases_want = None  # what the site asks the charger for (None: no switching)
        self._p = self.phases  # phases in use (the charger's)
        self._total_ma = None  # solar: the budget over all phases at the last reading
        self._switch_ms = cfg["phase_switch_s"] * 1000
        self._since_switch = self._switch_ms  # since the last switch during a run
        self._up_ms = 0  # on one phase: the budget has allowed 6 A on three this long
        self._div = 0  # the phases the last budget was shared by

    def step(self, dt, meter, closed=False, phases=None):
        grid = self.grid
        if dt < 0:
            dt = 0
        self._closed = closed
        if phases is not None:
            self._p = phases
        self._since_switch = _age(self._since_switch, dt)
        if self.on:
            if closed:  # a run is the contactor's: it is what the minimum protects
                self._run_ms = _age(self._run_ms, dt)
        else:
            self._off_ms = _age(self._off_ms, dt)
        if grid is None or not grid.ok:  # None: no grid source built (docs/site.md)
            self.grid_ok = False
            self._lost()
            return
        self.grid_ok = True
        if grid.good_seq == 0:  # no reading yet: nothing, until one or the loss
            self.limit_ma = 0
            return
        if meter is None or not meter.ok or meter.good_seq == 0:
            self._lost()  # the charger's current unknown: the `meter` fault says so
            return
        if grid.good_seq != self._seq and self._mark < 0:  # a new grid reading:
            self._mark = meter.started  # held against the charger's readings
            e0 = self._e0  # before and after it
            ep = meter.phase_ma
            for i in range(3):
                e0[i] = _mag(ep[i])
            self._pc0 = meter.power_w
        # (another one while one waits keeps that before, and the latest is
        # taken: a feed that comes faster than the charger meter polls is
        # taken at the charger meter's pace, not starved)
        self._seq = grid.good_seq
        new = self._mark >= 0 and meter.good_seq > self._mark
        if new:  # the charger meter has read again since
            self._mark = -1
            r = self._read(grid, meter)
            if not r:
                self.grid_ok = False
            elif r == _HELD:
                new = False
        if self.room_ma is None or not self.grid_ok:
            if self.grid_ok and not self._taken:
                self.limit_ma = 0  # the first reading, not yet taken
                return
            self._lost()
            return
        self._taken = True
        if new and self.on and self.room_ma < MIN_MA:
            # Too little room: 6 A (the least the PWM offers) at once, and a
            # pause if the next reading says so too. One reading alone may
            # pair a grid meter that already sees a vehicle's step up with a
            # charger meter that read just before it (the two polls are
            # some 50 ms apart): that is no reason to cycle the contactor.
            if self._low:
                self._off()
            self._low = True
        elif new:
            self._low = False
        if self.solar:
            self._solar(dt)
        else:
            self._smart(dt)
        if self._low and self.on:
            self.limit_ma = MIN_MA

    def snapshot_into(self, v, phases, none):
        """The site's fields of the status snapshot (S_MODE..), without
        allocating."""
        v[S_MODE] = 2 if self.solar else 1
        v[S_PHASES] = phases
        v[S_LIMIT] = none if not self.grid_ok or self.room_ma is None else self.limit_ma
        g = self.grid
        for i in range(3):
            x = None if g is None or not g.ok or g.good_seq == 0 else g.phase_ma[i]
            v[S_G1 + i] = none if x is None else x

    def _lost(self):
        self.limit_ma = self.fallback_ma
        self.room_ma = None
        self.budget_ma = None
        self._good_ms = 0

    def _read(self, grid, meter):
        """Take a new grid reading; False when it lacks what the mode needs."""
        gp = grid.phase_ma
        ep = meter.phase_ma
        e0 = self._e0
        room = None
        n = 0
        steady = True
        p = self._p
        w = self.phases_want
        if w is None or w == p:
            w = 0  # no switch under way
        for i in range(p if p > w else w):  # during a switch: the phases to come too
            g = gp[i]
            if g is None:
                return False
            if g < 0:
                g = -g
            e = _mag(ep[i])
            if e >= _DRAWS_MA:
                n += 1
            d = e - e0[i]
            if d > 0:  # the least of the two: never more room than there is
                e = e0[i]
            if d > _STEADY_MA or d < -_STEADY_MA:
                steady = False
            r = self.mains_ma - g + e
            if room is None or r < room:
                room = r
        if not steady and self._held < _HOLD_MAX and self.room_ma is not None:
            self._held += 1  # the vehicle changed its draw around the grid reading:
            return _HELD  # which part of it was the house's is unsure
        self._held = 0
        self.room_ma = room - room % 100
        if self.solar:
            pg = grid.power_w
            pc = meter.power_w
            if pg is None or pc is None or self._pc0 is None:
                return False
            if self._pc0 < pc:
                pc = self._pc0
            v = grid.phase_mv[0]
            v = v // 1000 if v is not None and v > 100000 else _VOLTS
            budget = self.import_ma - (pg - pc) * 1000 // v
            self._total_ma = budget
            div = w if w else (n if n and n < p else p)
            b = budget // div
            b -= b % 100  # whole 0.1 A: the PWM's steps are coarser still
            a = self.budget_ma if div == self._div else None  # new phases: start afresh
            self._div = div
            if a is not None and b > a:  # up: halfway to the new reading, in whole
                b = a + (b - a + 199) // 200 * 100  # 0.1 A (both are): within a few
                # polls. Down at once: what the vehicle draws above the surplus
                # is the grid's, and a cloud is met in one reading.
            self.budget_ma = b
        return True

    def _smart(self, dt):
        room = self.room_ma
        if self.on:
            pass  # a room below 6 A: step() pauses
        elif self._first and room >= MIN_MA:
            self._on()
        elif room >= MIN_MA + _HYST_MA:
            self._good_ms = _age(self._good_ms, dt)
            if self._good_ms >= _RESUME_MS:
                self._on()
        else:
            self._good_ms = 0
        self._first = False
        self.limit_ma = room if self.on else 0

    def _solar(self, dt):
        if self.switch:
            self._choose_phases(dt)
        room = self.room_ma
        want = self.budget_ma
        if room < want:
            want = room
        if self.on:
            if room < MIN_MA:
                pass  # the fuse first: step() pauses
            elif want >= MIN_MA:
                self._bad_ms = 0
            else:
                self._bad_ms = _age(self._bad_ms, dt)
                if self._bad_ms >= self.stop_ms and (self._run_ms >= self.min_run_ms
                                                     or not self._closed):
                    if (self.switch and self._p == 3 and self._closed
                            and self._total_ma >= MIN_MA and self._ready()):
                        self._switched(1)  # one phase instead of a stop
                    else:
                        self._off()
        else:
            if want < MIN_MA:
                self._good_ms = 0
            else:
                self._good_ms = _age(self._good_ms, dt)
                if self._good_ms >= self.start_ms and self._off_ms >= self.min_pause_ms:
                    self._on()
        if not self.on:
            self.limit_ma = 0
        else:
            self.limit_ma = want if want >= MIN_MA else MIN_MA

    def _choose_phases(self, dt):
        """1p/3p: three phases once the budget allows 6 A on each (plus
        _HYST_MA over them), else one. Idle, the choice costs nothing (the
        charger changes the phases with the contactor open), and the start
        delay counts on the phases chosen (one to three starts it again;
        docs/site.md). During a run a
        switch is a contactor cycle: down to one phase instead of a stop
        (the stop's own delays: _solar), up to three after solar_start_s,
        each at most once per phase_switch_s and not before solar_min_run_s."""
        total = self._total_ma
        three = total >= 3 * MIN_MA + _HYST_MA
        p = self._p
        if not self.on or not self._closed:
            self._up_ms = 0
            w = self.phases_want
            if w == 3 and total >= 3 * MIN_MA:
                return  # idle on three: back to one only below 6 A on each
            if self.on and w == 1:
                return  # offered on one phase: up to three only during the run
            w = 3 if three else 1
            if w != self.phases_want:
                if w == 3:  # the start delay is three phases' now
                    self._good_ms = 0
                self._share(w)
            return
        if not three or p != 1:
            self._up_ms = 0
            return
        self._up_ms = _age(self._up_ms, dt)
        if self._up_ms >= self.start_ms and self._ready():
            self._switched(3)

    def _ready(self):
        """A switch may come now (during a run)."""
        return self._since_switch >= self._switch_ms and self._run_ms >= self.min_run_ms

    def _switched(self, n):
        self._since_switch = 0
        self._run_ms = 0
        self._bad_ms = 0
        self._up_ms = 0
        self._share(n)

    def _share(self, n):
        """Ask for n phases; the budget is theirs from now (per phase)."""
        self.phases_want = n
        b = self._total_ma // n
        self.budget_ma = b - b % 100
        self._div = n

    def _on(self):
        self.on = True
        self._run_ms = 0
        self._bad_ms = 0

    def _off(self):
        self.on = False
        self._low = False
        self._off_ms = 0
        self._good_ms = 0


class Feed:
    """The grid currents the backend publishes (grid_meter "mqtt",
    docs/site.md), in the shape of a Meter's readings: `put` takes a
    reading (mA per phase, W), `poll(now)` ages it, and after _STALE_MS
    without a new one `ok` is False."""

    busy = False

    def __init__(self):
        self.ok = True  # until the first reading is overdue
        self.good_seq = 0
        self.phase_ma = [None, None, None]
        self.phase_mv = [None, None, None]
        self.power_w = None
        self._age_ms = 0
        self._now = None

    def put(self, a1, a2, a3, power_w):
        # power_w None: no power (solar then counts the reading as lost)
        p = self.phase_ma
        p[0] = a1
        p[1] = a2
        p[2] = a3
        self.power_w = power_w
        self.good_seq += 1
        self._age_ms = 0
        self.ok = True

    def take(self, r, epoch):
        """A reading from decode_grid; one more than 30 s from the charger's
        clock (`epoch`, None before NTP) is no reading: a retained message
        left over from an hour ago, or a feed whose own clock is wrong."""
        t = r[4]
        if t is not None and epoch is not None and not -30 <= epoch - t <= 30:
            return
        self.put(r[0], r[1], r[2], r[3])

    def poll(self, now):
        if self._now is not None:
            self._age_ms = _age(self._age_ms, ticks_diff(now, self._now))
        self._now = now
        if self._age_ms >= _STALE_MS:
            self.ok = False


_MAX_GRID_BYTES = const(256)


def _ma(v):
    # A (int or float) -> mA, or None outside +-1000 A
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1000 <= v <= 1000:
        return None
    return int(v * 1000)


def decode_grid(payload):
    """The backend's grid feed (docs/site.md), in the network thread ->
    (a1, a2, a3, power_w, t) in mA, W and s, or None for a message to
    ignore. `payload`: bytes, {"a": [L1, L2, L3] or [L1], "w": W, "t": T},
    amperes per phase signed (negative: export), the total power in W
    (optional; `solar` needs it), T the reading's Unix time (optional:
    Feed.take compares it with the charger's clock)."""
    if isinstance(payload, int) or len(payload) > _MAX_GRID_BYTES:
        return None
    import json

    try:
        d = json.loads(payload)
    except (ValueError, RuntimeError):
        return None
    if not isinstance(d, dict):
        return None
    a = d.get("a")
    if not isinstance(a, list) or len(a) not in (1, 3):
        return None
    out = [0, 0, 0]
    for i in range(len(a)):
        x = _ma(a[i])
        if x is None:
            return None
        out[i] = x
    w = d.get("w")
    if w is not None:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not -10 ** 6 <= w <= 10 ** 6:
            return None
        w = int(w)
    t = d.get("t")
    if t is not None:
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            return None
    return out[0], out[1], out[2], w, t
