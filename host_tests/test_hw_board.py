"""The board adapter (hw/board.py) on a hand-written fake `machine` that
records the real API calls: PWM frequency and duty mapping, ADC set-up, pin
polarity, interrupt handlers, and what read()/apply()/safe() do."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakes"))

import fakemachine as fm  # noqa: E402
import hwrig  # noqa: E402

from evse import config  # noqa: E402
from evse.app import App  # noqa: E402
from evse.charger import PILOT_HIGH, PILOT_LOW, PILOT_PWM, Inputs, Outputs  # noqa: E402


def calls(w, kind):
    return [e for e in w.log if e[0] == kind]


def pwm_out(duty, contactor=False, rcd_test=False, pilot=PILOT_PWM):
    o = Outputs()
    o.pilot = pilot
    o.duty = duty
    o.contactor = contactor
    o.rcd_test = rcd_test
    return o


# ------------------------------------------------------------------ set-up
@pytest.mark.parametrize("name,full", [("esp32-devkitc", 65536), ("pico-w", 65535),
                                       ("smartevse-v3", 65536)])
def test_pwm_is_1khz_and_starts_at_steady_plus_12v(name, full):
    raw = hwrig.load(name)
    board, w, prof = hwrig.make(raw)
    pin = raw["cp"]["pwm_pin"]
    assert calls(w, "PWM") == [("PWM", pin, 1000, full)]
    assert board.full == full
    # the pin was an output at the +12 V level before the PWM took it over
    i_pin = w.log.index(("Pin", pin, fm.Pin.OUT, -1, 1, ()))
    assert i_pin < w.log.index(("PWM", pin, 1000, full))


def test_outputs_are_safe_before_pwm_and_adc():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))
    first_pwm = next(i for i, e in enumerate(w.log) if e[0] == "PWM")
    outs = [e for e in w.log[:first_pwm] if e[0] == "Pin" and e[2] == fm.Pin.OUT]
    # contactor GPIO27 off (active high -> 0), RCD test GPIO33 off
    assert ("Pin", 27, fm.Pin.OUT, -1, 0, ()) in outs
    assert ("Pin", 33, fm.Pin.OUT, -1, 0, ()) in outs
    assert not calls(w, "ADC") or w.log.index(calls(w, "ADC")[0]) > first_pwm


def test_old_esp32_port_without_65536_falls_back_to_65535():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"), pwm_max=65535)
    assert board.full == 65535
    assert w.pwm.duty == 65535


@pytest.mark.parametrize("name,full", [("esp32-devkitc", 65536), ("pico-w", 65535)])
def test_duty_mapping_rounds_down_and_is_exact_within_a_step(name, full):
    board, w, _ = hwrig.make(hwrig.load(name))
    for duty in list(range(0, 10001, 7)) + [1000, 5333, 8500, 9600, 10000]:
        board.apply(pwm_out(duty))
        u = w.pwm.duty
        assert u * 10000 <= duty * full  # never more than asked
        assert (u + 1) * 10000 > duty * full  # and less than one step below
    board.apply(pwm_out(1000))
    assert w.pwm.duty == (6553 if full == 65536 else 6553)
    board.apply(pwm_out(8500))
    assert w.pwm.duty == {65536: 55705, 65535: 55704}[full]


def test_steady_levels_and_unchanged_duty_writes_nothing():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))
    board.apply(pwm_out(0, pilot=PILOT_LOW))
    assert w.pwm.duty == 0  # steady -12 V
    board.apply(pwm_out(10000, pilot=PILOT_HIGH))
    assert w.pwm.duty == 65536  # steady +12 V
    n = len(calls(w, "duty_u16"))
    for _ in range(10):
        board.apply(pwm_out(10000, pilot=PILOT_HIGH))
    assert len(calls(w, "duty_u16")) == n


def test_inverting_cp_stage():
    raw = hwrig.load("esp32-devkitc")
    raw["cp"]["invert"] = True
    board, w, _ = hwrig.make(raw)
    assert calls(w, "PWM")[0][3] == 0  # +12 V = pin low
    board.apply(pwm_out(0, pilot=PILOT_LOW))
    assert w.pwm.duty == 65536
    board.apply(pwm_out(2500))
    assert w.pwm.duty == 65536 - 16384


@pytest.mark.parametrize("name,atten", [("esp32-devkitc", fm.ADC.ATTN_11DB), ("pico-w", None)])
def test_adc_setup(name, atten):
    raw = hwrig.load(name)
    board, w, _ = hwrig.make(raw)
    adcs = calls(w, "ADC")
    assert adcs == [("ADC", raw["cp"]["adc_pin"], atten), ("ADC", raw["pp"]["adc_pin"], atten),
                    ("ADC", raw["temp"]["adc_pin"], atten)]


def test_contactor_polarity_active_low_and_two_outputs():
    raw = hwrig.load("smartevse-v3")
    raw["contactor"][1]["active"] = "low"
    board, w, _ = hwrig.make(raw)
    assert ("Pin", 32, fm.Pin.OUT, -1, 0, ()) in w.log
    assert ("Pin", 27, fm.Pin.OUT, -1, 1, ()) in w.log  # active low: off = 1
    assert ("Signal", 27, True) in w.log
    board.apply(pwm_out(2500, contactor=True))
    assert w.levels[32] == 1 and w.levels[27] == 0
    board.apply(pwm_out(2500, contactor=False))
    assert w.levels[32] == 0 and w.levels[27] == 1


def test_phase_switch_contactor_follows_the_main_one_on_three_phases_only():
    raw = hwrig.load("smartevse-v3")
    raw["phase_switch"] = raw["contactor"].pop()  # SSR2 switches L2 and L3
    board, w, _ = hwrig.make(raw)
    assert w.levels[27] == 0  # created open
    o = pwm_out(2500, contactor=True)
    board.apply(o)
    assert w.levels[32] == 1 and w.levels[27] == 1  # three phases: both
    o.phases = 1
    board.apply(o)  # the contacts are closed: L2/L3 are not switched under load
    assert w.levels[32] == 1 and w.levels[27] == 1
    o.contactor = False
    board.apply(o)
    assert w.levels[32] == 0 and w.levels[27] == 0
    o.contactor = True
    board.apply(o)  # one phase: L2/L3 stay open
    assert w.levels[32] == 1 and w.levels[27] == 0
    board.safe()
    assert w.levels[32] == 0 and w.levels[27] == 0


def test_cp_disconnect_pin_keeps_pilot_connected():
    board, w, _ = hwrig.make(hwrig.load("smartevse-v3"))
    assert w.levels[15] == 0  # PIN_CPOFF low = CP connected


# ------------------------------------------------------------------- read()
@pytest.mark.parametrize("name", ["esp32-devkitc", "pico-w", "smartevse-v3"])
def test_reads_both_plateaus_through_the_divider(name):
    board, w, _ = hwrig.make(hwrig.load(name))
    inp = Inputs()
    board.read(inp)
    assert abs(inp.cp_high_mv - 12000) < 60 and abs(inp.cp_low_mv - 12000) < 60
    board.apply(pwm_out(2500))
    w.cp_hi_mv = 9000
    board.read(inp)
    assert abs(inp.cp_high_mv - 9000) < 60 and abs(inp.cp_low_mv + 12000) < 60
    assert not board.cp.steady
    board.apply(pwm_out(0, pilot=PILOT_LOW))
    w.cp_hi_mv = -12000
    board.read(inp)
    assert abs(inp.cp_high_mv + 12000) < 60 and board.cp.steady


def test_burst_covers_a_period():
    for us in (8, 25, 60):
        board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"), us_per_read=us)
        t0 = w.t_us
        board.cp.sample()
        assert w.t_us - t0 >= 1200  # at least 1.2 ms of samples
        assert w.t_us - t0 < 1200 + us


def test_mirror_contact_polarity():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))  # mirror GPIO35, active low
    inp = Inputs()
    w.inputs[35] = 1
    board.read(inp)
    assert inp.fb is False
    w.inputs[35] = 0
    board.read(inp)
    assert inp.fb is True


def test_rcd_isr_latches_a_short_trip_between_ticks():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))  # RCD GPIO32 active high
    handler, trigger, hard = w.irqs[32]
    assert trigger == fm.Pin.IRQ_RISING and hard is False  # ESP32: no hard IRQs
    inp = Inputs()
    board.read(inp)
    assert inp.rcd is False
    handler(None)  # a trip pulse, gone before the next tick
    board.read(inp)
    assert inp.rcd is True
    board.read(inp)
    assert inp.rcd is False  # latched for one reading: the charger latches the fault
    w.inputs[32] = 1  # a steady trip
    board.read(inp)
    board.read(inp)
    assert inp.rcd is True


def test_rcd_test_output_follows_apply_and_safe():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))  # test output GPIO33
    board.apply(pwm_out(10000, pilot=PILOT_HIGH, rcd_test=True))
    assert w.levels[33] == 1
    board.safe()
    assert w.levels[33] == 0


def test_pe_pulses_mode():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))  # PE GPIO4, pulses
    handler, trigger, hard = w.irqs[4]
    assert trigger == fm.Pin.IRQ_RISING | fm.Pin.IRQ_FALLING and not hard
    inp = Inputs()
    clock = fm.Clock()
    clock.sleep_ms(100)  # no edge for 100 ms: PE missing
    board.read(inp)
    assert inp.pe_ok is False
    for _ in range(5):  # 50 Hz half-waves
        handler(None)
        clock.sleep_ms(10)
        board.read(inp)
        assert inp.pe_ok is True
    clock.sleep_ms(70)
    board.read(inp)
    assert inp.pe_ok is False


def test_pe_lost_stays_lost_at_any_uptime():
    """PE gone for more than half the ticks period (2**29 ms, 6.2 days):
    the age of the last edge must not wrap round to 'fresh'."""
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))
    handler = w.irqs[4][0]
    inp = Inputs()
    clock = fm.Clock()
    handler(None)
    board.read(inp)
    assert inp.pe_ok is True
    clock.sleep_ms(100)
    for h in range(40 * 24):  # 40 days without PE, read every hour
        clock.sleep_ms(3600 * 1000)
        board.read(inp)
        assert inp.pe_ok is False, h
    clock.sleep_ms((1 << 29) + 10)  # even a read after more than half the period
    board.read(inp)
    assert inp.pe_ok is False
    handler(None)
    board.read(inp)
    assert inp.pe_ok is True


def test_button_press_after_a_week_counts():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))
    handler = w.irqs[0][0]
    clock = fm.Clock()
    clock.sleep_ms(100)
    handler(None)
    assert board.take_button() == 1
    for _ in range(7 * 24):  # a week, the board's loop taking presses
        clock.sleep_ms(3600 * 1000)
        assert board.take_button() == 0
    handler(None)
    assert board.take_button() == 1


def test_rp2_interrupts_are_hard():
    board, w, _ = hwrig.make(hwrig.load("pico-w"))
    assert w.irqs[19][1:] == (fm.Pin.IRQ_RISING, True)  # RCD
    assert w.irqs[21][1:] == (fm.Pin.IRQ_RISING | fm.Pin.IRQ_FALLING, True)  # PE pulses
    assert w.irqs[22][1:] == (fm.Pin.IRQ_FALLING, True)  # button


def test_pe_level_mode():
    raw = hwrig.load("esp32-devkitc")
    raw["pe"]["mode"] = "level"
    board, w, _ = hwrig.make(raw)
    assert 4 not in w.irqs
    inp = Inputs()
    w.inputs[4] = 0  # active low: present
    board.read(inp)
    assert inp.pe_ok is True
    w.inputs[4] = 1
    board.read(inp)
    assert inp.pe_ok is False


def test_button_isr_debounces():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))  # BOOT button GPIO0
    handler, trigger, hard = w.irqs[0]
    assert trigger == fm.Pin.IRQ_FALLING and not hard
    clock = fm.Clock()
    clock.sleep_ms(100)
    handler(None)
    clock.sleep_ms(5)
    handler(None)  # bounce
    assert board.take_button() == 1
    assert board.take_button() == 0
    clock.sleep_ms(200)
    handler(None)
    assert board.take_button() == 1


def test_temperature_once_a_second():
    raw = hwrig.load("smartevse-v3")  # MCP9700A on GPIO36
    board, w, _ = hwrig.make(raw)
    w.adc_uv[36] = 750000  # 25 C
    clock = fm.Clock()
    clock.sleep_ms(1000)
    inp = Inputs()
    board.read(inp)
    assert inp.temp_dc == 250
    w.adc_uv[36] = 1200000  # 70 C
    board.read(inp)
    assert inp.temp_dc == 250  # not yet a second later
    clock.sleep_ms(1000)
    board.read(inp)
    assert inp.temp_dc == 700


def test_ntc_missing_reads_as_overtemperature():
    board, w, _ = hwrig.make(hwrig.load("pico-w"))
    w.adc_uv[28] = 3300000  # open NTC: the pull-up's rail
    fm.Clock().sleep_ms(1000)
    inp = Inputs()
    board.read(inp)
    assert inp.temp_dc == 1500


@pytest.mark.parametrize("ohm", [100, 220, 680, 1500])
def test_pp_resistance(ohm):
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))  # PP GPIO39, 1k pull-up
    w.adc_uv[39] = 3300000 * ohm // (ohm + 1000)
    inp = Inputs()
    board.read(inp)
    assert abs(inp.pp_ohm - ohm) <= ohm * 3 // 100 + 2, inp.pp_ohm
    w.adc_uv[39] = 3300000
    board.read(inp)
    assert inp.pp_ohm is None


def test_led_patterns():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))  # LED GPIO23
    o = pwm_out(10000, pilot=PILOT_HIGH)
    board.apply(o)
    assert w.levels[23] == 1  # idle: on
    o.error = "rcd"
    o.state = "F"
    seen = set()
    for _ in range(40):
        fm.Clock().sleep_ms(20)
        board.apply(o)
        seen.add(w.levels[23])
    assert seen == {0, 1}  # blinking


def test_safe_state():
    board, w, _ = hwrig.make(hwrig.load("esp32-devkitc"))
    board.apply(pwm_out(2500, contactor=True, rcd_test=True))
    board.safe()
    assert w.levels[27] == 0 and w.levels[33] == 0 and w.pwm.duty == 65536
    board.unavailable()
    assert w.levels[27] == 0 and w.pwm.duty == 0


# --------------------------------------------------- with the application
def test_app_charges_on_the_fake_board():
    raw = hwrig.load("pico-w")
    raw["mirror"] = None
    board, w, _ = hwrig.make(raw, adc_uv={27: 3300000 * 220 // 1220,  # PP 220 ohm
                                          28: 1650000})  # NTC: 25 C
    w.irqs[21][0](None)
    clock = fm.Clock()
    cfg = config.validate({"max_current_a": 16, "rcd_selftest": False})
    app = App(board, cfg, clock.ticks_ms())
    ev = {"A": 12000, "B": 9000, "C": 6000}
    closed_at = None

    def run(ms, state):
        nonlocal closed_at
        for _ in range(ms // 10):
            w.cp_hi_mv = ev[state]
            w.irqs[21][0](None)  # PE present: mains half-waves
            clock.sleep_ms(10)
            out = app.tick(clock.ticks_ms())
            if out.contactor and closed_at is None:
                closed_at = clock.ticks_ms()
        return app.out

    assert run(3000, "A").state == "A"  # the 3 s of X1 after boot
    assert run(1000, "B").state == "B2"
    assert w.pwm.duty == 16000 // 6 * 65535 // 10000
    t_c = clock.ticks_ms()
    out = run(1000, "C")
    assert out.state == "C2" and out.contactor and w.levels[17] == 1
    assert closed_at - t_c <= 400
    out = run(30, "B")  # the vehicle opens S2: open within 100 ms
    assert not out.contactor and w.levels[17] == 0
