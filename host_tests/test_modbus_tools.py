"""tools/modbus_tools.py: the Modbus write path and the error descriptions
that the tools use and the firmware image leaves out."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "host_tests", "core_cases"))

import modbus_tools as T  # noqa: E402
from busfake import ScriptBus, frame  # noqa: E402

from evse import modbus as mb  # noqa: E402


def _refused(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    return False


def _run(master, limit=5000):
    t = 0
    while t <= limit:
        r = master.poll(t)
        if r == mb.DONE or r == mb.FAILED:
            return r
        t += 10
    return None


def test_build_writes():
    buf = bytearray(256)
    assert T.build_write_single(buf, 1, 0x0012, 0xABCD) == 8
    assert bytes(buf[:6]) == bytes([1, 6, 0, 0x12, 0xAB, 0xCD]) and mb.crc_ok(buf, 8)
    n = T.build_write_multiple(buf, 247, 0x0014, [0x4000, 0x0000])
    assert n == 13
    assert bytes(buf[:9]) == bytes([247, 0x10, 0, 0x14, 0, 2, 4, 0x40, 0])
    assert mb.crc_ok(buf, 13)


def test_writes_refuse_what_the_protocol_does_not_allow():
    buf = bytearray(256)
    assert _refused(T.build_write_single, buf, 1, 0, 0x10000)
    assert _refused(T.build_write_single, buf, 0, 0, 1)
    assert _refused(T.build_write_multiple, buf, 1, 0, [])
    assert _refused(T.build_write_multiple, buf, 1, 0, [0] * 124)
    assert _refused(T.build_write_multiple, buf, 1, 0, [1, -1])
    assert _refused(T.build_write_multiple, buf, 1, 0x10000, [1])


def test_writes_complete_on_their_echo():
    assert T._S_SEND == mb._S_SEND  # its arming is the firmware's start_read
    buf = bytearray(16)
    T.build_write_single(buf, 3, 0x0014, 2)
    bus = ScriptBus([bytes(buf[:8])])
    m = T.WriteMaster(bus)
    m.start_write_single(3, 0x0014, 2)
    assert _run(m) == mb.DONE
    bus = ScriptBus([frame(3, 0x10, 0, 0x12, 0, 2)])
    m = T.WriteMaster(bus)
    m.start_write_multiple(3, 0x0012, [0x4000, 0])
    assert _run(m) == mb.DONE and len(bus.sent[0]) == 13
    bus = ScriptBus([frame(3, 0x10, 0, 0x12, 0, 3), frame(3, 0x10, 0, 0x12, 0, 3)])
    m = T.WriteMaster(bus)
    m.start_write_multiple(3, 0x0012, [0x4000, 0])
    assert _run(m) == mb.FAILED and T.kind(m.error) == mb.BAD_FRAME  # wrong echo


def test_describe_names_every_error():
    bus = ScriptBus([frame(1, 0x84, 2)])
    m = mb.Master(bus)
    m.start_read(1, 4, 0x9000, 2)
    assert _run(m) == mb.FAILED
    assert T.describe(m.error) == "exception response 2 (illegal data address)"
    e = mb.ModbusError(mb.EXCEPTION)
    e.code = 99
    assert T.describe(e) == "exception response 99 (unknown exception)"
    assert T.describe(mb.ModbusError(mb.NO_RESPONSE)) == "no response"
    assert T.describe(mb.ModbusError(mb.BAD_CRC)) == "CRC error in the response"
    assert T.describe(mb.ModbusError(mb.BAD_FRAME)) == "malformed or incomplete response"
    assert T.describe(mb.ModbusError(mb.TRANSPORT)) == "serial port error"
    assert T.describe(None) == "error"
    assert T.describe(ValueError("odd")) == "odd"


def test_the_firmware_has_no_write_path():
    for name in ("build_write_single", "build_write_multiple", "describe", "EXCEPTION_NAMES"):
        assert not hasattr(mb, name), name
    assert not hasattr(mb.Master, "start_write_single")
