"""The energy meter catalogue, as data, and the decoding of register values.

Pure logic: no hardware, no I/O, nothing happens at import but defining the
tables. A profile says, for one meter model, which Modbus function reads
its measurements, where each value is, how it is encoded (type, word
order), how it scales to the firmware's integer units (mV, mA, W, Wh) and
how many phases it measures. The reads are planned from the register list
(`plan_blocks`): the fewest contiguous block reads that cover every value
and stay within the meter's limit of registers per request.

Each profile cites the vendor document its map comes from, cross-checked
with what open firmwares use (mbmd meters/rs485, SmartEVSE-3 meter.cpp
EMConfig, EVerest GenericPowermeter); differences are noted at the profile.
Addresses are zero-based register numbers as sent on the wire (vendor
tables often print them as 30001/40001-based "register numbers").

Decoding works on the raw bytes of a response with integer arithmetic only:
a float32 is taken apart into sign, exponent and mantissa and scaled to an
integer without ever making a float (a float is a heap object on
MicroPython). Intermediate values stay below 2**30 (MicroPython's small
ints) for every reading a meter can produce; only a value beyond about 1
GWh or 1 MV would become a (correct) long int.
"""
from micropython import const

# Value types. A 32/64-bit value spans 2/4 registers; "words" of a profile
# gives their order (Modbus sends the bytes of each register high first).
U16 = const(1)
I16 = const(2)
U32 = const(3)
I32 = const(4)
F32 = const(5)  # IEEE 754 single precision
U64 = const(6)
LO_FIRST = const(8)  # flag or'ed into a type: low word first

WIDTH = (0, 1, 1, 2, 2, 2, 4)  # registers per value, by type

# What a value is (index into Meter's value table).
V1 = const(0)  # phase voltages, mV
V2 = const(1)
V3 = const(2)
A1 = const(3)  # phase currents, mA
A2 = const(4)
A3 = const(5)
W = const(6)  # total active power, W (negative: export)
WH = const(7)  # import active energy, Wh
ROLES = 8

# Scales: (num, den) multiply the raw value into the firmware's unit.
_V_TO_MV = (1000, 1)
_A_TO_MA = (1000, 1)
_UNIT = (1, 1)
_K_TO_UNIT = (1000, 1)  # kWh -> Wh, kW -> W

# The Eastron three-phase input register map (SDM630, SDM72D-M-2): phase
# voltages, phase currents, total power, import energy; IEEE 754 floats.
_EASTRON_3P = (
    (V1, 0x0000, F32) + _V_TO_MV, (V2, 0x0002, F32) + _V_TO_MV,
    (V3, 0x0004, F32) + _V_TO_MV,
    (A1, 0x0006, F32) + _A_TO_MA, (A2, 0x0008, F32) + _A_TO_MA,
    (A3, 0x000A, F32) + _A_TO_MA,
    (W, 0x0034, F32) + _UNIT,
    (WH, 0x0048, F32) + _K_TO_UNIT,
)

# Each profile: id, model, fc (0x03 holding / 0x04 input registers), words
# ("hi": high word first, "lo": low word first), phases, max_regs (the most
# registers the meter returns in one request), fields: (role, address, type,
# num, den). The comment above each names the vendor document of its map,
# the meter's usual line setting and what the cross-checks found; the
# citations stay comments, out of the board's RAM.
PROFILES = (
    # Source: Eastron, SDM630MODBUS Smart Meter Modbus Protocol Implementation
    # (SDM630-Modbus V2 manual), 1.2 Input registers: 30001/3/5 phase L-N volts,
    # 30007/9/11 phase currents, 30053 total system power, 30073 total import
    # kWh; function 04, IEEE 754 float, 40 values per request.
    # Line: no parity and 1 stop bit by default (holding register 40019).
    # Same map in mbmd (sdm.go) and SmartEVSE (Eastron3P, max read count 80).
    # 0x004A is export, 0x0156 total (import + export): not used.
    {
        "id": "sdm630",
        "model": "Eastron SDM630-Modbus (V2, MID)",
        "fc": 0x04, "words": "hi", "phases": 3, "max_regs": 80,
        "fields": _EASTRON_3P,
    },
    # Source: Eastron, SDM120-Modbus protocol, input registers: 30001 voltage,
    # 30007 current, 30013 active power, 30073 import active energy kWh;
    # function 04, IEEE 754 float.
    # Registers as mbmd sdm.go (220/230 comments) and SmartEVSE Eastron1P. The
    # request limit is not in the sources at hand: 30 values (60 registers)
    # assumed, as the SDM72D-M manual states, giving two reads.
    {
        "id": "sdm120",
        "model": "Eastron SDM120-Modbus (MID), single phase",
        "fc": 0x04, "words": "hi", "phases": 1, "max_regs": 60,
        "fields": (
            (V1, 0x0000, F32) + _V_TO_MV,
            (A1, 0x0006, F32) + _A_TO_MA,
            (W, 0x000C, F32) + _UNIT,
            (WH, 0x0048, F32) + _K_TO_UNIT,
        ),
    },
    # Source: Eastron/B+G e-tech, SDM72D-M user manual V1.5, part 3 Modbus
    # protocol: 30053 total system power, 30073 total import kWh; function 04,
    # IEEE 754 float, 30 values per request.
    # Line: no parity and 1 stop bit by default (holding register 40019).
    # The first SDM72D-M has no per-phase voltage or current registers (mbmd
    # sdm72.go reads the same two values): with this profile the meter gives
    # energy and power only, and the overcurrent rule has no current to check.
    # The SDM72D-M-2 has them: use sdm72d2.
    {
        "id": "sdm72d",
        "model": "Eastron SDM72D-M (first version): totals only",
        "fc": 0x04, "words": "hi", "phases": 3, "max_regs": 60,
        "fields": (
            (W, 0x0034, F32) + _UNIT,
            (WH, 0x0048, F32) + _K_TO_UNIT,
        ),
    },
    # Source: Eastron, SDM72D-M-2 Modbus protocol (sdm72dm-v2.pdf): 30001/3/5
    # phase L-N volts, 30007/9/11 phase currents, 30053 total system power,
    # 30073 total import kWh; function 04, IEEE 754 float.
    # Line: no parity and 1 stop bit by default (holding register 40019).
    # As mbmd sdm72v2.go. The 30-value limit of the SDM72D-M manual is kept.
    {
        "id": "sdm72d2",
        "model": "Eastron SDM72D-M-2 (second version, MID)",
        "fc": 0x04, "words": "hi", "phases": 3, "max_regs": 60,
        "fields": _EASTRON_3P,
    },
    # Source: ABB, B-series energy meters manual (Energiezaehler B-Serie
    # Handbuch), Modbus mapping: 5B00/5B02/5B04 voltage L-N (unsigned 32, 0.1
    # V), 5B0C/5B0E/5B10 current (unsigned 32, 0.01 A), 5B14 total active power
    # (signed 32, 0.01 W), 5000 active import energy (unsigned 64, 0.01 kWh);
    # function 03, big-endian.
    # As mbmd abb.go and SmartEVSE (ABB, max read count 125). A value the meter
    # does not have reads all ones (0x7FFF... when signed): decoded as missing.
    # RS-485 A/B are swapped on ABB terminals (SmartEVSE).
    {
        "id": "abb_b23",
        "model": "ABB B23 (B-series, e.g. B23 212-100)",
        "fc": 0x03, "words": "hi", "phases": 3, "max_regs": 125,
        "fields": (
            (V1, 0x5B00, U32, 100, 1), (V2, 0x5B02, U32, 100, 1), (V3, 0x5B04, U32, 100, 1),
            (A1, 0x5B0C, U32, 10, 1), (A2, 0x5B0E, U32, 10, 1), (A3, 0x5B10, U32, 10, 1),
            (W, 0x5B14, I32, 1, 100),
            (WH, 0x5000, U64, 10, 1),
        ),
    },
    # Source: Carlo Gavazzi, EM330/EM340/ET330/ET340 communication protocol:
    # 0000h/0002h/0004h V L-N (INT32, 0.1 V), 000Ch/000Eh/0010h A (INT32, 0.001
    # A), 0028h W sys (INT32, 0.1 W), 0034h kWh (+) TOT (INT32, 0.1 kWh);
    # function 04, least significant word first.
    # As mbmd carlogavazzi-ex3x0.go and SmartEVSE (C.Gavazzi). Energy resolution
    # is 0.1 kWh. 50 registers per request assumed (Carlo Gavazzi EM2x/EM3x
    # protocols); the EM21 allows only 11.
    {
        "id": "em340",
        "model": "Carlo Gavazzi EM340",
        "fc": 0x04, "words": "lo", "phases": 3, "max_regs": 50,
        "fields": (
            (V1, 0x0000, I32, 100, 1), (V2, 0x0002, I32, 100, 1), (V3, 0x0004, I32, 100, 1),
            (A1, 0x000C, I32, 1, 1), (A2, 0x000E, I32, 1, 1), (A3, 0x0010, I32, 1, 1),
            (W, 0x0028, I32, 1, 10),
            (WH, 0x0034, I32, 100, 1),
        ),
    },
    # Source: Orno, Register description OR-WE-514 & OR-WE-515: 0131h voltage
    # (16 bit, 0.01 V), 0139h current (32 bit, 0.001 A), 0140h active power (32
    # bit, W), A000h total active energy (32 bit, 0.01 kWh); function 03.
    # Line: Orno's WE-515/WE-517 ship at 9600 8E1 (even parity fixed), as
    # TapHome's templates state; the WE-514 is assumed to be the same.
    # As mbmd orno1p.go. The document's power unit is 0.001 kW (= 1 W). The
    # request limit is not documented: 40 assumed.
    {
        "id": "orno_we514",
        "model": "Orno OR-WE-514, single phase",
        "fc": 0x03, "words": "hi", "phases": 1, "max_regs": 40,
        "fields": (
            (V1, 0x0131, U16, 10, 1),
            (A1, 0x0139, U32, 1, 1),
            (W, 0x0140, I32, 1, 1),
            (WH, 0xA000, U32, 10, 1),
        ),
    },
    # Source: Chint, DTSU666/DSSU666 user manual, Modbus register table:
    # 2006H/2008H/200AH Ua/Ub/Uc (float, x0.1 V), 200CH/200EH/2010H Ia/Ib/Ic
    # (float, x0.001 A), 2012H Pt (float, x0.1 W), 101EH ImpEp (float, kWh);
    # function 03, high word first.
    # Line: 9600 8N1 by default (manual).
    # The floats carry the manual's scale (voltage in 0.1 V, current in mA,
    # power in 0.1 W). mbmd dtsu666.go and SmartEVSE (Chint 3P) read 2000H.. for
    # voltage, which the manual lists as the line-to-line voltages Uab/Ubc/Uca;
    # the phase voltages are 2006H..
    {
        "id": "dtsu666",
        "model": "Chint DTSU666 (three phase)",
        "fc": 0x03, "words": "hi", "phases": 3, "max_regs": 40,
        "fields": (
            (V1, 0x2006, F32, 100, 1), (V2, 0x2008, F32, 100, 1), (V3, 0x200A, F32, 100, 1),
            (A1, 0x200C, F32, 1, 1), (A2, 0x200E, F32, 1, 1), (A3, 0x2010, F32, 1, 1),
            (W, 0x2012, F32, 1, 10),
            (WH, 0x101E, F32) + _K_TO_UNIT,
        ),
    },
    # Source: Inepro Metering, PRO380 user manual V2.18, Modbus registers:
    # 5002H/5004H/5006H L1/L2/L3 voltage (V), 500CH/500EH/5010H L1/L2/L3 current
    # (A), 5012H total active power (kW), 600CH forward (import) active energy
    # (kWh); function 03, IEEE 754 float, high word first.
    # As mbmd inepro.go (power in kW) and SmartEVSE (WAGO, import 600CH; 6000H
    # is import + export).
    {
        "id": "pro380",
        "model": "Inepro PRO380-Mod (also sold as WAGO 879-30x0)",
        "fc": 0x03, "words": "hi", "phases": 3, "max_regs": 40,
        "fields": (
            (V1, 0x5002, F32) + _V_TO_MV, (V2, 0x5004, F32) + _V_TO_MV,
            (V3, 0x5006, F32) + _V_TO_MV,
            (A1, 0x500C, F32) + _A_TO_MA, (A2, 0x500E, F32) + _A_TO_MA,
            (A3, 0x5010, F32) + _A_TO_MA,
            (W, 0x5012, F32) + _K_TO_UNIT,
            (WH, 0x600C, F32) + _K_TO_UNIT,
        ),
    },
)

NAMES = tuple([p["id"] for p in PROFILES])


def profile(name):
    """The profile called `name`; KeyError for an unknown name."""
    for p in PROFILES:
        if p["id"] == name:
            return p
    raise KeyError(name)


def plan_blocks(fields, max_regs):
    """The reads for `fields`: a list of (start, count) register blocks, the
    fewest contiguous reads that each hold whole values and no more than
    max_regs registers. Greedy from the lowest address, which is optimal for
    windows of bounded length on a line."""
    spans = sorted([(f[1], f[1] + WIDTH[f[2] & 7] - 1) for f in fields])
    blocks = []
    start = end = None
    for lo, hi in spans:
        if start is not None and hi - start + 1 <= max_regs:
            if hi > end:
                end = hi
            continue
        if start is not None:
            blocks.append((start, end - start + 1))
        start, end = lo, hi
    if start is not None:
        blocks.append((start, end - start + 1))
    return blocks


# ---------------------------------------------------------------- decoding
def _word(buf, off):
    return (buf[off] << 8) | buf[off + 1]


def decode(buf, off, kind, num, den):
    """The value whose registers start at byte `off` of buf, times num / den,
    rounded half away from zero; None for a value the meter marks as not
    available (NaN or infinity; an integer of all ones, or 0x7FFF... when
    signed). `kind` is a type, or'ed with LO_FIRST for low word first."""
    t = kind & 7
    if t == U16 or t == I16:
        v = _word(buf, off)
        if t == U16:
            if v == 0xFFFF:
                return None
        else:
            if v == 0x7FFF:
                return None
            if v & 0x8000:
                v -= 0x10000
        return _scale(v, num, den)
    lo_first = kind & LO_FIRST
    if t == U64:
        if lo_first:
            w0 = _word(buf, off + 6)
            w1 = _word(buf, off + 4)
            w2 = _word(buf, off + 2)
            w3 = _word(buf, off)
        else:
            w0 = _word(buf, off)
            w1 = _word(buf, off + 2)
            w2 = _word(buf, off + 4)
            w3 = _word(buf, off + 6)
        if w0 == 0xFFFF and w1 == 0xFFFF and w2 == 0xFFFF and w3 == 0xFFFF:
            return None
        return _scale(((w0 * 65536 + w1) * 65536 + w2) * 65536 + w3, num, den)
    if lo_first:
        hi = _word(buf, off + 2)
        lo = _word(buf, off)
    else:
        hi = _word(buf, off)
        lo = _word(buf, off + 2)
    if t == F32:
        return f32_scaled(hi, lo, num, den)
    if t == U32:
        if hi == 0xFFFF and lo == 0xFFFF:
            return None
        return _scale(hi * 65536 + lo, num, den)
    # I32
    if hi == 0x7FFF and lo == 0xFFFF:
        return None
    if hi & 0x8000:
        hi -= 0x10000
    return _scale(hi * 65536 + lo, num, den)


def _scale(raw, num, den):
    if den == 1:
        return raw * num
    neg = raw < 0
    if neg:
        raw = -raw
    q = (raw * num + den // 2) // den
    return -q if neg else q


def f32_scaled(hi, lo, num, den):
    """The IEEE 754 single (high word `hi`, low word `lo`) times num / den,
    rounded half away from zero, by integer arithmetic; None for NaN and
    infinity, 0 for zero and subnormals. num and den must not exceed 1000:
    then every intermediate below stays under 2**30 for values up to 2**30
    result units. Fractions below 2**-19 of a raw unit are dropped before
    the rounding (an error under 0.002 result units)."""
    e = (hi >> 7) & 0xFF
    if e == 0xFF:
        return None
    if e == 0:
        return 0
    m = ((hi & 0x7F) << 16) | lo | 0x800000  # 24-bit significand
    t = 150 - e  # value = m / 2**t
    if t <= 0:  # |value| >= 2**23: beyond any reading; exact, as a long int
        q = ((m << -t) * num + den // 2) // den
    else:
        if t >= 24:
            ip = 0
            f = m
        else:
            ip = m >> t
            f = m & ((1 << t) - 1)
        if t > 19:  # keep 19 fraction bits
            f = f >> (t - 19) if t < 43 else 0
            t = 19
        a = ip * num
        q = a // den
        x = ((a - q * den) << t) + f * num  # the fraction, in units of 1 / (den * 2**t)
        q += ((x >> (t - 1)) + den) // (2 * den)
    return -q if hi & 0x8000 else q
