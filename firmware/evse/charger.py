"""The charger's IEC 61851-1 state machine, contactor control and faults.

Pure logic: no `machine`, no clock. Each control tick the application fills
`charger.inp` from the board, calls `charger.step(now)` with the tick time
(`ticks_ms()`), and applies `charger.out` to the board. Commands arrive through
`charger.command(msg, now)`. Events (session start/stop, faults raised and
cleared, reboot requests) collect in `charger.out.events` until the caller
takes them with `charger.take_events()`.

All quantities are integers (mV, mA, 0.01 % duty, 0.1 degC, ms ticks) and the
step only stores into preallocated attributes, so in steady state it
allocates nothing on MicroPython's heap.

One step, in order (each a small method below):
  1. _classify   debounced pilot class from the CP high plateau
  2. _session    plug-in, unplug, authorization: sessions start and end
  3. _faults     raise and clear faults (each fault's rule is in FAULTS below)
  4. _offer      the limit chain: min(max, cable, backend, derate, meter, site)
  5. _pilot      steady +12 V, PWM duty, or -12 V (state F); X1 and rate rules
  6. _contactor  close in C2/D2 only on evidence (diode passed in this PWM
                 phase, mirror contact open, minimum open time and time
                 between closings, RCD self-test), open on any fault; a
                 change of the phases in use (1p/3p) only while open
  7. _state      the IEC state name and the error shown

Time: the charger stores no tick values. Each step turns the tick time into
the ms elapsed since the previous step, and every timer is an elapsed-ms
counter that saturates at pilot.MS_CAP (about 6 days), so the charger behaves
the same on day 40 of uptime as on day 1, whatever the port's ticks period.
"""
from micropython import const

from evse import pilot as P
from evse.commands import CommandError, command_id, parse
from evse.pilot import MS_CAP
from evse.pilot import age as _age
from evse import ticks_diff

# --- Pilot output modes (what the board drives on CP).
PILOT_HIGH = const(0)  # steady +12 V (X1)
PILOT_PWM = const(1)  # 1 kHz +/-12 V PWM (X2)
PILOT_LOW = const(2)  # steady -12 V: state F, EVSE not available

# --- Faults: one bit each. Order = priority of the code shown in `error`.
_F_CP_SHORT = const(0x001)
_F_RCD = const(0x002)
_F_PE = const(0x004)
_F_WELD = const(0x008)
_F_NO_CLOSE = const(0x010)
_F_DIODE = const(0x020)
_F_VENT = const(0x040)
_F_OVERTEMP = const(0x080)
_F_OVERCURRENT = const(0x100)
F_METER = const(0x200)
_F_GRID = const(0x400)

FAULTS = (
    (_F_CP_SHORT, "cp_short"),
    (_F_RCD, "rcd"),
    (_F_PE, "pe"),
    (_F_WELD, "weld"),
    (_F_NO_CLOSE, "no_close"),
    (_F_DIODE, "diode"),
    (_F_VENT, "vent"),
    (_F_OVERTEMP, "overtemp"),
    (_F_OVERCURRENT, "overcurrent"),
    (F_METER, "meter"),
    (_F_GRID, "grid_meter"),
)

# Reactions.
# Immediate faults open the contactor in the same tick they are raised.
IMMEDIATE = const(0x1FF)  # every fault but `meter` and `grid_meter`
# These make the EVSE unavailable: the pilot goes to -12 V (state F).
_TO_F = const(_F_RCD | _F_PE | _F_WELD | _F_NO_CLOSE | _F_OVERTEMP)
# The others keep the pilot at steady +12 V, so unplugging stays visible.
# Latched faults stay until `reset_error` (diode and overcurrent also clear on
# unplug); the rest clear by themselves once their cause is gone.
_LATCHED = const(_F_RCD | _F_WELD | _F_NO_CLOSE | _F_DIODE | _F_OVERCURRENT)
_CLEAR_ON_UNPLUG = const(_F_DIODE | _F_OVERCURRENT)

# --- Timing (ms).
T_CLOSE_AFTER_PWM_OFF = const(6000)  # Table A.6 seq. 10.2: force open after 6 s in C1
T_X1_MIN = const(3000)  # at least 3 s in X1 before PWM again (EVerest T_STEP_X1), also after boot
T_PWM_UPDATE = const(5000)  # raise the PWM value at most every 5 s; lower at once
T_FEEDBACK = const(500)  # mirror contact must follow the command within this
T_MIN_OPEN = const(1000)  # an open command holds at least this long: the mirror
#                           check (T_FEEDBACK) has run before any re-close
T_CLOSE_GAP = const(3000)  # at least this between two closings (relay protection: a
#                           vehicle bouncing S2 gets at most 20 closings a minute); no
#                           more, so the close still comes within 3 s of C2 (seq. 4)
T_RCD_TEST = const(500)  # RCD self-test: trip, then release, each within this
T_OVERCURRENT = const(7000)  # excess time in the bucket that raises `overcurrent`
T_EV_FOLLOW = const(5000)  # the EV follows a lower PWM value within this
T_AUTH_WAIT = const(60000)  # an `authorize` with no vehicle waits this long for one
T_PE_CLEAR = const(2000)  # PE present this long before `pe` clears
_T_PHASE_SETTLE = const(2000)  # 1p/3p: the contactor open this long before the phases change
PP_GONE_READINGS = const(2)  # socket: PP open this many readings in a row = cable gone
PP_RAISE_READINGS = const(5)  # socket: a higher PP rating only after this many in a row

# Diode check: DIODE_PASS good readings in a row, in this PWM phase, before
# any close; a leaky bucket of bad readings (+DIODE_BAD_UP each, -1 for each
# good one) raises `diode` at DIODE_BAD_AT: three bad readings in a row do,
# and so does a diode missing more than about one reading in eleven.
DIODE_PASS = const(3)
DIODE_BAD_UP = const(10)
DIODE_BAD_AT = const(30)

_STATE_X = const(("D1", "D2", "C1", "C2", "B1", "B2"))  # index (cp - 1) * 2 + pwm

# RCD self-test phases.
_RT_IDLE = const(0)
_RT_TRIP = const(1)  # test output on, waiting for the trip input
_RT_RELEASE = const(2)  # test output off, waiting for the trip input to clear
_RT_PASSED = const(3)


def fault_code(bit):
    for b, name in FAULTS:
        if b == bit:
            return name
    return None


class Inputs:
    """What the board measured during the last tick (filled by the adapter)."""

    def __init__(self):
        self.cp_high_mv = 12000  # CP high plateau (or the steady level)
        self.cp_low_mv = -12000  # CP low plateau, meaningful while PWM is on
        self.pp_ohm = None  # PP-PE resistance, None = open (socket only)
        self.rcd = False  # residual current trip input active
        self.pe_ok = True  # protective earth present (True when not fitted)
        self.fb = None  # mirror contact: None not fitted, True contacts closed
        self.temp_dc = None  # enclosure temperature in 0.1 degC, None = no sensor
        self.ev_ma = None  # largest phase current from the meter, None = unknown
        self.meter_ok = None  # None: no meter; False: meter silent
        # site energy (evse.site.Site, None: none): its limit_ma (the most per
        # phase, mA), grid_ok (False: the grid reading is lost) and
        # phases_want (1 or 3, None: no switching), as of this tick
        self.site = None


class Outputs:
    """What the board must apply now, and what the charger reports."""

    def __init__(self):
        self.pilot = PILOT_HIGH
        self.duty = P.DUTY_HIGH  # 0.01 %: 10000 steady +12 V, 0 steady -12 V
        self.offer_ma = 0  # current offered through the PWM, 0 without PWM
        self.contactor = False  # contactor commanded closed
        self.rcd_test = False  # drive the RCD test winding
        self.state = "A"
        self.error = None  # highest-priority active fault code
        self.faults = 0  # all active faults, a bit mask
        self.session = None  # id of the session under way
        self.derate = False  # thermal derating active
        self.phases = 3  # phases in use: 1 while the L2/L3 contactor stays open (configure)
        self.events = []


class Charger:
    def __init__(self, cfg, now, session_seq=0):
        self.inp = Inputs()
        self.out = Outputs()
        self.cp = P.CpClassifier(P.CP_A)  # boot: pilot +12 V, assume no vehicle
        self.session_seq = session_seq
        self.phases = 0  # the installation's (configure)
        self._fallen = False  # the backend limit is the fallback (its ttl ran out)
        self.configure(cfg)
        self._now = now
        self._authorized = False
        self._stopped = False  # session ended by `stop`: no new one until unplug/authorize
        self._paused = False
        self._auth_early = False  # the authorization came with no vehicle: it waits for one
        self._auth_ms = 0  # ... since it came
        self._limit_ma = None  # backend limit
        self._limit_left = None  # ms left of the backend limit's ttl_s (None: no ttl)
        self._settle = False  # skip one CP reading after leaving -12 V
        # Elapsed-ms counters (saturating at MS_CAP: pilot.age).
        self._x1_ms = 0  # since PWM last stopped; boot counts as a stop (3 s X1 first)
        self._pwm_ms = 0  # since the last change of the PWM value
        self._cmd_ms = 0  # since the last change of the contactor command (boot: open)
        self._close_ms = MS_CAP  # since the last close
        self._oc_ms = 0  # over-current bucket: ms above the offer, less ms within it
        self._oc_prev = 0  # the offer at the last reading
        self._oc_allow = 0  # the offer before a decrease, allowed for T_EV_FOLLOW
        self._oc_grace = 0  # ms left of that
        self._pe_ms = -1  # PE present for this long while `pe` is raised (-1: not counting)
        self._rcd_ms = 0  # in the current RCD self-test phase
        self._rcd_trip_ms = 0  # since the RCD trip (auto-retry)
        self._pwm_ticks = 0  # readings taken with PWM on (capped)
        self._diode_ok = 0  # good diode readings in a row in this PWM phase (capped)
        self._diode_bad = 0  # diode bucket
        self._diode_retest = False  # `reset_error` of `diode`: PWM on to look again
        self._pp_open = 0  # PP-open readings in a row (socket)
        self._pp_ma = 0  # the rating of the cable in (socket): down at once, up on agreement
        self._pp_up = 0  # readings in a row of a higher rating than _pp_ma
        self._rcd_phase = _RT_IDLE
        self._rcd_retries = 0
        self._shown_faults = 0

    def configure(self, cfg):
        """Take a validated configuration (evse.config.validate)."""
        self.max_ma = int(cfg["max_current_a"] * 1000)
        cable = cfg["cable_a"]
        self.cable_ma = self.max_ma if cable is None else int(cable * 1000)
        self.fallback_ma = int(cfg["fallback_current_a"] * 1000)
        if self._fallen:
            self._limit_ma = self.fallback_ma  # a new fallback_current_a counts at once
        self._cable_ma = self.cable_ma  # rating of the cable now (socket: from PP, each step)
        if cfg["phases"] != self.phases:
            # the installation's phases changed (or at the build): all of them
            # in use; a configuration change of anything else keeps the phases
            # a 1p/3p switch chose (no contactor cycle for a set_config)
            self.out.phases = cfg["phases"]
        self.phases = cfg["phases"]
        self.socket = cfg["socket"]
        self.ventilation = cfg["ventilation"]
        self.backend_auth = cfg["authorization"] == "backend"
        self.meter_stop = cfg["meter_loss"] == "stop"
        self.rcd_selftest = cfg["rcd_selftest"]
        self.rcd_retry_max = cfg["rcd_retry_max"]
        self.rcd_retry_ms = int(cfg["rcd_retry_s"] * 1000)
        # 0.1 degC, rounded towards safety: thresholds down (act earlier), the
        # levels at which derating and overtemp end down too (end later).
        self.derate_dc = int(cfg["temp_derate_c"] * 10)
        self.stop_dc = int(cfg["temp_stop_c"] * 10)
        self.derate_end_dc = int((cfg["temp_derate_c"] - cfg["temp_hyst_c"]) * 10)
        self.stop_end_dc = int((cfg["temp_stop_c"] - cfg["temp_hyst_c"]) * 10)
        self.derate_ma = self.max_ma // 2
        if self.derate_ma < P.MIN_MA:
            self.derate_ma = P.MIN_MA

    # ------------------------------------------------------------------ step
    def step(self, now):
        dt = ticks_diff(now, self._now)
        self._now = now
        if dt < 0:
            dt = 0
        elif dt > 60000:  # a long stall (or a clock jump): count a minute
            dt = 60000
        self._timers(dt)
        cp = self._classify(dt)
        self._session(cp)
        self._faults(dt, cp)
        offer = self._offer(self._phases())
        self._pilot(cp, offer)
        self._contactor(cp)
        self._state(cp)
        return self.out

    def _timers(self, dt):
        self._x1_ms = _age(self._x1_ms, dt)
        self._pwm_ms = _age(self._pwm_ms, dt)
        self._cmd_ms = _age(self._cmd_ms, dt)
        self._close_ms = _age(self._close_ms, dt)
        self._auth_ms = _age(self._auth_ms, dt)
        self._rcd_ms = _age(self._rcd_ms, dt)
        self._rcd_trip_ms = _age(self._rcd_trip_ms, dt)
        left = self._limit_left
        if left is not None:
            if left > dt:
                self._limit_left = left - dt
            else:  # not renewed in time: the fallback, with or without a session
                self._limit_ma = self.fallback_ma
                self._limit_left = None
                self._fallen = True
                self._event("limit", None)

    def take_events(self):
        ev = self.out.events
        if not ev:
            return ev
        self.out.events = []
        return ev

    def _event(self, *ev):
        evs = self.out.events
        if len(evs) >= 32:  # nobody is taking them: keep the newest
            evs.pop(0)
        evs.append(ev)

    # 1. ---------------------------------------------------------- classify
    def _classify(self, dt):
        if self.out.pilot == PILOT_LOW:
            # We drive -12 V: the reading says nothing about the vehicle.
            self.cp.reset(P.CP_UNKNOWN)
            self._settle = True
            return P.CP_UNKNOWN
        if self._settle:  # the first reading after -12 V may straddle the edge
            self._settle = False
            return self.cp.stable
        return self.cp.update(dt, self.inp.cp_high_mv)

    # 2. ----------------------------------------------------------- session
    def _session(self, cp):
        # The cable: on a socket its PP resistor; open means the cable was
        # pulled at the charger, an unplug whatever the CP reads (also in F).
        gone = False
        if self.socket:
            r = P.pp_rating_ma(self.inp.pp_ohm, self.phases)
            if r:
                self._pp_open = 0
                if r <= self._pp_ma:
                    self._pp_ma = r  # a lower rating counts at once
                    self._pp_up = 0
                else:
                    # The resistor does not change while the plug is in: a
                    # higher band (a new cable, or one disturbed reading)
                    # counts only once it has read so PP_RAISE_READINGS times.
                    self._pp_up += 1
                    if self._pp_up >= PP_RAISE_READINGS:
                        self._pp_ma = r
                        self._pp_up = 0
                self._cable_ma = self._pp_ma
            else:
                self._cable_ma = 0
                self._pp_up = 0
                if self._pp_open < PP_GONE_READINGS:
                    self._pp_open += 1
            gone = self._pp_open >= PP_GONE_READINGS
            if gone:
                self._pp_ma = 0  # the next cable's rating is read afresh
        if cp == P.CP_A or gone:
            if self.out.session is not None:
                self._end_session("unplugged")
            if not (self._auth_early and self._auth_ms < T_AUTH_WAIT):
                self._authorized = False  # (an unplug ends an authorization)
                self._auth_early = False
            self._stopped = False
            self._diode_retest = False
            self._diode_bad = 0
            if self.out.faults & _CLEAR_ON_UNPLUG:
                self._clear(self.out.faults & _CLEAR_ON_UNPLUG)
            self._rcd_retries = 0
        elif P.CP_D <= cp <= P.CP_B:
            if (self.out.session is None and not self._stopped
                    and (self._authorized or not self.backend_auth)):
                self.session_seq += 1
                self.out.session = self.session_seq
                self._auth_early = False
                self._event("session_start", self.session_seq)

    def _end_session(self, reason):
        sid = self.out.session
        self.out.session = None
        self._authorized = False
        self._event("session_stop", sid, reason)

    # 3. ------------------------------------------------------------ faults
    def _raise(self, bit):
        if not self.out.faults & bit:
            self.out.faults |= bit
            self._event("fault", fault_code(bit))

    def _clear(self, bits):
        f = self.out.faults
        for bit, name in FAULTS:
            if f & bits & bit:
                self.out.faults &= ~bit
                self._event("clear", name)

    def _faults(self, dt, cp):
        self._fault_cp(cp)
        self._fault_diode(cp)
        self._fault_rcd()
        self._fault_pe(dt)
        self._fault_temp()
        self._fault_feedback()
        self._fault_overcurrent(dt)
        if self.inp.meter_ok is False:
            self._raise(F_METER)
        elif self.out.faults & F_METER:
            self._clear(F_METER)
        site = self.inp.site
        if site is not None and not site.grid_ok:  # the site's limit is the fallback meanwhile
            self._raise(_F_GRID)
        elif self.out.faults & _F_GRID:
            self._clear(_F_GRID)

    def _fault_cp(self, cp):
        # State E: CP shorted to PE. Clears when the pilot reads anything else.
        if cp == P.CP_E:
            self._raise(_F_CP_SHORT)
        elif cp != P.CP_UNKNOWN and self.out.faults & _F_CP_SHORT:
            self._clear(_F_CP_SHORT)
        # State D without ventilation at the site: never charge in D.
        if cp == P.CP_D and not self.ventilation:
            self._raise(_F_VENT)
        elif cp != P.CP_UNKNOWN and cp != P.CP_D and self.out.faults & _F_VENT:
            self._clear(_F_VENT)

    def _fault_diode(self, cp):
        # Diode check on every reading taken with PWM on, in B, C or D (the
        # first reading after the PWM starts may straddle its start and is
        # skipped). A reading whose own high plateau is not B, C or D (a CP
        # short starting, an unplug) says nothing about the diode: the
        # classifier will raise cp_short or see A after its debounce; it
        # breaks the run of good readings but does not count as bad.
        if self.out.pilot != PILOT_PWM:
            self._diode_ok = 0  # a new PWM phase needs new evidence; the bucket
            return  # keeps its history until good readings drain it or an unplug
        if (self._pwm_ticks < 2 or not P.CP_D <= cp <= P.CP_B
                or not P.CP_D <= P.level(self.inp.cp_high_mv) <= P.CP_B):
            self._diode_ok = 0
            return
        if P.diode_missing(self.inp.cp_low_mv):
            self._diode_ok = 0
            b = self._diode_bad + DIODE_BAD_UP
            if b >= DIODE_BAD_AT:
                b = DIODE_BAD_AT
                self._diode_retest = False  # looked again: still missing
                self._raise(_F_DIODE)
            self._diode_bad = b
        else:
            if self._diode_ok < DIODE_PASS:
                self._diode_ok += 1
            if self._diode_bad:
                self._diode_bad -= 1
            if self._diode_retest and self._diode_ok >= DIODE_PASS and not self._diode_bad:
                self._diode_retest = False
                self._clear(_F_DIODE)

    def _fault_rcd(self):
        # While the self-test drives the test winding (and until the trip it
        # caused has cleared) the trip is expected; any other trip is a trip.
        testing = self._rcd_phase == _RT_TRIP or self._rcd_phase == _RT_RELEASE
        if self.inp.rcd and not testing:
            if not self.out.faults & _F_RCD:
                self._rcd_trip_ms = 0
            self._raise(_F_RCD)
        elif (self.out.faults & _F_RCD and not self.inp.rcd
              and self._rcd_retries < self.rcd_retry_max
              and self._rcd_trip_ms >= self.rcd_retry_ms):
            self._rcd_retries += 1
            self._clear(_F_RCD)

    def _fault_pe(self, dt):
        if not self.inp.pe_ok:
            self._pe_ms = -1
            self._raise(_F_PE)
        elif self.out.faults & _F_PE:
            if self._pe_ms < 0:
                self._pe_ms = 0
            else:
                self._pe_ms = _age(self._pe_ms, dt)
                if self._pe_ms >= T_PE_CLEAR:
                    self._pe_ms = -1
                    self._clear(_F_PE)

    def _fault_temp(self):
        t = self.inp.temp_dc
        if t is None:
            return
        out = self.out
        if t >= self.stop_dc:
            self._raise(_F_OVERTEMP)
        elif out.faults & _F_OVERTEMP and t <= self.stop_end_dc:
            self._clear(_F_OVERTEMP)
        if t >= self.derate_dc:
            out.derate = True
        elif t <= self.derate_end_dc:
            out.derate = False

    def _fault_feedback(self):
        # The mirror contact must follow the command within T_FEEDBACK.
        fb = self.inp.fb
        if fb is None or self._cmd_ms < T_FEEDBACK:
            return
        if self.out.contactor and not fb:
            self._raise(_F_NO_CLOSE)
        elif not self.out.contactor and fb:
            self._raise(_F_WELD)

    def _fault_overcurrent(self, dt):
        # A bucket, not a timer: ms above the offer fill it, ms within it
        # drain it at the same rate, so a vehicle that exceeds the offer
        # again and again with short compliant gaps is still stopped. After
        # a lower offer the vehicle has T_EV_FOLLOW to follow (IEC 61851-1:
        # 5 s): until then it may still draw what was offered before the
        # decrease (before the first of several in a row).
        out = self.out
        offer = out.offer_ma  # what the PWM offered while this reading was taken
        if offer < self._oc_prev:
            if not self._oc_grace:
                self._oc_allow = self._oc_prev
            self._oc_grace = T_EV_FOLLOW
        elif self._oc_grace:
            self._oc_grace = self._oc_grace - dt if self._oc_grace > dt else 0
        self._oc_prev = offer
        allowed = self._oc_allow if self._oc_grace and self._oc_allow > offer else offer
        ev = self.inp.ev_ma
        if (ev is not None and out.contactor and out.pilot == PILOT_PWM
                and ev > allowed * 11 // 10 + 500):
            oc = self._oc_ms + dt
            if oc >= T_OVERCURRENT:
                oc = T_OVERCURRENT
                self._raise(_F_OVERCURRENT)
            self._oc_ms = oc
        elif self._oc_ms:
            self._oc_ms = self._oc_ms - dt if self._oc_ms > dt else 0

    def _phases(self):
        """1p/3p switching (evse.site asks through its phases_want): no load
        is ever switched. The PWM goes off (the vehicle stops: IEC 61851-1
        Table A.6 seq. 10.2, the contactor opens when it opens S2 or after
        6 s), the phases change once the contactor has been open
        _T_PHASE_SETTLE, and the PWM comes back after the 3 s of X1. The
        L2/L3 contactor only ever follows the main one (the board). True
        while a switch is under way (no offer meanwhile)."""
        site = self.inp.site
        want = None if site is None else site.phases_want
        out = self.out
        if want is None or want == out.phases or not 1 <= want <= self.phases:
            return False
        if out.contactor or self._cmd_ms < _T_PHASE_SETTLE:
            return True
        out.phases = want
        self._event("phases", want)
        return False

    # 4. ------------------------------------------------------------- offer
    def _blocking(self):
        """Faults that stop the offer: every immediate one, `meter` with
        meter_loss "stop"; not `diode` while `reset_error` has the PWM on to
        look at the diode again (the contactor stays open all the same)."""
        f = self.out.faults & (IMMEDIATE | (F_METER if self.meter_stop else 0))
        if self._diode_retest:
            f &= ~_F_DIODE
        return f

    def _offer(self, switching):
        """The current to offer now (mA, already clamped), 0 for none
        (also while the phases are being switched)."""
        out = self.out
        if self._blocking() or out.session is None or self._paused or switching:
            return 0
        lim = self.max_ma
        cable = self._cable_ma
        if cable < lim:
            lim = cable
        if self._limit_ma is not None and self._limit_ma < lim:
            lim = self._limit_ma
        if out.derate and self.derate_ma < lim:
            lim = self.derate_ma
        if out.faults & F_METER and self.fallback_ma < lim:
            lim = self.fallback_ma
        site = self.inp.site
        if site is not None and site.limit_ma < lim:
            lim = site.limit_ma  # below 6 A: no offer, the vehicle pauses
        return P.clamp_offer(lim)

    # 5. ------------------------------------------------------------- pilot
    def _pilot(self, cp, offer):
        out = self.out
        if out.faults & _TO_F:
            mode = PILOT_LOW
        elif offer and P.CP_D <= cp <= P.CP_B:  # an offer: nothing blocks it (_offer)
            mode = PILOT_PWM
        else:
            mode = PILOT_HIGH
        if mode == PILOT_PWM and out.pilot != PILOT_PWM and self._x1_ms < T_X1_MIN:
            mode = PILOT_HIGH  # not yet 3 s in X1
        if mode == PILOT_PWM:
            if out.pilot != PILOT_PWM:
                self._set_pwm(offer)
                self._pwm_ticks = 0
            elif offer < out.offer_ma:  # a lower limit applies at once
                self._set_pwm(offer)
            elif offer > out.offer_ma and self._pwm_ms >= T_PWM_UPDATE:
                self._set_pwm(offer)
            if self._pwm_ticks < 1000:
                self._pwm_ticks += 1
        else:
            if out.pilot != PILOT_HIGH:
                self._x1_ms = 0  # X1 starts when the PWM or the -12 V (F) ends
            out.offer_ma = 0
            out.duty = P.DUTY_LOW if mode == PILOT_LOW else P.DUTY_HIGH
        out.pilot = mode

    def _set_pwm(self, offer):
        self.out.offer_ma = offer
        self.out.duty = P.duty_for(offer)
        self._pwm_ms = 0

    # 6. --------------------------------------------------------- contactor
    def _contactor(self, cp):
        out = self.out
        ready = (cp == P.CP_C or (cp == P.CP_D and self.ventilation)) and self._pp_open == 0
        want = False
        close = False
        if out.faults & IMMEDIATE or not ready:
            pass
        elif out.pilot == PILOT_PWM and out.session is not None:
            want = True
        elif out.contactor and out.pilot == PILOT_HIGH:
            # PWM off while the vehicle stays in C (Table A.6 seq. 10.2):
            # wait for it to open S2, force the contactor open after 6 s.
            close = self._x1_ms < T_CLOSE_AFTER_PWM_OFF
        if want and out.contactor:
            close = True
        elif want and self._evidence():
            close = self._rcd_selftest_passed()
        elif self._rcd_phase != _RT_IDLE:
            # Not closing after all: finish a test under way, forget a pass.
            self._rcd_selftest_passed()
            if self._rcd_phase == _RT_PASSED:
                self._rcd_phase = _RT_IDLE
        if close != out.contactor:
            out.contactor = close
            self._cmd_ms = 0
            if close:
                self._close_ms = 0

    def _evidence(self):
        """Everything a close needs besides the RCD self-test: the diode
        check passed in this PWM phase, the mirror contact (where fitted)
        shows the contacts open, the last open command has held for
        T_MIN_OPEN (so the weld check has run), and T_CLOSE_GAP since the
        last close."""
        return (self._diode_ok >= DIODE_PASS and self._diode_bad == 0
                and self.inp.fb is not True
                and self._cmd_ms >= T_MIN_OPEN and self._close_ms >= T_CLOSE_GAP)

    def _rcd_selftest_passed(self):
        """Run the RCD self-test one tick further; True once it has passed.

        The test output is driven for at most T_RCD_TEST until the trip input
        reports the trip, then released until the input clears. A test that
        does not see both raises `rcd`.
        """
        if not self.rcd_selftest:
            return True
        out = self.out
        ph = self._rcd_phase
        if ph == _RT_IDLE:
            self._rcd_phase = _RT_TRIP
            self._rcd_ms = 0
            out.rcd_test = True
            return False
        if ph == _RT_PASSED:
            self._rcd_phase = _RT_IDLE
            return True
        if ph == _RT_TRIP:
            if self.inp.rcd:
                self._rcd_phase = _RT_RELEASE
                self._rcd_ms = 0
                out.rcd_test = False
            elif self._rcd_ms >= T_RCD_TEST:
                self._rcd_test_failed()
        elif not self.inp.rcd:
            self._rcd_phase = _RT_PASSED
        elif self._rcd_ms >= T_RCD_TEST:
            self._rcd_test_failed()  # the trip outlasts the test: a trip
        return False

    def _rcd_test_failed(self):
        self.out.rcd_test = False
        self._rcd_phase = _RT_IDLE
        self._rcd_trip_ms = 0
        self._raise(_F_RCD)

    # 7. ------------------------------------------------------------- state
    def _state(self, cp):
        out = self.out
        if out.pilot == PILOT_LOW or cp == P.CP_UNKNOWN:
            out.state = "F"
        elif cp == P.CP_E:
            out.state = "E"
        elif cp == P.CP_A:
            out.state = "A"
        else:
            out.state = _STATE_X[(cp - 1) * 2 + (1 if out.pilot == PILOT_PWM else 0)]
        if out.faults != self._shown_faults:
            self._shown_faults = out.faults
            out.error = _top_code(out.faults)

    def limits_into(self, v, i, left_i, none):
        """The limits in force into array `v` without allocating (the status
        snapshot, evse.bus): v[i..i+4] = the configured maximum, the cable's
        rating, the backend's limit (`none` without one), the fallback
        current (mA), and flags 1 paused | 2 derating | 4 on the fallback
        for a lost meter; v[left_i] = ms left of the backend limit's ttl_s
        (`none`: no ttl)."""
        v[i] = self.max_ma
        v[i + 1] = self._cable_ma
        lim = self._limit_ma
        v[i + 2] = none if lim is None else lim
        v[i + 3] = self.fallback_ma
        out = self.out
        v[i + 4] = ((1 if self._paused else 0) | (2 if out.derate else 0)
                    | (4 if out.faults & F_METER and not self.meter_stop else 0))
        left = self._limit_left
        v[left_i] = none if left is None else left

    def backend_state(self):
        """What the backend set that must survive a reboot: (limit mA or
        None, ms left of its ttl_s or None, paused)."""
        return self._limit_ma, self._limit_left, self._paused

    def restore_backend(self, limit_ma, left_ms, paused):
        """Take back what backend_state() gave before a reboot or a power
        cut. The charger cannot know how long it was off, so a limit with a
        ttl_s runs its remaining time at no more than the fallback current
        (what it would have fallen back to had the time run out while the
        charger was off), then falls back as usual."""
        self._paused = bool(paused)
        if limit_ma is None:
            return
        if left_ms is not None and limit_ma > self.fallback_ma:
            limit_ma = self.fallback_ma
        self._limit_ma = limit_ma
        self._limit_left = left_ms
        self._fallen = False

    # ---------------------------------------------------------- commands
    def command(self, msg, now):
        """Handle a backend command (a decoded JSON object); return the reply."""
        try:
            c = parse(msg)
        except CommandError as e:
            return {"id": command_id(msg), "ok": False, "error": str(e)}
        n = c.name
        err = None
        if n == "set_current":
            self._limit_ma = c.amps_ma
            self._limit_left = c.ttl_ms
            self._fallen = False
            self._event("limit", None)
        elif n == "pause":
            self._paused = True
            self._event("limit", None)
        elif n == "resume":
            self._paused = False
            self._event("limit", None)
        elif n == "authorize":
            # Backend authorization; in both modes it also lifts a `stop`.
            self._authorized = True
            self._stopped = False
            if self.cp.stable == P.CP_A:  # before the plug-in: for the next vehicle,
                self._auth_early = True  # within T_AUTH_WAIT
                self._auth_ms = 0
        elif n == "stop":
            if self.out.session is None:
                err = "no session under way"
            else:
                self._stopped = True
                self._end_session("stop")
        elif n == "reset_error":
            # All or nothing: while the cause of one latched fault is still
            # there, nothing is cleared and the RCD retry count stays.
            f = self.out.faults & _LATCHED
            keep = 0
            if f & _F_RCD and self.inp.rcd:
                keep |= _F_RCD
            if f & _F_WELD and self.inp.fb:
                keep |= _F_WELD
            if keep:
                err = "%s: cause still present" % _top_code(keep)
            else:
                if f & _F_DIODE:
                    # The diode can only be seen with PWM on: the PWM comes
                    # back and `diode` clears after DIODE_PASS good readings,
                    # or stays.
                    self._diode_retest = True
                    f &= ~_F_DIODE
                self._clear(f)
                self._rcd_retries = 0
        elif n == "reboot":  # parse admits only the commands above
            self._event("reboot", "command")
        if err:
            return {"id": c.id, "ok": False, "error": err}
        return {"id": c.id, "ok": True}


def _top_code(faults):
    for b, name in FAULTS:
        if faults & b:
            return name
    return None
