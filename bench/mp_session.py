"""Heap allocated by the application over a whole charging session, inside
the MicroPython WebAssembly port (bench/bench.py starts it):

    run.mjs --async --mount FWDIR=/fw --mount tools/simcore=/sim/simcore
            --mount DATA=/scen --path /sim --path /fw bench/mp_session.py /scen/scenario.json

evse.app.App runs on the simulator's virtual board with the virtual Modbus
meter (the firmware's own Modbus master and meter catalogue on a virtual
UART at 9600 baud), every 10 ms tick of the scenario, in the order of the
simulator's runner (tools/simcore/runner.py) without its trace. After each
tick the firmware's status line is made as on the board's console
(hw/system.Context.status_line). Only what the firmware allocates is
counted: gc.mem_alloc() before and after each App.tick, App.command and
status_line call, less what the simulator's parts allocate inside a tick
(the virtual board's read/apply/safe and the virtual UART's write/any/
readinto are wrapped and measured the same way). This port collects only
back at the JavaScript top level (the loop awaits once a virtual second),
so a reading never goes down inside a call; `disturbed` counts calls where
it did all the same (expected 0).

`RESULT key value` lines: ticks, bytes (allocated by the App over the
session), ticks_alloc (ticks that allocated at all), max_tick (the
largest), steady_ticks / steady_bytes (ticks with no firmware event, no
session record and no status change, and what they allocated: goal 0), cmds / cmd_bytes,
status_lines / status_bytes, sim (what the simulator's parts allocated
inside ticks, not counted), sessions, meter_good.
"""
import asyncio
import gc
import json
import os
import sys

from hw.system import Context
from simcore import runner
from simcore.simapp import SimApp

counts = {"disturbed": 0, "sim": 0, "ticks": 0, "bytes": 0, "ticks_alloc": 0, "max_tick": 0, "steady_bytes": 0,
          "steady_ticks": 0, "cmd_bytes": 0, "cmds": 0, "status_bytes": 0, "status_lines": 0}


class SimBoard:
    """The virtual board, its allocations counted as the simulator's."""

    def __init__(self, board):
        self._read = board.read
        self._apply = board.apply
        self._safe = board.safe

    def read(self, inp):
        a0 = gc.mem_alloc()
        self._read(inp)
        counts["sim"] += gc.mem_alloc() - a0

    def apply(self, out):
        a0 = gc.mem_alloc()
        self._apply(out)
        counts["sim"] += gc.mem_alloc() - a0

    def safe(self):
        a0 = gc.mem_alloc()
        self._safe()
        counts["sim"] += gc.mem_alloc() - a0


class SimUart:
    """The virtual UART to the virtual meter, likewise."""

    def __init__(self, uart):
        self._write = uart.write
        self._any = uart.any
        self._readinto = uart.readinto

    def write(self, buf):
        a0 = gc.mem_alloc()
        r = self._write(buf)
        counts["sim"] += gc.mem_alloc() - a0
        return r

    def any(self):
        a0 = gc.mem_alloc()
        r = self._any()
        counts["sim"] += gc.mem_alloc() - a0
        return r

    def readinto(self, buf, n=None):
        a0 = gc.mem_alloc()
        r = self._readinto(buf, n)
        counts["sim"] += gc.mem_alloc() - a0
        return r


class MeasuredApp(SimApp):
    def __init__(self, board, cfg, now, meter=None, flash_dir=None, grid=None):
        if meter is not None:
            meter.master.transport = SimUart(meter.master.transport)
        SimApp.__init__(self, SimBoard(board), cfg, now, meter, flash_dir, grid=grid)
        self.ctx = Context(None, None, None, cfg, board, self)

    def tick(self, now):
        c = counts
        s0 = c["sim"]
        n_rec = self.done
        a0 = gc.mem_alloc()
        out = SimApp.tick(self, now)
        a1 = gc.mem_alloc()
        line = self.ctx.status_line()
        a2 = gc.mem_alloc()
        d = a1 - a0 - (c["sim"] - s0)
        if d < 0 or a2 < a1:
            c["disturbed"] += 1
        c["ticks"] += 1
        c["bytes"] += d
        if d:
            c["ticks_alloc"] += 1
            if d > c["max_tick"]:
                c["max_tick"] = d
        c["status_bytes"] += a2 - a1
        if line is not None:
            c["status_lines"] += 1
        elif not out.events and self.done == n_rec:
            # (a session's record is written a poll after its stop event)
            c["steady_ticks"] += 1
            c["steady_bytes"] += d
        return out

    def command(self, msg, now):
        a0 = gc.mem_alloc()
        r = SimApp.command(self, msg, now)
        d = gc.mem_alloc() - a0
        if d < 0:
            counts["disturbed"] += 1
        counts["cmd_bytes"] += d
        counts["cmds"] += 1
        return r


f = open(sys.argv[1])
scen = json.loads(f.read())
f.close()
try:
    os.mkdir("/flash")
except OSError:
    pass
runner.SimApp = MeasuredApp
sim = runner.Sim(scen, "/flash", None, realtime=True)
# The runner's tick (tools/simcore/runner.py, Sim.run) at every 10 ms, less
# the trace; in a top-level loop, so that the collector runs every second.
events = sim.events
n = len(events)
i = 0
board = sim.board
veh = board.vehicle
dev = sim.device
T = 0
prev = 0
sim.boot(0)
gc.collect()
await asyncio.sleep(0)  # noqa: F704  (run.mjs --async: top-level await)
while T <= sim.end:
    if dev is not None:
        dev.integrate(T - prev, veh.draw_ma, board.phases())
    replies = []
    while i < n and events[i]["t"] <= T:
        sim._apply(events[i], T, replies)
        i += 1
    app = sim.app
    if app is not None:
        app.tick(T & runner.TICKS_MASK)
        if app.reboot_requested:
            sim.boot(T)
    board.update_vehicle(T)
    if dev is not None:
        dev.set_current(veh.draw_ma if board.flowing() else 0)
    prev = T
    T += runner.TICK_MS
    if T % 1000 == 0:
        gc.collect()
        await asyncio.sleep(0)  # noqa: F704
for k in sorted(counts):
    print("RESULT %s %d" % (k, counts[k]))
print("RESULT sessions %d" % sim.app.charger.session_seq)
print("RESULT records %d" % sim.app.done)
print("RESULT meter_good %d" % sim.app.meter.good)
