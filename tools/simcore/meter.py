"""The virtual energy meter: a Modbus RTU device on a virtual UART.

The firmware reads it as it reads a real meter: `evse.meter.Meter` with the
configured profile polls it through `VirtualUart` (the transport API of
evse.modbus: write / any / readinto), so the firmware's Modbus master, the
catalogue's register map and the decoding all run in the simulator.

`MeterDevice` is the physical meter, alive for the whole run (across
reboots and power cuts of the charger). It integrates the vehicle's current
(230 V per phase) into an import register that starts at 1,000,000 Wh and
answers read requests for the configured profile's function code with the
profile's encoding of voltage, current, power and energy (registers the map
does not name read 0; a function it does not serve gets exception 01, a
quantity above the meter's limit exception 03; another unit's request,
a bad CRC, or anything while `{"meter": "offline"}`, gets no answer).

Wire time: the device keeps its own clock (the runner's virtual ms, via
`integrate`). A request occupies the bus for its length in characters at the
configured baud rate and parity (1 start, 8 data, parity, 1 stop bit); the
device answers 3.5 characters of silence plus TURNAROUND_US after it, and
each byte of the answer becomes readable when its last bit has arrived. So
a poll takes in virtual time what it takes on the wire.

Everything is integers (CPython and MicroPython give the same trace): the
float32 values of a profile are encoded from exact fractions with
round-to-nearest-even, by integer arithmetic.
"""
from evse import meter as _mm
from evse import meter_maps as _maps
from evse import modbus as _mb

VOLTS = 230
START_WH = 1000000
TURNAROUND_US = 2000  # the meter's reaction time after the request's silence
TICK_MS = 10
_MAVMS_PER_WH = 3600 * 1000 * 1000  # mA x V x ms in one Wh


# ----------------------------------------------------------- encoding
def f32_bits(n, d=1):
    """IEEE 754 single nearest to n / d (ties to even), as a 32-bit int."""
    if n == 0:
        return 0
    sign = 0
    if n < 0:
        sign = 0x80000000
        n = -n
    k = 0  # value = (n / d) = q / 2**k after normalizing q into [2**23, 2**24)
    lo = d << 23
    while n < lo:
        n <<= 1
        k += 1
    hi = d << 24
    while n >= hi:
        d <<= 1
        hi <<= 1
        k -= 1
    q = n // d
    r = n - q * d
    if 2 * r > d or (2 * r == d and q & 1):
        q += 1
        if q == 1 << 24:
            q >>= 1
            k -= 1
    e = 150 - k
    if e >= 255:
        return sign | 0x7F800000
    if e <= 0:
        return sign  # below the normal range: zero is near enough for a meter
    return sign | (e << 23) | (q & 0x7FFFFF)


def encode(kind, raw_num, raw_den, words_lo):
    """The registers (list of ints) of value raw_num / raw_den in the meter's
    own unit, for type `kind` (evse.meter); integers are floored."""
    t = kind & 7
    if t == _mm.F32:
        b = f32_bits(raw_num, raw_den)
        regs = [b >> 16, b & 0xFFFF]
    else:
        v = raw_num // raw_den
        if t == _mm.U16 or t == _mm.I16:
            return [v & 0xFFFF]
        if t == _mm.U64:
            regs = [(v >> 48) & 0xFFFF, (v >> 32) & 0xFFFF, (v >> 16) & 0xFFFF, v & 0xFFFF]
        else:
            regs = [(v >> 16) & 0xFFFF, v & 0xFFFF]
    if words_lo:
        regs.reverse()
    return regs


# ------------------------------------------------------------- device
class MeterDevice:
    def __init__(self, profile, unit=1, baud=9600, parity="N", phases=3, stop_bits=1):
        self.profile = _maps.load(profile) if isinstance(profile, str) else profile
        self.unit = unit
        self.supply_phases = phases
        self.online = True
        self.t_ms = 0  # the device's clock: the runner's virtual ms
        self.wh = START_WH
        self.acc = 0  # below one Wh, in mA x V x ms
        self.a_ma = 0  # current per phase now
        self.phases_now = phases  # phases that carry it
        bits = _mb.char_bits(parity, stop_bits)
        self.char_us = _mb.char_us(baud, bits)
        self.silence_us = _mb.silence_us(baud, bits)
        self._words_lo = self.profile["words"] == "lo"
        self._frames = {}  # addr * 65536 + qty -> _Frame
        self._resp = bytearray(_mb.MAX_ADU)
        self._resp_len = 0
        self._read = 0  # bytes of the answer the firmware has read
        self._t_req = 0  # ms: when the request went out
        self._start_us = 0  # the answer's first bit, in us after _t_req
        # counters (for tests and tools/bench_meter.py)
        self.requests = 0
        self.answers = 0
        self.tx_bytes = 0  # bytes the firmware sent
        self.rx_bytes = 0  # bytes the device answered

    # ---------------------------------------------------------- physics
    def integrate(self, dt_ms, per_phase_ma, phases):
        """Current `per_phase_ma` on `phases` phases flowed for `dt_ms`;
        the device's clock moves on by dt_ms."""
        self.t_ms += dt_ms
        self.phases_now = phases
        if per_phase_ma > 0 and dt_ms > 0:
            self.acc += per_phase_ma * phases * VOLTS * dt_ms
            if self.acc >= _MAVMS_PER_WH:
                self.wh += self.acc // _MAVMS_PER_WH
                self.acc = self.acc % _MAVMS_PER_WH

    def set_current(self, per_phase_ma):
        self.a_ma = per_phase_ma

    def values(self):
        """What the meter measures now, by role (mV, mA, W, Wh)."""
        v = [None] * _mm.ROLES
        n = self.phases_now if self.phases_now < self.supply_phases else self.supply_phases
        for i in range(3):
            v[_mm.V1 + i] = VOLTS * 1000 if i < self.supply_phases else 0
            v[_mm.A1 + i] = self.a_ma if i < n else 0
        v[_mm.W] = VOLTS * self.a_ma * n // 1000
        v[_mm.WH] = self.wh
        return v

    # -------------------------------------------------------- the wire
    def receive(self, req):
        """A request frame arrives (at the device's clock)."""
        self.requests += 1
        self.tx_bytes += len(req)
        self._resp_len = 0
        self._read = 0
        self._t_req = self.t_ms
        if not self.online:
            return
        n = self._answer(req)
        if n:
            self._resp_len = n
            self.answers += 1
            self.rx_bytes += n
            self._start_us = len(req) * self.char_us + self.silence_us + TURNAROUND_US

    def _arrived(self):
        """Bytes of the answer on the wire by now."""
        if not self._resp_len:
            return 0
        us = (self.t_ms - self._t_req) * 1000 - self._start_us
        if us <= 0:
            return 0
        n = us // self.char_us
        return n if n < self._resp_len else self._resp_len

    def available(self):
        return self._arrived() - self._read

    def read(self, buf, n):
        a = self.available()
        if n > a:
            n = a
        o = self._read
        buf[0:n] = self._resp[o:o + n]
        self._read = o + n
        return n

    def due_ms(self):
        """Virtual ms at which the answer under way is complete, or None."""
        if not self._resp_len or self._read >= self._resp_len:
            return None
        us = self._start_us + self._resp_len * self.char_us
        return self._t_req + (us + 999) // 1000

    def stride_end(self, T, nxt, m):
        """Where the runner's quiet stride from T may end, given it wanted
        `nxt`: at the tick that completes an answer on the wire, or the next
        tick while the firmware's meter `m` (None: none) is in the middle of
        a poll."""
        d = self.due_ms()
        if d is not None and d > T:
            d = (d + TICK_MS - 1) // TICK_MS * TICK_MS
            return d if d < nxt else nxt
        if m is not None and m.busy:
            return T + TICK_MS
        return nxt

    # ------------------------------------------------------ the slave
    def _answer(self, req):
        """The answer frame's length in self._resp, 0 for no answer."""
        n = len(req)
        if n < 8 or req[0] != self.unit or not _mb.crc_ok(req, n):
            return 0
        p = self.profile
        fc = req[1]
        if fc != p["fc"] or n != 8:
            return self._exception(fc, 1)
        addr = (req[2] << 8) | req[3]
        qty = (req[4] << 8) | req[5]
        if qty < 1 or qty > p["max_regs"] or qty > 125:  # 125: the most a read may ask for
            return self._exception(fc, 3)
        frame = self._frame(fc, addr, qty)
        n = len(frame.buf)
        self._resp[0:n] = frame.buf
        return n

    def _exception(self, fc, code):
        out = self._resp
        out[0] = self.unit
        out[1] = fc | 0x80
        out[2] = code
        return _mb.put_crc(out, 3)

    def _frame(self, fc, addr, qty):
        """The answer to a read of [addr, addr + qty), brought up to date:
        kept per request, so only the fields whose value changed are encoded
        again and the CRC is recomputed from the first changed byte on."""
        key = addr * 65536 + qty
        f = self._frames.get(key)
        if f is None:
            f = _Frame(self.unit, fc, addr, qty, self.profile["fields"])
            self._frames[key] = f
        vals = self.values()
        buf = f.buf
        first = None
        for i in range(len(f.fields)):
            role, off, skip, kind, num, den = f.fields[i]
            v = vals[role]
            if v == f.last[i]:
                continue
            f.last[i] = v
            regs = encode(kind, v * den, num, self._words_lo)
            for j in range(skip, len(regs)):
                o = off + 2 * (j - skip)
                if o + 1 >= len(buf) - 2:
                    break
                buf[o] = regs[j] >> 8
                buf[o + 1] = regs[j] & 0xFF
            if first is None or off < first:
                first = off
        if first is not None:
            f.crc_from(first)
        return f


class GridMeterDevice(MeterDevice):
    """The meter at the grid connection: it reads what the house and the
    charger draw together, per phase and signed (negative: export). Like a
    real meter it answers each phase's current as a magnitude and the total
    active power with its sign; its import register counts the net import
    summed over the phases (what a bidirectional meter bills)."""

    def __init__(self, profile, unit=2, baud=9600, parity="N", stop_bits=1):
        MeterDevice.__init__(self, profile, unit, baud, parity, 3, stop_bits)
        self.supply_phases = self.profile["phases"]
        self.phase = [0, 0, 0]  # mA per phase, signed

    def integrate(self, dt_ms, per_phase_ma, phases):
        self.t_ms += dt_ms
        net = self.phase[0] + self.phase[1] + self.phase[2]
        if net > 0 and dt_ms > 0:
            self.acc += net * VOLTS * dt_ms
            if self.acc >= _MAVMS_PER_WH:
                self.wh += self.acc // _MAVMS_PER_WH
                self.acc = self.acc % _MAVMS_PER_WH

    def set_phases(self, house_ma, ev_ma, ev_phases):
        """The currents now: the house's per phase plus the charger's
        `ev_ma` on its first `ev_phases` phases."""
        for i in range(3):
            x = house_ma[i] + (ev_ma if i < ev_phases else 0)
            self.phase[i] = x if i < self.supply_phases else 0

    def values(self):
        v = [None] * _mm.ROLES
        w = 0
        for i in range(3):
            on = i < self.supply_phases
            a = self.phase[i]
            v[_mm.V1 + i] = VOLTS * 1000 if on else 0
            v[_mm.A1 + i] = (a if a >= 0 else -a) if on else 0
            w += a
        v[_mm.W] = VOLTS * w // 1000
        v[_mm.WH] = self.wh
        return v


class VirtualBus:
    """One RS-485 line with several devices on it (the charger's meter and
    the grid meter): every request reaches each device, the addressed one
    answers (evse.modbus's transport API)."""

    def __init__(self, devices):
        self.devices = devices

    def write(self, buf):
        b = bytes(buf)
        for d in self.devices:
            d.receive(b)
        return len(buf)

    def any(self):
        n = 0
        for d in self.devices:
            n += d.available()
        return n

    def readinto(self, buf, n=None):
        if n is None:
            n = len(buf)
        for d in self.devices:
            if d.available():
                return d.read(buf, n)
        return 0


class _Frame:
    """One read answer: header, registers and CRC, with the CRC register
    before every byte kept so that a change near the end is cheap."""

    def __init__(self, unit, fc, addr, qty, fields):
        n = 5 + 2 * qty
        self.buf = bytearray(n)
        self.buf[0] = unit
        self.buf[1] = fc
        self.buf[2] = 2 * qty
        self.state = [0xFFFF] * (n - 1)  # CRC register before byte i
        self.fields = []
        end = addr + qty
        for role, a, kind, num, den in fields:
            if a + _mm.WIDTH[kind] <= addr or a >= end:
                continue
            skip = addr - a if a < addr else 0  # registers of the value before the block
            self.fields.append((role, 3 + 2 * (a + skip - addr), skip, kind, num, den))
        self.last = [None] * len(self.fields)
        self.crc_from(0)

    def crc_from(self, first):
        buf = self.buf
        n = len(buf) - 2
        t = _mb._CRC_TABLE
        st = self.state
        crc = st[first]
        for i in range(first, n):
            st[i] = crc
            crc = (crc >> 8) ^ t[(crc ^ buf[i]) & 0xFF]
        buf[n] = crc & 0xFF
        buf[n + 1] = crc >> 8


class VirtualUart:
    """The firmware's transport to a MeterDevice (evse.modbus's API)."""

    def __init__(self, device):
        self.device = device

    def write(self, buf):
        self.device.receive(bytes(buf))
        return len(buf)

    def any(self):
        return self.device.available()

    def readinto(self, buf, n=None):
        if n is None:
            n = len(buf)
        return self.device.read(buf, n)
