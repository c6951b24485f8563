"""The virtual board and the vehicle plugged into it.

`Board` implements the adapter API that evse.app.App uses (`read(inp)`,
`apply(out)`, `safe()`) on top of a small physical model:

- Control pilot (IEC 61851-1 Annex A): the board's generator drives +12 V or
  -12 V behind R1 = 1 kOhm. The vehicle has a diode (0.7 V forward drop),
  then R3 = 2.74 kOhm, plus R2 = 1.3 kOhm (S2 closed, state C) or 270 Ohm
  (state D) in parallel. With the generator at +12 V the CP line reads
      0.7 V + (12 V - 0.7 V) * Rv / (Rv + R1)
  (8.98 V in B, 5.99 V in C, 2.93 V in D, 12 V unplugged). With the generator
  at -12 V the diode blocks and the line reads -12 V. Without the diode
  (`ev_diode` false: diode shorted or bypassed) there is no 0.7 V drop and
  the negative half sees the divider too: +/-12 V * Rv / (Rv + R1).
  `cp_short` pulls the line to 0 V. The firmware reads two plateaus each
  tick: with PWM on the high and the low one; with steady +12 V both are the
  +12 V reading, with steady -12 V both are the -12 V reading. Seeded
  uniform noise of `noise_v` is added to every reading (own LCG, identical
  on CPython and MicroPython). Values reach the firmware in integer mV.
- Contactor with a mirror contact: the contacts follow the coil, except
  that `no_close` keeps them open and `weld` keeps them closed once they
  have closed (the mirror contact reports the contacts, not the coil).
- RCD trip input: the `rcd` fault, or the firmware's RCD test winding.
- Temperature sensor (default 25 C), PE detection, PP resistor.

The vehicle's current model (`Vehicle`) reads the PWM duty as a vehicle does
(IEC 61851-1 Table A.8) and, once `response_s` has passed since the duty
last changed, draws min(max_a, offer) per phase (or max_a regardless of the
PWM when it does not obey it), while the contacts are closed and it is in C
or D. No supply, open contacts, or the vehicle in A/B: no current.
"""
from evse.charger import PILOT_HIGH, PILOT_LOW, PILOT_PWM

PILOT_OFF = 3  # no supply: the generator is dead, the line reads 0 V

R1 = 1000  # EVSE source resistor, ohm
DIODE_MV = 700  # vehicle diode forward drop
GEN_MV = 12000

# The vehicle's resistance across CP-PE per state as a fraction P/Q (ohm):
# R3 = 2740 alone (B), R3 || 1300 (C), R3 || 270 (D).
_RV = {
    "B": (2740, 1),
    "C": (2740 * 1300, 2740 + 1300),
    "D": (2740 * 270, 2740 + 270),
}


def ev_levels(ev, diode):
    """(mV with the generator at +12 V, mV at -12 V) for the vehicle state."""
    if ev == "A":
        return GEN_MV, -GEN_MV
    p, q = _RV[ev]
    if diode:
        return DIODE_MV + (GEN_MV - DIODE_MV) * p // (p + R1 * q), -GEN_MV
    v = GEN_MV * p // (p + R1 * q)
    return v, -v


def ev_reads_offer_ma(duty):
    """The current (mA) a vehicle reads from a PWM duty in 0.01 %
    (IEC 61851-1 Table A.8): 8-10 % 6 A, 10-85 % duty x 0.6 A,
    85-96 % (duty - 64) x 2.5 A, 96-97 % 80 A, anything else no charging."""
    if duty < 800 or duty > 9700:
        return 0
    if duty < 1000:
        return 6000
    if duty <= 8500:
        return duty * 6
    if duty <= 9600:
        return (duty - 6400) * 25
    return 80000


class Lcg:
    """31-bit linear congruential generator (the ANSI C constants)."""

    def __init__(self, seed):
        self.state = seed & 0x7FFFFFFF

    def uniform(self, amp):
        """An integer in [-amp, amp], uniform, from the generator's top bits."""
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (((self.state >> 15) * (2 * amp + 1)) >> 16) - amp


class Vehicle:
    def __init__(self, phases):
        self.state = "A"  # pilot circuit: A, B, C, D
        self.diode = True
        self.max_ma = 32000
        self.obey = True
        self.response_ms = 1000
        self.phases = phases
        self.seen_ma = 0  # the offer the vehicle acts on
        self.pending = []  # [due_ms, offer_ma] the PWM showed, not yet acted on
        self.shown_ma = 0  # the offer the PWM shows now
        self.draw_ma = 0  # current per phase now

    def draw(self, kw):
        """An `ev_draw` event, in integer units (scenario.normalize)."""
        if "max_ma" in kw:
            self.max_ma = kw["max_ma"]
        if "obey" in kw:
            self.obey = kw["obey"]
        if "response_ms" in kw:
            self.response_ms = kw["response_ms"]
        if "phases" in kw:
            self.phases = kw["phases"]

    def update(self, now_ms, pwm_offer_ma, flowing):
        """Follow the PWM response_ms late (each offer the PWM showed is acted
        on response_ms after it appeared, however soon the next one came) and
        set draw_ma for the next interval. `flowing`: supply on, contacts
        closed, vehicle in C or D."""
        if pwm_offer_ma != self.shown_ma:
            self.shown_ma = pwm_offer_ma
            self.pending.append([now_ms + self.response_ms, pwm_offer_ma])
        p = self.pending
        while p and now_ms >= p[0][0]:
            self.seen_ma = p.pop(0)[1]
        if not flowing:
            self.draw_ma = 0
        elif not self.obey:
            self.draw_ma = self.max_ma
        else:
            self.draw_ma = self.seen_ma if self.seen_ma < self.max_ma else self.max_ma

    def settled(self):
        return not self.pending


class Board:
    def __init__(self, phases, seed=0):
        self.vehicle = Vehicle(phases)
        self.supply_phases = phases
        self.cp_short = False
        self.pp_ohm = None
        self.rcd_fault = False
        self.temp_dc = 250
        self.weld = False
        self.no_close = False
        self.pe = True
        self.noise_mv = 0
        self.lcg = Lcg(seed)
        # what the firmware set
        self.pilot = PILOT_HIGH
        self.duty = 10000
        self.coil = False
        self.rcd_test = False
        self.line_phases = 3  # 1: the L2/L3 contactor stays open (1p/3p switching)
        # the contacts
        self.stuck = False  # welded shut
        self.closed = False

    # ------------------------------------------------------ adapter API
    def read(self, inp):
        hi, lo = self.cp_plateaus()
        if self.noise_mv:
            hi += self.lcg.uniform(self.noise_mv)
            lo += self.lcg.uniform(self.noise_mv)
        inp.cp_high_mv = hi
        inp.cp_low_mv = lo
        inp.pp_ohm = self.pp_ohm
        inp.rcd = self.rcd_fault or self.rcd_test
        inp.pe_ok = self.pe
        inp.fb = self.closed
        inp.temp_dc = self.temp_dc

    def apply(self, out):
        self.pilot = out.pilot
        self.duty = out.duty
        self.coil = out.contactor
        self.rcd_test = out.rcd_test
        self.line_phases = out.phases
        self.contacts()

    def safe(self):
        self.pilot = PILOT_HIGH
        self.duty = 10000
        self.coil = False
        self.rcd_test = False
        self.contacts()

    # ---------------------------------------------------------- physics
    def power_off(self):
        """The supply is gone: no pilot, the coil and test winding drop out."""
        self.pilot = PILOT_OFF
        self.duty = 0
        self.coil = False
        self.rcd_test = False
        self.contacts()

    def contacts(self):
        if not self.weld:
            self.stuck = False
        self.closed = self.stuck or (self.coil and not self.no_close)
        if self.weld and self.closed:
            self.stuck = True

    def cp_plateaus(self):
        """(high, low) plateau in mV as the firmware's ADC sees them."""
        if self.cp_short or self.pilot == PILOT_OFF:
            return 0, 0
        pos, neg = ev_levels(self.vehicle.state, self.vehicle.diode)
        if self.pilot == PILOT_PWM:
            return pos, neg
        if self.pilot == PILOT_LOW:
            return neg, neg
        return pos, pos

    def pwm_offer_ma(self):
        """The offer the vehicle reads from the pilot (0 without PWM)."""
        if self.pilot != PILOT_PWM or self.cp_short or self.vehicle.state == "A":
            return 0
        return ev_reads_offer_ma(self.duty)

    def flowing(self):
        v = self.vehicle
        return (self.pilot != PILOT_OFF and self.closed
                and (v.state == "C" or v.state == "D"))

    def phases(self):
        p = self.vehicle.phases
        if self.line_phases < p:
            p = self.line_phases
        return p if p < self.supply_phases else self.supply_phases

    def update_vehicle(self, now_ms):
        self.vehicle.update(now_ms, self.pwm_offer_ma(), self.flowing())
