"""Board profiles: the validated profile the board adapter runs on, and the
integer constants of the CP measurement.

No `machine` here: the board adapter (hw/board.py), hw/system.py and the
host's deploy tool call `validate(d)` on the decoded JSON of a file in
boards/. The checks themselves are in hw/profile_check.py, which runs only
at boot: `validate` imports it and drops it again, so that only the Profile
stays in RAM. Every error is a ProfileError whose message starts with the dotted
key that is wrong, e.g. ``cp.adc_pin: 25 is not an ADC pin on esp32 (allowed:
32..39)``. Unknown keys are refused (a typo must not silently drop an option).

Profile layout (see docs/boards.md for every key):

    name, port ("esp32" | "rp2"), description, source, notes   (text)
    cp        pwm_pin, invert, adc_pin, divider | linear, trim_mv, trim_ppm,
              disconnect {pin, active}
    contactor [{pin, active}, ...]           one or two coil outputs
    mirror    {pin, active, pull}            contacts closed = active
    rcd       {pin, active, pull, test: {pin, active}}
    pe        {pin, active, pull, mode: "level" | "pulses"}
    pp        {adc_pin, r_pullup, vref_mv}
    temp      {type: "ntc", adc_pin, r25, beta, r_fixed, ntc_to, vref_mv}
              {type: "linear", adc_pin, mv_at_0c, uv_per_c}
    led       {pin, active}        button {pin, active, pull}
    rs485     {uart, tx, rx, de}   (the Modbus meter's UART and DE pin)

`validate` returns a Profile: the checked dict (`.d`, options absent = None)
plus the derived integers of the CP measurement. The dict is for setting up
(the board adapter, hw/system.build): once the board is built, `release()`
drops it, so that only the scalars the running charger reads stay in RAM
(name, port, cp_interlock and the integers below):

    cp_mv = ((adc_10uv - cp_zero) * cp_num >> 14) + cp_trim_mv

where adc_10uv is the ADC input voltage in units of 10 uV, obtained from a raw
sample as (raw * adc_mul) >> adc_shift (per port: the ESP32 sampler stores
calibrated millivolts from read_uv(), the RP2040 one read_u16() counts). All
products stay below 2**30, so the conversion allocates nothing on the board.
"""
from micropython import const

_CP_SHIFT = const(14)  # cp_num is a fraction of 2**14


class SetupError(ValueError):
    """The profile or configuration cannot run: stay unavailable (state F).
    hw.system raises it with what is wrong; a wrong profile is one too (one
    class for both: a class costs RAM on the board)."""


ProfileError = SetupError


class Profile:
    """A validated profile: `d` (the dict) and the derived integers."""

    def __init__(self, d):
        self.d = d
        self.name = d["name"]
        self.port = d["port"]
        self.cp_interlock = d.get("cp_interlock") is True
        cp = d["cp"]
        if self.port == "esp32":
            # the ESP32 sampler stores read_uv() // 1000: calibrated mV
            self.adc_mul, self.adc_shift = 100, 0
        else:
            # read_u16() counts, 65535 = the ADC reference (3.3 V on a Pico)
            vref = d.get("adc_vref_mv") or 3300
            self.adc_mul, self.adc_shift = (vref * 100 * 1024 + 32767) // 65535, 10
        zero_uv, uv_per_v = cp_transfer(cp)
        self.cp_zero = (zero_uv + 5) // 10  # ADC input at CP = 0 V, 10 uV units
        # cp_mv per 10 uV at the ADC = 10_000 / uv_per_v, as a fraction of 2**14,
        # corrected by trim_ppm.
        num = 10000 * (1 << _CP_SHIFT) * (1000000 + cp.get("trim_ppm", 0))
        self.cp_num = (num + uv_per_v * 500000) // (uv_per_v * 1000000)
        self.cp_trim_mv = cp.get("trim_mv", 0)

    def release(self):
        """Drop the nested dicts once everything is built from them."""
        self.d = None

    def adc_10uv(self, raw):
        return (raw * self.adc_mul) >> self.adc_shift

    def cp_mv(self, raw):
        return (((self.adc_10uv(raw) - self.cp_zero) * self.cp_num) >> _CP_SHIFT) + self.cp_trim_mv



def cp_transfer(cp):
    """(ADC microvolts at CP = 0 V, ADC microvolts per CP volt) of a CP front-end.

    `divider`: the CP line through r_cp to the ADC node, which has r_vref to
    the reference (vref_mv) and r_gnd to ground. With T = r_vref*r_gnd +
    r_cp*r_gnd + r_cp*r_vref:  V_adc = CP * r_vref*r_gnd / T + vref * r_cp*r_gnd / T.
    `linear`: the two numbers given directly (zero_mv, uv_per_v).
    """
    if "divider" in cp:
        dv = cp["divider"]
        r1, r2, r3 = dv["r_cp"], dv["r_vref"], dv["r_gnd"]
        t = r2 * r3 + r1 * r3 + r1 * r2
        zero_uv = (dv.get("vref_mv", 3300) * 1000 * r1 * r3 + t // 2) // t
        uv_per_v = (1000000 * r2 * r3 + t // 2) // t
        return zero_uv, uv_per_v
    ln = cp["linear"]
    return ln["zero_mv"] * 1000, ln["uv_per_v"]



def validate(d):
    """A Profile from a decoded board JSON; ProfileError names the wrong key.
    `d` is not changed (the Profile holds a completed copy)."""
    import sys

    from evse.config import forget

    __import__("hw.profile_check")
    try:
        return sys.modules["hw.profile_check"].validate(d)
    finally:
        forget("hw", "profile_check")
