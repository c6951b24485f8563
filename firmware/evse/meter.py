"""The energy meter the application polls: a catalogue profile read over
Modbus RTU, without ever blocking the control loop.

`App` calls `meter.poll(now)` every control tick and then reads:

  ok         True until the meter has failed `fail_polls` polls in a row,
             True again after the next good poll (the charger's `meter` fault)
  a_ma       the largest phase current in mA (absolute), None before the first
             good poll or for a profile without phase currents
  energy_wh  import active energy in Wh (int), None before the first good poll

and, for telemetry, `phase_mv` and `phase_ma` (3 ints each; None for a
phase the meter does not measure or report) and `power_w` (total active
power, W, negative when exporting). The values are those of the last good
poll; they are meaningful while `ok` is True.

A poll reads the profile's blocks one after the other (`plan_blocks`
below) and publishes the values only when every block was read and the
import energy decoded: a poll is good or failed as a whole, and a failed
one changes no value. A poll starts every `poll_ms` (from the start of the
previous one; at once when the previous one took longer). Nothing the
meter, the RS-485 line or the transport does can raise out of `poll`, and in steady
state it allocates nothing on MicroPython's heap.

Register decoding (the other half of this module, also used by the tools
and the simulator) works on the raw bytes of a response with integer
arithmetic only: a float32 is taken apart into sign, exponent and mantissa
and scaled to an integer without ever making a float (a float is a heap
object on MicroPython). Intermediate values stay below 2**30 (MicroPython's
small ints) for every reading a meter can produce; only a value beyond
about 1 GWh or 1 MV would become a (correct) long int.

The register maps are data, one module per profile in evse/meter_maps/;
only the configured one is imported, by `from_config`, and dropped once the
Meter has taken what it needs.
"""
from micropython import const

from evse import modbus as _mb
from evse import ticks_add, ticks_diff

# Value types. A 32/64-bit value spans 2/4 registers; "words" of a profile
# gives their order (Modbus sends the bytes of each register high first).
U16 = const(1)
I16 = const(2)
U32 = const(3)
I32 = const(4)
F32 = const(5)  # IEEE 754 single precision
U64 = const(6)
LO_FIRST = const(8)  # flag or'ed into a type: low word first

WIDTH = (0, 1, 1, 2, 2, 2, 4)  # registers per value, by type

# What a value is (index into Meter's value table).
V1 = const(0)  # phase voltages, mV
V2 = const(1)
V3 = const(2)
A1 = const(3)  # phase currents, mA
A2 = const(4)
A3 = const(5)
W = const(6)  # total active power, W (negative: export)
WH = const(7)  # import active energy, Wh
ROLES = 8

_DEFAULT_POLL_MS = const(1000)
_DEFAULT_FAIL_POLLS = const(3)


class Meter:
    def __init__(self, profile, transport, unit=1, baud=9600, parity="N",
                 fail_polls=_DEFAULT_FAIL_POLLS, poll_ms=_DEFAULT_POLL_MS,
                 stop_bits=1, retries=_mb.DEFAULT_RETRIES,
                 turnaround_ms=_mb.DEFAULT_TURNAROUND_MS, master=None):
        if isinstance(profile, str):
            from evse.meter_maps import load

            profile = load(profile)
        self.name = profile["id"]
        self.unit = unit
        self.fail_polls = fail_polls
        self.poll_ms = poll_ms
        self.phases = profile["phases"]
        # `master`: another Meter's, for a second meter on the same bus (the
        # App lets only one of them poll at a time)
        self._fc = profile["fc"]
        fields = profile["fields"]
        blocks = plan_blocks(fields, profile["max_regs"])
        self.blocks = blocks
        # the longest answer: unit, function, byte count, 2 per register, CRC
        rx = 5 + 2 * max([b[1] for b in blocks] or [0])
        if master is None:
            master = _mb.Master(transport, baud, parity, stop_bits, retries, turnaround_ms, rx)
        else:
            master.fit(rx)
        self.master = master
        lo_first = LO_FIRST if profile["words"] == "lo" else 0
        # Per field, flat: block index, byte offset in the response, type,
        # role; num and den of field i at 2 * i and 2 * i + 1 of one tuple.
        self._fb = []
        self._fo = []
        self._fk = []
        self._fnd = []
        self._fr = []
        for f in fields:
            for b in range(len(blocks)):
                start, count = blocks[b]
                if start <= f[1] and f[1] + WIDTH[f[2]] <= start + count:
                    break
            self._fb.append(b)
            self._fo.append(3 + 2 * (f[1] - start))
            self._fk.append(f[2] | lo_first)
            self._fnd.append(f[3])
            self._fnd.append(f[4])
            self._fr.append(f[0])
        # small ints, kept as bytes (each one a byte); the scale factors as a tuple
        self._fb = bytes(self._fb)
        self._fo = bytes(self._fo)
        self._fk = bytes(self._fk)
        self._fr = bytes(self._fr)
        self._fnd = tuple(self._fnd)
        self._pending = [None] * ROLES
        # published values
        self.ok = True
        self.a_ma = None
        self.energy_wh = None
        self.power_w = None
        self.phase_mv = [None, None, None]
        self.phase_ma = [None, None, None]
        # bookkeeping
        self.fails = 0  # failed polls in a row
        self.polls = 0  # polls finished, good or failed
        self.good = 0  # good polls
        self.started = 0  # polls started; a poll's number is `started` when it starts
        self.good_seq = 0  # number of the poll the values come from
        self.last_good = False  # the outcome of the last finished poll
        self.error = None  # the error of the last failed poll
        self._block = -1  # block being read, -1 between polls
        self._due = None  # ticks: start of the next poll (None: at once)

    @property
    def busy(self):
        """A poll is under way (its reads are not finished)."""
        return self._block >= 0

    # ------------------------------------------------------------------ poll
    def poll(self, now):
        """Advance the poll without waiting; never raises."""
        try:
            self._poll(now)
        except Exception as e:  # a bug or a hostile transport: fail the poll, go on
            self.master.reset()
            self.error = e
            self._failed()

    def _poll(self, now):
        if self._block < 0:
            d = self._due
            if d is not None and ticks_diff(now, d) < 0:
                return
            self._due = ticks_add(now, self.poll_ms)
            self.started += 1
            for i in range(ROLES):
                self._pending[i] = None
            self._start(0)
        master = self.master
        r = master.poll(now)
        if r == _mb.BUSY:
            return
        if r != _mb.DONE:
            self.error = master.error
            self._failed()
            return
        self._decode(self._block)
        b = self._block + 1
        if b < len(self.blocks):
            self._start(b)  # goes out after the inter-frame silence
            return
        self._publish()

    def _start(self, b):
        self._block = b
        start, count = self.blocks[b]
        self.master.start_read(self.unit, self._fc, start, count)

    def _decode(self, b):
        rx = self.master.rx
        p = self._pending
        fb = self._fb
        nd = self._fnd
        for i in range(len(fb)):
            if fb[i] == b:
                p[self._fr[i]] = decode(rx, self._fo[i], self._fk[i], nd[2 * i],
                                           nd[2 * i + 1])

    def _failed(self):
        self._block = -1
        self.polls += 1
        self.last_good = False
        if self.fails < 255:
            self.fails += 1
        if self.fails >= self.fail_polls:
            self.ok = False

    def _publish(self):
        self._block = -1
        p = self._pending
        if p[WH] is None:  # no energy: the poll is worth nothing
            self.error = None
            self._failed()
            return
        self.polls += 1
        self.good += 1
        self.good_seq = self.started
        self.last_good = True
        self.fails = 0
        self.ok = True
        self.energy_wh = p[WH]
        self.power_w = p[W]
        a_max = None
        for i in range(3):
            if i < self.phases:
                self.phase_mv[i] = p[V1 + i]
                a = p[A1 + i]
            else:
                self.phase_mv[i] = None
                a = None
            self.phase_ma[i] = a
            if a is not None:
                if a < 0:
                    a = -a
                if a_max is None or a > a_max:
                    a_max = a
        self.a_ma = a_max


def from_config(cfg, transport):
    """The Meter the configuration asks for on `transport`, or None when
    `cfg["meter"]` is null."""
    name = cfg["meter"]
    if name is None:
        return None
    return Meter(name, transport, unit=cfg["meter_unit"], baud=int(cfg["meter_baud"]),
                 parity=cfg["meter_parity"], fail_polls=cfg["meter_fail_polls"],
                 poll_ms=int(cfg["meter_poll_s"] * 1000))


def grid_from_config(cfg, transport, meter):
    """The grid connection's Meter (`cfg["grid_meter"]` a profile) on the
    charger meter's bus: the same line, its own address; None otherwise."""
    name = cfg["grid_meter"]
    if name is None or name == "mqtt":
        return None
    return Meter(name, transport, unit=cfg["grid_meter_unit"], baud=int(cfg["meter_baud"]),
                 parity=cfg["meter_parity"], fail_polls=cfg["meter_fail_polls"],
                 poll_ms=int(cfg["meter_poll_s"] * 1000),
                 master=None if meter is None else meter.master)


# ---------------------------------------------------------------- planning
def plan_blocks(fields, max_regs):
    """The reads for `fields`: a list of (start, count) register blocks, the
    fewest contiguous reads that each hold whole values and no more than
    max_regs registers. Greedy from the lowest address, which is optimal for
    windows of bounded length on a line."""
    spans = sorted([(f[1], f[1] + WIDTH[f[2] & 7] - 1) for f in fields])
    blocks = []
    start = end = None
    for lo, hi in spans:
        if start is not None and hi - start + 1 <= max_regs:
            if hi > end:
                end = hi
            continue
        if start is not None:
            blocks.append((start, end - start + 1))
        start, end = lo, hi
    if start is not None:
        blocks.append((start, end - start + 1))
    return blocks


# ---------------------------------------------------------------- decoding
def _word(buf, off):
    return (buf[off] << 8) | buf[off + 1]


def decode(buf, off, kind, num, den):
    """The value whose registers start at byte `off` of buf, times num / den,
    rounded half away from zero; None for a value the meter marks as not
    available (NaN or infinity; an integer of all ones, or 0x7FFF... when
    signed). `kind` is a type, or'ed with LO_FIRST for low word first."""
    t = kind & 7
    if t == U16 or t == I16:
        v = _word(buf, off)
        if t == U16:
            if v == 0xFFFF:
                return None
        else:
            if v == 0x7FFF:
                return None
            if v & 0x8000:
                v -= 0x10000
        return _scale(v, num, den)
    lo_first = kind & LO_FIRST
    if t == U64:
        if lo_first:
            w0 = _word(buf, off + 6)
            w1 = _word(buf, off + 4)
            w2 = _word(buf, off + 2)
            w3 = _word(buf, off)
        else:
            w0 = _word(buf, off)
            w1 = _word(buf, off + 2)
            w2 = _word(buf, off + 4)
            w3 = _word(buf, off + 6)
        if w0 == 0xFFFF and w1 == 0xFFFF and w2 == 0xFFFF and w3 == 0xFFFF:
            return None
        return _scale(((w0 * 65536 + w1) * 65536 + w2) * 65536 + w3, num, den)
    if lo_first:
        hi = _word(buf, off + 2)
        lo = _word(buf, off)
    else:
        hi = _word(buf, off)
        lo = _word(buf, off + 2)
    if t == F32:
        return f32_scaled(hi, lo, num, den)
    if t == U32:
        if hi == 0xFFFF and lo == 0xFFFF:
            return None
        return _scale(hi * 65536 + lo, num, den)
    # I32
    if hi == 0x7FFF and lo == 0xFFFF:
        return None
    if hi & 0x8000:
        hi -= 0x10000
    return _scale(hi * 65536 + lo, num, den)


def _scale(raw, num, den):
    if den == 1:
        return raw * num
    neg = raw < 0
    if neg:
        raw = -raw
    q = (raw * num + den // 2) // den
    return -q if neg else q


def f32_scaled(hi, lo, num, den):
    """The IEEE 754 single (high word `hi`, low word `lo`) times num / den,
    rounded half away from zero, by integer arithmetic; None for NaN and
    infinity, 0 for zero and subnormals. num and den must not exceed 1000:
    then every intermediate below stays under 2**30 for values up to 2**30
    result units. Fractions below 2**-19 of a raw unit are dropped before
    the rounding (an error under 0.002 result units)."""
    e = (hi >> 7) & 0xFF
    if e == 0xFF:
        return None
    if e == 0:
        return 0
    m = ((hi & 0x7F) << 16) | lo | 0x800000  # 24-bit significand
    t = 150 - e  # value = m / 2**t
    if t <= 0:  # |value| >= 2**23: beyond any reading; exact, as a long int
        q = ((m << -t) * num + den // 2) // den
    else:
        if t >= 24:
            ip = 0
            f = m
        else:
            ip = m >> t
            f = m & ((1 << t) - 1)
        if t > 19:  # keep 19 fraction bits
            f = f >> (t - 19) if t < 43 else 0
            t = 19
        a = ip * num
        q = a // den
        x = ((a - q * den) << t) + f * num  # the fraction, in units of 1 / (den * 2**t)
        q += ((x >> (t - 1)) + den) // (2 * den)
    return -q if hi & 0x8000 else q
