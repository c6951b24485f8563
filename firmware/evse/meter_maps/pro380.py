"""Meter profile `pro380`: Inepro PRO380-Mod (also sold as WAGO 879-30x0). Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: Inepro Metering, PRO380 user manual V2.18, Modbus registers:
# 5002H/5004H/5006H L1/L2/L3 voltage (V), 500CH/500EH/5010H L1/L2/L3 current
# (A), 5012H total active power (kW), 600CH forward (import) active energy
# (kWh); function 03, IEEE 754 float, high word first.
# As mbmd inepro.go (power in kW) and SmartEVSE (WAGO, import 600CH; 6000H
# is import + export).
from evse.meter import A1, A2, A3, F32, V1, V2, V3, W, WH

PROFILE = {
    "id": "pro380",
    "model": "Inepro PRO380-Mod (also sold as WAGO 879-30x0)",
    "fc": 0x03, "words": "hi", "phases": 3, "max_regs": 40,
    "fields": (
        (V1, 0x5002, F32, 1000, 1), (V2, 0x5004, F32, 1000, 1),
        (V3, 0x5006, F32, 1000, 1),
        (A1, 0x500C, F32, 1000, 1), (A2, 0x500E, F32, 1000, 1),
        (A3, 0x5010, F32, 1000, 1),
        (W, 0x5012, F32, 1000, 1),
        (WH, 0x600C, F32, 1000, 1),
    ),
}
