"""What the control thread and the network thread hand each other: the
only seam between them (with the journal's immutable `live` tuple).

Each `Ring` has one producer thread and one consumer thread: the producer
writes the slot and then moves `head`, the consumer reads the slot and then
moves `tail`, and neither ever waits. That holds with a GIL (ESP32, CPython)
and on the RP2040's two in-order cores without one. A full ring refuses the
item and counts it in `dropped` (written only by the producer).

`Snapshot` is the charger's status as small ints in a fixed array, written
by the control thread after every step and copied out by the network thread
(a sequence lock: neither side allocates, waits or sees half a step). The
network thread reads nothing else of the charger, its meter or its inputs.
"""
from array import array

from micropython import const

# Snapshot fields (index into Snapshot.v). NONE: not known (JSON null).
NONE = const(-0x20000000)
STATES = ("A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F")  # S_STATE's names
# The status key: a change in any of S_STATE..S_FLAGS is a status change.
S_STATE = const(0)  # index into STATES
S_DUTY = const(1)  # PWM duty, 0.01 % (10000: steady +12 V, 0: steady -12 V)
S_OFFER = const(2)  # current offered by the PWM, mA
S_CONTACTOR = const(3)  # 1: commanded closed
S_ERROR = const(4)  # the highest-priority fault: 1 + its index in charger.FAULTS; 0 none
S_FAULTS = const(5)  # all active faults, the charger's bit mask
S_SESSION = const(6)  # id of the session under way, or NONE
S_MAX = const(7)  # limits, mA: the configured maximum,
S_CABLE = const(8)  # the cable's rating,
S_BACKEND = const(9)  # the backend's limit (or NONE),
S_FALLBACK = const(10)  # the fallback current
S_FLAGS = const(11)  # F_PAUSED | F_DERATE | F_METER_FB
KEY_N = const(12)
S_LEFT = const(12)  # ms left of the backend limit's ttl_s, or NONE
S_ENERGY = const(13)  # energy of the current (or last) session, Wh
S_EV = const(14)  # largest phase current the meter reads, mA, or NONE
S_UPTIME = const(15)  # s
S_BOOT = const(16)  # boot number
S_PENDING = const(17)  # journal records waiting for the backend
S_DROPPED = const(18)  # journal records dropped since boot
S_ERRORS = const(19)  # failed journal, state and config writes, unbuildable reports
S_V1 = const(20)  # phase voltages, mV (S_V1 + 0..2), NONE: not measured
S_A1 = const(23)  # phase currents, mA (S_A1 + 0..2)
S_POWER = const(26)  # W
S_METER_WH = const(27)  # the meter's import register, Wh (NONE while it is silent)
S_TEMP = const(28)  # enclosure, 0.1 degC
S_START = const(29)  # S_UPTIME when the session under way started, or NONE
S_START_WH = const(30)  # the meter's reading at its start, Wh (NONE: not read yet, or no meter)
N_FIELDS = const(31)
F_PAUSED = const(1)
F_DERATE = const(2)
F_METER_FB = const(4)  # the meter is lost and the offer is at the fallback current
_SEQ_MASK = const(0x3FFFFFFF)  # the sequence stays a small int (2**30 is even)
_TRIES = const(3)


def fields(n):
    """A zeroed array for a snapshot's first n fields (N_FIELDS: all)."""
    return array("i", [0] * n)


class Snapshot:
    """One writer (the control thread): begin(), store into `v`, end().
    Readers copy it out with read(dst): True when dst holds the fields of
    one single write. `seq` is odd while a write is under way."""

    def __init__(self):
        self.v = fields(N_FIELDS)
        self.seq = 0

    def begin(self):
        self.seq = (self.seq + 1) & _SEQ_MASK

    def end(self):
        self.seq = (self.seq + 1) & _SEQ_MASK

    def read(self, dst):
        """Copy the fields into `dst`; False when every try overlapped a
        write (the reader then keeps what it had)."""
        v = self.v
        for _ in range(_TRIES):
            s = self.seq
            if not s & 1:
                for i in range(len(v)):  # N_FIELDS, more with site energy (evse.site)
                    dst[i] = v[i]
                if self.seq == s:
                    return True
        return False


class Ring:
    def __init__(self, size):
        self.buf = [None] * (size + 1)
        self.head = 0  # next slot to write (producer)
        self.tail = 0  # next slot to read (consumer)
        self.dropped = 0

    def put(self, item):
        h = self.head
        nh = h + 1
        if nh == len(self.buf):
            nh = 0
        if nh == self.tail:
            self.dropped += 1
            return False
        self.buf[h] = item
        self.head = nh
        return True

    def get(self):
        """The oldest item, or None when the ring is empty."""
        t = self.tail
        if t == self.head:
            return None
        item = self.buf[t]
        self.buf[t] = None
        t += 1
        if t == len(self.buf):
            t = 0
        self.tail = t
        return item

    def empty(self):
        return self.head == self.tail


class Bus:
    """snap: the charger's status (Snapshot), control -> network;
    cmds: decoded command objects, network -> control;
    replies: reply objects, control -> network;
    acks: seqs of journal records the backend has (and OCPP's (session,
    transactionId), the update's ("update", fields) events), network -> control."""

    def __init__(self, cmds=8, replies=16, acks=16, urgent=2):
        self.snap = Snapshot()
        self.urgent = Ring(urgent)  # stop and pause, served first, never behind a flood
        self.cmds = Ring(cmds)
        self.replies = Ring(replies)
        self.acks = Ring(acks)

    def for_control(self):
        """True when the control thread has something to take (no allocation)."""
        return (self.cmds.head != self.cmds.tail or self.acks.head != self.acks.tail
                or self.urgent.head != self.urgent.tail)
