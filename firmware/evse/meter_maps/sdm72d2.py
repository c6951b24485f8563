"""Meter profile `sdm72d2`: Eastron SDM72D-M-2 (second version, MID). Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: Eastron, SDM72D-M-2 Modbus protocol (sdm72dm-v2.pdf): 30001/3/5
# phase L-N volts, 30007/9/11 phase currents, 30053 total system power,
# 30073 total import kWh; function 04, IEEE 754 float.
# Line: no parity and 1 stop bit by default (holding register 40019).
# As mbmd sdm72v2.go. The 30-value limit of the SDM72D-M manual is kept.
# The same registers as sdm630.
from evse.meter import A1, A2, A3, F32, V1, V2, V3, W, WH

PROFILE = {
    "id": "sdm72d2",
    "model": "Eastron SDM72D-M-2 (second version, MID)",
    "fc": 0x04, "words": "hi", "phases": 3, "max_regs": 60,
    "fields": (
        (V1, 0x0000, F32, 1000, 1), (V2, 0x0002, F32, 1000, 1), (V3, 0x0004, F32, 1000, 1),
        (A1, 0x0006, F32, 1000, 1), (A2, 0x0008, F32, 1000, 1), (A3, 0x000A, F32, 1000, 1),
        (W, 0x0034, F32, 1, 1),
        (WH, 0x0048, F32, 1000, 1),
    ),
}
