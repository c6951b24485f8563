"""Meter profile `orno_we514`: Orno OR-WE-514, single phase. Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: Orno, Register description OR-WE-514 & OR-WE-515: 0131h voltage
# (16 bit, 0.01 V), 0139h current (32 bit, 0.001 A), 0140h active power (32
# bit, W), A000h total active energy (32 bit, 0.01 kWh); function 03.
# Line: Orno's WE-515/WE-517 ship at 9600 8E1 (even parity fixed), as
# TapHome's templates state; the WE-514 is assumed to be the same.
# As mbmd orno1p.go. The document's power unit is 0.001 kW (= 1 W). The
# request limit is not documented: 40 assumed.
from evse.meter import A1, I32, U16, U32, V1, W, WH

PROFILE = {
    "id": "orno_we514",
    "model": "Orno OR-WE-514, single phase",
    "fc": 0x03, "words": "hi", "phases": 1, "max_regs": 40,
    "fields": (
        (V1, 0x0131, U16, 10, 1),
        (A1, 0x0139, U32, 1, 1),
        (W, 0x0140, I32, 1, 1),
        (WH, 0xA000, U32, 10, 1),
    ),
}
