"""Meter profile `sdm120`: Eastron SDM120-Modbus (MID), single phase. Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: Eastron, SDM120-Modbus protocol, input registers: 30001 voltage,
# 30007 current, 30013 active power, 30073 import active energy kWh;
# function 04, IEEE 754 float.
# Registers as mbmd sdm.go (220/230 comments) and SmartEVSE Eastron1P. The
# request limit is not in the sources at hand: 30 values (60 registers)
# assumed, as the SDM72D-M manual states, giving two reads.
from evse.meter import A1, F32, V1, W, WH

PROFILE = {
    "id": "sdm120",
    "model": "Eastron SDM120-Modbus (MID), single phase",
    "fc": 0x04, "words": "hi", "phases": 1, "max_regs": 60,
    "fields": (
        (V1, 0x0000, F32, 1000, 1),
        (A1, 0x0006, F32, 1000, 1),
        (W, 0x000C, F32, 1, 1),
        (WH, 0x0048, F32, 1000, 1),
    ),
}
