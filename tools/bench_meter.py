#!/usr/bin/env python3
"""Benchmark one full meter poll of every catalogue profile.

    .venv/bin/python tools/bench_meter.py [--baud 9600] [--parity N]
                                          [--repeat 3] [--json FILE] [--micropython]

For each profile, one poll of the firmware's evse.meter.Meter (the reads
the catalogue plans, the Modbus master, the decoding):

  reads, regs      read requests per poll, registers they carry
  need             registers of the values themselves (the rest are gaps
                   read to keep to the fewest reads)
  out, in, total   bytes on the wire: requests, answers, both
  wire min         the physical minimum for those bytes: total x bits per
                   character / baud (10 bits for 8N1; 11 for 8E1, 8O1, 8N2)
  +silence         plus the 3.5-character silences the protocol requires
                   between frames (2 x reads - 1 of them; 1.75 ms above 19200)
  tick 10 ms       the poll in virtual time at the board's 10 ms control
                   tick, on the simulator's virtual meter (the wire time of
                   every byte, 2 ms meter reaction per read)
  wall             the same poll in real time: a paced transport releases
                   each byte when its wire time has passed on the wall clock,
                   the Meter is polled every 10 ms (median of --repeat runs)
  vs min           wall / wire min
  CPU/poll         the firmware's CPU time per poll (CPython), from polls of a
                   peer that answers at once; with --micropython also in the
                   MicroPython WebAssembly port

Prints the table, and the same as JSON with --json FILE ("-": stdout).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in reversed((os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "host"),
                    os.path.join(ROOT, "tools"))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from evse import meter as _meter  # noqa: E402
from evse import meter_maps as _maps  # noqa: E402
from evse import modbus as _mb  # noqa: E402
from evse.meter import Meter  # noqa: E402
from simcore.meter import MeterDevice, VirtualUart  # noqa: E402

TICK_MS = 10


def wire(profile, baud, parity):
    """Bytes and the physical minimum of one poll."""
    p = _maps.load(profile)
    blocks = _meter.plan_blocks(p["fields"], p["max_regs"])
    bits = _mb.char_bits(parity)
    out = 8 * len(blocks)
    inb = sum(_mb.response_length(p["fc"], n) for _, n in blocks)
    min_ms = (out + inb) * bits * 1000.0 / baud
    silences = (2 * len(blocks) - 1) * _mb.silence_us(baud, bits) / 1000.0
    return {
        "profile": profile, "reads": len(blocks), "regs": sum(n for _, n in blocks),
        "regs_needed": sum(_meter.WIDTH[f[2]] for f in p["fields"]),
        "bytes_out": out, "bytes_in": inb, "bytes": out + inb, "bits_per_char": bits,
        "wire_min_ms": round(min_ms, 2), "with_silences_ms": round(min_ms + silences, 2),
    }


def virtual_poll_ms(profile, baud, parity):
    """One poll at the 10 ms control tick, in the simulator's virtual time."""
    dev = MeterDevice(profile, 1, baud, parity)
    dev.set_current(16000)
    m = Meter(profile, VirtualUart(dev), baud=baud, parity=parity)
    t = 0
    while True:
        m.poll(t)
        if m.polls:
            break
        t += TICK_MS
        dev.integrate(TICK_MS, 16000, 3)
    assert m.last_good, profile
    return t


class _Paced(VirtualUart):
    """The virtual meter on the wall clock: its clock follows time.monotonic()."""

    def __init__(self, device, t0):
        super().__init__(device)
        self.t0 = t0

    def _sync(self):
        self.device.t_ms = int((time.monotonic() - self.t0) * 1000)

    def write(self, buf):
        self._sync()
        return super().write(buf)

    def any(self):
        self._sync()
        return super().any()


def wall_poll_ms(profile, baud, parity):
    """One poll in real time, polled every 10 ms; ms from its start to its values."""
    dev = MeterDevice(profile, 1, baud, parity)
    uart = _Paced(dev, 0.0)
    m = Meter(profile, uart, baud=baud, parity=parity)
    start = t0 = uart.t0 = time.monotonic()
    nxt = start
    while time.monotonic() - start < 10:
        m.poll(int((time.monotonic() - t0) * 1000))
        if m.polls:
            break
        nxt += TICK_MS / 1000.0
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
    assert m.last_good, profile
    return (time.monotonic() - start) * 1000.0


class _Instant:
    """Answers every request of a profile at once with a prebuilt frame."""

    def __init__(self, profile):
        dev = MeterDevice(profile)
        dev.set_current(16000)
        p = _maps.load(profile)
        self.answers = {}
        for start, count in _meter.plan_blocks(p["fields"], p["max_regs"]):
            req = bytearray(8)
            _mb.build_read(req, 1, p["fc"], start, count)
            dev.receive(bytes(req))
            dev.integrate(10000, 0, 3)
            buf = bytearray(256)
            n = dev.read(buf, dev.available())
            self.answers[bytes(req)] = bytes(buf[:n])
        self.rx = b""

    def write(self, buf):
        self.rx = self.answers.get(bytes(buf), b"")
        return len(buf)

    def any(self):
        return len(self.rx)

    def readinto(self, buf, n):
        buf[0:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n


def cpu_us_per_poll(profile, polls=300):
    m = Meter(profile, _Instant(profile), poll_ms=TICK_MS)
    t = 0
    c0 = time.process_time()
    while m.good < polls:
        m.poll(t)
        t += TICK_MS
    return (time.process_time() - c0) * 1e6 / polls


_MP_SCRIPT = '''
import time
from evse import meter_maps, modbus
from evse.meter import Meter
answers = %r

class Instant:
    def __init__(self, frames):
        self.frames = frames
        self.rx = b""
    def write(self, buf):
        self.rx = self.frames.get(bytes(buf), b"")
        return len(buf)
    def any(self):
        return len(self.rx)
    def readinto(self, buf, n):
        for i in range(n):
            buf[i] = self.rx[i]
        self.rx = self.rx[n:]
        return n

for name in meter_maps.NAMES:
    m = Meter(name, Instant(answers[name]), poll_ms=10)
    t = 0
    while m.good < 20:
        m.poll(t)
        t += 10
    t0 = time.ticks_us()
    while m.good < 520:
        m.poll(t)
        t += 10
    print("MPCPU", name, time.ticks_diff(time.ticks_us(), t0) / 500)
'''


def micropython_cpu_us():
    """{profile: us per poll} in the MicroPython WebAssembly port."""
    if shutil.which("node") is None or not os.path.isdir(
            os.path.join(ROOT, "tools", "wasm", "node_modules")):
        raise RuntimeError("the MicroPython WebAssembly port is not installed (make setup)")
    answers = dict((n, _Instant(n).answers) for n in _maps.NAMES)
    d = tempfile.mkdtemp(prefix="bench-meter-")
    try:
        script = os.path.join(d, "bench.py")
        with open(script, "w") as f:
            f.write(_MP_SCRIPT % (answers,))
        r = subprocess.run(["node", os.path.join(ROOT, "tools", "wasm", "run.mjs"),
                            "--mount", "%s=/fw" % os.path.join(ROOT, "firmware"),
                            "--path", "/fw", script], capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError("MicroPython run failed: %s" % r.stderr.strip())
        out = {}
        for line in r.stdout.splitlines():
            if line.startswith("MPCPU "):
                _, name, us = line.split()
                out[name] = float(us)
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(baud=9600, parity="N", repeat=3, micropython=False):
    rows = []
    mp = micropython_cpu_us() if micropython else {}
    for name in _maps.NAMES:
        r = wire(name, baud, parity)
        r["tick10_ms"] = virtual_poll_ms(name, baud, parity)
        walls = [wall_poll_ms(name, baud, parity) for _ in range(repeat)]
        r["wall_ms"] = round(statistics.median(walls), 1)
        r["wall_vs_min"] = round(r["wall_ms"] / r["wire_min_ms"], 2)
        r["cpu_us_cpython"] = round(cpu_us_per_poll(name), 1)
        if mp:
            r["cpu_us_micropython"] = round(mp[name], 1)
        rows.append(r)
    return {"baud": baud, "parity": parity, "bits_per_char": _mb.char_bits(parity),
            "char_us": round(_mb.char_bits(parity) * 1e6 / baud, 1),
            "silence_us": _mb.silence_us(baud, _mb.char_bits(parity)),
            "tick_ms": TICK_MS, "meter_reaction_ms": 2, "profiles": rows}


def table(res):
    mp = any("cpu_us_micropython" in r for r in res["profiles"])
    lines = ["One meter poll at %d baud 8%s1 (%d bits per character, %.1f us; t3.5 = %d us)"
             % (res["baud"], res["parity"], res["bits_per_char"], res["char_us"],
                res["silence_us"]),
             ""]
    head = ("| profile | reads | regs | need | out | in | total | wire min | +silence | tick 10 ms "
            "| wall | vs min | CPU/poll CPython |" + (" CPU/poll MicroPython |" if mp else ""))
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    for r in res["profiles"]:
        row = ("| %s | %d | %d | %d | %d | %d | %d | %.1f ms | %.1f ms | %d ms | %.1f ms | %.2f | "
               "%.0f us |" % (r["profile"], r["reads"], r["regs"], r["regs_needed"], r["bytes_out"],
                              r["bytes_in"], r["bytes"], r["wire_min_ms"],
                              r["with_silences_ms"], r["tick10_ms"], r["wall_ms"],
                              r["wall_vs_min"], r["cpu_us_cpython"]))
        if mp:
            row += " %.0f us |" % r["cpu_us_micropython"]
        lines.append(row)
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench_meter.py", description=__doc__.split("\n")[0])
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--parity", default="N", choices=("N", "E", "O"))
    p.add_argument("--repeat", type=int, default=3, help="real-time runs per profile")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-': stdout)")
    p.add_argument("--micropython", action="store_true",
                   help="also measure the CPU per poll in the MicroPython WebAssembly port")
    a = p.parse_args(argv)
    res = run(a.baud, a.parity, max(1, a.repeat), a.micropython)
    if a.json == "-":
        print(json.dumps(res, indent=1))
        return 0
    print("\n".join(table(res)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
