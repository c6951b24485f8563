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
from evse import ticks_add

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


# The App's tick with the backend attached (journal, Bus), in steady C2:
# the bookkeeping added for the backend link allocates nothing either.
import os  # noqa: E402

from evse.app import App  # noqa: E402


class StubBoard:
    def __init__(self):
        self.level = 12000
        self.test = False
        self.closed = False

    def read(self, inp):
        inp.cp_high_mv = self.level
        inp.cp_low_mv = -12000
        inp.rcd = self.test
        inp.fb = self.closed

    def apply(self, o):
        self.test = o.rcd_test
        self.closed = o.contactor

    def safe(self):
        self.closed = False


class StubMeter:
    ok = True
    a_ma = 15800
    energy_wh = 1000

    def __init__(self):
        self.started = 0
        self.good_seq = 0

    def poll(self, now):
        self.started += 1
        self.good_seq = self.started


try:
    os.mkdir("/flash")
except OSError:
    pass
board = StubBoard()
app = App(board, config.validate({"max_current_a": 16, "mqtt_host": "b"}), now, StubMeter(),
          "/flash", backend=True)


def drive_app(level, n):
    global now
    board.level = level
    i = 0
    while i < n:
        now = ticks_add(now, 10)
        app.tick(now)
        i += 1


drive_app(9000, 100)
drive_app(6000, 400)
print("APPSTATE", app.out.state, app.out.contactor)
drive_app(6000, 2000)  # warm-up
gc.collect()
before = gc.mem_alloc()
drive_app(6000, 10000)
print("ALLOC APP_C2 %d %d" % (gc.mem_alloc() - before, 10000))
