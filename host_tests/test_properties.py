"""Property tests: the charger's safety invariants over long random runs.

A small virtual vehicle and board (below) closes the loop around the real
firmware (evse.charger.Charger): every 10 ms tick it turns the vehicle's pilot
circuit, the injected faults and the charger's outputs of the previous tick
into the next tick's inputs. Hypothesis draws a configuration and a sequence
of steps (vehicle state changes, diode removal, CP short, RCD trip, PE loss,
temperature, weld / no_close, meter silent, PP cable, vehicle draw, noise,
backend commands valid and invalid), each followed by a dwell time, and each
test checks one invariant at every tick.

Numbers of IEC 61851-1 tables and sequences are those cited in
shared/reference/iec61851.md.

Profiles (select with the environment variable HYPOTHESIS_PROFILE):
  ci    default: the whole module in under a minute on 2 cores
  long  ten times the examples, for a soak run
They are applied per test (not loaded globally), so other modules keep theirs.
Examples run per test, and what the runs covered (`event` lines):
  pytest host_tests/test_properties.py --hypothesis-show-statistics
A failure prints the shrunk Scenario: its steps, one a line, with their times.
"""
import copy
import functools
import math
import os
import random
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from evse import config
from evse import pilot as P
from evse.charger import (DIODE_PASS, IMMEDIATE, PILOT_HIGH, PILOT_LOW, PILOT_PWM,
                          T_CLOSE_GAP, T_MIN_OPEN, T_X1_MIN, Charger)
from evse.commands import FIELDS
from evse import TICKS_PERIOD, ticks_add

# ---------------------------------------------------------------- profiles
_COMMON = dict(deadline=None, derandomize=False, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# ci skips hypothesis' explain phase: it costs more than the shrink on these runs.
settings.register_profile("ci", max_examples=120, phases=[p for p in Phase if p != Phase.explain],
                          **_COMMON)
settings.register_profile("long", max_examples=1200, **_COMMON)
_PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


def _examples(weight=1.0):
    """Settings for one test: the profile's example count scaled by weight."""
    return settings(_PROFILE, max_examples=max(1, int(_PROFILE.max_examples * weight)))


TICK = 10  # ms, the control tick


# ------------------------------------------------- virtual vehicle and board
R1 = 1000  # EVSE: generator behind 1 kOhm
R3 = 2740  # EV: diode, then 2.74 kOhm (always there: state B)
R2 = {"C": 1300, "D": 270}  # EV: switched in by S2 (C), or for ventilation (D)
V_GEN = 12000  # mV, +/-12 V generator
V_DIODE = 700  # mV, the EV diode's forward drop: high plateau ~9 / 6 / 3 V


@functools.lru_cache(maxsize=None)
def cp_levels(pilot, ev, diode, short):
    """(high, low) plateau in mV at the EVSE for its pilot output and the EV."""
    if short:
        return 0, 0
    if pilot == PILOT_LOW:
        return -V_GEN, -V_GEN
    if ev == "A":
        hi, lo = V_GEN, -V_GEN
    else:
        r = R3 if ev == "B" else Fraction(R3 * R2[ev], R3 + R2[ev])
        if diode:  # the diode blocks the negative half
            hi, lo = V_DIODE + (V_GEN - V_DIODE) * r / (R1 + r), -V_GEN
        else:  # both halves see the divider
            hi = V_GEN * r / (R1 + r)
            lo = -hi
    if pilot == PILOT_HIGH:  # steady +12 V: no low plateau
        lo = hi
    return float(hi), float(lo)


PP_NOMINAL = (100, 220, 680, 1500)  # Ohm, IEC 61851-1 Annex B


def pp_rating_ma(nominal, phases):
    """Cable rating for a nominal PP resistor (None / a short / open: 0)."""
    return {100: 70000 if phases == 1 else 63000, 220: 32000, 680: 20000,
            1500: 13000}.get(nominal, 0)


class Board:
    """The vehicle, the supply and the board's sensors, one tick at a time."""

    def __init__(self, cfg, seed, fb_fitted):
        self.rng = random.Random(seed)
        self.meter = cfg["meter"] is not None
        self.phases = cfg["phases"]
        self.fb_fitted = fb_fitted
        self.ev = "A"
        self.diode = True
        self.short = False
        self.noise_mv = 0
        self.rcd_fault = False
        self.pe_ok = True
        self.temp_dc = None
        self.weld = False
        self.no_close = False
        self.meter_silent = False
        self.pp_ohm = None
        self.pp_ma = 0  # rating of the cable in the socket, for the checks
        self.draw_ma = 32000
        self.obey = True

    def set_pp(self, nominal, drift_pct):
        self.pp_ohm = None if nominal is None else nominal * (100 + drift_pct) // 100
        self.pp_ma = pp_rating_ma(nominal, self.phases)

    def sense(self, inp, out):
        """Fill `inp` with what the board measured while `out` was applied."""
        hi, lo = cp_levels(out.pilot, self.ev, self.diode, self.short)
        n = self.noise_mv
        inp.cp_high_mv = int(round(hi + self.rng.uniform(-n, n)))
        inp.cp_low_mv = int(round(lo + self.rng.uniform(-n, n)))
        inp.rcd = out.rcd_test or self.rcd_fault
        closed = self.weld or (out.contactor and not self.no_close)
        inp.fb = closed if self.fb_fitted else None
        inp.pe_ok = self.pe_ok
        inp.temp_dc = self.temp_dc
        inp.pp_ohm = self.pp_ohm
        if not self.meter:
            inp.meter_ok = inp.ev_ma = None
        elif self.meter_silent:
            inp.meter_ok, inp.ev_ma = False, None
        else:
            inp.meter_ok = True
            if closed and self.ev in "CD" and not self.short:
                inp.ev_ma = min(self.draw_ma, out.offer_ma) if self.obey else self.draw_ma
            else:
                inp.ev_ma = 0


def dec(v):
    """A config or command number as the decimal it was written as."""
    return Fraction(repr(v))


def temp_dc(cfg, val):
    """Resolve a temperature step (a reference point and an offset) in 0.1 degC."""
    if val is None:
        return None
    ref, delta = val
    d, s, h = (dec(cfg[k]) * 10 for k in ("temp_derate_c", "temp_stop_c", "temp_hyst_c"))
    base = {"room": 250, "derate": d, "derate_clear": d - h, "stop": s, "stop_clear": s - h}[ref]
    return int(round(base)) + delta


class Sim:
    """The firmware and the board, ticked together; `checks` watch every tick."""

    def __init__(self, sc, start=0, checks=()):
        self.cfg = config.validate(sc.cfg)
        self.board = Board(self.cfg, sc.seed, sc.fb_fitted)
        self.ch = Charger(self.cfg, start)
        self.now = start
        self.t = 0  # ms since the start
        self.prev_pilot = self.prev_offer = self.prev_faults = None
        self.prev_contactor = False
        self.checks = [c(self) for c in checks]
        self.expect_invalid = False  # the command under way is invalid by construction
        self.log = None

    def tick(self):
        ch, o = self.ch, self.ch.out
        self.prev_pilot, self.prev_offer = o.pilot, o.offer_ma
        self.prev_contactor, self.prev_faults = o.contactor, o.faults
        for c in self.checks:
            c.before_tick(self)
        self.board.sense(ch.inp, o)
        self.now = ticks_add(self.now, TICK)
        self.t += TICK
        ch.step(self.now)
        for c in self.checks:
            c.after_tick(self)
        ev = ch.take_events()
        if self.log is not None:
            self.log.append((self.t, o.state, o.duty, o.offer_ma, o.contactor, o.error,
                             o.session, o.pilot, o.rcd_test, o.faults, o.derate, tuple(ev)))

    def command(self, msg):
        for c in self.checks:
            c.before_command(self, msg)
        reply = self.ch.command(msg, self.now)
        for c in self.checks:
            c.after_command(self, msg, reply)
        return reply

    def apply(self, kind, val):
        b = self.board
        if kind in ("cmd", "bad_cmd", "amps"):
            self.expect_invalid = kind == "bad_cmd"
            self.command(val)
            self.expect_invalid = False
        elif kind == "temp":
            b.temp_dc = temp_dc(self.cfg, val)
        elif kind == "pp":
            b.set_pp(*val)
        elif kind == "draw":
            b.draw_ma, b.obey = val[0] * 1000, val[1]
        elif kind == "pe":
            b.pe_ok = not val
        elif kind != "dwell":
            setattr(b, {"ev": "ev", "diode": "diode", "short": "short", "rcd": "rcd_fault",
                        "weld": "weld", "no_close": "no_close", "meter": "meter_silent",
                        "noise": "noise_mv"}[kind], val)

    def idle(self, ms):
        """A quiet charger (state A, nothing happening) for `ms` of uptime,
        in strides of up to an hour; no readings drawn from the board."""
        while ms > 0:
            d = ms if ms < 3600000 else 3600000
            self.now = ticks_add(self.now, d)
            self.ch.step(self.now)
            ms -= d
        self.ch.take_events()

    def run(self, sc):
        b = self.board
        b.ev, b.noise_mv = sc.ev0, sc.noise0
        b.set_pp(*sc.pp0)
        for kind, val, dwell in sc.steps:
            self.apply(kind, val)
            for _ in range(dwell):
                self.tick()
        return self


class Check:
    """Base of the per-tick invariant checks (all hooks do nothing)."""

    def __init__(self, sim):
        pass

    def before_tick(self, sim):
        pass

    def after_tick(self, sim):
        pass

    def before_command(self, sim, msg):
        pass

    def after_command(self, sim, msg, reply):
        pass


def where(sim, *extra):
    o = sim.ch.out
    return "t=%d ms state=%s pilot=%d duty=%d offer=%d contactor=%s faults=%#x %s" % (
        sim.t, o.state, o.pilot, o.duty, o.offer_ma, o.contactor, o.faults,
        " ".join(str(e) for e in extra))


# ------------------------------------------------------------- strategies
class Scenario:
    def __init__(self, cfg, seed, fb_fitted, ev0, noise0, pp0, steps):
        self.cfg, self.seed, self.fb_fitted = cfg, seed, fb_fitted
        self.ev0, self.noise0, self.pp0, self.steps = ev0, noise0, pp0, steps

    def __repr__(self):
        lines = ["Scenario(cfg=%r, seed=%r, fb_fitted=%r, ev0=%r, noise0=%r, pp0=%r, steps=["
                 % (self.cfg, self.seed, self.fb_fitted, self.ev0, self.noise0, self.pp0)]
        t = 0
        for s in self.steps:
            lines.append("    %r,  # t=%d ms" % (s, t))
            t += s[2] * TICK
        lines.append("])  # %d ticks" % (t // TICK))
        return "\n".join(lines)


def amps(lo=6, hi=80):
    return st.one_of(st.integers(lo, hi), st.integers(lo * 10, hi * 10).map(lambda a: a / 10),
                     st.floats(lo, hi))


def two_decimals(lo, hi, only=False):
    cents = st.integers(lo * 100, hi * 100).map(lambda v: v / 100)
    return cents if only else st.one_of(st.integers(lo, hi), cents)


@st.composite
def configs(draw, cents=False):
    """A configuration; with `cents` the temperatures have two decimals."""
    c = {}
    if draw(st.booleans()):
        c["max_current_a"] = draw(amps())
    c["phases"] = draw(st.sampled_from([1, 3]))
    c["authorization"] = draw(st.sampled_from(["free", "free", "backend"]))
    c["ventilation"] = draw(st.booleans())
    c["meter"] = draw(st.sampled_from(["sdm630", None]))
    c["socket"] = draw(st.booleans())
    c["cable_a"] = draw(st.one_of(st.none(), amps()))
    c["fallback_current_a"] = draw(st.one_of(st.just(0), amps()))
    c["meter_loss"] = draw(st.sampled_from(["fallback", "stop"]))
    c["rcd_selftest"] = draw(st.booleans())
    c["rcd_retry_max"] = draw(st.integers(0, 3))
    c["rcd_retry_s"] = draw(st.integers(10, 20))
    derate = draw(two_decimals(30, 90, cents))
    c["temp_derate_c"] = derate
    c["temp_stop_c"] = draw(two_decimals(max(35, math.floor(derate) + 1), 110, cents))
    c["temp_hyst_c"] = draw(two_decimals(1, 30, cents))
    return c


_IDS = st.one_of(st.integers(-3, 1000), st.text(max_size=6))
_SIMPLE = sorted(n for n in FIELDS if n != "set_current")


@st.composite
def valid_commands(draw):
    name = draw(st.sampled_from(["set_current"] * 3 + _SIMPLE + ["authorize", "resume"]))
    msg = {"cmd": name}
    if name == "set_current":
        msg["amps"] = draw(st.one_of(amps(), st.sampled_from([6, 16, 51, 51.5, 52.5, 80])))
        ttl = draw(st.one_of(st.none(), st.integers(1, 20), st.floats(0.001, 20),
                             st.floats(0, 1, exclude_min=True), st.just(86400)))
        if ttl is not None:
            msg["ttl_s"] = ttl
    if draw(st.booleans()):
        msg["id"] = draw(_IDS)
    return msg


_NOT_STR = st.one_of(st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
_JUNK = st.one_of(_NOT_STR, st.text(max_size=4))
_SCALAR_OR_LIST = st.one_of(st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
_NUM = st.one_of(st.integers(), st.floats())


@st.composite
def invalid_commands(draw):
    """A command that fails validation, by construction."""
    kind = draw(st.sampled_from(["not_object", "no_cmd", "cmd_type", "unknown", "extra",
                                 "no_amps", "amps_type", "amps_range", "ttl_type",
                                 "ttl_range", "id_type", "id_long"]))
    good = draw(valid_commands())
    good.pop("id", None)
    if kind == "not_object":
        return draw(st.one_of(_SCALAR_OR_LIST, _NUM,
                              st.text(max_size=4), st.lists(st.just(good), max_size=1)))
    if kind == "no_cmd":
        m = dict(good)
        del m["cmd"]
        return m
    if kind == "cmd_type":
        return dict(good, cmd=draw(st.one_of(_NOT_STR, _NUM)))
    if kind == "unknown":
        near_miss = st.sampled_from(["", "x", "Pause", "RESUME", "set-current", "setcurrent",
                                     "reset", "stop ", " stop", "authorise", "reboot\x00"])
        return dict(good, cmd=draw(st.one_of(
            near_miss, st.text(max_size=12).filter(lambda s: s not in FIELDS))))
    if kind == "extra":
        allowed = FIELDS[good["cmd"]] + ("cmd", "id")
        key = draw(st.one_of(st.text(max_size=6), st.integers()).filter(lambda k: k not in allowed))
        m = dict(good)
        m[key] = draw(_JUNK)
        return m
    if kind == "id_type":
        return dict(good, id=draw(st.one_of(_NOT_STR, st.floats())))
    if kind == "id_long":
        return dict(good, id=draw(st.text(min_size=65, max_size=80)))
    m = {"cmd": "set_current", "amps": 16}
    if kind == "no_amps":
        del m["amps"]
        if draw(st.booleans()):
            m["ttl_s"] = 10
    elif kind == "amps_type":
        m["amps"] = draw(st.one_of(_JUNK, st.text(max_size=3, alphabet="0123456789.")))
    elif kind == "amps_range":
        m["amps"] = draw(st.one_of(
            st.sampled_from([float("nan"), float("inf"), float("-inf"), 0, -6, 5, 5.5, 5.9999,
                             5.999999999, 80.0001, 80.000000001, 81]),
            st.integers(max_value=5) | st.integers(min_value=81)
            | st.floats(max_value=6, exclude_max=True) | st.floats(min_value=80, exclude_min=True)))
    elif kind == "ttl_type":
        m["ttl_s"] = draw(_JUNK)
    else:  # ttl_range
        m["ttl_s"] = draw(st.one_of(
            st.sampled_from([float("nan"), 0, 0.0, -0.0, -1, 86400.001, 86401, float("inf")]),
            st.integers(max_value=0) | st.integers(min_value=86401) | st.floats(max_value=0)
            | st.floats(min_value=86400, exclude_min=True)))
    return m


def _set_current(amps, ttl_s):
    msg = {"cmd": "set_current", "amps": amps}
    if ttl_s is not None:
        msg["ttl_s"] = ttl_s
    return msg


_PAUSE_RESUME = st.sampled_from([{"cmd": "pause"}, {"cmd": "resume"}, {"cmd": "resume"},
                                 {"cmd": "authorize"}])
STEP_KINDS = {  # kind: (weight in a general run, strategy of its value)
    "ev": (8, st.sampled_from("ABBCCCCD")),
    "dwell": (3, st.none()),
    "cmd": (6, valid_commands()),
    "amps": (0, st.builds(_set_current, st.one_of(
        st.floats(6, 80), amps(), st.integers(60000, 800000).map(lambda v: v / 10000),
        st.sampled_from([6, 6.4, 10, 10.5, 15.8, 16, 31.5, 32, 51, 52, 52.5, 63, 80])),
        st.one_of(st.none(), st.integers(1, 5), st.floats(0.01, 5)))),
    "bad_cmd": (1, invalid_commands()),
    "diode": (1, st.sampled_from([True, True, False])),
    "short": (1, st.sampled_from([False, False, True])),
    "rcd": (1, st.sampled_from([False, False, True])),
    "pe": (1, st.sampled_from([False, False, True])),  # True: PE lost
    "temp": (2, st.one_of(st.none(), st.tuples(
        st.sampled_from(["room", "derate", "derate_clear", "derate", "derate_clear", "stop",
                         "stop_clear"]),
        st.one_of(st.integers(-1, 1), st.integers(-12, 12))))),
    "weld": (1, st.sampled_from([False, False, True])),
    "no_close": (1, st.sampled_from([False, False, True])),
    "meter": (1, st.sampled_from([False, False, True])),  # True: meter silent
    "pp": (2, st.tuples(st.sampled_from((None, 20, 5000) + PP_NOMINAL), st.integers(-20, 20))),
    "draw": (2, st.tuples(st.integers(0, 80), st.booleans())),
    "noise": (2, st.integers(0, 600)),
}
CALM = dict(diode=0, short=0, rcd=0, pe=0, weld=0, no_close=0, meter=0, bad_cmd=0)


def dwell_ticks():
    return st.one_of(st.integers(1, 12), st.integers(10, 60), st.integers(50, 700))


def steps(weights, values, dwell):
    kinds = []
    for k, (w, _) in STEP_KINDS.items():
        kinds += [k] * weights.get(k, w)
    return st.sampled_from(kinds).flatmap(
        lambda k: st.tuples(st.just(k), values.get(k, STEP_KINDS[k][1]), dwell))


@st.composite
def scenarios(draw, weights=None, min_ticks=1000, max_steps=40, ev0="ABC", more=None,
              values=None, dwell=None, cfg=configs()):
    """A configuration and random steps. Without `weights` half of the runs
    are calm (no injected faults, so the charger mostly charges) and half
    get every kind of step; `more` changes some weights in both. `values`
    replaces the strategy of some kinds' values, `dwell` that of the dwell."""
    c = draw(cfg)
    if weights is None:
        weights = dict(draw(st.sampled_from([CALM, {}])), **(more or {}))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    pp0 = draw(st.tuples(st.sampled_from(PP_NOMINAL), st.integers(-20, 20)))
    ss = draw(st.lists(steps(weights, values or {}, dwell_ticks() if dwell is None else dwell),
                       min_size=8, max_size=max_steps))
    total = sum(s[2] for s in ss)
    if total < min_ticks:  # at least a few hundred ticks
        ss.append(("dwell", None, min_ticks - total))
    ev0 = draw(st.sampled_from(ev0))
    return Scenario(c, seed, draw(st.booleans()), ev0, draw(st.integers(0, 600)), pp0, ss)


# ------------------------------------------------------------ the checks
def table_a7_duty(ma):
    """IEC 61851-1 Table A.7 in 0.01 %, rounded down, computed exactly."""
    i = Fraction(ma, 1000)
    pct = i / Fraction(6, 10) if i <= 51 else i / Fraction(5, 2) + 64
    return math.floor(pct * 100)


class ContactorRule(Check):
    """Property 1: where the contactor may be commanded closed."""

    def __init__(self, sim):
        self.pwm_stop = None
        self.closed = self.waited = 0

    def after_tick(self, sim):
        o = sim.ch.out
        if sim.prev_pilot == PILOT_PWM and o.pilot != PILOT_PWM:
            self.pwm_stop = sim.t
        if not o.contactor:
            return
        self.closed += 1
        assert not o.faults & IMMEDIATE, where(sim, "closed with an immediate fault")
        vent = sim.cfg["ventilation"]
        if o.state == "C2" or (o.state == "D2" and vent):
            return
        assert o.state == "C1" or (o.state == "D1" and vent), where(sim, "closed in this state")
        self.waited += 1
        assert sim.prev_contactor, where(sim, "closed (not kept closed) without PWM")
        assert self.pwm_stop is not None and sim.t - self.pwm_stop <= 6000 + TICK, where(
            sim, "still closed", sim.t - (self.pwm_stop or 0), "ms after the PWM stopped")


class ImmediateOpens(Check):
    """Property 2: a newly raised immediate fault opens the contactor at once."""

    def __init__(self, sim):
        self.raised = self.while_closed = 0

    def after_tick(self, sim):
        o = sim.ch.out
        new = o.faults & IMMEDIATE & ~sim.prev_faults
        if new:
            self.raised += 1
            self.while_closed += sim.prev_contactor
            assert not o.contactor, where(sim, "new immediate fault %#x" % new)
        inp = sim.ch.inp  # and a trip the board reports is never ignored
        assert not ((inp.rcd or not inp.pe_ok) and o.contactor), where(
            sim, "closed with rcd=%s pe_ok=%s read" % (inp.rcd, inp.pe_ok))


class DutyFormula(Check):
    """Property 3: pilot mode, duty and offer agree with Table A.7."""

    def after_tick(self, sim):
        o = sim.ch.out
        if o.pilot == PILOT_PWM:
            assert P.MIN_MA <= o.offer_ma <= P.MAX_MA, where(sim)
            assert not P.GAP_LO_MA < o.offer_ma < P.GAP_HI_MA, where(sim, "offer in the gap")
            assert o.duty == P.duty_for(o.offer_ma), where(sim)
            assert o.duty == table_a7_duty(o.offer_ma), where(sim, table_a7_duty(o.offer_ma))
        elif o.pilot == PILOT_HIGH:
            assert (o.duty, o.offer_ma) == (P.DUTY_HIGH, 0), where(sim)
        else:
            assert o.pilot == PILOT_LOW, where(sim, "unknown pilot mode")
            assert (o.duty, o.offer_ma) == (P.DUTY_LOW, 0), where(sim)


class Limits(Check):
    """Property 4: an independent model of the current limits in force.

    `which` names the limit checked. Limits are exact (mA, as fractions) from
    the numbers as written in the configuration and the commands; the one
    tolerance is a ttl_s's deadline, which may fall 1 ms early (the firmware
    keeps time in whole ms).
    """

    def __init__(self, sim):
        cfg = sim.cfg
        self.max = dec(cfg["max_current_a"]) * 1000
        self.cable = self.max if cfg["cable_a"] is None else dec(cfg["cable_a"]) * 1000
        self.fallback = dec(cfg["fallback_current_a"]) * 1000
        self.derate_ma = max(self.max / 2, P.MIN_MA)
        self.derate_c, self.stop_c, self.hyst_c = (
            dec(cfg[k]) for k in ("temp_derate_c", "temp_stop_c", "temp_hyst_c"))
        self.derating = self.overtemp = False
        self.backend = self.until = None
        self.bound = 0  # ticks with this limit in force

    def after_command(self, sim, msg, reply):
        if reply["ok"] and msg["cmd"] == "set_current":
            self.backend = dec(msg["amps"]) * 1000
            ttl = msg.get("ttl_s")
            self.until = None if ttl is None else sim.t + dec(ttl) * 1000

    def after_tick(self, sim):
        b, cfg, o, t = sim.board, sim.cfg, sim.ch.out, sim.t
        backend = self.backend
        if self.until is not None:
            if t >= self.until:  # expired: the fallback applies
                self.backend = backend = self.fallback
                self.until = None
            elif t >= self.until - 1 - Fraction(1, 10 ** 6):  # may have, by 1 ms
                backend = max(backend, self.fallback)
        if b.temp_dc is not None:
            tc = Fraction(b.temp_dc, 10)
            if tc >= self.derate_c:
                self.derating = True
            elif tc <= self.derate_c - self.hyst_c:
                self.derating = False
            if tc >= self.stop_c:
                self.overtemp = True
            elif tc <= self.stop_c - self.hyst_c:
                self.overtemp = False
        meter_lim = None
        if b.meter and b.meter_silent:  # the meter fault is raised in this step
            meter_lim = 0 if cfg["meter_loss"] == "stop" else self.fallback
        lim = {
            "max_current_a": self.max,
            "cable": b.pp_ma if cfg["socket"] else self.cable,
            "set_current": backend,
            "derate": self.derate_ma if self.derating else None,
            "temp_stop": 0 if self.overtemp else None,
            "meter_silent": meter_lim,
        }[self.which]
        if lim is not None:
            self.bound += 1
            assert o.offer_ma <= lim, where(sim, "above the %s limit of %s mA" % (self.which, lim),
                                            "temp_dc=%s pp_ohm=%s" % (b.temp_dc, b.pp_ohm))


LIMITS = ("max_current_a", "cable", "set_current", "derate", "temp_stop", "meter_silent")


def limits(which):
    """The Limits check of one limit (each its own test, so each failure shrinks alone)."""
    return type("Limits_" + which, (Limits,), {"which": which})


def snapshot(ch):
    """Everything a command could change, deep-copied."""
    priv = {k: copy.deepcopy(vars(v) if hasattr(v, "__dict__") else v)
            for k, v in vars(ch).items() if k not in ("inp", "out", "cfg")}
    out = {k: copy.deepcopy(v) for k, v in vars(ch.out).items() if k != "events"}
    return priv, out, dict(vars(ch.inp))


class InvalidChangesNothing(Check):
    """Property 5: a command that fails validation changes nothing."""

    def __init__(self, sim):
        self.before = None
        self.count = 0

    def before_command(self, sim, msg):
        self.before = snapshot(sim.ch)

    def after_command(self, sim, msg, reply):
        if sim.expect_invalid:
            self.count += 1
            assert reply["ok"] is False, (msg, reply)
            assert isinstance(reply["error"], str) and reply["error"], (msg, reply)
            after = snapshot(sim.ch)
            for part, a, b in zip(("charger", "outputs", "inputs"), self.before, after):
                assert a == b, "%s changed by %r: %r" % (part, msg, {
                    k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})


class OpensWithin100ms(Check):
    """Property 7: S2 opened / unplugged / CP shorted: contactor open <= 100 ms."""

    def __init__(self, sim):
        self.deadline = None
        self.seen = 0

    def before_tick(self, sim):
        b = sim.board
        if not (b.short or b.ev in "AB"):
            self.deadline = None  # back in C or D: the clock restarts
        elif sim.ch.out.contactor and self.deadline is None:
            self.deadline = sim.t + 100  # the change happened right after this tick
            self.seen += 1

    def after_tick(self, sim):
        if self.deadline is None:
            return
        if not sim.ch.out.contactor:
            self.deadline = None
        else:
            b = sim.board
            assert sim.t < self.deadline, where(sim, "not open 100 ms after ev=%s short=%s"
                                                % (b.ev, b.short))


class PwmRate(Check):
    """Property 8: PWM raised at most every 5 s; at least 3 s in X1 before PWM."""

    def __init__(self, sim):
        self.stop = self.changed = None
        self.restarts = self.raises = 0

    def after_tick(self, sim):
        o, t = sim.ch.out, sim.t
        if o.pilot == PILOT_PWM:
            if sim.prev_pilot != PILOT_PWM:
                if self.stop is not None:
                    assert t - self.stop >= 3000, where(sim, "PWM back after", t - self.stop)
                    self.restarts += 1
                self.changed = t
            elif o.offer_ma > sim.prev_offer:
                assert t - self.changed >= 5000, where(sim, "raised again after",
                                                       t - self.changed)
                self.raises += 1
                self.changed = t
        elif sim.prev_pilot == PILOT_PWM:
            self.stop = t


class CloseOnEvidence(Check):
    """Issue 10: every close has its evidence, taken from what the board
    read: at least DIODE_PASS readings in a row in this PWM phase with the
    low plateau at or below -10.5 V (the vehicle's diode; IEC 61851-1
    Annex A) and a B/C/D high plateau; the mirror contact not showing
    closed; the open command held T_MIN_OPEN (boot counts as an open);
    T_CLOSE_GAP since the last close, so at most 60 s / T_CLOSE_GAP + 1
    closes in any minute."""

    def __init__(self, sim):
        self.good = 0
        self.opened_at = 0
        self.closes = []

    def after_tick(self, sim):
        o, inp, t = sim.ch.out, sim.ch.inp, sim.t
        if sim.prev_pilot == PILOT_PWM:  # this tick's reading was taken with PWM on
            ok = (inp.cp_low_mv <= P.DIODE_MAX_LOW_MV
                  and P.CP_D <= P.level(inp.cp_high_mv) <= P.CP_B)
            self.good = self.good + 1 if ok else 0
        else:
            self.good = 0
        if o.contactor and not sim.prev_contactor:
            assert self.good >= DIODE_PASS, where(sim, "closed after", self.good,
                                                  "diode readings")
            assert inp.fb is not True, where(sim, "closed with the mirror contact closed")
            assert t - self.opened_at >= T_MIN_OPEN, where(sim, "open only",
                                                           t - self.opened_at)
            if self.closes:
                assert t - self.closes[-1] >= T_CLOSE_GAP, where(sim, "closed again after",
                                                                 t - self.closes[-1])
            self.closes.append(t)
            assert len([c for c in self.closes if c > t - 60000]) <= 60000 // T_CLOSE_GAP + 1
        elif sim.prev_contactor and not o.contactor:
            self.opened_at = t


class LeavesWhateverTheMix(Check):
    """Issue 10: readings outside C/D open the contactor however they mix:
    whenever half of the last 10 readings (100 ms) were outside C/D (B, A,
    E in any order, with C or D readings between), the contactor is open
    (the bucket, +2 for each outside and -1 for each inside, reaches 4 in
    any such window: a vehicle bouncing S2 every reading is leaving C)."""

    def __init__(self, sim):
        self.last = []
        self.opened = 0

    def after_tick(self, sim):
        if sim.prev_pilot == PILOT_LOW:
            self.last = []  # we drove -12 V: the readings say nothing
            return
        c = P.level(sim.ch.inp.cp_high_mv)
        self.last.append(c != P.CP_C and c != P.CP_D)
        if len(self.last) > 10:
            self.last.pop(0)
        if sum(self.last) >= 5:
            self.opened += 1
            assert not sim.ch.out.contactor, where(sim, "closed after readings", self.last)


def run(sc, *checks, start=0):
    sim = Sim(sc, start, checks).run(sc)
    event("ticks: %s" % _bucket(sim.t // TICK, (1000, 2000, 4000)))
    return sim.checks[0] if sim.checks else sim


def _bucket(n, edges):
    """A coarse label for a count, for the statistics (`event`)."""
    lo = 0
    for e in edges:
        if n < e:
            return "%d..%d" % (lo, e - 1)
        lo = e
    return ">=%d" % lo


# ------------------------------------------------------------- the tests
# The PWM stopped and started, its value changed: commands, temperature, meter, cable.
_PWM_CYCLES = scenarios(weights=dict(CALM, ev=1, cmd=8, amps=8, temp=3, meter=2, pp=3),
                        ev0="BC", min_ticks=2000,
                        values={"cmd": st.one_of(valid_commands(), _PAUSE_RESUME)})

# Charging, then faults injected (and taken back, and reset) at random.
_FAULTY = scenarios(
    weights=dict(ev=3, cmd=3, bad_cmd=0, diode=2, short=2, rcd=2, pe=2, weld=2, no_close=2,
                 meter=1, temp=2, draw=3),
    values=dict(cmd=st.one_of(valid_commands(), st.just({"cmd": "reset_error"}))),
    ev0="C")


# (kind, value that raises the fault, value that takes it back)
_FAULT_ON_OFF = (("diode", False, True), ("short", True, False), ("rcd", True, False),
                 ("pe", True, False), ("weld", True, False), ("no_close", True, False),
                 ("meter", True, False), ("draw", (80, False), (32, True)),
                 ("temp", ("stop", 5), ("room", 0)), ("ev", "D", "C"), ("ev", "B", "C"),
                 ("ev", "A", "C"))


@st.composite
def fault_episodes(draw):
    """Charging in C, then one fault after another, each taken back and reset."""
    ss = [("dwell", None, 100)]
    for _ in range(draw(st.integers(2, 8))):
        kind, on, off = draw(st.sampled_from(_FAULT_ON_OFF))
        ss += [(kind, on, draw(st.integers(1, 800))), (kind, off, draw(st.integers(1, 300))),
               ("cmd", {"cmd": "reset_error"}, draw(st.integers(1, 100))),
               ("cmd", {"cmd": "authorize"}, draw(st.integers(200, 700)))]
    c = draw(configs())
    return Scenario(c, draw(st.integers(0, 2 ** 32 - 1)), draw(st.booleans()), "C",
                    draw(st.integers(0, 600)), (draw(st.sampled_from(PP_NOMINAL)), 0), ss)


@_examples(1.0)
@given(st.one_of(scenarios(), _FAULTY, fault_episodes()))
def test_contactor_closed_only_in_c2_d2_or_bounded_c1_wait(sc):
    """Table A.6 sequences 4 and 10.2: the contactor is commanded closed only
    in C2 (D2 where the site has ventilation), or kept closed in C1/D1 for at
    most 6 s after the PWM stopped; never with an immediate fault active."""
    c = run(sc, ContactorRule, CloseOnEvidence)
    event("ticks with contactor closed: %s" % _bucket(c.closed, (1, 100, 1000)))
    event("ticks closed in the C1/D1 wait: %s" % _bucket(c.waited, (1, 100)))


@_examples(1.0)
@given(st.one_of(scenarios(), _FAULTY, fault_episodes()))
def test_immediate_fault_opens_contactor_in_the_same_step(sc):
    """Design rule (charger.IMMEDIATE): the step that raises an immediate
    fault (CP short, RCD, PE, weld, no_close, diode, vent, overtemp,
    overcurrent) commands the contactor open; so does every step that reads
    a residual current trip (IEC 61851-1 RCD / RDC-DD) or a lost PE."""
    c = run(sc, ImmediateOpens)
    event("immediate faults raised: %s" % _bucket(c.raised, (1, 3, 10)))
    event("... of them with the contactor closed: %s" % _bucket(c.while_closed, (1, 2, 5)))


@_examples(1.0)
@given(scenarios())
def test_duty_matches_table_a7_for_the_offer(sc):
    """IEC 61851-1 Table A.7: with PWM the duty is the formula's for the offer
    (6..80 A, never in the 51..52.5 A gap); X1 is 100 % and offers nothing;
    state F (-12 V) is 0 % and offers nothing."""
    run(sc, DutyFormula)


def test_table_a7_formula_for_every_ma():
    """IEC 61851-1 Table A.7, checked independently of the firmware for every
    mA from 6 A to 80 A: duty % = I / 0.6 (6..51 A), I / 2.5 + 64 (51..80 A),
    rounded down to 0.01 %; the gap 51..52.5 A is never offered, and outside
    it the clamp never changes the duty."""
    for ma in range(P.MIN_MA, P.MAX_MA + 1):
        off = P.clamp_offer(ma)
        assert off <= ma and not P.GAP_LO_MA < off < P.GAP_HI_MA, (ma, off)
        assert P.duty_for(off) == table_a7_duty(off), (ma, off, P.duty_for(off))
        if not P.GAP_LO_MA < ma < P.GAP_HI_MA:
            assert P.duty_for(ma) == table_a7_duty(ma), (ma, P.duty_for(ma), table_a7_duty(ma))
            assert table_a7_duty(off) == table_a7_duty(ma), (ma, off)


@_examples(3.0)
@given(st.integers(-10 ** 6, 10 ** 6))
def test_clamp_offer_is_an_offer_table_a7_can_express(ma):
    """IEC 61851-1 Table A.7: below 6 A no PWM (0), never above 80 A nor above
    what was asked, never inside the 51..52.5 A gap."""
    off = P.clamp_offer(ma)
    assert off == 0 or (P.MIN_MA <= off <= min(ma, P.MAX_MA)
                        and not P.GAP_LO_MA < off < P.GAP_HI_MA)
    assert (off == 0) == (ma < P.MIN_MA)


def near(*refs):
    """Temperatures at and next to the given thresholds (0.1 degC steps)."""
    return st.tuples(st.sampled_from(refs), st.sampled_from([0, 1, -1]))


@st.composite
def thermal(draw, *refs):
    """Charging on plug-in, no other limit below half of max, temperatures at
    and next to two thresholds: the thermal rules bind."""
    cfg = draw(st.one_of(configs(cents=True), configs()))
    cfg.update(authorization="free", socket=False, cable_a=None)
    if draw(st.booleans()):  # hundredths in the hysteresis: its rounding matters
        cfg["temp_hyst_c"] = round(draw(st.integers(1, 29)) + draw(
            st.sampled_from([b for b in range(1, 100) if b % 10])) / 100, 2)
    ss = [("temp", draw(st.sampled_from([None, ("room", 0)])), draw(st.integers(1, 300)))]
    for _ in range(draw(st.integers(2, 12))):
        ss.append(("temp", draw(near(*refs)),
                   draw(st.one_of(st.integers(300, 800), st.integers(1, 50)))))
    total = sum(s[2] for s in ss)
    if total < 1000:
        ss.append(("dwell", None, 1000 - total))
    return Scenario(cfg, draw(st.integers(0, 2 ** 32 - 1)), draw(st.booleans()),
                    draw(st.sampled_from("BC")), draw(st.integers(0, 600)), (220, 0), ss)
LIMIT_SCENARIOS = {  # general runs, and runs with more of the steps that move each limit
    "max_current_a": scenarios(),
    "cable": scenarios(more={"pp": 6}),
    "set_current": scenarios(weights=dict(CALM, amps=8, cmd=3), ev0="BC",
                             cfg=configs().map(lambda c: dict(c, authorization="free"))),
    "derate": thermal("derate", "derate_clear"),
    "temp_stop": thermal("stop", "stop_clear"),
    "meter_silent": scenarios(weights=dict(CALM, ev=2, meter=6), ev0="BC",
                              cfg=configs().map(lambda c: dict(c, meter="sdm630"))),
}


@pytest.mark.parametrize("which", LIMITS)
@_examples(0.6)
@given(data=st.data())
def test_offer_never_exceeds_a_limit_in_force(which, data):
    """Limit chain (design rule; shared/scenarios/FORMAT.md config and
    commands): the offer is never above max_current_a, the cable rating
    (cable_a, or with a socket the PP resistor's, IEC 61851-1 Annex B), the
    backend's set_current (the fallback once its ttl_s expired), half of max
    (at least 6 A) while derating, nothing over temp_stop_c, the fallback (or
    nothing, meter_loss "stop") while the meter is silent. One test per limit."""
    sc = data.draw(LIMIT_SCENARIOS[which], label="sc")
    c = run(sc, limits(which))
    event("ticks with the limit in force: %s" % _bucket(c.bound, (1, 100, 1000)))


@_examples(1.0)
@given(scenarios(weights={"bad_cmd": 8}, ev0="ABC"))
def test_invalid_commands_change_nothing(sc):
    """Design rule (evse/commands.py): a command that fails validation is
    answered ok false with an error and changes nothing in the charger."""
    event("invalid commands: %s" % _bucket(run(sc, InvalidChangesNothing).count, (1, 5, 10)))


@st.composite
def still_vehicle(draw):
    cfg = draw(configs())
    for k in ("meter_loss", "fallback_current_a"):
        cfg.pop(k)
    ev = draw(st.sampled_from("ABCD" if cfg["ventilation"] else "ABC"))
    ticks = draw(st.integers(500, 3000))
    sc = Scenario(cfg, draw(st.integers(0, 2 ** 32 - 1)), draw(st.booleans()), ev,
                  draw(st.integers(0, 600)),
                  (draw(st.sampled_from(PP_NOMINAL)), draw(st.integers(-20, 20))),
                  [("dwell", None, ticks)])
    return sc


@_examples(1.0)
@given(still_vehicle())
def test_noise_on_a_still_vehicle_changes_nothing(sc):
    """IEC 61851-1 Table A.3 levels (about +/-1 V tolerance): +/-0.6 V of
    noise on a vehicle that stays in A, B or C (or D with ventilation), diode
    present, changes no state once settled (the 3 s of X1 after boot, then
    the close), and raises no fault."""
    SETTLE = T_X1_MIN + 1000

    class Steady(Check):
        def __init__(self, sim):
            self.settled = None

        def after_tick(self, sim):
            o = sim.ch.out
            assert o.faults == 0, where(sim, "fault", o.error)
            if sim.t < SETTLE:
                return
            now = (o.state, o.pilot, o.duty, o.offer_ma, o.contactor, o.session, o.rcd_test)
            if self.settled is None:
                assert o.state[0] == sim.board.ev, where(sim, "vehicle in", sim.board.ev)
                self.settled = now
            assert now == self.settled, where(sim, "changed from", self.settled)

    run(sc, Steady)


@_examples(1.0)
@given(scenarios(weights=dict(CALM, ev=12, short=1, cmd=2, temp=0), ev0="BC"))
def test_contactor_opens_within_100ms_when_the_vehicle_leaves_c(sc):
    """IEC 61851-1 Table A.6 sequence 8.1 (C -> B) and unplug (-> A): with
    up to 0.6 V of noise the contactor is open within 100 ms; likewise
    within 100 ms of a CP short (state E) with the contactor closed."""
    c = run(sc, OpensWithin100ms)
    event("vehicle left C / CP shorted with contactor closed: %s" % _bucket(c.seen, (1, 2, 5)))


@_examples(1.0)
@given(_PWM_CYCLES)
def test_pwm_rate_and_minimum_time_in_x1(sc):
    """Table A.6 / EVerest: the PWM value is raised at most every 5 s (the EV
    gets 5 s to follow), and once the PWM stopped it stays off (X1) at least
    3 s (T_STEP_X1) before it is switched on again."""
    c = run(sc, PwmRate)
    event("PWM restarts: %s" % _bucket(c.restarts, (1, 2, 5)))
    event("PWM raised while on: %s" % _bucket(c.raises, (1, 2, 5)))


# Timers running across the wrap at 2 s: a backend ttl_s, and after a pause
# the C1 wait (6 s) and the minimum time in X1 (3 s).
_ACROSS_THE_WRAP = Scenario({"rcd_selftest": True}, 1, True, "B", 300, (220, 0), [
    ("ev", "C", 180), ("amps", {"cmd": "set_current", "amps": 10, "ttl_s": 3}, 10),
    ("cmd", {"cmd": "pause"}, 60), ("cmd", {"cmd": "resume"}, 700),
    ("amps", {"cmd": "set_current", "amps": 32}, 800), ("ev", "B", 100)])


@_examples(1.5)
@given(sc=st.one_of(scenarios(), _FAULTY, _PWM_CYCLES),
       k=st.one_of(st.integers(0, 5000), st.integers(0, 60000)))
@example(sc=_ACROSS_THE_WRAP, k=2000)
def test_tick_wrap_gives_identical_outputs(sc, k):
    """Design rule (evse/__init__.py): time is compared only through ticks_diff,
    so a run that crosses the 2**30 ms wrap of ticks_ms gives exactly the
    outputs of the same run from 0. The wrap falls in the first seconds, or
    anywhere in the run (or after it)."""
    logs = []
    for start in (0, ticks_add(0, -k)):
        sim = Sim(sc, start)
        sim.log = []
        sim.run(sc)
        logs.append(sim.log)
    assert ticks_add(0, -k) == (TICKS_PERIOD - k) % TICKS_PERIOD
    for a, b in zip(*logs):
        assert a == b, "from 0: %r\nfrom -%d: %r" % (a, k, b)


# --- Issue 10: evidence before every close, bouncing pilots, uptime -----------

# A vehicle and a pilot that bounce: classes change every 1 to 3 ticks.
_BOUNCING = scenarios(weights=dict(CALM, ev=12, short=3, diode=2, weld=1, cmd=1, temp=0, pp=0),
                      values={"ev": st.sampled_from("ABCCD")},
                      dwell=st.one_of(st.integers(1, 3), st.integers(30, 400)),
                      ev0="C", min_ticks=1500, max_steps=80)


@st.composite
def bouncing_pilot(draw):
    """Charging in C, then episodes of readings that change every tick, any
    mix of A, B, C, D and E (a CP short), between spells of C; with
    ventilation on or off (on: D charges as C does, so a C/D mix with B
    between is a vehicle leaving as a C/B one is)."""
    cfg = draw(configs())
    cfg["ventilation"] = draw(st.booleans())
    ss = [("ev", "C", 450)]  # the X1 after boot, then the close
    for _ in range(draw(st.integers(1, 4))):
        for c in draw(st.lists(st.sampled_from("ABCDE"), min_size=4, max_size=40)):
            if c == "E":
                ss += [("short", True, 1), ("short", False, 0)]
            else:
                ss.append(("ev", c, 1))
        ss.append(("ev", "C", draw(st.sampled_from((30, 700)))))
    return Scenario(cfg, draw(st.integers(0, 2 ** 32 - 1)), draw(st.booleans()), "C",
                    draw(st.integers(0, 600)), (220, 0), ss)


@_examples(1.0)
@given(st.one_of(bouncing_pilot(), _BOUNCING, _FAULTY, fault_episodes(), _PWM_CYCLES))
def test_every_close_has_its_evidence(sc):
    """No close without DIODE_PASS diode readings of this PWM phase, with the
    mirror contact showing closed, inside T_MIN_OPEN of an open, or inside
    T_CLOSE_GAP of the last close (a bounded number of closes per minute)."""
    c = run(sc, CloseOnEvidence)
    event("closes: %s" % _bucket(len(c.closes), (1, 2, 4)))


# Ventilation on, S2 bouncing: B every other reading, the readings between
# two of D then two of C, so that the classifier takes D and C in turn
# (a take of C <-> D once emptied the bucket of readings outside C/D).
_B_BETWEEN_C_D = Scenario({"ventilation": True, "rcd_selftest": False}, 1, True, "C", 0,
                          (220, 0), [("ev", "C", 450)] + [
                              ("ev", e, 1) for _ in range(25) for e in "BDBDBCBC"])


@_examples(1.0)
@given(st.one_of(bouncing_pilot(), _BOUNCING))
@example(_B_BETWEEN_C_D)
def test_contactor_open_whatever_the_readings_mix(sc):
    """Any reading outside C/D counts towards leaving: 5 of 10 readings
    outside C/D (100 ms at the 10 ms tick), in any mix, and it is open."""
    c = run(sc, LeavesWhateverTheMix)
    event("ticks with 5 of the last 10 readings outside C/D: %s"
          % _bucket(c.opened, (1, 10, 100)))


_HALF_PERIOD = TICKS_PERIOD // 2
_DAY = 24 * 3600 * 1000


@_examples(1.0)
@given(sc=st.one_of(scenarios(), _FAULTY, _PWM_CYCLES),
       age=st.one_of(st.integers(T_X1_MIN, 40 * _DAY),
                     st.integers(_HALF_PERIOD // 2 - 60000, _HALF_PERIOD // 2 + 60000),
                     st.integers(_HALF_PERIOD - 60000, _HALF_PERIOD + 60000),
                     st.integers(TICKS_PERIOD - 60000, TICKS_PERIOD + 60000)))
def test_offers_and_timers_identical_at_any_uptime(sc, age):
    """Offers, timers and faults do not depend on the uptime: the same run
    after `age` ms of a quiet charger (up to 40 days, and around 2**29 and
    2**30 ms where stored tick values compared with ticks_diff go wrong)
    gives exactly the outputs of the run 3 s (the X1 after boot) after boot."""
    logs = []
    for idle in (T_X1_MIN, age):
        sim = Sim(sc, 0)
        sim.idle(idle)
        sim.log = []
        sim.run(sc)
        logs.append(sim.log)
    event("uptime: %s" % _bucket(age // _DAY, (1, 7, 13, 26)))
    for a, b in zip(*logs):
        assert a == b, "after 3 s: %r\nafter %d ms: %r" % (a, age, b)


# ------------------------------------------------------------- JSON text
@given(st.integers(-10 ** 9, 10 ** 9), st.sampled_from((10, 100, 1000)))
def test_jsonw_dec_is_the_exact_decimal_in_its_shortest_form(n, scale):
    """dec(n, scale) is the JSON number n / scale exactly, with at least one
    fraction digit and no trailing zero after the first."""
    import json
    from decimal import Decimal

    from evse.jsonw import dec

    text = dec(n, scale).text
    assert Decimal(text) == Decimal(n) / scale, text
    assert isinstance(json.loads(text), float)
    frac = text.split(".")[1]
    assert frac == "0" or not frac.endswith("0"), text
    assert len(frac) <= len(str(scale)) - 1


@given(st.text(), st.lists(st.one_of(st.none(), st.booleans(), st.integers(-2 ** 40, 2 ** 40),
                                     st.text(max_size=8)), max_size=4))
def test_jsonw_text_always_encodes_and_reads_back(s, items):
    """Any string, lone surrogates included, is valid JSON text that encodes
    as UTF-8; it reads back as itself, a lone surrogate as U+FFFD."""
    import json

    from evse.jsonw import dumps, obj

    text = obj((("s", s), ("items", items))).text
    back = json.loads(text.encode("utf-8"))
    fix = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s)
    assert back["s"] == fix
    assert back["items"] == [x if not isinstance(x, str) else
                             "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in x)
                             for x in items]
    assert json.loads(dumps(items)) == back["items"]


def test_the_cable_rating_goes_down_at_once_and_up_only_on_agreeing_readings():
    """A socket's PP resistor does not change while the plug is in (IEC
    61851-1 Annex B): one reading in a higher band (a disturbed sample)
    never raises the offer above the cable in the socket; a lower band
    counts at the reading; a new cable's rating counts once read
    PP_RAISE_READINGS times in a row."""
    from evse.charger import PP_RAISE_READINGS, Charger

    ch = Charger(config.validate({"socket": True, "max_current_a": 63, "rcd_selftest": False}), 0)
    now = [0]

    def tick(ev, pp):
        hi, lo = cp_levels(ch.out.pilot, ev, True, False)
        ch.inp.cp_high_mv, ch.inp.cp_low_mv = int(hi), int(lo)
        ch.inp.pp_ohm = pp
        ch.inp.fb = ch.out.contactor
        now[0] += TICK
        return ch.step(now[0])

    tick("A", None)
    for _ in range(PP_RAISE_READINGS - 1):  # a 32 A cable goes in
        tick("A", 220)
        assert ch._cable_ma == 0
    tick("A", 220)
    assert ch._cable_ma == 32000
    for _ in range(300):
        tick("B", 220)
    for _ in range(1000):  # charging, the offer settled at the cable's 32 A
        out = tick("C", 220)
    assert out.contactor and out.offer_ma == 32000
    offers = []
    for pp in [100] * (PP_RAISE_READINGS - 1) + [220] + [120] * 3 + [220] * 600:
        offers.append(tick("C", pp).offer_ma)  # readings in the 63 A band between
    assert max(offers) == 32000 and ch.out.contactor
    offers = [tick("C", 680).offer_ma]  # a 20 A reading: at once
    assert offers == [20000] and ch._cable_ma == 20000
    for _ in range(600):  # back in the 32 A band: the 20 A holds (the lower is believed)
        offers.append(tick("C", 680 if len(offers) % 50 else 220).offer_ma)
    assert max(offers) == 20000
