"""The state machine, contactor and faults, rule by rule.

Sequences are those of IEC 61851-1 Annex A, Table A.6 (as cited in
shared/reference/iec61851.md). Runs under CPython and MicroPython."""
from evse.charger import IMMEDIATE, T_CLOSE_GAP
from evse import ticks_add
from rig import Rig, digest


def _opened(o):
    return not o.contactor


# --- Plug-in and charging --------------------------------------------------

def test_boot_is_state_a_no_pwm_contactor_open():
    r = Rig()
    o = r.run(100)
    assert (o.state, o.duty, o.offer_ma, o.contactor, o.error, o.session) == (
        "A", 10000, 0, False, None, None)


def test_plug_in_free_starts_session_and_pwm_b2():
    """Sequence 1.2 (A -> B) and 3.1 (EVSE ready: PWM on, B1 -> B2)."""
    r = Rig(max_current_a=16)
    r.run(100)
    r.ev = "B"
    r.run(1000)
    o = r.out
    assert o.state == "B2" and o.offer_ma == 16000 and o.duty == 2666
    assert o.session == 1 and not o.contactor
    assert r.event_names() == ["session_start"]


def test_c2_closes_within_3s():
    """Sequence 4: vehicle ready in C with PWM on: the contactor closes
    within 3 s (here after the 250 ms debounce and the RCD self-test)."""
    r = Rig()
    took = r.charging()
    assert took <= 3000
    assert r.out.state == "C2"
    assert took <= 400, took


def test_c_to_b_opens_within_100ms():
    """Sequence 8.1: the EV opens S2 (C -> B): contactor open <= 100 ms."""
    r = Rig()
    r.charging()
    r.run(2000)
    r.ev = "B"
    took = r.until(_opened, 1000)
    assert took is not None and took <= 100, took
    assert r.out.state == "B2" and r.out.session == 1  # PWM stays on


def test_unplug_opens_within_100ms_and_ends_session():
    """Unplug while charging (C -> A): contactor open < 100 ms."""
    r = Rig()
    r.charging()
    r.ev = "A"
    took = r.until(_opened, 1000)
    assert took is not None and took <= 100, took
    r.run(100)
    assert r.out.state == "A" and r.out.session is None and r.out.duty == 10000
    assert r.events[-1][1:] == ("session_stop", 1, "unplugged")


def test_d_with_ventilation_closes_in_d2():
    """State D (ventilation required) charges only where the site has it."""
    r = Rig(ventilation=True)
    r.ev = "B"
    r.run(1000)
    r.ev = "D"
    assert r.until(lambda o: o.contactor, 3000) is not None
    assert r.out.state == "D2" and r.out.error is None


def test_d_without_ventilation_is_vent_fault():
    r = Rig()
    r.charging()
    r.ev = "D"
    took = r.until(_opened, 1000)
    assert took <= 100 and r.out.error == "vent"
    assert r.out.duty == 10000 and r.out.state == "D1"
    r.ev = "C"  # the vehicle no longer asks for ventilation
    closed_at = [e for e in r.log if e[4]][0][0]
    assert r.until(lambda o: o.contactor, 8000) is not None
    assert r.out.error is None
    assert r.t - closed_at >= T_CLOSE_GAP  # no two closings within it


# --- PWM off with the vehicle in C ----------------------------------------

def test_pause_waits_for_s2_then_opens():
    """Sequence 10.1: PWM off (X1): the contactor stays until the EV opens S2."""
    r = Rig()
    r.charging()
    assert r.cmd(cmd="pause", id="p")["ok"]
    o = r.run(20)
    assert o.state == "C1" and o.duty == 10000 and o.offer_ma == 0 and o.contactor
    r.run(2000)
    assert r.out.contactor
    r.ev = "B"
    assert r.until(_opened, 200) <= 100
    assert r.out.state == "B1"


def test_pause_forces_open_after_6s():
    """Sequence 10.2: PWM off while the EV stays in C: open after 6 s."""
    r = Rig()
    r.charging()
    r.cmd(cmd="pause")
    r.tick()
    t_off = r.t
    took = r.until(_opened, 8000)
    assert took is not None
    assert 5990 <= r.t - t_off <= 6010, r.t - t_off
    assert r.out.state == "C1"


def test_x1_at_least_3s_before_pwm_returns():
    """At least 3 s in X1 before the PWM comes back (EVerest T_STEP_X1)."""
    r = Rig()
    r.charging()
    r.cmd(cmd="pause")
    r.run(500)
    r.cmd(cmd="resume")
    took = r.until(lambda o: o.state == "C2", 5000)
    assert took is not None and 2400 <= took <= 2600, took  # 3 s after PWM off
    assert r.out.contactor  # it never opened: the 6 s had not run out


def test_pwm_raise_waits_5s_lower_at_once():
    """PWM value updates at most every 5 s; a lower limit applies at once."""
    r = Rig()
    r.charging()
    r.run(6000)
    r.cmd(cmd="set_current", amps=10)
    assert r.tick().offer_ma == 10000  # lower: at once
    r.cmd(cmd="set_current", amps=20)
    took = r.until(lambda o: o.offer_ma == 20000, 8000)
    assert 4980 <= took <= 5010, took
    r.cmd(cmd="set_current", amps=8)
    assert r.tick().offer_ma == 8000
    assert r.out.duty == 1333


# --- Authorization, commands, limits ----------------------------------------

def test_backend_authorization_waits_for_authorize():
    r = Rig(authorization="backend")
    r.ev = "B"
    r.run(1000)
    r.ev = "C"
    r.run(2000)
    assert r.out.state == "C1" and not r.out.contactor and r.out.session is None
    assert r.cmd(cmd="authorize", id="a-1") == {"id": "a-1", "ok": True}
    assert r.until(lambda o: o.contactor, 3000) is not None
    assert r.out.session == 1


def test_set_current_ttl_falls_back():
    """A backend limit with ttl_s falls back to fallback_current_a when not renewed."""
    r = Rig(fallback_current_a=8)
    r.charging()
    r.run(6000)
    r.cmd(cmd="set_current", amps=16, ttl_s=10)
    assert r.tick().offer_ma == 16000
    took = r.until(lambda o: o.offer_ma == 8000, 12000)
    assert 9900 <= took <= 10010, took


def test_fallback_zero_stops_offering():
    r = Rig(fallback_current_a=0)
    r.charging()
    r.cmd(cmd="set_current", amps=16, ttl_s=1)
    r.run(1100)
    assert r.out.state == "C1" and r.out.offer_ma == 0


def test_stop_ends_session_until_unplug():
    r = Rig()
    r.charging()
    assert r.cmd(cmd="stop", id=1) == {"id": 1, "ok": True}
    r.run(100)
    assert r.out.session is None and r.out.duty == 10000
    r.ev = "B"
    r.run(5000)
    assert r.out.session is None and r.out.state == "B1"
    assert r.cmd(cmd="stop")["ok"] is False
    r.ev = "A"
    r.run(100)
    r.ev = "B"
    r.run(4000)
    assert r.out.session == 2 and r.out.state == "B2"


def test_invalid_command_changes_nothing_and_is_answered():
    r = Rig()
    r.charging()
    before = r.log[-1][1:]
    rep = r.cmd(cmd="set_current", amps=100, id="x")
    assert rep["ok"] is False and rep["id"] == "x" and "amps" in rep["error"]
    rep = r.cmd(cmd="fly")
    assert rep["ok"] is False and "unknown" in rep["error"]
    r.tick()
    assert r.log[-1][1:] == before


def test_reboot_is_an_event():
    r = Rig()
    assert r.cmd(cmd="reboot", id="r")["ok"]
    assert r.ch.take_events() == [("reboot", "command")]


def test_socket_pp_limits_offer_and_no_cable_no_pwm():
    """Annex B: the cable's PP resistor caps the offer; open PP offers nothing."""
    r = Rig(socket=True)
    r.pp_ohm = 680
    r.ev = "B"
    r.run(1000)
    assert r.out.offer_ma == 20000
    r2 = Rig(socket=True)
    r2.ev = "B"
    r2.run(1000)
    assert r2.out.state == "B1" and r2.out.offer_ma == 0


def test_tethered_cable_rating():
    r = Rig(cable_a=20)
    r.ev = "B"
    r.run(1000)
    assert r.out.offer_ma == 20000


# --- Faults ------------------------------------------------------------------

def test_cp_short_is_state_e_and_recovers():
    """State E (CP shorted to PE) while charging: open at once, recover after."""
    r = Rig()
    r.charging()
    r.short = True
    took = r.until(_opened, 500)
    assert took <= 100, took
    r.run(100)
    assert r.out.state == "E" and r.out.error == "cp_short" and r.out.duty == 10000
    r.short = False
    assert r.until(lambda o: o.contactor, 5000) is not None
    assert r.out.error is None and r.out.state == "C2"


def test_diode_check_is_continuous():
    """Annex A diode check on every PWM reading, not only before closing."""
    r = Rig()
    r.charging()
    r.run(3000)
    r.diode = False
    took = r.until(_opened, 500)
    assert took <= 40, took
    assert r.out.error == "diode" and r.out.duty == 10000
    r.diode = True
    r.run(5000)
    assert r.out.error == "diode" and not r.out.contactor  # latched
    r.ev = "A"
    r.run(100)
    assert r.out.error is None


def test_diode_missing_before_charging_never_closes():
    r = Rig()
    r.diode = False
    r.ev = "B"
    r.run(1000)
    r.ev = "C"
    r.run(3000)
    assert r.out.error == "diode" and not r.out.contactor


def test_rcd_trip_latches_until_reset_error():
    r = Rig()
    r.charging()
    r.rcd_fault = True
    o = r.tick()
    assert not o.contactor and o.error == "rcd" and o.state == "F" and o.duty == 0
    rep = r.cmd(cmd="reset_error", id=3)
    assert rep["ok"] is False and "rcd" in rep["error"]
    r.rcd_fault = False
    r.run(10000)
    assert r.out.error == "rcd"  # latched
    assert r.cmd(cmd="reset_error")["ok"] is True
    assert r.until(lambda o: o.contactor, 5000) is not None
    assert r.out.error is None and r.out.session == 1


def test_rcd_auto_retry_with_limit():
    r = Rig(rcd_retry_max=1, rcd_retry_s=10)
    r.charging()
    r.rcd_fault = True
    r.tick()
    r.rcd_fault = False
    took = r.until(lambda o: o.error is None, 12000)
    assert 9900 <= took <= 10010, took
    assert r.until(lambda o: o.contactor, 5000) is not None
    r.rcd_fault = True
    r.tick()
    r.rcd_fault = False
    r.run(30000)
    assert r.out.error == "rcd"  # retry limit reached: latched


def test_rcd_selftest_failure_prevents_close():
    """The RCD self-test runs before every close; a failed test is an rcd fault."""
    r = Rig()
    r.rcd_test_works = False
    r.ev = "B"
    r.run(1000)
    r.ev = "C"
    r.run(2000)
    assert r.out.error == "rcd" and not r.out.contactor
    assert not any(row[4] for row in r.log)


def test_weld_detected_after_opening():
    r = Rig()
    r.charging()
    r.weld = True
    r.ev = "B"
    r.run(1000)
    assert r.out.error == "weld" and r.out.state == "F" and not r.out.contactor
    assert r.cmd(cmd="reset_error")["ok"] is False
    r.weld = False
    r.tick()  # the charger judges the cause by what it last measured
    assert r.cmd(cmd="reset_error")["ok"] is True
    r.run(100)
    assert r.out.error is None


def test_no_close_detected():
    r = Rig()
    r.no_close = True
    r.ev = "B"
    r.run(1000)
    r.ev = "C"
    r.run(1500)
    assert r.out.error == "no_close" and not r.out.contactor and r.out.state == "F"


def test_no_feedback_fitted_no_weld_check():
    r = Rig()
    r.fb_fitted = False
    r.charging()
    r.run(2000)
    assert r.out.error is None and r.out.contactor


def test_pe_loss_opens_and_clears_when_back():
    r = Rig()
    r.charging()
    r.pe_ok = False
    o = r.tick()
    assert not o.contactor and o.error == "pe"
    r.pe_ok = True
    r.run(1900)
    assert r.out.error == "pe"
    r.run(200)
    assert r.out.error is None


def test_overtemp_derates_then_stops():
    r = Rig(max_current_a=32, temp_derate_c=60, temp_stop_c=70, temp_hyst_c=10)
    r.temp_dc = 250
    r.charging()
    r.temp_dc = 620
    assert r.tick().offer_ma == 16000 and r.out.derate
    r.temp_dc = 710
    o = r.tick()
    assert not o.contactor and o.error == "overtemp" and o.state == "F"
    r.temp_dc = 650
    r.run(1000)
    assert r.out.error == "overtemp"
    r.temp_dc = 590
    r.run(100)
    assert r.out.error is None
    r.temp_dc = 490
    r.run(6000)
    assert not r.out.derate and r.out.offer_ma == 32000


def test_overcurrent_after_7s():
    """EV above offer +10 % +0.5 A for 7 s (EVerest's rule): stop at once."""
    r = Rig(max_current_a=16)
    r.meter_ok = True
    r.charging()
    r.ev_ma = 18100  # 16 * 1.1 + 0.5 = 18.1 A: not above
    r.run(10000)
    assert r.out.error is None
    r.ev_ma = 18200
    took = r.until(lambda o: o.error == "overcurrent", 8000)
    assert 6990 <= took <= 7010, took
    assert not r.out.contactor and r.out.duty == 10000


def test_meter_silent_fallback_current():
    r = Rig(fallback_current_a=6)
    r.meter_ok = True
    r.charging()
    r.meter_ok = False
    o = r.tick()
    assert o.error == "meter" and o.offer_ma == 6000 and o.contactor
    r.meter_ok = True
    r.run(100)
    assert r.out.error is None
    r.run(6000)
    assert r.out.offer_ma == 32000


def test_meter_silent_stop_policy():
    r = Rig(meter_loss="stop")
    r.meter_ok = True
    r.charging()
    r.meter_ok = False
    o = r.tick()
    assert o.error == "meter" and o.state == "C1" and o.contactor  # graceful
    assert r.until(_opened, 7000) is not None


def test_immediate_faults_open_in_the_same_tick():
    for setup in ("rcd", "pe", "temp"):
        r = Rig()
        r.charging()
        if setup == "rcd":
            r.rcd_fault = True
        elif setup == "pe":
            r.pe_ok = False
        else:
            r.temp_dc = 900
        o = r.tick()
        assert o.faults & IMMEDIATE and not o.contactor, setup


# --- Time -------------------------------------------------------------------

def _session_script(r):
    r.run(200)
    r.charging()
    r.cmd(cmd="set_current", amps=10, ttl_s=3)
    r.run(4000)
    r.cmd(cmd="pause")
    r.run(7000)
    r.cmd(cmd="resume")
    r.run(4000)
    r.ev = "B"
    r.run(500)
    r.ev = "A"
    r.run(500)
    return [row[1:] for row in r.log]


def test_same_behaviour_across_tick_wrap():
    """ticks wrap at 2**30 ms (12.4 days): a session across it behaves alike."""
    a = _session_script(Rig(start=0))
    b = _session_script(Rig(start=ticks_add(0, -5000)))
    assert a == b
    return digest(a)


def test_noisy_long_sequence_digest():
    """A long run with +/-0.6 V noise, faults and commands; the digest of
    every output row is compared between CPython and MicroPython."""
    r = Rig(max_current_a=40, fallback_current_a=0)
    r.keep_log = False  # a running digest: the rows would not fit a 1 MB heap
    r.noise_mv = 600
    r.meter_ok = True
    r.ev_ma = 0
    seq = ("B", "C", "C", "B", "C", "D", "C", "A", "B", "C")
    seen = {}
    for i in range(len(seq)):
        r.ev = seq[i]
        r.run(1500 + 700 * i)
        seen[r.out.state] = 1
        if i == 3:
            r.cmd(cmd="set_current", amps=13, ttl_s=2)
        if i == 5:
            r.rcd_fault = True
            r.run(100)
            r.rcd_fault = False
            r.cmd(cmd="reset_error")
    assert "C2" in seen and "B2" in seen, seen
    return "%08x" % r.h


def test_cp_short_in_b2_is_cp_short_not_diode():
    """A short pulls both plateaus to 0 V; while the classifier debounces
    into E, those readings must not count as a missing diode."""
    r = Rig()
    r.ev = "B"
    r.run(1000)
    assert r.out.state == "B2"
    r.short = True
    r.run(200)
    assert r.out.state == "E" and r.out.error == "cp_short"
    r.short = False
    r.run(4000)
    assert r.out.error is None and r.out.state == "B2"
    assert "diode" not in [e[2] for e in r.events if e[1] == "fault"]
