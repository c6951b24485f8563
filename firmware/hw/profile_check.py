"""Board profile checks, run once at boot (hw.profile.validate imports this
module and drops it again) and by the host's deploy tool: every key of a
board JSON checked against the port's pins, defaults filled in, and the
Profile (hw/profile.py) built from the result. Every error is a
ProfileError whose message starts with the dotted key that is wrong, e.g.
``cp.adc_pin: 25 is not an ADC pin on esp32 (allowed: 32..39)``; unknown
keys are refused (a typo must not silently drop an option).
"""
from micropython import const

from hw.profile import Profile, ProfileError, cp_transfer


PORTS = ("esp32", "rp2")

# Pins per port. ESP32 (WROOM/WROVER modules): GPIO 6..11 are the flash;
# 34..39 are input only; ADC block 2 cannot be read while Wi-Fi is on
# (MicroPython ESP32 quickref), so ADC inputs must be ADC1: GPIO 32..39.
# RP2040 on a Pico W: GP23, 24, 25 and 29 belong to the wireless chip; the
# ADC inputs are GP26..28.
_ESP32_ALL = tuple(p for p in range(40) if p not in (6, 7, 8, 9, 10, 11, 20, 24, 28, 29, 30, 31))
_ESP32_IN_ONLY = const((34, 35, 36, 37, 38, 39))
_ESP32_ADC = const((32, 33, 34, 35, 36, 37, 38, 39))
_RP2_ALL = tuple(range(23)) + (26, 27, 28)
_RP2_ADC = const((26, 27, 28))

# Key schemas. Each entry: key -> (kind, required, extra)
_TEXT = const(("name", "description", "source", "notes"))


# ----------------------------------------------------------------- checking
def _fail(key, msg):
    raise ProfileError("%s: %s" % (key, msg))


def _int(key, v, lo, hi):
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        _fail(key, "must be an integer in %d..%d, got %r" % (lo, hi, v))
    return v


def _bool(key, v):
    if not isinstance(v, bool):
        _fail(key, "must be true or false, got %r" % (v,))
    return v


def _choice(key, v, allowed):
    if isinstance(v, bool) or v not in allowed:
        _fail(key, "must be one of %s, got %r" % (", ".join([repr(a) for a in allowed]), v))
    return v


def _obj(key, v, allowed, required):
    if not isinstance(v, dict):
        _fail(key, "must be a JSON object, got %r" % (v,))
    for k in v:
        if k not in allowed:
            _fail(key + "." + k, "unknown key (allowed: %s)" % ", ".join(allowed))
    for k in required:
        if k not in v:
            _fail(key + "." + k, "missing")
    return v


def _span(values):
    # e.g. (32, 33, ..., 39) -> "32..39"; otherwise the list
    if len(values) > 2 and values[-1] - values[0] == len(values) - 1:
        return "%d..%d" % (values[0], values[-1])
    return ", ".join([str(p) for p in values])


class _Pins:
    """Pin checks for one port, and the record of pins already taken."""

    def __init__(self, port):
        self.port = port
        self.used = {}

    def _take(self, key, pin):
        if pin in self.used:
            _fail(key, "pin %r is already used by %s" % (pin, self.used[pin]))
        self.used[pin] = key

    def out(self, key, pin):
        if self.port == "rp2" and pin == "LED":  # Pico W: the LED is on the wireless chip
            self._take(key, pin)
            return pin
        return self.inp(key, pin, output=True)

    def inp(self, key, pin, output=False):
        if self.port == "esp32":
            _int(key, pin, 0, 39)
            if output and pin in _ESP32_IN_ONLY:
                _fail(key, "GPIO%d is input only on esp32 (34..39 cannot drive)" % pin)
            ok = _ESP32_ALL
        else:
            _int(key, pin, 0, 28)
            ok = _RP2_ALL
        if pin not in ok:
            _fail(key, "%r is not a free GPIO on %s" % (pin, self.port))
        self._take(key, pin)
        return pin

    def adc(self, key, pin):
        ok = _ESP32_ADC if self.port == "esp32" else _RP2_ADC
        if isinstance(pin, bool) or not isinstance(pin, int) or pin not in ok:
            _fail(key, "%r is not an ADC pin on %s (allowed: %s)" % (pin, self.port, _span(ok)))
        self._take(key, pin)
        return pin


_LEVEL = const(("high", "low"))
_PULL = const(("up", "down", "none"))


def _output(key, v, pins):
    _obj(key, v, ("pin", "active"), ("pin", "active"))
    pins.out(key + ".pin", v["pin"])
    _choice(key + ".active", v["active"], _LEVEL)


def _input(key, v, pins, extra=()):
    _obj(key, v, ("pin", "active", "pull") + extra, ("pin", "active"))
    pins.inp(key + ".pin", v["pin"])
    _choice(key + ".active", v["active"], _LEVEL)
    v.setdefault("pull", "none")
    _choice(key + ".pull", v["pull"], _PULL)


def _check_cp(cp, pins):
    _obj("cp", cp, ("pwm_pin", "invert", "adc_pin", "divider", "linear", "trim_mv",
                    "trim_ppm", "disconnect"), ("pwm_pin", "adc_pin"))
    pins.out("cp.pwm_pin", cp["pwm_pin"])
    cp.setdefault("invert", False)
    _bool("cp.invert", cp["invert"])
    pins.adc("cp.adc_pin", cp["adc_pin"])
    if ("divider" in cp) == ("linear" in cp):
        _fail("cp", "give exactly one of divider, linear")
    if "divider" in cp:
        dv = _obj("cp.divider", cp["divider"], ("r_cp", "r_vref", "r_gnd", "vref_mv"),
                  ("r_cp", "r_vref", "r_gnd"))
        for k in ("r_cp", "r_vref", "r_gnd"):
            _int("cp.divider." + k, dv[k], 100, 10000000)
        dv.setdefault("vref_mv", 3300)
        _int("cp.divider.vref_mv", dv["vref_mv"], 1000, 5000)
    else:
        ln = _obj("cp.linear", cp["linear"], ("zero_mv", "uv_per_v"), ("zero_mv", "uv_per_v"))
        _int("cp.linear.zero_mv", ln["zero_mv"], 100, 3300)
        _int("cp.linear.uv_per_v", ln["uv_per_v"], 20000, 200000)
    _int("cp.trim_mv", cp.setdefault("trim_mv", 0), -2000, 2000)
    _int("cp.trim_ppm", cp.setdefault("trim_ppm", 0), -100000, 100000)
    zero_uv, uv_per_v = cp_transfer(cp)
    # The whole pilot range (+/-12 V and some margin) must land inside the
    # ADC's input range.
    lo_uv = zero_uv - 125 * uv_per_v // 10
    hi_uv = zero_uv + 125 * uv_per_v // 10
    if lo_uv < 0 or hi_uv > 3300000:
        _fail("cp", "the front-end maps -12.5..+12.5 V to %d..%d mV, outside the ADC's "
              "0..3300 mV" % (lo_uv // 1000, hi_uv // 1000))
    if uv_per_v < 50000:
        _fail("cp", "the front-end gain %d uV/V is too small to tell the pilot levels apart"
              % uv_per_v)
    if cp.get("disconnect") is not None:
        _output("cp.disconnect", cp["disconnect"], pins)
    else:
        cp["disconnect"] = None


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(v[k]) for k in v}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def validate(d):
    """A Profile from a decoded board JSON; ProfileError names the wrong key.
    `d` is not changed (the Profile holds a completed copy)."""
    if not isinstance(d, dict):
        raise ProfileError("profile: must be a JSON object")
    d = _copy(d)
    top = _TEXT + ("port", "adc_vref_mv", "cp", "contactor", "phase_switch", "mirror", "rcd",
                   "pe", "pp", "temp", "led", "button", "rs485", "cp_interlock")
    _obj("profile", d, top, ("name", "port", "cp", "contactor"))
    for k in _TEXT:
        if k in d and not isinstance(d[k], str):
            _fail(k, "must be a string")
    if not d["name"]:
        _fail("name", "must not be empty")
    _choice("port", d["port"], PORTS)
    if "adc_vref_mv" in d:
        if d["port"] != "rp2":
            _fail("adc_vref_mv", "only for rp2 (the ESP32 reads calibrated microvolts)")
        _int("adc_vref_mv", d["adc_vref_mv"], 2000, 3600)
    pins = _Pins(d["port"])
    _check_cp(d["cp"], pins)

    k = d["contactor"]
    if not isinstance(k, list) or not 1 <= len(k) <= 2:
        _fail("contactor", "must be a list of one or two outputs, got %r" % (k,))
    for i, c in enumerate(k):
        _output("contactor[%d]" % i, c, pins)

    for key in ("phase_switch", "mirror", "led", "button", "pp", "temp", "rcd", "pe", "rs485"):
        d.setdefault(key, None)
    # phase_switch: the coil of a second contactor for L2 and L3 (1p/3p
    # switching, docs/site.md); it follows the main contactor on three phases
    if d["phase_switch"] is not None:
        _output("phase_switch", d["phase_switch"], pins)
    # cp_interlock: the board opens the contactor in hardware when the CP
    # leaves state C/D (a comparator in the coil's supply), whatever the MCU
    # does: then a TLS handshake may hold the interpreter while charging.
    if not isinstance(d.setdefault("cp_interlock", False), bool):
        _fail("cp_interlock", "must be true or false")
    if d["mirror"] is not None:
        _input("mirror", d["mirror"], pins)
    if d["led"] is not None:
        _output("led", d["led"], pins)
    if d["button"] is not None:
        _input("button", d["button"], pins)
    if d["rcd"] is not None:
        r = d["rcd"]
        _input("rcd", r, pins, ("test",))
        if "test" in r and r["test"] is not None:
            _output("rcd.test", r["test"], pins)
        else:
            r["test"] = None
    if d["pe"] is not None:
        p = d["pe"]
        _input("pe", p, pins, ("mode",))
        p.setdefault("mode", "level")
        _choice("pe.mode", p["mode"], ("level", "pulses"))
    if d["pp"] is not None:
        p = _obj("pp", d["pp"], ("adc_pin", "r_pullup", "vref_mv"), ("adc_pin", "r_pullup"))
        pins.adc("pp.adc_pin", p["adc_pin"])
        _int("pp.r_pullup", p["r_pullup"], 100, 100000)
        _int("pp.vref_mv", p.setdefault("vref_mv", 3300), 1000, 5000)
    if d["temp"] is not None:
        _check_temp(d["temp"], pins)
    if d["rs485"] is not None:
        r = _obj("rs485", d["rs485"], ("uart", "tx", "rx", "de"), ("uart", "tx", "rx"))
        _int("rs485.uart", r["uart"], 0, 2)
        pins.out("rs485.tx", r["tx"])
        pins.inp("rs485.rx", r["rx"])
        if "de" in r and r["de"] is not None:
            pins.out("rs485.de", r["de"])
        else:
            r["de"] = None
    return Profile(d)


def _check_temp(t, pins):
    if not isinstance(t, dict):
        _fail("temp", "must be a JSON object, got %r" % (t,))
    kind = _choice("temp.type", t.get("type"), ("ntc", "linear"))
    if kind == "ntc":
        _obj("temp", t, ("type", "adc_pin", "r25", "beta", "r_fixed", "ntc_to", "vref_mv"),
             ("type", "adc_pin", "r25", "beta", "r_fixed"))
        _int("temp.r25", t["r25"], 100, 1000000)
        _int("temp.beta", t["beta"], 1000, 10000)
        _int("temp.r_fixed", t["r_fixed"], 100, 1000000)
        t.setdefault("ntc_to", "gnd")
        _choice("temp.ntc_to", t["ntc_to"], ("gnd", "vref"))
        _int("temp.vref_mv", t.setdefault("vref_mv", 3300), 1000, 5000)
    else:
        _obj("temp", t, ("type", "adc_pin", "mv_at_0c", "uv_per_c"),
             ("type", "adc_pin", "mv_at_0c", "uv_per_c"))
        _int("temp.mv_at_0c", t["mv_at_0c"], 0, 3000)
        _int("temp.uv_per_c", t["uv_per_c"], 1000, 100000)
    pins.adc("temp.adc_pin", t["adc_pin"])
