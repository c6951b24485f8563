"""Meter profile `em340`: Carlo Gavazzi EM340. Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: Carlo Gavazzi, EM330/EM340/ET330/ET340 communication protocol:
# 0000h/0002h/0004h V L-N (INT32, 0.1 V), 000Ch/000Eh/0010h A (INT32, 0.001
# A), 0028h W sys (INT32, 0.1 W), 0034h kWh (+) TOT (INT32, 0.1 kWh);
# function 04, least significant word first.
# As mbmd carlogavazzi-ex3x0.go and SmartEVSE (C.Gavazzi). Energy resolution
# is 0.1 kWh. 50 registers per request assumed (Carlo Gavazzi EM2x/EM3x
# protocols); the EM21 allows only 11.
from evse.meter import A1, A2, A3, I32, V1, V2, V3, W, WH

PROFILE = {
    "id": "em340",
    "model": "Carlo Gavazzi EM340",
    "fc": 0x04, "words": "lo", "phases": 3, "max_regs": 50,
    "fields": (
        (V1, 0x0000, I32, 100, 1), (V2, 0x0002, I32, 100, 1), (V3, 0x0004, I32, 100, 1),
        (A1, 0x000C, I32, 1, 1), (A2, 0x000E, I32, 1, 1), (A3, 0x0010, I32, 1, 1),
        (W, 0x0028, I32, 1, 10),
        (WH, 0x0034, I32, 100, 1),
    ),
}
