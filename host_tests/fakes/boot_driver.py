"""Run firmware/main.py's main() on the fake machine in a fresh interpreter
and print what happened as one JSON line (host_tests/test_boot.py).

    boot_driver.py ROOT MAX_TICKS [FAIL_AFTER_READS EXC]
"""
import json
import sys

import fakemachine as fm

WATCH = ("hw.system", "hw.board", "evse.app", "evse.charger", "evse.config")

root, max_ticks = sys.argv[1], int(sys.argv[2])
raw = {}
try:
    f = open(root + "board.json")
    try:
        raw = json.load(f)
    finally:
        f.close()
except (OSError, ValueError):
    pass
w = fm.reset_world(raw.get("port", "esp32"))
w.watch = WATCH
try:  # the CP line of an unplugged vehicle (+12 V) through the board's divider
    from hw.profile import cp_transfer

    w.cp_zero_uv, w.cp_uv_per_v = cp_transfer(raw["cp"])
    w.cp_adc_pin = raw["cp"]["adc_pin"]
    w.adc_uv[raw["temp"]["adc_pin"]] = 900000 if raw["temp"]["type"] == "linear" else 1650000
    w.mains = (raw["pe"]["pin"],)
except (KeyError, TypeError):
    pass
if len(sys.argv) > 3:
    exc = {"OSError": OSError("adc gone"), "KeyboardInterrupt": KeyboardInterrupt()}[sys.argv[4]]
    fm.fail_adc_after(int(sys.argv[3]), exc)
lines = []
import main  # noqa: E402  (firmware/main.py: nothing runs at import)

assert not [m for m in WATCH if m in sys.modules]
result = None
try:
    result = main.main(machine=fm, clock=fm.Clock(), root=root, out=lines.append,
                       max_ticks=max_ticks)
except fm.FakeReset:
    result = "reset"
print(json.dumps({"result": result, "log": [list(e) for e in w.log], "lines": lines,
                  "feeds": w.feeds, "resets": w.resets, "t_ms": w.t_us // 1000}))
