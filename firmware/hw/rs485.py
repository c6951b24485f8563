"""The meter's RS-485 line on the board: `machine.UART` and the transceiver's
driver-enable (DE) pin, as the transport evse.modbus reads meters through.

A thin adapter: `UartTransport` wraps a UART object and an optional output
pin and does nothing else; `open_meter_uart` builds both from pin numbers
(the only place that touches `machine`, imported when it is called, so this
module imports on the host and tests drive `UartTransport` with a fake UART).
hw/system.py takes the UART and pins from the board profile's `rs485`.

Direction: a half-duplex RS-485 transceiver must drive the bus only while
the request goes out and release it before the meter answers (the meter
may start after 3.5 character times). `write` raises DE, hands the request
to the UART and waits until the UART reports the last stop bit sent
(`UART.txdone()`, or the computed wire time where a port lacks it), then
drops DE. That wait is bounded by the request's wire time plus two
characters (8 bytes: 8.3 ms at 9600 baud, 0.7 ms at 115200) and is the only
wait in the meter path. No control step waits more than `_WAIT_MAX_US`
(12 ms) for it: at a slower rate (1200 baud: 92 ms for a request) `write`
returns with DE still raised, and the step in which the rest of the wire
time is below that bound waits it out and drops DE (`any` and `readinto`
do it, and the Modbus master calls `any` every step while it waits for the
answer; the meter may answer only after 3.5 characters of silence, 32 ms at
1200 baud, so the 10 ms tick drops DE in time). Without a DE pin (a transceiver with automatic
direction control) `write` returns at once. With `echo=True` (receiver not
disabled while sending) the request's own echo is taken out of the receive
buffer after sending.
"""
from micropython import const

from evse.modbus import char_bits, char_us
from evse import ticks_diff, ticks_us

_WAIT_MAX_US = const(12000)  # the longest wait for the last stop bit in one control step


class UartTransport:
    def __init__(self, uart, de=None, baud=9600, bits=10, de_active=1, echo=False):
        self.uart = uart
        self.de = de
        self._on = 1 if de_active else 0
        self._off = 0 if de_active else 1
        self.char_us = char_us(baud, bits)
        self.echo = echo
        self._txdone = hasattr(uart, "txdone")
        self._scratch = bytearray(16)
        self._sent = 0  # bytes of the request whose DE is still raised (0: listening)
        self._t0 = 0  # ticks_us when it was handed to the UART
        if de is not None:
            de.value(self._off)  # listen

    def write(self, buf):
        de = self.de
        if de is None:
            n = self.uart.write(buf)
            if self.echo:
                self._discard(len(buf))
            return n
        if self._sent:
            self._settle(True)  # (the master waits far longer between requests)
        de.value(self._on)
        try:
            n = self.uart.write(buf)
            self._t0 = ticks_us()
            self._sent = len(buf)
        except BaseException:
            de.value(self._off)
            raise
        self._settle(False)
        return n

    def _settle(self, now):
        """Drop DE once the request is out: wait for it when the rest of its
        wire time (bounded) is below _WAIT_MAX_US, or when `now`."""
        nbytes = self._sent
        limit = (nbytes + 2) * self.char_us
        t0 = self._t0
        uart = self.uart
        if not now and limit - ticks_diff(ticks_us(), t0) > _WAIT_MAX_US:
            if not (self._txdone and uart.txdone()):
                return
        try:
            if self._txdone:
                while not uart.txdone():
                    if ticks_diff(ticks_us(), t0) >= limit:
                        break
            else:
                while ticks_diff(ticks_us(), t0) < limit - self.char_us:
                    pass
        finally:
            self.de.value(self._off)
            self._sent = 0
        if self.echo:
            self._discard(nbytes)

    def _discard(self, n):
        s = self._scratch
        uart = self.uart
        while n > 0:
            a = uart.any()
            if a <= 0:
                return
            k = a if a < n else n
            if k > len(s):
                k = len(s)
            r = uart.readinto(s, k)
            if not r:
                return
            n -= r

    def _sending(self):
        # the request still going out (DE raised): nothing of the answer yet
        if self._sent:
            self._settle(False)
        return self._sent

    def any(self):
        if self._sending():
            return 0
        return self.uart.any()

    def readinto(self, buf, n):
        if self._sending():
            return 0
        r = self.uart.readinto(buf, n)
        return 0 if r is None else r


def open_meter_uart(uart_id, tx, rx, de=None, baud=9600, parity="N", stop_bits=1,
                    de_active=1, echo=False, rxbuf=512, machine=None):
    """A UartTransport on machine.UART(uart_id) with pins tx/rx and the DE
    pin `de` (pin numbers; de None: automatic direction). Non-blocking reads
    (timeout 0), receive buffer `rxbuf` bytes (the largest read answer is
    255 bytes). `machine` is the module to use (tests pass a fake)."""
    if machine is None:
        import machine
    UART = machine.UART
    Pin = machine.Pin

    par = None if parity == "N" else (0 if parity == "E" else 1)
    uart = UART(uart_id, baudrate=baud, bits=8, parity=par, stop=stop_bits,
                tx=Pin(tx), rx=Pin(rx), timeout=0, timeout_char=0, rxbuf=rxbuf)
    pin = None
    if de is not None:
        pin = Pin(de, Pin.OUT, value=0 if de_active else 1)
    return UartTransport(uart, pin, baud, char_bits(parity, stop_bits), de_active, echo)
