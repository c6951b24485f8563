"""Control pilot and proximity pilot: pure IEC 61851-1 arithmetic.

No hardware here. The board adapter measures the CP line's high and low
plateaus and the PP resistor; this module turns those numbers into pilot
classes, cable ratings and duty cycles. Everything is an integer so that the
control step allocates nothing on MicroPython's heap:

- voltages in millivolts (mV),
- currents in milliamperes (mA),
- duty cycle in hundredths of a percent (0..10000; 10000 = steady +12 V).
"""
from micropython import const

# --- Pilot classes, ordered by the CP high-plateau voltage (IEC 61851-1 Table A.3).
CP_UNKNOWN = const(-1)  # not classified yet (after boot into F, or while we drive -12 V)
CP_E = const(0)  # 0 V: CP shorted to PE (or no supply)
CP_D = const(1)  # +3 V: vehicle ready, ventilation required
CP_C = const(2)  # +6 V: vehicle ready
CP_B = const(3)  # +9 V: vehicle connected, not ready
CP_A = const(4)  # +12 V: no vehicle

_CP_NAMES = const(("E", "D", "C", "B", "A"))

# Class boundaries (mV): half-way between the nominal levels 0/3/6/9/12 V, so each
# level has +/-1.5 V of room; the published tolerance is about +/-1 V.
_LOWER = const((-100000, 1500, 4500, 7500, 10500))  # lower bound of E, D, C, B, A
_UPPER = const((1500, 4500, 7500, 10500, 100000))  # upper bound of E, D, C, B, A

# Hysteresis: to leave its class a reading must pass the boundary by this much.
# With +/-0.6 V of noise around a nominal level a reading stays >= 0.9 V inside
# its window, so neither the boundary nor the hysteresis band is ever reached.
_HYST_MV = const(400)

# Debounce (ms a new class must persist before it is taken). Asymmetric, the
# safe direction is fast (our choice, after OpenEVSE's J1772EvseController:
# DELAY_STATE_TRANSITION 250 ms, DELAY_STATE_TRANSITION_A 25 ms):
# - leaving C or D (the contactor may be closed): counted in readings, not
#   in ms, and whatever the outside readings are (B, A, E in any mix): each
#   reading outside C/D adds _LEAVE_UP to a bucket, each reading in C/D takes
#   one away, and the class is left when the bucket reaches _LEAVE_AT. Two
#   outside readings in a row (20 ms at the 10 ms control tick) leave; a
#   pilot that bounces between C and B every tick leaves after five readings
#   (50 ms); one that is outside C/D one reading in three never builds up.
#   IEC 61851-1 Table A.6 sequence 8.1 and unplug allow 100 ms until the
#   contactor is open.
# - between C and D: _DEBOUNCE_LEAVE_MS (two consecutive readings).
# - entering A or E from anything else: 25 ms; the readings may mix A and E
#   (an unplug that scrapes the CP pin) without restarting the time.
# - entering B, C or D (towards closing the contactor): 250 ms of one class.
_DEBOUNCE_LEAVE_MS = const(5)
_DEBOUNCE_FAST_MS = const(25)
_DEBOUNCE_ENTER_MS = const(250)
_LEAVE_UP = const(2)
_LEAVE_AT = const(4)
MS_CAP = const(0x1FFFFFFF)  # elapsed-ms counters saturate here (a small int)


def age(t, dt):
    """An elapsed-ms counter `t` after `dt` more ms, saturating at MS_CAP."""
    t += dt
    return t if t < MS_CAP else MS_CAP

# Diode check (IEC 61851-1 Annex A: the EV's diode blocks the negative half).
# With PWM on, the low plateau must read about -12 V; a missing diode gives
# about -8.8 V in B and -5.6 V in C. A reading above DIODE_MAX_LOW_MV is a
# bad one; evse/charger.py counts them (DIODE_PASS, DIODE_BAD_UP, DIODE_BAD_AT).
DIODE_MAX_LOW_MV = const(-10500)

# --- Duty cycle (IEC 61851-1 Table A.7).
MIN_MA = const(6000)  # below 6 A no PWM: the EVSE stays in X1 (steady +12 V)
MAX_MA = const(80000)
GAP_LO_MA = const(51000)
GAP_HI_MA = const(52500)
DUTY_HIGH = const(10000)  # steady +12 V, "100 %"
DUTY_LOW = const(0)  # steady -12 V (state F) or no output


def clamp_offer(ma):
    """The current the PWM can actually offer for a wanted limit `ma` (mA).

    - below 6 A: 0 (no PWM; Table A.7 has no duty below 10 %),
    - above 80 A: 80 A,
    - above 51 A up to 52.5 A: 51 A. The two formulas of Table A.7 leave a
      gap there: 51 A is 85 % by the first, 51.5 A is 84.6 % by the second,
      and an EV reads anything up to 85 % with the first formula (Table A.8),
      so it would see *less* than 51 A for more asked; 52.5 A gives 85 %
      again, which reads as 51 A. Offering 51 A keeps the offer what the
      vehicle reads and never more than asked (EVerest clamps the same way).
    """
    if ma < MIN_MA:
        return 0
    if ma > MAX_MA:
        return MAX_MA
    if GAP_LO_MA < ma <= GAP_HI_MA:
        return GAP_LO_MA
    return ma


def duty_for(ma):
    """Duty (0.01 %) for an offer of `ma` mA that `clamp_offer` returned.

    6 A <= I <= 51 A: duty % = I / 0.6; 51 A < I <= 80 A: duty % = I / 2.5 + 64.
    In our units: duty = mA / 6 and duty = mA / 25 + 6400. Rounded down, so
    the vehicle never reads more current than offered. 0 means no PWM: 100 %.
    """
    if ma < MIN_MA:
        return DUTY_HIGH
    if ma <= GAP_LO_MA:
        return ma // 6
    return ma // 25 + 6400


def level(mv):
    """Pilot class of a high-plateau reading, without hysteresis."""
    if mv >= 10500:
        return CP_A
    if mv >= 7500:
        return CP_B
    if mv >= 4500:
        return CP_C
    if mv >= 1500:
        return CP_D
    return CP_E


def _debounce_ms(stable, cand):
    if stable == CP_C or stable == CP_D:
        return _DEBOUNCE_LEAVE_MS
    if cand == CP_A or cand == CP_E:
        return _DEBOUNCE_FAST_MS
    return _DEBOUNCE_ENTER_MS


def _fast(c):
    return c == CP_A or c == CP_E


class CpClassifier:
    """High-plateau readings in, debounced pilot class out.

    `update(dt, mv)` is called once per control tick with the ms since the
    previous call and the measured high plateau; it returns the stable
    class. Time is kept as elapsed ms, never as a stored tick value, so the
    classifier behaves the same at any uptime. A candidate class must
    persist for its debounce time before it is taken; leaving C or D is the
    bucket described at _LEAVE_UP above.
    """

    def __init__(self, stable=CP_A):
        self.reset(stable)

    def reset(self, stable=CP_UNKNOWN):
        self.stable = stable
        self.cand = stable
        self.ms = 0  # ms the candidate has persisted
        self.leave = 0  # the bucket of readings outside C/D
        self.out_last = stable  # class of the last reading outside C/D

    def raw(self, mv):
        """Class of one reading, with hysteresis around the stable class."""
        s = self.stable
        if s >= 0 and _LOWER[s] - _HYST_MV < mv < _UPPER[s] + _HYST_MV:
            return s
        return level(mv)

    def _take(self, c):
        s = self.stable
        if (s != CP_C and s != CP_D) or (c != CP_C and c != CP_D):
            self.leave = 0  # C <-> D (ventilation on): the bucket goes on
        self.stable = c
        self.cand = c
        self.ms = 0
        return c

    def update(self, dt, mv):
        c = self.raw(mv)
        s = self.stable
        if s == CP_C or s == CP_D:
            if c != CP_C and c != CP_D:
                prev = self.out_last
                self.out_last = c
                self.leave += _LEAVE_UP
                if self.leave >= _LEAVE_AT:
                    # The last two outside readings agree: that class. A mix:
                    # B (connected, not ready); the debounce goes on from there.
                    return self._take(c if prev == c else CP_B)
                return s
            if self.leave:
                self.leave -= 1
        if c == s:
            self.cand = c
            self.ms = 0
            return s
        cand = self.cand
        if c != cand and (cand == s or not (_fast(c) and _fast(cand))):
            self.ms = 0  # a new candidate: its time starts with this reading
        else:
            self.ms = age(self.ms, dt)
        self.cand = c
        if self.ms >= _debounce_ms(s, c):
            return self._take(c)
        return s


def diode_missing(low_mv):
    """True when a low-plateau reading (PWM on) shows no vehicle diode."""
    return low_mv > DIODE_MAX_LOW_MV


# --- Proximity pilot (IEC 61851-1 Annex B, IEC 62196): Rc between PP and PE.
# Nominal 1.5 kOhm 13 A, 680 Ohm 20 A, 220 Ohm 32 A, 100 Ohm 63 A (3-phase) /
# 70 A (1-phase). Our windows put each boundary at the geometric mean of the
# neighbouring nominal values (148, 387, 1010 Ohm), so a resistor may drift
# about +/-30 % and still decode right; below 50 Ohm (a short) and above
# 2.7 kOhm (open) there is no valid cable and nothing is offered.
_PP_SHORT_OHM = const(50)
_PP_OPEN_OHM = const(2700)


def pp_rating_ma(ohm, phases):
    """Cable rating in mA for a PP resistance (None = open), 0 for no cable."""
    if ohm is None or ohm < _PP_SHORT_OHM or ohm >= _PP_OPEN_OHM:
        return 0
    if ohm < 148:
        return 70000 if phases == 1 else 63000
    if ohm < 387:
        return 32000
    if ohm < 1010:
        return 20000
    return 13000
