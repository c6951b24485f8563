"""Heap allocation of the meter poll, measured inside real MicroPython.

Run by test_micropython_alloc.py in the WebAssembly port, with the core
cases mounted (their hand-written register images, test_core_meter.IMAGES).
For every catalogue profile a Meter polls a canned peer every 20 ms (the
control tick is 10 ms); after a warm-up pass, gc.mem_alloc() is compared
before and after POLLS more polls. The peer itself allocates nothing: it
finds the request among prebuilt ones and copies a prebuilt answer byte by
byte. Prints `MALLOC <profile> <bytes> <polls> ok` per profile, and the
same for a silent peer and one whose answers have a bad CRC (failed polls,
retries and timeouts allocate nothing either).
"""
import gc

from busfake import read_answer
from test_core_meter import IMAGES

from evse import meter, meter_maps
from evse import modbus
from evse.meter import Meter

POLLS = 300


class Canned:
    def __init__(self, profile, unit, regs):
        self.reqs = []
        self.answers = []
        p = meter_maps.load(profile)
        for start, count in meter.plan_blocks(p["fields"], p["max_regs"]):
            req = bytearray(8)
            modbus.build_read(req, unit, p["fc"], start, count)
            self.reqs.append(req)
            self.answers.append(bytearray(read_answer(
                unit, p["fc"], [regs.get(start + i, 0) for i in range(count)])))
        self.cur = None
        self.pos = 0

    def write(self, buf):
        self.cur = None
        for k in range(len(self.reqs)):
            r = self.reqs[k]
            i = 0
            while i < 8 and r[i] == buf[i]:
                i += 1
            if i == 8:
                self.cur = self.answers[k]
                self.pos = 0
        return 8

    def any(self):
        if self.cur is None:
            return 0
        return len(self.cur) - self.pos

    def readinto(self, buf, n):
        a = self.cur
        p = self.pos
        for i in range(n):
            buf[i] = a[p + i]
        self.pos = p + n
        return n


def run(m, now, polls):
    target = m.polls + polls
    while m.polls < target:
        now += 10
        m.poll(now)
    return now


def measure(label, m, check):
    now = run(m, 0, 20)  # warm-up
    gc.collect()
    before = gc.mem_alloc()
    run(m, now, POLLS)
    used = gc.mem_alloc() - before
    print("MALLOC %s %d %d %s" % (label, used, POLLS, "ok" if check(m) else "BAD"))


for name in meter_maps.NAMES:
    fc, regs, mv, ma, w, wh = IMAGES[name]
    m = Meter(name, Canned(name, 9, regs), unit=9, poll_ms=20)
    measure(name, m, lambda m: m.ok and m.energy_wh == wh and m.polls == m.good)

silent = Canned("sdm630", 9, IMAGES["sdm630"][1])
silent.answers = [None]
measure("silent", Meter("sdm630", silent, unit=9, poll_ms=20),
        lambda m: not m.ok and m.good == 0 and m.master.n_timeout >= 2 * POLLS)
garbled = Canned("abb_b23", 9, IMAGES["abb_b23"][1])
for a in garbled.answers:
    a[-1] ^= 0x55
measure("crc", Meter("abb_b23", garbled, unit=9, poll_ms=20),
        lambda m: not m.ok and m.good == 0 and m.master.n_crc >= 2 * POLLS)
