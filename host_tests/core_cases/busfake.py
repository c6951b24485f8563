"""Hand-written Modbus peers for the core cases (plain Python: CPython and
MicroPython alike).

`ScriptBus` answers each request with the next scripted reply (bytes, or
None for silence), records what was sent, and makes a reply readable at
once. `Slave` is a small register-image device answering reads itself,
with switches for the faults the cases need.
"""
from evse import modbus


def frame(*parts):
    """Bytes of a frame from ints and byte strings, with its CRC appended."""
    b = bytearray()
    for p in parts:
        if isinstance(p, int):
            b.append(p)
        else:
            b.extend(p)
    c = modbus.crc16(b, 0, len(b))
    b.append(c & 0xFF)
    b.append(c >> 8)
    return bytes(b)


def read_answer(unit, fc, regs):
    """The answer frame to a read, carrying the registers `regs`."""
    data = bytearray()
    for r in regs:
        data.append(r >> 8)
        data.append(r & 0xFF)
    return frame(unit, fc, len(data), bytes(data))


class _Received:
    """The receive side of a fake transport: bytes in `rx`, read in order."""

    def any(self):
        return len(self.rx)

    def readinto(self, buf, n):
        if n > len(self.rx):
            n = len(self.rx)
        for i in range(n):
            buf[i] = self.rx[i]
        self.rx = self.rx[n:]
        return n


class ScriptBus(_Received):
    def __init__(self, replies=()):
        self.replies = list(replies)
        self.sent = []
        self.rx = bytearray()
        self.raise_on = None  # "write", "any" or "readinto": raise OSError there

    def feed(self, data):
        self.rx.extend(data)

    def write(self, buf):
        if self.raise_on == "write":
            raise OSError(5)
        self.sent.append(bytes(buf))
        r = self.replies.pop(0) if self.replies else None
        if r is not None:
            self.rx.extend(r)
        return len(buf)

    def any(self):
        if self.raise_on == "any":
            raise OSError(5)
        return _Received.any(self)

    def readinto(self, buf, n):
        if self.raise_on == "readinto":
            raise OSError(5)
        return _Received.readinto(self, buf, n)


class Slave(_Received):
    """A meter on the bus: answers reads of `fc` from `regs` ({addr: word};
    addresses it lacks read 0). Switches: silent, exception (a code),
    corrupt (flip a CRC byte), other_unit (answer as unit + 1)."""

    def __init__(self, unit, fc, regs):
        self.unit = unit
        self.fc = fc
        self.regs = dict(regs)  # a copy: tests change it through slave.regs
        self.silent = False
        self.exception = 0
        self.corrupt = False
        self.other_unit = False
        self.rx = bytearray()
        self.requests = 0

    def write(self, buf):
        req = bytes(buf)
        self.requests += 1
        if self.silent or req[0] != self.unit or not modbus.crc_ok(req, len(req)):
            return len(req)
        unit = self.unit + 1 if self.other_unit else self.unit
        if self.exception:
            out = frame(unit, req[1] | 0x80, self.exception)
        elif req[1] != self.fc:
            out = frame(unit, req[1] | 0x80, 1)
        else:
            addr = (req[2] << 8) | req[3]
            qty = (req[4] << 8) | req[5]
            out = read_answer(unit, self.fc, [self.regs.get(addr + i, 0) for i in range(qty)])
        if self.corrupt:
            out = out[:-1] + bytes([out[-1] ^ 0x5A])
        self.rx.extend(out)
        return len(req)
