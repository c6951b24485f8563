"""The control step and the firmware's import footprint inside the
MicroPython WebAssembly port (bench/bench.py starts it):

    run.mjs --async --mount FWDIR=/fw --mount bench=/bench --path /fw --path /bench
            bench/mp_step.py STEPS MODULE...

In a fresh interpreter, first the heap each firmware module takes when
imported (gc.collect(); gc.mem_alloc() around each import, in dependency
order, so each figure is the module's own; this port runs a collection
only back at the JavaScript top level, hence the top-level awaits), then bench/board_bench.py's
steady-C2 rig: STEPS steps timed one by one, and STEPS more with the heap
measured. Prints `RESULT key value` lines.

Clocks: this port's time.ticks_us() counts whole milliseconds (the port
reads Date.now()), far too coarse for a step of some 10 us. Single steps
are timed with the JavaScript performance.now() (sub-microsecond; its
cost, about 8 us, is measured and subtracted); time.ticks_us() times the
whole run, for the mean per step.
"""
import asyncio
import gc
import sys
import time

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
# the firmware's modules in dependency order (bench/bench.py import_order())
MODULES = sys.argv[2:]

gc.collect()
await asyncio.sleep(0)  # noqa: F704  (run.mjs --async: top-level await)
total = 0
for name in MODULES:
    before = gc.mem_alloc()
    __import__(name)
    gc.collect()
    await asyncio.sleep(0)  # noqa: F704
    used = gc.mem_alloc() - before
    total += used
    print("RESULT import %s %d" % (name, used))
print("RESULT import_total %d" % total)

import board_bench as bb  # noqa: E402

rig = bb.C2()
try:
    import js

    _now = js.performance.now

    def clock():  # 0.1 us units
        return int(_now() * 10000)

    units = 10
    print("RESULT clock performance.now")
except ImportError:  # a port without the js module: its own ticks_us
    clock = time.ticks_us
    units = 1
    print("RESULT clock time.ticks_us")

st = bb.step_stats(rig, STEPS, clock, units)
for k in ("median_us", "p99_us", "max_us", "clock_cost_us", "steps"):
    print("RESULT step_%s %s" % (k, st[k]))
gc.collect()
t0 = time.ticks_us()
rig.drive(6000, STEPS)
print("RESULT step_mean_us_ticks %.3f" % (time.ticks_diff(time.ticks_us(), t0) / STEPS))
print("RESULT step_alloc_bytes %d" % bb.step_alloc(rig, STEPS))
print("RESULT state %s" % rig.ch.out.state)
