#!/usr/bin/env python3
"""Read an energy meter once, through the firmware's own Modbus code.

    .venv/bin/python tools/meter.py --port PORT --profile NAME --unit N
                                    [--baud 9600] [--parity N]
    .venv/bin/python tools/meter.py --list

For installers at the bench: a USB RS-485 adapter on PORT, the meter wired
to it. The read is one poll of evse.meter.Meter (the catalogue profile, the
Modbus RTU master, the decoding: the code the charger runs) over the host
serial port (pyserial). On success it prints one JSON object on stdout,

    {"v": [230.1, 229.8, 231.0], "a": [16.02, 15.98, 16.0], "w": 11040, "energy_wh": 1234567}

volts and amperes per phase (one value for a single-phase meter; null for a
value the meter does not report), total active power in W and the import
energy register in Wh, and exits 0. A meter that does not answer, or
answers garbage or an exception, gives exit code 1 within a few seconds and
one line on stderr saying what came back; a bad command line exits 2.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in reversed((os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "host"))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from evse import meter as _meter  # noqa: E402
from evse import meter_maps as _maps  # noqa: E402
from evse import modbus as _modbus  # noqa: E402
from modbus_tools import describe, kind  # noqa: E402
from evse.config_schema import METER_BAUDS  # noqa: E402
from evse.meter import Meter  # noqa: E402
from evse import ticks_ms  # noqa: E402

READ_LIMIT_S = 5.0  # wall-clock bound on one read, whatever the line does


class SerialTransport:
    """evse.modbus's transport API on a pyserial port (the USB adapter
    switches the RS-485 direction itself)."""

    def __init__(self, ser):
        self.ser = ser

    def write(self, buf):
        n = self.ser.write(bytes(buf))
        self.ser.flush()
        return n

    def any(self):
        return self.ser.in_waiting

    def readinto(self, buf, n):
        data = self.ser.read(n)
        buf[0:len(data)] = data
        return len(data)


def open_port(port, baud, parity):
    import serial  # pyserial, from requirements.txt

    return serial.Serial(port, baudrate=baud, bytesize=8, parity=parity, stopbits=1,
                         timeout=0, write_timeout=1)


def read_once(meter, limit_s=READ_LIMIT_S):
    """Poll `meter` until one poll has finished (good or failed) or limit_s
    passed; returns True for a good poll."""
    t0 = time.monotonic()
    while meter.polls == 0 and time.monotonic() - t0 < limit_s:
        meter.poll(ticks_ms())
        time.sleep(0.001)
    return meter.polls > 0 and meter.last_good


def _unit(x, scale):
    return None if x is None else round(x / scale, 3)


def reading(meter):
    """The JSON object of a good poll (volts, amperes, watts, Wh)."""
    n = meter.phases
    return {
        "v": [_unit(meter.phase_mv[i], 1000) for i in range(n)],
        "a": [_unit(meter.phase_ma[i], 1000) for i in range(n)],
        "w": meter.power_w,
        "energy_wh": meter.energy_wh,
    }


def failure(meter, args):
    """One line: what went wrong, for stderr."""
    line = "%d 8%s1" % (args.baud, args.parity)
    where = "unit %d on %s (%s, %s)" % (args.unit, args.port, args.profile, line)
    err = meter.error
    if meter.polls == 0:
        return "meter.py: no result from %s within %.0f s" % (where, READ_LIMIT_S)
    if kind(err) == _modbus.NO_RESPONSE:
        return ("meter.py: no answer from %s: check wiring (A/B), unit address, baud "
                "rate and parity" % where)
    if kind(err) == _modbus.EXCEPTION:
        return ("meter.py: %s answered with %s: is %s the right profile?"
                % (where, describe(err), args.profile))
    if kind(err) in (_modbus.BAD_CRC, _modbus.BAD_FRAME):
        return ("meter.py: garbled answer from %s (%s): check baud rate, parity, wiring "
                "and that only one device has this address" % (where, describe(err)))
    if err is None:
        return "meter.py: %s answered without an import energy value" % where
    return "meter.py: reading %s failed: %s" % (where, describe(err))


def list_profiles():
    lines = []
    for p in [_maps.load(_n) for _n in _maps.NAMES]:
        blocks = _meter.plan_blocks(p["fields"], p["max_regs"])
        lines.append("%-11s %-50s fc 0x%02X, %d phase%s, %d read%s" % (
            p["id"], p["model"], p["fc"], p["phases"], "s" if p["phases"] > 1 else "",
            len(blocks), "s" if len(blocks) > 1 else ""))
    return lines


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="meter.py",
        description="Read an energy meter once over Modbus RTU, through the firmware's code.")
    p.add_argument("--list", action="store_true", help="list the meter profiles and exit")
    p.add_argument("--port", help="serial port of the RS-485 adapter, e.g. /dev/ttyUSB0")
    p.add_argument("--profile", choices=_maps.NAMES, metavar="NAME",
                   help="meter profile (see --list)")
    p.add_argument("--unit", type=int, help="Modbus unit address of the meter, 1..247")
    p.add_argument("--baud", type=int, default=9600, choices=METER_BAUDS, metavar="BAUD",
                   help="baud rate (default 9600)")
    p.add_argument("--parity", default="N", choices=("N", "E", "O"),
                   help="parity: N, E or O (default N; 1 stop bit)")
    a = p.parse_args(argv)
    if not a.list:
        missing = [o for o in ("port", "profile", "unit") if getattr(a, o) is None]
        if missing:
            p.error("the following arguments are required: %s"
                    % ", ".join("--" + m for m in missing))
        if not 1 <= a.unit <= 247:
            p.error("--unit: must be 1..247, got %d" % a.unit)
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.list:
        print("\n".join(list_profiles()))
        return 0
    try:
        ser = open_port(a.port, a.baud, a.parity)
    except Exception as e:  # serial.SerialException, OSError, ValueError
        sys.stderr.write("meter.py: cannot open %s: %s\n" % (a.port, e))
        return 1
    try:
        meter = Meter(a.profile, SerialTransport(ser), unit=a.unit, baud=a.baud,
                      parity=a.parity, fail_polls=1)
        ok = read_once(meter)
    finally:
        ser.close()
    if not ok:
        sys.stderr.write(failure(meter, a) + "\n")
        return 1
    print(json.dumps(reading(meter)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # never a traceback for the installer
        sys.stderr.write("meter.py: internal error: %s: %s\n" % (type(e).__name__, e))
        sys.exit(1)
