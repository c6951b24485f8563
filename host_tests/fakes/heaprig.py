"""The board, vehicle and meter that the heap measurements run the firmware
on (bench/mp_heap.py in the WebAssembly port, bench/mp_heap_unix.py and
host_tests/test_micropython_heap.py in the unix port). Runs under
MicroPython; it is part of the test rig, so its heap is in the baseline.

`setup(root, end_ms)` reads ROOT/board.json (the profile), ROOT/rig.json
(the CP front-end's transfer, from evse.profile on the host) and
ROOT/meter.json (the canned meter's answers: request hex -> answer hex),
sets up host_tests/fakes/fakemachine.py's world for that board and returns
(clock, meter): a fake clock whose sleep_ms also moves the physics between
two ticks (mirror contact follows the contactor, the RCD test winding trips
the RCD, the vehicle follows its plan: plugs in at 5 s, asks for current at
10 s, stops asking 35 s and unplugs 30 s before end_ms), and the canned
meter behind the fake UART.

The fake ADC takes 100 us per read here (25 us on an ESP32), so the CP
burst is 12 samples instead of 48: only to save wall time; the burst's
buffer is preallocated at 160 samples whatever its length.
"""
import json

import fakemachine as fm

CHAR_US = 1042  # 10 bits at 9600 baud
SILENCE_US = 3646  # 3.5 characters
REACT_US = 2000  # the meter's reaction time


def load(path):
    f = open(path)
    try:
        return json.loads(f.read())
    finally:
        f.close()


def _unhex(s):
    return bytes(bytearray([int(s[i:i + 2], 16) for i in range(0, len(s), 2)]))


class CannedMeter:
    """The meter on the RS-485 bus, on the fake clock: after a request its
    answer arrives byte by byte at 9600 baud (3.5 characters of silence
    plus 2 ms after the request's last byte)."""

    def __init__(self, canned):
        self.req = []
        self.ans = []
        for k in canned:
            self.req.append(_unhex(k))
            self.ans.append(_unhex(canned[k]))
        self.cur = None
        self.t_req = 0
        self.pos = 0
        self.polls = 0

    def write(self, buf):
        self.cur = None
        for i in range(len(self.req)):
            if self.req[i] == buf:
                self.cur = self.ans[i]
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


class RigClock(fm.Clock):
    """The fake clock, plus the physics between two ticks; `hook()`, when
    set, runs after each sleep (the unix driver steps the MQTT link there)."""

    def __init__(self, profile, end_ms):
        self.end_ms = end_ms
        self.k = profile["contactor"][0]
        self.k_on = 0 if self.k["active"] == "low" else 1
        self.mirror = profile.get("mirror")
        self.rcd = profile.get("rcd")
        self.rt = self.rcd.get("test") if self.rcd else None
        self.hook = None

    def sleep_ms(self, ms):
        fm.Clock.sleep_ms(self, ms)
        w = fm.WORLD
        closed = w.levels.get(self.k["pin"], 1 - self.k_on) == self.k_on
        m = self.mirror
        if m:
            w.inputs[m["pin"]] = (0 if closed else 1) if m["active"] == "low" \
                else (1 if closed else 0)
        rt = self.rt
        if rt:
            on = w.levels.get(rt["pin"], 0) == (0 if rt["active"] == "low" else 1)
            w.inputs[self.rcd["pin"]] = (1 if on else 0) if self.rcd["active"] == "high" \
                else (0 if on else 1)
        t = w.t_us // 1000
        end = self.end_ms
        if t < 5000 or t >= end - 30000:
            w.cp_hi_mv = 12000
        elif t < 10000 or t >= end - 35000:
            w.cp_hi_mv = 9000
        else:
            w.cp_hi_mv = 6000
        if self.hook is not None:
            self.hook()


def setup(root, end_ms):
    profile = load(root + "board.json")
    rig = load(root + "rig.json")
    meter = CannedMeter(load(root + "meter.json"))

    def _uart(uart_id, **kw):
        return meter

    fm.UART = _uart
    w = fm.reset_world(profile["port"])
    w.record = False
    fm.static_pins(range(40 if profile["port"] == "esp32" else 30))  # GPIO numbers
    w.us_per_read = 100
    w.cp_adc_pin = profile["cp"]["adc_pin"]
    w.cp_zero_uv = rig["cp_zero_uv"]
    w.cp_uv_per_v = rig["cp_uv_per_v"]
    w.noise_uv = 3000
    pp = profile.get("pp")
    temp = profile.get("temp")
    if pp:
        w.adc_uv[pp["adc_pin"]] = 3300000  # no PP resistor (a tethered cable)
    if temp:
        w.adc_uv[temp["adc_pin"]] = 900000 if temp["type"] == "linear" else 1650000
    if profile.get("pe"):
        w.mains = (profile["pe"]["pin"],)
    return RigClock(profile, end_ms), meter
