"""Heap allocation of the control step, measured inside real MicroPython.

Run by test_micropython_alloc.py in the WebAssembly port. Prints one line
`ALLOC <phase> <bytes> <steps>` per measured phase. The charger is driven
into the phase with a rig of plain attribute stores (which allocate nothing
themselves); each phase is measured after one warm-up pass, because the first
pass through a code path may allocate once (interned attributes, caches).
"""
import gc

from evse import config
from evse.charger import Charger
from evse.ticks import ticks_add

ch = Charger(config.validate({"max_current_a": 16}), 0)
inp = ch.inp
out = ch.out
now = 0


def drive(high_mv, n):
    global now
    i = 0
    while i < n:
        now = ticks_add(now, 10)
        inp.cp_high_mv = high_mv
        inp.rcd = out.rcd_test
        inp.fb = out.contactor
        ch.step(now)
        i += 1


def measure(name, high_mv, n):
    drive(high_mv, n)  # warm-up
    ch.take_events()
    gc.collect()
    before = gc.mem_alloc()
    drive(high_mv, n)
    used = gc.mem_alloc() - before
    print("ALLOC %s %d %d" % (name, used, n))


inp.meter_ok = True
inp.ev_ma = 15800
inp.temp_dc = 350
measure("A", 12000, 2000)
drive(9000, 100)
measure("B2", 9000, 2000)
drive(6000, 100)
print("STATE", out.state, out.contactor)
measure("C2", 6000, 10000)
