"""Heap in use by the whole application, built as on the board: runs inside
the MicroPython WebAssembly port (bench/bench.py starts it):

    run.mjs --async --mount FWDIR=/fw --mount host_tests/fakes=/fakes
            --mount DATA=/flash --path /fw --path /fakes bench/mp_heap.py MINUTES

FWDIR holds the firmware either compiled to .mpy (evse/*.mpy, hw/*.mpy, and
main.py as source, as tools/deploy.py copies it) or as .py sources. DATA
holds board.json (esp32-devkitc), config.json (the defaults: an SDM630 at
9600 baud, RCD self-test on), meter.json (the SDM630's answer to the
poll's request, made on the host with tools/bench_meter.py's canned peer)
and rig.json (the CP front-end's transfer, from evse.profile).

The test rig (host_tests/fakes/heaprig.py: the fake `machine` of
host_tests/fakes/fakemachine.py, the canned meter behind the fake UART,
the vehicle's physics in the fake clock) is built first and its heap is
the baseline. Then what main.main() does, step by step: safe state from board.json, the emergency exception
buffer, the crash record, the firmware's import, profile and configuration
validation, board adapter, Modbus meter, App (hw/system.build); then the
control loop (hw/system.run) for MINUTES of fake time. The vehicle plugs
in at 5 s, asks for current at 10 s, unplugs 30 s before the end.
`RESULT key value` lines:

  heap_start     bytes in use after the build, less the baseline
  heap_session   the same after MINUTES of control steps (10 min: 60,000)
  heap_base      the baseline (interpreter and test rig)
  ticks, meter_requests, meter_good, sessions, state, ...

"In use" is gc.mem_alloc() after a collection. This port defers
gc.collect() until control is back at the JavaScript top level
(ports/webassembly/main.c: the collector cannot scan the WebAssembly
stack), so the script runs with top-level await (run.mjs --async) and
awaits before each reading.

bench/mp_heap_unix.py measures the same in the 32-bit unix port, where the
collector runs at once, with and without the backend link.
"""
import asyncio
import gc
import sys

import micropython

import fakemachine as fm
import heaprig

MINUTES = int(sys.argv[1]) if len(sys.argv) > 1 else 10
END_MS = MINUTES * 60000
ROOT = "/flash/"

clock, METER = heaprig.setup(ROOT, END_MS)  # host_tests/fakes/heaprig.py

lines = [0]


def out(line):
    lines[0] += 1


async def live_heap():
    """Bytes in use once the garbage is collected. This port defers
    gc.collect() until control is back at the JavaScript top level
    (ports/webassembly/main.c), hence the await."""
    gc.collect()
    await asyncio.sleep(0)
    return gc.mem_alloc()


base = await live_heap()  # noqa: F704  (run.mjs --async: top-level await)

# main.main() up to hw.system.run, step by step at the top level (so that
# the collector can run between the steps): safe state from board.json,
# the emergency exception buffer, crash record, firmware import, build.
from hw import boot as main  # noqa: E402  (main.py is a stub over hw/boot.py)

raw = main.early_safe(fm, ROOT)
try:
    micropython.alloc_emergency_exception_buf(100)
except AttributeError:  # not in this port (main.py ignores it likewise)
    pass
crash = main._read_json(ROOT + main.CRASH_FILE)
from hw import system  # noqa: E402

ctx = system.build(fm, clock, raw, ROOT + main.CONFIG_FILE, ROOT[:-1])
out("evse: board %s (%s), pwm full scale %d, cp burst %d samples x %d us"
    % (ctx.profile.name, ctx.profile.port, ctx.board.full, ctx.board.cp.n,
       ctx.board.cp.us_per_sample))
start = await live_heap()  # noqa: F704

# The control loop for MINUTES of fake time, a minute per hw.system.run
# call (each starts the watchdog again, as after a reset; the collector
# runs in between).
for minute in range(MINUTES):
    system.run(ctx, max_ticks=6000, out=out)
    await asyncio.sleep(0)  # noqa: F704
session = await live_heap()  # noqa: F704

st = {}
try:
    st = heaprig.load(ROOT + "state.json")
except OSError:
    pass
print("RESULT heap_base %d" % base)
print("RESULT heap_start %d" % (start - base))
print("RESULT heap_session %d" % (session - base))
print("RESULT ticks %d" % ctx.ticks)
print("RESULT fake_ms %d" % (fm.WORLD.t_us // 1000))
print("RESULT state %s" % ctx.app.out.state)
print("RESULT meter_requests %d" % METER.polls)
print("RESULT meter_good %d" % ctx.app.meter.good)
print("RESULT sessions %d" % st.get("session_seq", 0))
print("RESULT status_lines %d" % lines[0])
micropython.mem_info()
