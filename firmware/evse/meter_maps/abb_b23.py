"""Meter profile `abb_b23`: ABB B23 (B-series, e.g. B23 212-100). Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: ABB, B-series energy meters manual (Energiezaehler B-Serie
# Handbuch), Modbus mapping: 5B00/5B02/5B04 voltage L-N (unsigned 32, 0.1
# V), 5B0C/5B0E/5B10 current (unsigned 32, 0.01 A), 5B14 total active power
# (signed 32, 0.01 W), 5000 active import energy (unsigned 64, 0.01 kWh);
# function 03, big-endian.
# As mbmd abb.go and SmartEVSE (ABB, max read count 125). A value the meter
# does not have reads all ones (0x7FFF... when signed): decoded as missing.
# RS-485 A/B are swapped on ABB terminals (SmartEVSE).
from evse.meter import A1, A2, A3, I32, U32, U64, V1, V2, V3, W, WH

PROFILE = {
    "id": "abb_b23",
    "model": "ABB B23 (B-series, e.g. B23 212-100)",
    "fc": 0x03, "words": "hi", "phases": 3, "max_regs": 125,
    "fields": (
        (V1, 0x5B00, U32, 100, 1), (V2, 0x5B02, U32, 100, 1), (V3, 0x5B04, U32, 100, 1),
        (A1, 0x5B0C, U32, 10, 1), (A2, 0x5B0E, U32, 10, 1), (A3, 0x5B10, U32, 10, 1),
        (W, 0x5B14, I32, 1, 100),
        (WH, 0x5000, U64, 10, 1),
    ),
}
