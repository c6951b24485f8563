"""Modbus RTU pieces that only the tools and the tests use, kept out of the
firmware image (the charger only reads): write requests (0x06, 0x10), a
Master that can send them, and one-line descriptions of a failed exchange.

    from modbus_tools import WriteMaster, build_write_single, describe

The firmware's own evse/modbus.py checks the echo of a write (check_response),
so a WriteMaster completes on it like a read on its answer.
"""
from evse import modbus as _mb

FC_WRITE_SINGLE = 0x06
FC_WRITE_MULTIPLE = 0x10
MAX_WRITE = 123  # registers in one 0x10 write


def build_write_single(buf, unit, addr, value):
    """A 0x06 request writing `value` (0..0xFFFF) to register `addr`; length 8."""
    if not 0 <= value <= 0xFFFF:
        raise ValueError("write: value 0..0xFFFF")
    return _mb._build4(buf, unit, FC_WRITE_SINGLE, addr, value)


def build_write_multiple(buf, unit, addr, values):
    """A 0x10 request writing the registers in `values` from `addr`; returns
    its length (9 + 2 * len(values))."""
    n = len(values)
    if not 1 <= n <= MAX_WRITE:
        raise ValueError("write: 1..123 registers")
    _mb._build4(buf, unit, FC_WRITE_MULTIPLE, addr, n)  # its CRC is overwritten below
    buf[6] = 2 * n
    for i in range(n):
        v = values[i]
        if not 0 <= v <= 0xFFFF:
            raise ValueError("write: value 0..0xFFFF")
        buf[7 + 2 * i] = v >> 8
        buf[8 + 2 * i] = v & 0xFF
    return _mb.put_crc(buf, 7 + 2 * n)


_S_SEND = 1  # evse.modbus's state _S_SEND (a const there, so not an attribute on the board)


class WriteMaster(_mb.Master):
    """evse.modbus.Master that also sends writes; each completes on its echo.
    The firmware's transmit buffer holds its largest request (a read, 8
    bytes); a WriteMaster's holds the largest RTU frame."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tx = bytearray(_mb.MAX_ADU)
        self._tx8 = self._txv = memoryview(self.tx)[:8]

    def start_write_single(self, unit, addr, value):
        build_write_single(self.tx, unit, addr, value)
        self._arm(self._tx8, 8)

    def start_write_multiple(self, unit, addr, values):
        n = build_write_multiple(self.tx, unit, addr, values)
        self._arm(memoryview(self.tx)[:n], 8)

    def _arm(self, view, rx_len):
        # what Master.start_read does after building its request (the board's
        # Master has no method for it: a method is RAM there)
        self._txv = view
        self._rx_len = rx_len
        self._tries = 0
        self.error = None
        self.state = _S_SEND


EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def kind(err):
    """What failed in a failed exchange's error (evse.modbus.NO_RESPONSE ...
    TRANSPORT), or None for any other error."""
    if isinstance(err, _mb.ModbusError) and err.args:
        return err.args[0]
    return None


def describe(err):
    """One line about an error of a failed exchange (Master.error)."""
    k = kind(err)
    if k == _mb.EXCEPTION:
        return "exception response %d (%s)" % (
            err.code, EXCEPTION_NAMES.get(err.code, "unknown exception"))
    if k == _mb.NO_RESPONSE:
        return "no response"
    if k == _mb.BAD_CRC:
        return "CRC error in the response"
    if k == _mb.BAD_FRAME:
        return "malformed or incomplete response"
    if k == _mb.TRANSPORT:
        return "serial port error"
    return "error" if err is None else str(err)
