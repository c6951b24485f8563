"""Meter profile `sdm630`: Eastron SDM630-Modbus (V2, MID). Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: Eastron, SDM630MODBUS Smart Meter Modbus Protocol Implementation
# (SDM630-Modbus V2 manual), 1.2 Input registers: 30001/3/5 phase L-N volts,
# 30007/9/11 phase currents, 30053 total system power, 30073 total import
# kWh; function 04, IEEE 754 float, 40 values per request.
# Line: no parity and 1 stop bit by default (holding register 40019).
# Same map in mbmd (sdm.go) and SmartEVSE (Eastron3P, max read count 80).
# 0x004A is export, 0x0156 total (import + export): not used.
from evse.meter import A1, A2, A3, F32, V1, V2, V3, W, WH

PROFILE = {
    "id": "sdm630",
    "model": "Eastron SDM630-Modbus (V2, MID)",
    "fc": 0x04, "words": "hi", "phases": 3, "max_regs": 80,
    "fields": (
        (V1, 0x0000, F32, 1000, 1), (V2, 0x0002, F32, 1000, 1), (V3, 0x0004, F32, 1000, 1),
        (A1, 0x0006, F32, 1000, 1), (A2, 0x0008, F32, 1000, 1), (A3, 0x000A, F32, 1000, 1),
        (W, 0x0034, F32, 1, 1),
        (WH, 0x0048, F32, 1000, 1),
    ),
}
