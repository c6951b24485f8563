"""What the control thread and the network thread hand each other.

Each `Ring` has one producer thread and one consumer thread: the producer
writes the slot and then moves `head`, the consumer reads the slot and then
moves `tail`, and neither ever waits. That holds with a GIL (ESP32, CPython)
and on the RP2040's two in-order cores without one. A full ring refuses the
item and counts it in `dropped` (written only by the producer).
"""


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
    """cmds: decoded command objects, network -> control;
    replies: reply objects, control -> network;
    acks: seqs of journal records the broker has, network -> control."""

    def __init__(self, cmds=8, replies=16, acks=16):
        self.cmds = Ring(cmds)
        self.replies = Ring(replies)
        self.acks = Ring(acks)

    def for_control(self):
        """True when the control thread has something to take (no allocation)."""
        return self.cmds.head != self.cmds.tail or self.acks.head != self.acks.tail
