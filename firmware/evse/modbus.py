"""Modbus RTU master: CRC-16/MODBUS, request frames, response checks, and a
non-blocking request/response exchange driven by `poll(now)`.

Pure logic: nothing from `machine`, no hardware and no I/O at import. The
RS-485 line is a duck-typed transport (`hw.rs485.UartTransport` on the board, a
virtual UART in the simulator, pyserial in tools/meter.py):

  transport.write(buf)        put every byte of buf on the bus (the transport
                              drives the RS-485 direction pin around it)
  transport.any()             bytes received and not read yet
  transport.readinto(buf, n)  move n received bytes into buf[0:n]

Framing (MODBUS over Serial Line V1.02, 2.5.1): a character is a start bit,
8 data bits, a parity bit if any and the stop bit(s); frames are separated
by at least 3.5 character times of silence (1.75 ms fixed above 19200 baud).
A master that runs from a 10 ms control tick cannot time the gaps between
characters, so a response is delimited by its own header instead: the
length follows from the function code (and the byte count of a read), and
the CRC-16 confirms it. Before each request the master waits the
inter-frame silence after the last bus activity it saw, and throws away
anything still in the receive buffer (a late or stray answer can never be
taken as the answer to the next request).

What a response may be:
  - the answer: same unit, same function, the expected length and a good
    CRC -> DONE, the registers are in `rx` from offset 3;
  - an exception response (function | 0x80, one code byte, good CRC) ->
    the attempt fails with an EXCEPTION error (and its code);
  - a well-formed frame of another unit or function -> discarded, the master
    keeps waiting for its answer until the timeout;
  - a bad CRC, an impossible header, a wrong byte count or a frame cut
    short -> the attempt fails (BAD_CRC / BAD_FRAME), nothing is taken.
A failed attempt is retried `retries` times (an exception response is a
definite answer and is not), then `poll` reports FAILED with the error in
`master.error`. The response timeout is the request's and
the expected answer's wire time at the configured baud rate plus
`turnaround_ms` for the device.

Allocation: the frames live in two preallocated bytearrays (the request's
8 bytes; the response's `rx_size`, by default the largest RTU frame, 256,
and for a meter the largest answer its register map asks for: `fit`) and
every quantity is a small int, so a read of 0x03/0x04 allocates nothing on
MicroPython's heap once running (the error objects are preallocated too).
"""
from micropython import const

from evse import ticks_add, ticks_diff

_FC_READ_HOLDING = const(0x03)
_FC_READ_INPUT = const(0x04)
_FC_WRITE_SINGLE = const(0x06)  # writes: tools/modbus_tools.py
_FC_WRITE_MULTIPLE = const(0x10)

MAX_ADU = const(256)  # the largest RTU frame (address + PDU 253 + CRC)
_MAX_READ = const(125)  # registers in one 0x03/0x04 read

# poll() results
IDLE = const(0)
BUSY = const(1)
DONE = const(2)
FAILED = const(3)

# check_response() results (>= 0: the answer, its length in bytes)
R_SHORT = const(-1)  # fewer bytes than the frame needs
R_CRC = const(-2)  # CRC mismatch
R_FRAME = const(-3)  # impossible header or wrong byte count / echo
R_OTHER = const(-4)  # a well-formed frame of another unit or function
R_EXCEPTION = const(-5)  # exception response; the code is buf[2]

DEFAULT_TURNAROUND_MS = const(200)
DEFAULT_RETRIES = const(1)

# Internal states of the exchange.
_S_IDLE = const(0)
_S_SEND = const(1)  # waiting for the inter-frame silence, then send
_S_HEAD = const(2)  # waiting for the first 3 bytes of the response
_S_BODY = const(3)  # waiting for the rest of the response
_S_DONE = const(4)
_S_FAILED = const(5)


# ----------------------------------------------------------------- errors
# What failed, in a failed exchange's error (`master.error.args[0]`):
NO_RESPONSE = const(1)  # nothing came back before the response timeout
BAD_CRC = const(2)  # a response with a bad CRC-16
BAD_FRAME = const(3)  # a response cut short, with an impossible header or a wrong length
EXCEPTION = const(4)  # the device answered with an exception; `code` is its code
TRANSPORT = const(5)  # the transport raised while sending or receiving


class ModbusError(Exception):
    """The error a failed exchange reports in `master.error`: `args[0]` is
    what failed (NO_RESPONSE ... TRANSPORT), `code` the exception code of an
    EXCEPTION (0 otherwise)."""

    code = 0


# -------------------------------------------------------------------- CRC
# CRC-16/MODBUS: reflected polynomial 0xA001 (0x8005), initial value 0xFFFF,
# no final XOR; sent low byte first. Table: entry i is the CRC register after
# shifting byte i through eight steps of the polynomial (generated from the
# definition; host_tests check it against the bitwise algorithm).
_CRC_TABLE = (
    0x0000, 0xC0C1, 0xC181, 0x0140, 0xC301, 0x03C0, 0x0280, 0xC241,
    0xC601, 0x06C0, 0x0780, 0xC741, 0x0500, 0xC5C1, 0xC481, 0x0440,
    0xCC01, 0x0CC0, 0x0D80, 0xCD41, 0x0F00, 0xCFC1, 0xCE81, 0x0E40,
    0x0A00, 0xCAC1, 0xCB81, 0x0B40, 0xC901, 0x09C0, 0x0880, 0xC841,
    0xD801, 0x18C0, 0x1980, 0xD941, 0x1B00, 0xDBC1, 0xDA81, 0x1A40,
    0x1E00, 0xDEC1, 0xDF81, 0x1F40, 0xDD01, 0x1DC0, 0x1C80, 0xDC41,
    0x1400, 0xD4C1, 0xD581, 0x1540, 0xD701, 0x17C0, 0x1680, 0xD641,
    0xD201, 0x12C0, 0x1380, 0xD341, 0x1100, 0xD1C1, 0xD081, 0x1040,
    0xF001, 0x30C0, 0x3180, 0xF141, 0x3300, 0xF3C1, 0xF281, 0x3240,
    0x3600, 0xF6C1, 0xF781, 0x3740, 0xF501, 0x35C0, 0x3480, 0xF441,
    0x3C00, 0xFCC1, 0xFD81, 0x3D40, 0xFF01, 0x3FC0, 0x3E80, 0xFE41,
    0xFA01, 0x3AC0, 0x3B80, 0xFB41, 0x3900, 0xF9C1, 0xF881, 0x3840,
    0x2800, 0xE8C1, 0xE981, 0x2940, 0xEB01, 0x2BC0, 0x2A80, 0xEA41,
    0xEE01, 0x2EC0, 0x2F80, 0xEF41, 0x2D00, 0xEDC1, 0xEC81, 0x2C40,
    0xE401, 0x24C0, 0x2580, 0xE541, 0x2700, 0xE7C1, 0xE681, 0x2640,
    0x2200, 0xE2C1, 0xE381, 0x2340, 0xE101, 0x21C0, 0x2080, 0xE041,
    0xA001, 0x60C0, 0x6180, 0xA141, 0x6300, 0xA3C1, 0xA281, 0x6240,
    0x6600, 0xA6C1, 0xA781, 0x6740, 0xA501, 0x65C0, 0x6480, 0xA441,
    0x6C00, 0xACC1, 0xAD81, 0x6D40, 0xAF01, 0x6FC0, 0x6E80, 0xAE41,
    0xAA01, 0x6AC0, 0x6B80, 0xAB41, 0x6900, 0xA9C1, 0xA881, 0x6840,
    0x7800, 0xB8C1, 0xB981, 0x7940, 0xBB01, 0x7BC0, 0x7A80, 0xBA41,
    0xBE01, 0x7EC0, 0x7F80, 0xBF41, 0x7D00, 0xBDC1, 0xBC81, 0x7C40,
    0xB401, 0x74C0, 0x7580, 0xB541, 0x7700, 0xB7C1, 0xB681, 0x7640,
    0x7200, 0xB2C1, 0xB381, 0x7340, 0xB101, 0x71C0, 0x7080, 0xB041,
    0x5000, 0x90C1, 0x9181, 0x5140, 0x9301, 0x53C0, 0x5280, 0x9241,
    0x9601, 0x56C0, 0x5780, 0x9741, 0x5500, 0x95C1, 0x9481, 0x5440,
    0x9C01, 0x5CC0, 0x5D80, 0x9D41, 0x5F00, 0x9FC1, 0x9E81, 0x5E40,
    0x5A00, 0x9AC1, 0x9B81, 0x5B40, 0x9901, 0x59C0, 0x5880, 0x9841,
    0x8801, 0x48C0, 0x4980, 0x8941, 0x4B00, 0x8BC1, 0x8A81, 0x4A40,
    0x4E00, 0x8EC1, 0x8F81, 0x4F40, 0x8D01, 0x4DC0, 0x4C80, 0x8C41,
    0x4400, 0x84C1, 0x8581, 0x4540, 0x8701, 0x47C0, 0x4680, 0x8641,
    0x8201, 0x42C0, 0x4380, 0x8341, 0x4100, 0x81C1, 0x8081, 0x4040,
)


def crc16(buf, start, end):
    """CRC-16/MODBUS of buf[start:end] (bytes, bytearray or memoryview)."""
    crc = 0xFFFF
    t = _CRC_TABLE
    for i in range(start, end):
        crc = (crc >> 8) ^ t[(crc ^ buf[i]) & 0xFF]
    return crc


def put_crc(buf, n):
    """Append the CRC of buf[0:n] at buf[n], buf[n+1]; returns n + 2."""
    c = crc16(buf, 0, n)
    buf[n] = c & 0xFF
    buf[n + 1] = c >> 8
    return n + 2


def crc_ok(buf, n):
    """True when the last two of the n bytes in buf are the CRC of the others."""
    if n < 4:
        return False
    c = crc16(buf, 0, n - 2)
    return buf[n - 2] == c & 0xFF and buf[n - 1] == c >> 8


# --------------------------------------------------------------- requests
def build_read(buf, unit, fc, addr, qty):
    """A 0x03/0x04 request for `qty` registers from `addr`; returns its length (8)."""
    if fc != _FC_READ_HOLDING and fc != _FC_READ_INPUT:
        raise ValueError("read: function 0x03 or 0x04")
    if not 1 <= qty <= _MAX_READ:
        raise ValueError("read: 1..125 registers")
    return _build4(buf, unit, fc, addr, qty)


def _build4(buf, unit, fc, a, b):
    # unit, function, two 16-bit words, CRC: a read, or a write's header
    if not 1 <= unit <= 247:
        raise ValueError("unit 1..247")
    if not 0 <= a <= 0xFFFF:
        raise ValueError("address 0..0xFFFF")
    buf[0] = unit
    buf[1] = fc
    buf[2] = a >> 8
    buf[3] = a & 0xFF
    buf[4] = b >> 8
    buf[5] = b & 0xFF
    return put_crc(buf, 6)


# -------------------------------------------------------------- responses
def response_length(fc, qty):
    """Length of the answer to a request of function fc (qty: registers read)."""
    if fc == _FC_READ_HOLDING or fc == _FC_READ_INPUT:
        return 5 + 2 * qty
    return 8


def frame_length(buf, n):
    """The length of the frame that starts at buf[0], from its header (the
    first 3 bytes), or R_SHORT with fewer than 3 bytes, or R_FRAME when the
    header is not that of a response this master can receive."""
    if n < 3:
        return R_SHORT
    fc = buf[1]
    if buf[0] == 0 or buf[0] > 247:
        return R_FRAME
    if fc & 0x80:  # exception response: function | 0x80, code, CRC
        return 5
    if fc == _FC_READ_HOLDING or fc == _FC_READ_INPUT or fc == 1 or fc == 2:
        bc = buf[2]
        if bc == 0:
            return R_FRAME
        return 5 + bc
    if fc == _FC_WRITE_SINGLE or fc == _FC_WRITE_MULTIPLE or fc == 5 or fc == 15:
        return 8
    return R_FRAME


def check_response(buf, n, req):
    """Classify the n bytes in buf as the answer to request `req` (a built
    request frame: unit, function, address, quantity or value).

    Returns the frame length (> 0) when buf[0:n] starts with exactly the
    answer, else R_SHORT, R_CRC, R_FRAME, R_OTHER (a good frame, but of
    another unit or function: to discard) or R_EXCEPTION (an exception from
    this unit for this function; the code is buf[2]). Never raises for any
    content of buf; reads nothing beyond buf[n - 1].
    """
    length = frame_length(buf, n)
    if length < 0:
        return length
    if length > MAX_ADU:
        return R_FRAME
    if n < length:
        return R_SHORT
    if not crc_ok(buf, length):
        return R_CRC
    unit = req[0]
    fc = req[1]
    if buf[0] != unit:
        return R_OTHER
    rfc = buf[1]
    if rfc == fc | 0x80:
        return R_EXCEPTION
    if rfc != fc:
        return R_OTHER
    if fc == _FC_READ_HOLDING or fc == _FC_READ_INPUT:
        if buf[2] != 2 * ((req[4] << 8) | req[5]):
            return R_FRAME
    else:  # a write's answer echoes address and value (0x06) or quantity (0x10)
        for i in range(2, 6):
            if buf[i] != req[i]:
                return R_FRAME
    return length


def register(buf, i):
    """Register i of a read answer in buf (the data start at byte 3)."""
    return (buf[3 + 2 * i] << 8) | buf[4 + 2 * i]


# ------------------------------------------------------------------ timing
def char_bits(parity="N", stop_bits=1):
    """Bits on the wire per character: start + 8 data + parity + stop."""
    return 9 + (0 if parity == "N" else 1) + stop_bits


def char_us(baud, bits):
    """One character's time on the wire in microseconds, rounded up."""
    return (bits * 1000000 + baud - 1) // baud


def silence_us(baud, bits):
    """The inter-frame silence t3.5: 3.5 character times, 1750 us above 19200 baud."""
    if baud > 19200:
        return 1750
    return (7 * bits * 1000000 + 2 * baud - 1) // (2 * baud)


# ------------------------------------------------------------------ master
class Master:
    """One request/response exchange at a time, advanced by poll(now).

    `start_read(...)` (or `start_write_*`) arms an exchange; each later
    `poll(now)` does what can be done without waiting and returns BUSY,
    DONE (the answer is in `rx`, registers from byte 3: `register(rx, i)`)
    or FAILED (`error` is a ModbusError). The request goes out at the first
    poll after the inter-frame silence; poll never blocks and never raises
    for anything the bus or the transport does.
    """

    # the errors of a failed attempt, preallocated and shared (they carry
    # nothing of their own); an EXCEPTION is each master's own (_exc)
    _timeout = ModbusError(NO_RESPONSE)
    _crc = ModbusError(BAD_CRC)
    _frame = ModbusError(BAD_FRAME)
    _io = ModbusError(TRANSPORT)

    def __init__(self, transport, baud=9600, parity="N", stop_bits=1,
                 retries=DEFAULT_RETRIES, turnaround_ms=DEFAULT_TURNAROUND_MS, rx_size=MAX_ADU):
        self.transport = transport
        self.tx = bytearray(8)  # the largest request the firmware sends (0x03/0x04)
        self._txv = self.tx  # the request to send now
        self.rx = None
        self.fit(rx_size)
        self.bits = char_bits(parity, stop_bits)
        self.baud = baud
        self.char_us = char_us(baud, self.bits)
        # whole ms, rounded up; at least 1 ms
        self.gap_ms = (silence_us(baud, self.bits) + 999) // 1000
        self.retries = retries
        self.turnaround_ms = turnaround_ms
        self.state = _S_IDLE
        self.error = None
        self._exc = ModbusError(EXCEPTION)  # its own: it carries the code
        self._quiet = None  # ticks: no request before this (inter-frame silence)
        self._deadline = 0
        self._tries = 0
        self._need = 0  # bytes of the response still to read (state BODY)
        self._got = 0  # bytes of the response in rx
        self._rx_len = 0  # expected length of the answer
        # counters, for diagnostics and telemetry
        self.n_ok = 0
        self.n_timeout = 0
        self.n_crc = 0
        self.n_frame = 0
        self.n_exception = 0
        self.n_other = 0  # well-formed frames of other units/functions discarded
        self.n_io = 0  # transport errors

    def fit(self, n):
        """Make the response buffer hold frames of n bytes (at most MAX_ADU),
        when it is smaller; before the first exchange (a meter sizes it to the
        longest answer of its map: RAM on the board). A longer frame is a
        framing error: on a line with this one master every answer is one to
        a request of ours, and no longer than it asked for."""
        if n > MAX_ADU:
            n = MAX_ADU
        if self.rx is None or len(self.rx) < n:
            self.rx = bytearray(n)
            self._rx_tail = memoryview(self.rx)[3:]

    def wire_ms(self, nbytes):
        """Wire time of nbytes characters at this line setting, ms rounded up."""
        return (nbytes * self.char_us + 999) // 1000

    # ------------------------------------------------------------ starting
    def start_read(self, unit, fc, addr, qty):
        build_read(self.tx, unit, fc, addr, qty)
        self._txv = self.tx
        self._rx_len = response_length(fc, qty)
        self._tries = 0
        self.error = None
        self.state = _S_SEND

    def reset(self):
        """Abandon any exchange (the bus is left to go quiet before the next)."""
        self.state = _S_IDLE
        self._quiet = None

    @property
    def busy(self):
        return _S_SEND <= self.state <= _S_BODY

    # ----------------------------------------------------------------- poll
    def poll(self, now):
        s = self.state
        if s == _S_IDLE:
            return IDLE
        if s == _S_DONE:
            return DONE
        if s == _S_FAILED:
            return FAILED
        try:
            if s == _S_SEND:
                self._send(now)
            if self.state != _S_SEND:
                self._receive(now)
        except Exception:  # a transport fault: never up into the control loop
            self.n_io += 1
            self._attempt_failed(now, self._io)
        s = self.state
        if s == _S_DONE:
            return DONE
        if s == _S_FAILED:
            return FAILED
        return BUSY

    def _send(self, now):
        q = self._quiet
        if q is not None and ticks_diff(now, q) < 0:
            return
        self._drain()
        t = self.transport
        t.write(self._txv)
        self._got = 0
        self.state = _S_HEAD
        self._deadline = ticks_add(now, self.wire_ms(len(self._txv) + self._rx_len)
                                   + self.turnaround_ms)

    def _receive(self, now):
        t = self.transport
        rx = self.rx
        for _ in range(4):  # the answer may follow discarded foreign frames
            if self.state == _S_HEAD:
                if t.any() < 3:
                    break
                t.readinto(rx, 3)
                self._got = 3
                n = frame_length(rx, 3)
                if n < 0 or n > len(rx):
                    self.n_frame += 1
                    self._attempt_failed(now, self._frame)
                    return
                self._need = n - 3
                self.state = _S_BODY
            if t.any() < self._need:
                break
            t.readinto(self._rx_tail, self._need)
            n = self._need + 3
            self._got = n
            r = check_response(rx, n, self.tx)
            if r > 0:
                self.n_ok += 1
                self._quiet = ticks_add(now, self.gap_ms)
                self.state = _S_DONE
                return
            if r == R_OTHER:
                self.n_other += 1
                self.state = _S_HEAD
                self._got = 0
                continue
            if r == R_EXCEPTION:  # a definite answer: not retried
                self.n_exception += 1
                self._exc.code = rx[2]
                self._tries = self.retries
                self._attempt_failed(now, self._exc)
            elif r == R_CRC:
                self.n_crc += 1
                self._attempt_failed(now, self._crc)
            else:
                self.n_frame += 1
                self._attempt_failed(now, self._frame)
            return
        if ticks_diff(now, self._deadline) >= 0:
            if self._got == 0 and t.any() == 0:
                self.n_timeout += 1
                self._attempt_failed(now, self._timeout)
            else:  # part of a frame only: cut short
                self.n_frame += 1
                self._attempt_failed(now, self._frame)

    def _attempt_failed(self, now, err):
        self._drain()
        self._quiet = ticks_add(now, self.gap_ms)
        self.error = err
        if self._tries < self.retries:
            self._tries += 1
            self.state = _S_SEND
        else:
            self.state = _S_FAILED

    def _drain(self):
        """Throw away whatever the receive buffer holds (bounded; a transport
        that raises here is left for the next attempt to find)."""
        t = self.transport
        rx = self.rx
        try:
            m = len(rx)
            for _ in range(16):
                n = t.any()
                if n <= 0:
                    return
                t.readinto(rx, n if n < m else m)
        except Exception:
            pass
