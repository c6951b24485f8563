"""Meter profile `sdm72d`: Eastron SDM72D-M (first version): totals only. Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: Eastron/B+G e-tech, SDM72D-M user manual V1.5, part 3 Modbus
# protocol: 30053 total system power, 30073 total import kWh; function 04,
# IEEE 754 float, 30 values per request.
# Line: no parity and 1 stop bit by default (holding register 40019).
# The first SDM72D-M has no per-phase voltage or current registers (mbmd
# sdm72.go reads the same two values): with this profile the meter gives
# energy and power only, and the overcurrent rule has no current to check.
# The SDM72D-M-2 has them: use sdm72d2.
from evse.meter import F32, W, WH

PROFILE = {
    "id": "sdm72d",
    "model": "Eastron SDM72D-M (first version): totals only",
    "fc": 0x04, "words": "hi", "phases": 3, "max_regs": 60,
    "fields": (
        (W, 0x0034, F32, 1, 1),
        (WH, 0x0048, F32, 1000, 1),
    ),
}
