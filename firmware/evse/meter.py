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

A poll reads the profile's blocks one after the other (evse.meters plans
them) and publishes the values only when every block was read and the
import energy decoded: a poll is good or failed as a whole, and a failed
one changes no value. A poll starts every `poll_ms` (from the start of the
previous one; at once when the previous one took longer). Nothing the
meter, the bus or the transport does can raise out of `poll`, and in steady
state it allocates nothing on MicroPython's heap.
"""
from micropython import const

from evse import meters as _m
from evse import modbus as _mb
from evse.ticks import ticks_add, ticks_diff

DEFAULT_POLL_MS = const(1000)
DEFAULT_FAIL_POLLS = const(3)


class Meter:
    def __init__(self, profile, transport, unit=1, baud=9600, parity="N",
                 fail_polls=DEFAULT_FAIL_POLLS, poll_ms=DEFAULT_POLL_MS,
                 stop_bits=1, retries=_mb.DEFAULT_RETRIES,
                 turnaround_ms=_mb.DEFAULT_TURNAROUND_MS):
        if isinstance(profile, str):
            profile = _m.profile(profile)
        self.profile = profile
        self.unit = unit
        self.fail_polls = fail_polls
        self.poll_ms = poll_ms
        self.phases = profile["phases"]
        self.master = _mb.Master(transport, baud, parity, stop_bits, retries, turnaround_ms)
        self._fc = profile["fc"]
        fields = profile["fields"]
        blocks = _m.plan_blocks(fields, profile["max_regs"])
        self.blocks = blocks
        lo_first = _m.LO_FIRST if profile["words"] == "lo" else 0
        # Per field, flat: block index, byte offset in the response, type,
        # num, den, role.
        self._fb = []
        self._fo = []
        self._fk = []
        self._fn = []
        self._fd = []
        self._fr = []
        for f in fields:
            for b in range(len(blocks)):
                start, count = blocks[b]
                if start <= f[1] and f[1] + _m.WIDTH[f[2]] <= start + count:
                    break
            self._fb.append(b)
            self._fo.append(3 + 2 * (f[1] - start))
            self._fk.append(f[2] | lo_first)
            self._fn.append(f[3])
            self._fd.append(f[4])
            self._fr.append(f[0])
        self._nf = len(fields)
        self._pending = [None] * _m.ROLES
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
            for i in range(_m.ROLES):
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
        for i in range(self._nf):
            if fb[i] == b:
                p[self._fr[i]] = _m.decode(rx, self._fo[i], self._fk[i], self._fn[i],
                                           self._fd[i])

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
        if p[_m.WH] is None:  # no energy: the poll is worth nothing
            self.error = None
            self._failed()
            return
        self.polls += 1
        self.good += 1
        self.good_seq = self.started
        self.last_good = True
        self.fails = 0
        self.ok = True
        self.energy_wh = p[_m.WH]
        self.power_w = p[_m.W]
        a_max = None
        for i in range(3):
            if i < self.phases:
                self.phase_mv[i] = p[_m.V1 + i]
                a = p[_m.A1 + i]
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
