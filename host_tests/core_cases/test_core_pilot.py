"""Pilot arithmetic: IEC 61851-1 Table A.7 (duty), Table A.3 (CP levels),
Annex A diode check, Annex B (PP). Runs under CPython and MicroPython."""
from evse import pilot as P


def test_duty_table_a7_low_range():
    """Table A.7: 6 A <= I <= 51 A: duty % = I / 0.6 (0.01 % units, rounded down)."""
    assert P.duty_for(6000) == 1000  # 10 %
    assert P.duty_for(10000) == 1666  # 16.666 %
    assert P.duty_for(16000) == 2666
    assert P.duty_for(32000) == 5333
    assert P.duty_for(51000) == 8500  # 85 %


def test_duty_table_a7_high_range():
    """Table A.7: 51 A < I <= 80 A: duty % = I / 2.5 + 64."""
    assert P.duty_for(52600) == 8504
    assert P.duty_for(63000) == 8920
    assert P.duty_for(80000) == 9600  # 96 %


def test_duty_never_more_than_offered_as_read_by_table_a8():
    """Table A.8: the EV reads I = duty x 0.6 (10-85 %) or (duty - 64) x 2.5:
    what it reads from our duty is never above the offer, and within 0.1 A."""
    ma = 6000
    while ma <= 80000:
        off = P.clamp_offer(ma)
        d = P.duty_for(off)
        if d <= 8500:
            read = d * 6  # mA: duty(0.01 %) / 100 * 0.6 A
        else:
            read = (d - 6400) * 25
        assert read <= off, (ma, off, d, read)
        assert off - read < 100, (ma, off, d, read)
        ma += 250
    return "%d" % P.duty_for(P.clamp_offer(77777))


def test_below_6a_no_pwm():
    """Below 6 A there is no PWM: the EVSE stays in X1 (100 %)."""
    assert P.clamp_offer(5999) == 0
    assert P.clamp_offer(0) == 0
    assert P.duty_for(0) == P.DUTY_HIGH == 10000


def test_gap_51_to_52_5_clamped_to_51():
    """The 51-52.5 A gap between the two Table A.7 formulas offers 51 A."""
    assert P.clamp_offer(51000) == 51000
    assert P.clamp_offer(51001) == 51000
    assert P.clamp_offer(52000) == 51000
    assert P.clamp_offer(52499) == 51000
    assert P.clamp_offer(52500) == 51000  # 85 %: an EV reads 51 A
    assert P.clamp_offer(52501) == 52501
    # duty is monotonic in the offer across the gap
    prev = 0
    ma = 50000
    while ma <= 54000:
        d = P.duty_for(P.clamp_offer(ma))
        assert d >= prev, ma
        prev = d
        ma += 100


def test_nothing_above_80a():
    assert P.clamp_offer(80001) == 80000
    assert P.clamp_offer(200000) == 80000


def test_levels_table_a3_nominal():
    """Table A.3 nominal high plateaus: A 12 V, B 9 V, C 6 V, D 3 V, E 0 V."""
    assert P.level(12000) == P.CP_A
    assert P.level(9000) == P.CP_B
    assert P.level(6000) == P.CP_C
    assert P.level(3000) == P.CP_D
    assert P.level(0) == P.CP_E
    assert P.level(-12000) == P.CP_E


def test_levels_within_published_tolerance():
    """+/-1 V around each nominal level still classifies as that level."""
    for nominal, cls in ((12000, P.CP_A), (9000, P.CP_B), (6000, P.CP_C),
                         (3000, P.CP_D), (0, P.CP_E)):
        assert P.level(nominal - 1000) == cls
        assert P.level(nominal + 1000) == cls


def test_hysteresis_keeps_class_near_boundary():
    c = P.CpClassifier(P.CP_B)
    # 7.3 V is C by level() but inside B's hysteresis band (7.5 - 0.4 V)
    assert c.raw(7300) == P.CP_B
    assert c.raw(7000) == P.CP_C
    c = P.CpClassifier(P.CP_C)
    assert c.raw(7700) == P.CP_C
    assert c.raw(8000) == P.CP_B


def _feed(c, mvs, dt=10):
    """Feed readings 10 ms apart; the stable class after each."""
    return [c.update(dt, mv) for mv in mvs]


def test_debounce_entering_c_takes_250ms():
    """Entering C (towards closing) needs 250 ms of agreeing readings: the
    first C reading starts the time, the 26th (250 ms later) takes it."""
    c = P.CpClassifier(P.CP_B)
    got = _feed(c, [6000] * 26)
    assert got[:25] == [P.CP_B] * 25 and got[25] == P.CP_C


def test_debounce_leaving_c_is_fast():
    """Leaving C (Table A.6 seq. 8.1, 100 ms budget) takes two readings."""
    c = P.CpClassifier(P.CP_C)
    assert _feed(c, [9000, 9000]) == [P.CP_C, P.CP_B]


def test_leaving_c_counts_any_outside_reading():
    """Readings outside C/D count towards leaving whatever their class: B and
    A alternating, or a B/A/E mix, leave C after two readings (the class
    taken is B when the two disagree), and C/B alternating leaves within
    five readings (50 ms)."""
    for mix in ([9000, 12000], [12000, 9000], [9000, 0], [0, 12000]):
        c = P.CpClassifier(P.CP_C)
        got = _feed(c, mix)
        assert got[1] != P.CP_C and got[1] != P.CP_D, (mix, got)
        assert got[1] == P.CP_B
    c = P.CpClassifier(P.CP_C)
    got = _feed(c, [9000, 6000] * 5)
    assert P.CP_B in got[:5], got
    c = P.CpClassifier(P.CP_D)
    got = _feed(c, [12000, 3000, 9000, 3000, 0, 3000])
    assert got[-1] not in (P.CP_C, P.CP_D), got


def test_rare_outside_readings_do_not_leave_c():
    """One reading in three outside C (a glitch now and then) keeps C."""
    c = P.CpClassifier(P.CP_C)
    assert set(_feed(c, [9000, 6000, 6000] * 50)) == {P.CP_C}


def test_debounce_to_a_and_e_25ms():
    c = P.CpClassifier(P.CP_B)
    assert _feed(c, [12000] * 4) == [P.CP_B] * 3 + [P.CP_A]
    c = P.CpClassifier(P.CP_B)
    assert _feed(c, [0] * 4)[-1] == P.CP_E


def test_a_and_e_mixed_still_leave_b_in_25ms():
    """An unplug that scrapes the CP pin (A and E readings mixed) leaves B
    within the 25 ms as if the readings agreed."""
    c = P.CpClassifier(P.CP_B)
    got = _feed(c, [12000, 0, 12000, 0])
    assert got[-1] in (P.CP_A, P.CP_E), got


def test_debounce_restarts_on_interruption():
    c = P.CpClassifier(P.CP_B)
    _feed(c, [6000] * 21)  # 200 ms of C
    _feed(c, [9000])  # one B reading: the candidate C starts over
    got = _feed(c, [6000] * 26)
    assert got[24] == P.CP_B and got[25] == P.CP_C


def test_debounce_is_elapsed_time_not_tick_values():
    """The classifier is given elapsed ms, so nothing it keeps depends on
    the uptime; big steps (a stalled loop) count as the time they took."""
    c = P.CpClassifier(P.CP_B)
    assert c.update(0, 6000) == P.CP_B
    assert c.update(250, 6000) == P.CP_C


def test_noise_0_6v_no_spurious_transition():
    """+/-0.6 V of noise on each nominal level never changes the class."""
    seed = 7
    for nominal, cls in ((12000, P.CP_A), (9000, P.CP_B), (6000, P.CP_C),
                         (3000, P.CP_D), (0, P.CP_E)):
        c = P.CpClassifier(cls)
        for _ in range(2000):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            assert c.update(10, nominal + seed % 1201 - 600) == cls


def test_diode_check_annex_a():
    """Annex A: low plateau about -12 V with the diode; -8.8 V (B) or -5.6 V
    (C) without it."""
    assert not P.diode_missing(-12000)
    assert not P.diode_missing(-11400)  # -12 V with 0.6 V noise
    assert P.diode_missing(-8800)
    assert P.diode_missing(-5600)


def test_pp_annex_b_nominal():
    """Annex B: 1.5 kOhm 13 A, 680 Ohm 20 A, 220 Ohm 32 A, 100 Ohm 63/70 A."""
    assert P.pp_rating_ma(1500, 3) == 13000
    assert P.pp_rating_ma(680, 3) == 20000
    assert P.pp_rating_ma(220, 3) == 32000
    assert P.pp_rating_ma(100, 3) == 63000
    assert P.pp_rating_ma(100, 1) == 70000


def test_pp_tolerance_windows_and_open():
    for nominal, ma in ((1500, 13000), (680, 20000), (220, 32000), (100, 63000)):
        assert P.pp_rating_ma(nominal * 7 // 10, 3) == ma, nominal
        assert P.pp_rating_ma(nominal * 13 // 10, 3) == ma, nominal
    assert P.pp_rating_ma(None, 3) == 0  # open: no cable
    assert P.pp_rating_ma(10000, 3) == 0
    assert P.pp_rating_ma(10, 3) == 0  # shorted PP
