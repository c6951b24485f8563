"""The board's RS-485 transport (hw/rs485.py) with a UART and a pin
written by hand: the direction pin around each request, the bounded wait
for the last stop bit, echo removal, and the machine.UART it builds."""
import sys
import time
import types

from hw import rs485
from evse import modbus as mb
from evse.meter import Meter


class Pin:
    def __init__(self, log):
        self.log = log
        self.v = None

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        self.log.append(("de", v))


class UartNoTxdone:
    """Sends at `baud` (8N1) in wall-clock time. An attached
    `peer(request) -> answer bytes` answers requests."""

    def __init__(self, log, baud=9600, stuck=False, peer=None, echo=False):
        self.log = log
        self.char_s = 10.0 / baud
        self.stuck = stuck
        self.peer = peer
        self.echo = echo
        self.rx = bytearray()
        self.done_at = 0.0

    def write(self, buf):
        data = bytes(buf)
        self.log.append(("write", data))
        self.done_at = time.monotonic() + len(data) * self.char_s
        if self.echo:
            self.rx += data
        if self.peer is not None:
            self.rx += self.peer(data)
        return len(data)

    def any(self):
        return len(self.rx)

    def readinto(self, buf, n=None):
        if not self.rx:
            return None  # as machine.UART does on a timeout
        n = min(n if n is not None else len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n


class Uart(UartNoTxdone):
    """... and tells by txdone() when the last stop bit is out (never, when stuck)."""

    def txdone(self):
        return not self.stuck and time.monotonic() >= self.done_at


def _transport(uart_cls=Uart, de=True, **kw):
    log = []
    uart = uart_cls(log, **kw)
    pin = Pin(log) if de else None
    return rs485.UartTransport(uart, pin, 9600, 10), log, uart, pin


def test_direction_pin_is_high_only_while_the_request_goes_out():
    t, log, uart, pin = _transport()
    assert log == [("de", 0)]  # listening from the start
    t0 = time.monotonic()
    assert t.write(b"\x01\x04\x00\x00\x00\x02\x71\xcb") == 8
    took = time.monotonic() - t0
    assert log[1:] == [("de", 1), ("write", b"\x01\x04\x00\x00\x00\x02\x71\xcb"), ("de", 0)]
    # held for the 8 characters' wire time (8.3 ms at 9600 8N1), not much more
    assert 0.008 <= took < 0.05, took
    assert pin.v == 0


def test_the_wait_is_bounded_when_the_uart_never_reports_done():
    t, log, uart, pin = _transport(stuck=True)
    t0 = time.monotonic()
    t.write(bytes(8))
    took = time.monotonic() - t0
    assert 0.0104 <= took < 0.06, took  # 8 + 2 characters of 1042 us
    assert log[-1] == ("de", 0)


def test_without_txdone_the_wire_time_is_waited():
    t, log, uart, pin = _transport(uart_cls=UartNoTxdone)
    assert not t._txdone
    t0 = time.monotonic()
    t.write(bytes(8))
    took = time.monotonic() - t0
    assert 0.0093 <= took < 0.06, took  # 8 + 1 characters
    assert log[-1] == ("de", 0)


def test_inverted_enable_and_no_pin():
    log = []
    pin = Pin(log)
    t = rs485.UartTransport(Uart(log), pin, 9600, 10, de_active=0)
    t.write(b"\x00")
    assert [e for e in log if e[0] == "de"] == [("de", 1), ("de", 0), ("de", 1)]
    t, log, uart, _ = _transport(de=False)
    t0 = time.monotonic()
    t.write(bytes(100))  # auto-direction transceiver: no wait at all
    assert time.monotonic() - t0 < 0.05 and log == [("write", bytes(100))]


def test_echo_is_removed_and_the_answer_kept():
    answer = b"\x01\x04\x02\x00\x07" + b"\x00\x00"
    log = []
    uart = Uart(log, echo=True, peer=lambda req: answer)
    t = rs485.UartTransport(uart, Pin(log), 9600, 10, echo=True)
    t.write(b"\x01\x04\x00\x00\x00\x01\x31\xca")
    assert t.any() == len(answer)
    buf = bytearray(16)
    assert t.readinto(buf, 16) == len(answer) and bytes(buf[:7]) == answer


def test_readinto_without_data_is_zero():
    t, log, uart, pin = _transport()
    assert t.any() == 0 and t.readinto(bytearray(4), 4) == 0


def test_a_meter_reads_through_it():
    regs = {0x0000: 0x4366, 0x0001: 0x0000, 0x0034: 0x462C, 0x0035: 0x8000,
            0x0048: 0x449A, 0x0049: 0x5225}

    def peer(req):
        addr, qty = (req[2] << 8) | req[3], (req[4] << 8) | req[5]
        data = b"".join(regs.get(addr + i, 0).to_bytes(2, "big") for i in range(qty))
        body = bytes([req[0], req[1], 2 * qty]) + data
        c = mb.crc16(body, 0, len(body))
        return body + bytes([c & 0xFF, c >> 8])

    log = []
    t = rs485.UartTransport(Uart(log, peer=peer), Pin(log), 9600, 10)
    m = Meter("sdm630", t)
    now = 0
    while m.polls == 0 and now < 2000:
        m.poll(now)
        now += 10
    assert m.last_good and m.phase_mv[0] == 230000 and m.energy_wh == 1234567
    assert [e[0] for e in log] == ["de", "de", "write", "de"]


def test_open_meter_uart_builds_machine_uart(monkeypatch):
    made = {}

    class MUart:
        def __init__(self, uart_id, **kw):
            made["uart"] = (uart_id, kw)

    class MPin:
        OUT = 3

        def __init__(self, n, *args, **kw):
            made.setdefault("pins", []).append((n, args, kw))

        def value(self, v=None):
            made.setdefault("de", []).append(v)

    machine = types.ModuleType("machine")
    machine.UART = MUart
    machine.Pin = MPin
    monkeypatch.setitem(sys.modules, "machine", machine)
    for parity, want in (("N", None), ("E", 0), ("O", 1)):
        made.clear()
        t = rs485.open_meter_uart(1, 17, 16, de=4, baud=19200, parity=parity)
        uart_id, kw = made["uart"]
        assert uart_id == 1 and kw["baudrate"] == 19200 and kw["parity"] is want
        assert kw["bits"] == 8 and kw["stop"] == 1 and kw["timeout"] == 0
        assert kw["timeout_char"] == 0 and kw["rxbuf"] >= 256
        assert made["pins"][2] == (4, (3,), {"value": 0})  # DE: output, low
        assert made["de"] == [0]
        assert t.char_us == (573 if parity != "N" else 521)
    made.clear()
    t = rs485.open_meter_uart(2, 8, 9)
    assert t.de is None and len(made["pins"]) == 2


class _Us:
    """A virtual ticks_us: each reading moves it on by 20 us (a busy loop's
    pass), and a test moves it by a control tick."""

    def __init__(self):
        self.t = 1000

    def __call__(self):
        self.t += 20
        return self.t


class _VirtualUart(UartNoTxdone):
    def __init__(self, log, us, char_us):
        super().__init__(log)
        self.us, self.char_us, self.done_us = us, char_us, 0

    def write(self, buf):
        self.done_us = self.us.t + len(buf) * self.char_us
        return super().write(buf)

    def txdone(self):
        return self.us.t >= self.done_us


def test_at_a_slow_rate_no_step_waits_for_the_whole_request(monkeypatch):
    """At 1200 baud a request takes 67 ms on the wire: the control step that
    sends it must not wait for it (IEC 61851-1 gives the contactor 100 ms),
    so no call waits more than 12 ms, DE stays raised until the last stop
    bit is out and is dropped in the step in which it goes (before the
    meter's 3.5 characters of silence, 29 ms, are over)."""
    us = _Us()
    monkeypatch.setattr(rs485, "ticks_us", us)
    log = []
    cu = mb.char_us(1200, 10)
    uart = _VirtualUart(log, us, cu)
    pin = Pin(log)
    t = rs485.UartTransport(uart, pin, 1200, 10)
    longest = 0
    t0 = us.t
    a = us.t
    t.write(bytes(8))
    longest = max(longest, us.t - a)
    end = t0 + 8 * cu
    steps = 0
    while pin.v == 1:
        us.t += 10000  # the next control step
        steps += 1
        a = us.t
        assert t.any() == 0 or pin.v == 0
        longest = max(longest, us.t - a)
        assert steps < 20
    assert longest <= 12000 + 40, longest
    assert end <= us.t < end + 10000 + 12000 + 40, (us.t - end)
    assert ("de", 0) == log[-1] and ("write", bytes(8)) in log


def test_at_9600_baud_the_step_that_sends_drops_de(monkeypatch):
    us = _Us()
    monkeypatch.setattr(rs485, "ticks_us", us)
    log = []
    cu = mb.char_us(9600, 11)
    uart = _VirtualUart(log, us, cu)
    t = rs485.UartTransport(uart, Pin(log), 9600, 11)
    a = us.t
    t.write(bytes(8))
    assert log[-1] == ("de", 0) and us.t - a >= 8 * cu  # out before it returns
