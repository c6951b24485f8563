"""Board profiles: validation names the wrong key; the CP transfer is exact
to the millivolt in integers; the shipped profiles are valid. Runs under
CPython and MicroPython (host_tests/core_cases/runner.py)."""
import json

from hw import profile as bp


def _base():
    return {
        "name": "t", "port": "esp32",
        "cp": {"pwm_pin": 26, "adc_pin": 36,
               "divider": {"r_cp": 100000, "r_vref": 22000, "r_gnd": 16000}},
        "contactor": [{"pin": 27, "active": "high"}],
    }


def _err(d):
    try:
        bp.validate(d)
    except bp.ProfileError as e:
        return str(e)
    raise AssertionError("no ProfileError for %r" % (d,))


def test_minimal_profile_fills_defaults():
    p = bp.validate(_base())
    assert p.port == "esp32"
    assert p.d["cp"]["invert"] is False
    assert p.d["rcd"] is None and p.d["pe"] is None and p.d["mirror"] is None
    assert p.d["cp"]["divider"]["vref_mv"] == 3300
    assert p.d["cp_interlock"] is False  # no hardware interlock unless declared


def test_cp_interlock_is_a_boolean():
    d = _base()
    d["cp_interlock"] = True
    assert bp.validate(d).d["cp_interlock"] is True
    d["cp_interlock"] = 1
    try:
        bp.validate(d)
        assert False
    except bp.ProfileError as e:
        assert "cp_interlock" in str(e)


def test_errors_name_the_key():
    cases = []
    d = _base(); d["cp"]["adc_pin"] = 25
    cases.append((d, "cp.adc_pin:"))
    d = _base(); d["contactor"][0]["active"] = "hi"
    cases.append((d, "contactor[0].active:"))
    d = _base(); d["cp"]["pwm_pin"] = 36
    cases.append((d, "cp.pwm_pin: GPIO36 is input only"))
    d = _base(); d["cp"]["divider"]["r_gnd"] = "16k"
    cases.append((d, "cp.divider.r_gnd:"))
    d = _base(); d["cp"]["pwm_ping"] = 3
    cases.append((d, "cp.pwm_ping: unknown key"))
    d = _base(); d["port"] = "stm32"
    cases.append((d, "port:"))
    d = _base(); d["led"] = {"pin": 27, "active": "high"}
    cases.append((d, "led.pin: pin 27 is already used by contactor[0].pin"))
    d = _base(); del d["contactor"]
    cases.append((d, "profile.contactor: missing"))
    d = _base(); d["contactor"] = []
    cases.append((d, "contactor:"))
    d = _base(); d["cp"]["divider"]["r_gnd"] = 1000000
    cases.append((d, "cp: the front-end maps"))
    d = _base(); d["cp"]["linear"] = {"zero_mv": 1650, "uv_per_v": 100000}
    cases.append((d, "cp: give exactly one of divider, linear"))
    d = _base(); d["rcd"] = {"pin": 32, "active": "high", "test": {"pin": 36, "active": "high"}}
    cases.append((d, "rcd.test.pin:"))
    d = _base(); d["temp"] = {"type": "ptc", "adc_pin": 34}
    cases.append((d, "temp.type:"))
    d = _base(); d["pe"] = {"pin": 4, "active": "low", "mode": "sometimes"}
    cases.append((d, "pe.mode:"))
    d = _base(); d["port"] = "rp2"; d["cp"]["pwm_pin"] = 24
    cases.append((d, "cp.pwm_pin: 24 is not a free GPIO on rp2"))
    d = _base(); d["port"] = "rp2"; d["cp"]["pwm_pin"] = 16; d["cp"]["adc_pin"] = 26; d["contactor"][0]["pin"] = 25
    cases.append((d, "contactor[0].pin: 25 is not a free GPIO on rp2"))
    for d, want in cases:
        msg = _err(d)
        assert msg.startswith(want), (want, msg)


def test_not_an_object():
    assert _err([1]).startswith("profile:")
    assert _err({"name": "x", "port": "esp32", "cp": 3, "contactor": []}).startswith("cp:")


def test_divider_transfer_is_exact():
    # 100k / 22k to 3.3 V / 16k to GND: 1.2717 V at CP = 0, 84.8 mV per CP volt
    z, g = bp.cp_transfer(_base()["cp"])
    assert z == 1271676 and g == 84778, (z, g)
    p = bp.validate(_base())
    out = []
    for mv in (-12000, -9000, 0, 3000, 6000, 9000, 12000):
        adc_uv = z + mv * g // 1000
        raw = adc_uv // 1000  # the ESP32 sampler's unit: calibrated mV
        got = p.cp_mv(raw)
        assert abs(got - mv) <= 12, (mv, got)  # 1 mV at the ADC is 11.8 mV on CP
        out.append(got)
    return ",".join([str(x) for x in out])



def _raw_for_cp_mv(p, mv):
    """The raw sample that reads as about `mv` on CP (the inverse of cp_mv)."""
    a = p.cp_zero + ((mv - p.cp_trim_mv) << 14) // p.cp_num  # cp_num: a fraction of 2**14
    return (a << p.adc_shift) // p.adc_mul


def test_rp2_counts_transfer():
    d = _base()
    d["port"] = "rp2"
    d["cp"]["pwm_pin"] = 16
    d["cp"]["adc_pin"] = 26
    d["cp"]["divider"]["r_gnd"] = 27000
    d["contactor"][0]["pin"] = 17
    p = bp.validate(d)
    z, g = bp.cp_transfer(d["cp"])
    for mv in (-12000, 0, 9000, 12000):
        counts = (z + mv * g // 1000) * 65535 // 3300000
        got = p.cp_mv(counts)
        assert abs(got - mv) <= 10, (mv, got)
        assert abs(p.cp_mv(_raw_for_cp_mv(p, mv)) - mv) <= 10


def test_trims_apply():
    d = _base()
    d["cp"]["trim_mv"] = 150
    d["cp"]["trim_ppm"] = 10000  # +1 %
    p0 = bp.validate(_base())
    p1 = bp.validate(d)
    raw = _raw_for_cp_mv(p0, 10000)
    a, b = p0.cp_mv(raw), p1.cp_mv(raw)
    assert abs(b - (a * 101 // 100 + 150)) <= 15, (a, b)


def test_linear_front_end():
    d = _base()
    del d["cp"]["divider"]
    d["cp"]["linear"] = {"zero_mv": 1690, "uv_per_v": 124130}
    p = bp.validate(d)
    assert abs(p.cp_mv(3055) - 11000) <= 20  # SmartEVSE's 11.0 V threshold
    assert abs(p.cp_mv(200) + 12000) <= 20


def test_shipped_profiles_are_valid():
    names = ("esp32-devkitc", "pico-w", "smartevse-v3")
    ports = []
    for n in names:
        f = open(_boards() + "/" + n + ".json")
        try:
            d = json.loads(f.read())
        finally:
            f.close()
        p = bp.validate(d)
        assert p.name == n
        ports.append(p.port)
    return ",".join(ports)


def _boards():
    # the runner puts this directory first on sys.path; boards/ is two up
    import sys

    for p in sys.path:
        for cand in (p + "/../../boards", p + "/boards", "/boards"):
            try:
                open(cand + "/pico-w.json").close()
                return cand
            except OSError:
                pass
    raise AssertionError("boards/ not found")


def test_validate_leaves_its_input_alone_and_is_repeatable():
    d = _base()
    before = json.dumps(d)
    p1 = bp.validate(d)
    assert json.dumps(d) == before
    p2 = bp.validate(p1.d)  # the completed dict validates again
    assert p2.cp_num == p1.cp_num and p2.cp_zero == p1.cp_zero


def test_profile_checks_are_not_kept():
    import sys

    import hw

    bp.validate(_base())
    try:
        bp.validate({"name": "x"})
    except bp.ProfileError:
        pass
    assert "hw.profile_check" not in sys.modules
    assert not hasattr(hw, "profile_check")
