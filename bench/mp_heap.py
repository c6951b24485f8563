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

The test rig (the fake `machine` of host_tests/fakes/fakemachine.py, the
canned meter behind the fake UART, the vehicle's physics in the fake
clock) is built first and its heap is the baseline. Then what main.main()
does, step by step: safe state from board.json, the emergency exception
buffer, the crash record, the firmware's import, profile and configuration
validation, board adapter, Modbus meter, App (hw/system.build); then the
control loop (hw/system.run) for MINUTES of fake time. The vehicle plugs
in at 5 s, asks for current at 10 s, unplugs 30 s before the end.
`RESULT key value` lines:

  heap_start     bytes in use after the build, less the baseline
  heap_session   the same after MINUTES of control steps (10 min: 60,000)
  heap_base      the baseline (interpreter and test rig)
  ticks, meter_requests, meter_good, sessions, records, state, ...

"In use" is gc.mem_alloc() after a collection. This port defers
gc.collect() until control is back at the JavaScript top level
(ports/webassembly/main.c: the collector cannot scan the WebAssembly
stack), so the script runs with top-level await (run.mjs --async) and
awaits before each reading.

The fake ADC takes 100 us per read here (25 us on an ESP32), so the CP
burst is 12 samples instead of 48: only to save wall time; the burst's
buffer is preallocated at 160 samples whatever its length.
"""
import asyncio
import gc
import json
import sys

import micropython

import fakemachine as fm

MINUTES = int(sys.argv[1]) if len(sys.argv) > 1 else 10
END_MS = MINUTES * 60000
ROOT = "/flash/"


def _load(name):
    f = open(ROOT + name)
    try:
        return json.loads(f.read())
    finally:
        f.close()


PROFILE = _load("board.json")
RIG = _load("rig.json")  # the CP front-end's transfer, from evse.profile on the host
_canned = _load("meter.json")  # request hex -> answer hex
REQ = []
ANS = []
for _k in _canned:
    REQ.append(bytes(bytearray([int(_k[i:i + 2], 16) for i in range(0, len(_k), 2)])))
    _v = _canned[_k]
    ANS.append(bytes(bytearray([int(_v[i:i + 2], 16) for i in range(0, len(_v), 2)])))
del _canned, _k, _v
CHAR_US = 1042  # 10 bits at 9600 baud
SILENCE_US = 3646
REACT_US = 2000


class CannedMeter:
    """The meter on the RS-485 bus, on the fake clock: after a request its
    answer arrives byte by byte at 9600 baud (3.5 characters of silence
    plus 2 ms after the request's last byte)."""

    def __init__(self):
        self.cur = None
        self.t_req = 0
        self.pos = 0
        self.polls = 0

    def write(self, buf):
        self.cur = None
        for i in range(len(REQ)):
            if REQ[i] == buf:
                self.cur = ANS[i]
        self.t_req = fm.WORLD.t_us + len(buf) * CHAR_US + SILENCE_US + REACT_US
        self.pos = 0
        self.polls += 1
        return len(buf)

    def txdone(self):
        return True

    def any(self):
        a = self.cur
        if a is None:
            return 0
        n = (fm.WORLD.t_us - self.t_req) // CHAR_US
        if n > len(a):
            n = len(a)
        return n - self.pos if n > self.pos else 0

    def readinto(self, buf, n=None):
        a = self.cur
        p = self.pos
        for i in range(n):
            buf[i] = a[p + i]
        self.pos = p + n
        return n


METER = CannedMeter()


def _uart(uart_id, **kw):
    return METER


fm.UART = _uart

w = fm.reset_world(PROFILE["port"])
w.record = False
w.us_per_read = 100
w.cp_adc_pin = PROFILE["cp"]["adc_pin"]
w.cp_zero_uv = RIG["cp_zero_uv"]
w.cp_uv_per_v = RIG["cp_uv_per_v"]
w.noise_uv = 3000
PP = PROFILE.get("pp")
TEMP = PROFILE.get("temp")
if PP:
    w.adc_uv[PP["adc_pin"]] = 3300000  # no PP resistor (a tethered cable)
if TEMP:
    w.adc_uv[TEMP["adc_pin"]] = 900000 if TEMP["type"] == "linear" else 1650000
if PROFILE.get("pe"):
    w.mains = (PROFILE["pe"]["pin"],)
_K = PROFILE["contactor"][0]
_K_ON = 0 if _K["active"] == "low" else 1
_MIRROR = PROFILE.get("mirror")
_RCD = PROFILE.get("rcd")
_RT = _RCD.get("test") if _RCD else None

class BenchClock(fm.Clock):
    """The fake clock, plus the physics between two ticks: the mirror
    contact follows the contactor, the RCD test winding trips the RCD, and
    the vehicle follows its plan."""

    def sleep_ms(self, ms):
        fm.Clock.sleep_ms(self, ms)
        w = fm.WORLD
        closed = w.levels.get(_K["pin"], 1 - _K_ON) == _K_ON
        if _MIRROR:
            w.inputs[_MIRROR["pin"]] = (0 if closed else 1) if _MIRROR["active"] == "low" \
                else (1 if closed else 0)
        if _RT:
            on = w.levels.get(_RT["pin"], 0) == (0 if _RT["active"] == "low" else 1)
            w.inputs[_RCD["pin"]] = (1 if on else 0) if _RCD["active"] == "high" else \
                (0 if on else 1)
        t = w.t_us // 1000
        if t < 5000 or t >= END_MS - 30000:
            w.cp_hi_mv = 12000
        elif t < 10000 or t >= END_MS - 35000:
            w.cp_hi_mv = 9000
        else:
            w.cp_hi_mv = 6000


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

clock = BenchClock()
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
    st = _load("state.json")
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
print("RESULT records %d" % len(ctx.app.records))
print("RESULT status_lines %d" % lines[0])
micropython.mem_info()
