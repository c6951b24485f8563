"""Heap allocation of the board adapter's read()/apply() and its interrupt
handlers, measured inside real MicroPython (WebAssembly port) on the fake
machine (host_tests/fakes/fakemachine.py, recording switched off).

Prints `ALLOC <phase> <bytes> <calls>` per phase and `ISR <name> ok` when a
handler ran 1000 times with the heap locked (an allocation would raise
MemoryError). Each phase is measured after a warm-up pass.
"""
import gc
import json
import sys

import micropython

import fakemachine as fm
from hw import profile as bp
from evse.charger import PILOT_HIGH, PILOT_LOW, PILOT_PWM, Inputs, Outputs
from hw.board import Board

name = sys.argv[1] if len(sys.argv) > 1 else "esp32-devkitc"
f = open("/boards/" + name + ".json")
raw = json.loads(f.read())
f.close()
prof = bp.validate(raw)
w = fm.reset_world(prof.port)
w.cp_zero_uv, w.cp_uv_per_v = bp.cp_transfer(prof.d["cp"])
w.cp_adc_pin = prof.d["cp"]["adc_pin"]
w.noise_uv = 3000
if raw.get("pp"):
    w.adc_uv[raw["pp"]["adc_pin"]] = 600000
if raw.get("temp"):
    w.adc_uv[raw["temp"]["adc_pin"]] = 800000
clock = fm.Clock()
board = Board(fm, prof, clock)
w.record = False
inp = Inputs()
out = Outputs()


def drive(n, pilot, duty, contactor, hi_mv):
    i = 0
    while i < n:
        out.pilot = pilot
        out.duty = duty
        out.contactor = contactor
        w.cp_hi_mv = hi_mv
        board.read(inp)
        board.apply(out)
        clock.sleep_ms(10)
        i += 1


def measure(label, n, pilot, duty, contactor, hi_mv):
    drive(n, pilot, duty, contactor, hi_mv)  # warm-up (temperature read included)
    gc.collect()
    before = gc.mem_alloc()
    drive(n, pilot, duty, contactor, hi_mv)
    print("ALLOC %s %d %d" % (label, gc.mem_alloc() - before, n))


measure("A", 150, PILOT_HIGH, 10000, False, 12000)
measure("B2", 150, PILOT_PWM, 2666, False, 9000)
measure("C2", 150, PILOT_PWM, 2666, True, 6000)
measure("F", 150, PILOT_LOW, 0, False, -12000)
print("CP %d %d %d" % (inp.cp_high_mv, inp.cp_low_mv, board.cp.n))

# The whole loop of hw/system.run (control step, supervisor, button, status
# line) in steady state A: the allocation of N ticks must not grow with N.
from hw import system

w.record = False
w.mains = (raw["pe"]["pin"],) if raw.get("pe") else ()
if raw.get("mirror"):  # contacts open
    w.inputs[raw["mirror"]["pin"]] = 1 if raw["mirror"]["active"] == "low" else 0
cfg_path = "/tmp-config.json"
f = open(cfg_path, "w")
f.write('{"rcd_selftest": false, "meter": null}')  # the meter's own test: mp_meter_alloc
f.close()
ctx = system.build(fm, clock, raw, cfg_path, "")
w.cp_hi_mv = 12000
lines = []
system.run(ctx, max_ticks=150, out=lines.append)  # warm-up (and the WDT)
gc.collect()
before = gc.mem_alloc()
system.run(ctx, max_ticks=100, out=lines.append)
small = gc.mem_alloc() - before
gc.collect()
before = gc.mem_alloc()
system.run(ctx, max_ticks=600, out=lines.append)
large = gc.mem_alloc() - before
print("LOOP %d %d %s" % (small, large, ctx.app.out.state))

for pin in sorted(w.irqs):
    handler = w.irqs[pin][0]
    handler(None)  # warm-up
    micropython.heap_lock()
    try:
        i = 0
        while i < 1000:
            handler(None)
            i += 1
    finally:
        micropython.heap_unlock()
    print("ISR %s ok" % pin)
