"""Entry point inside MicroPython's unix port (tools/sim.py --micropython unix).

    MICROPYPATH=firmware:tools[:build/umqtt-<v>] micropython \\
        tools/simcore/mp_unix.py SCENARIO.json FLASH_DIR [realtime] [net]

The scenario is the normalized one sim.py validated (integers only);
FLASH_DIR an empty folder (the board's flash). As mp_main.py: each trace
line is printed with the prefix "@T ", the last line is "@END n". In real
time it also prints "@GAPS steps max_ms max_at_ms over_50ms" (the wall-clock
time between control steps) and, with `net` (the firmware's Link against
a broker, tools/simcore/unixnet.py), "@LINKS boots connects last_error".
"""
import json
import sys
import time

from simcore.runner import Sim

GOAL_US = 50000


class Gaps:
    def __init__(self):
        self.last = None
        self.steps = 0
        self.max_us = 0
        self.max_at = 0
        self.over = 0

    def step(self, T):
        now = time.ticks_us()
        if self.last is not None:
            g = time.ticks_diff(now, self.last)
            if g > self.max_us:
                self.max_us = g
                self.max_at = T
            if g > GOAL_US:
                self.over += 1
        self.last = now
        self.steps += 1


def main(path, flash, realtime, with_net):
    f = open(path)
    try:
        scen = json.loads(f.read())
    finally:
        f.close()
    wr = sys.stdout.write

    def emit(text):
        wr("@T ")
        wr(text)
        wr("\n")

    wait = None
    gaps = None
    if realtime:
        gaps = Gaps()
        t0 = time.ticks_ms()

        def wait(T):
            d = time.ticks_diff(time.ticks_add(t0, T), time.ticks_ms())
            if d > 0:
                time.sleep_ms(d)
            gaps.step(T)

    net = None
    if with_net:
        from simcore.unixnet import UnixNet

        net = UnixNet()
    try:
        sim = Sim(scen, flash, emit, realtime=realtime, wait=wait, net=net).run()
    finally:
        if net is not None:
            net.close()
    if gaps is not None:
        print("@GAPS %d %d %d %d" % (gaps.steps, gaps.max_us, gaps.max_at, gaps.over))
    if net is not None:
        ls = net.links
        err = ls[-1].last_error if ls and ls[-1].last_error else "none"
        print("@LINKS %d %d %s" % (len(ls), sum([l.connects for l in ls]), err))
    print("@END %d" % sim.lines)


main(sys.argv[1], sys.argv[2], "realtime" in sys.argv[3:], "net" in sys.argv[3:])
