"""Meter profile `dtsu666`: Chint DTSU666 (three phase). Register map, as data
(evse.meter_maps; the fields are (role, address, type, num, den), as in
evse.meter)."""
# Source: Chint, DTSU666/DSSU666 user manual, Modbus register table:
# 2006H/2008H/200AH Ua/Ub/Uc (float, x0.1 V), 200CH/200EH/2010H Ia/Ib/Ic
# (float, x0.001 A), 2012H Pt (float, x0.1 W), 101EH ImpEp (float, kWh);
# function 03, high word first.
# Line: 9600 8N1 by default (manual).
# The floats carry the manual's scale (voltage in 0.1 V, current in mA,
# power in 0.1 W). mbmd dtsu666.go and SmartEVSE (Chint 3P) read 2000H.. for
# voltage, which the manual lists as the line-to-line voltages Uab/Ubc/Uca;
# the phase voltages are 2006H..
from evse.meter import A1, A2, A3, F32, V1, V2, V3, W, WH

PROFILE = {
    "id": "dtsu666",
    "model": "Chint DTSU666 (three phase)",
    "fc": 0x03, "words": "hi", "phases": 3, "max_regs": 40,
    "fields": (
        (V1, 0x2006, F32, 100, 1), (V2, 0x2008, F32, 100, 1), (V3, 0x200A, F32, 100, 1),
        (A1, 0x200C, F32, 1, 1), (A2, 0x200E, F32, 1, 1), (A3, 0x2010, F32, 1, 1),
        (W, 0x2012, F32, 1, 10),
        (WH, 0x101E, F32, 1000, 1),
    ),
}
