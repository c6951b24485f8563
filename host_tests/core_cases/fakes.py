"""Stand-ins for the core cases of the backend link: a board with a vehicle,
a meter, a folder for the flash, a clock, and an MQTT client module with
umqtt.simple's API that records what it is asked to do. Plain Python for
CPython and MicroPython alike.
"""
import json
import os

from evse import config
from evse.app import App
from evse import ticks_add

_dirs = [0]


def tmpdir(tag):
    """A new empty folder (CPython: tempfile; MicroPython: a name under /tmp
    that no earlier run left behind: mkdir refuses one that exists)."""
    try:
        import tempfile
        return tempfile.mkdtemp(prefix=tag)
    except ImportError:
        import time
        try:
            os.mkdir("/tmp")
        except OSError:
            pass
        base = (int(time.time()) * 1000003 + time.ticks_us()) & 0xFFFFFF
        for _ in range(1000):
            _dirs[0] += 1
            p = "/tmp/evse-%s-%x-%d" % (tag, base, _dirs[0])
            try:
                os.mkdir(p)
                return p
            except OSError:
                pass
        raise OSError("tmpdir: no free name under /tmp")


def write(path, data):
    f = open(path, "wb")
    f.write(data)
    f.close()


def read(path):
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        return f.read()
    finally:
        f.close()


class Board:
    """A vehicle on the pilot (A/B/C), a working RCD self-test, a contactor
    with its mirror contact."""

    LEVELS = {"A": 12000, "B": 9000, "C": 6000}

    def __init__(self):
        self.ev = "A"
        self.rcd_test = False
        self.contactor = False
        self.rcd = False

    def read(self, inp):
        inp.cp_high_mv = self.LEVELS[self.ev]
        inp.cp_low_mv = -12000
        inp.rcd = self.rcd or self.rcd_test
        inp.fb = self.contactor

    def apply(self, out):
        self.rcd_test = out.rcd_test
        self.contactor = out.contactor

    def safe(self):
        self.contactor = False
        self.rcd_test = False


class Meter:
    def __init__(self, wh=5000):
        self.ok = None  # until the first poll
        self.a_ma = 0
        self.energy_wh = wh
        self.answering = True
        self.started = 0  # every tick is a poll here
        self.good_seq = 0

    def poll(self, now):
        self.started += 1
        if self.answering:
            self.ok = True
            self.good_seq = self.started


class Clock:
    def __init__(self, t=None):
        self.t = t

    def __call__(self):
        return self.t


NONCE = 0x5EED0000  # the Rig's boot nonce, plus the boot number


class Rig:
    """An App with its backend on the fake board, ticked in 10 ms steps."""

    def __init__(self, flash=None, cfg=None, meter=True, clock=None, now=0, **kw):
        self.flash = flash if flash is not None else tmpdir("app")
        c = {"mqtt_host": "broker"}
        if cfg:
            for k in cfg:
                c[k] = cfg[k]
        self.cfg = config.validate(c)
        self.board = Board()
        self.meter = Meter() if meter else None
        self.clock = clock
        self.now = now
        self.t = 0  # ms run
        if "nonce" not in kw:
            kw["nonce"] = NONCE + self.boots()  # deterministic rids: the same on every Python
        self.app = App(self.board, self.cfg, now, self.meter, self.flash, backend=True,
                       clock=clock, **kw)

    def boots(self):
        """The boot number the App is about to take (state.json's + 1)."""
        try:
            return json.loads(read(self.flash + "/state.json")).get("boots", 0) + 1
        except (TypeError, ValueError, AttributeError):
            return 1

    def run(self, ms, ev=None):
        if ev is not None:
            self.board.ev = ev
        for _ in range(ms // 10):
            self.now = ticks_add(self.now, 10)
            self.t += 10
            self.app.tick(self.now)

    def charge(self, ms=1000):
        if self.t < 2400:  # the charger keeps X1 for 3 s after boot
            self.run(2400 - self.t, "A")
        self.run(600, "B")
        self.run(ms, "C")

    def live(self, kind=None):
        return [r for r in self.app.journal.live if kind is None or r[1] == kind]


# ------------------------------------------------------------- MQTT fake
class FakeSock:
    def __init__(self, client):
        self.client = client
        self.timeout = "unset"
        self.closed = False
        self.rx = b""  # bytes from the "broker"

    def settimeout(self, t):
        self.timeout = t

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def read(self, n):
        if not self.rx:
            if self.timeout == 0:
                return None
            raise OSError(110)  # ETIMEDOUT: a bounded wait with nothing there
        out = self.rx[:n]
        self.rx = self.rx[n:]
        return out

    def readinto(self, buf, n=None):
        got = self.read(len(buf) if n is None else n)
        if got is None:
            return None
        for i in range(len(got)):
            buf[i] = got[i]
        return len(got)

    def write(self, buf, n=None):
        return len(buf)

    def close(self):
        self.closed = True


class FakeSockets:
    def socket(self, *a):
        return FakeSock(None)

    def getaddrinfo(self, *a):
        return [(0, 0, 0, "", ("127.0.0.1", 1883))]


class MQTTException(Exception):
    pass


class FakeMQTT:
    """A module with umqtt.simple's MQTTClient. `script` decides what
    connect() does: None (works), an exception to raise; `log` records
    every call as a tuple; `inbox` holds (topic, msg) to deliver on
    check_msg."""

    MQTTException = MQTTException

    def __init__(self):
        self.socket = FakeSockets()
        self.fail = None  # exception for connect() to raise
        self.fail_publish = None  # exception for publish() to raise
        self.log = []
        self.inbox = []
        self.clients = []
        mod = self

        class MQTTClient:
            def __init__(self, client_id, server, port=0, user=None, password=None,
                         keepalive=0, ssl=None):
                self.args = (client_id, server, port, user, password, keepalive, ssl)
                self.ssl = ssl
                self.cb = None
                self.sock = None
                mod.clients.append(self)

            def set_callback(self, f):
                self.cb = f

            def set_last_will(self, topic, msg, retain=False, qos=0):
                mod.log.append(("will", topic, msg, retain, qos))

            def connect(self, clean_session=True, timeout=None):
                self.sock = mod.socket.socket()
                self.sock.settimeout(timeout)
                if mod.fail is not None:
                    raise mod.fail
                mod.log.append(("connect", clean_session, timeout))
                return 0

            def publish(self, topic, msg, retain=False, qos=0):
                if mod.fail_publish is not None:
                    raise mod.fail_publish
                mod.log.append(("pub", topic, msg, retain, qos))

            def subscribe(self, topic, qos=0):
                mod.log.append(("sub", topic, qos))

            def check_msg(self):
                self.sock.setblocking(False)
                if not mod.inbox:
                    self.sock.setblocking(True)
                    return None
                t, m = mod.inbox.pop(0)
                self.sock.setblocking(True)
                self.cb(t, m)
                return 0x30

            def wait_msg(self):
                r = self.sock.read(2)  # the Link's subclass has its own
                return None if r == b"\xd0\x00" else r[0]

            def ping(self):
                mod.log.append(("ping",))
                self.sock.rx += b"\xd0\x00"  # the PINGRESP

            def disconnect(self):
                mod.log.append(("disconnect",))

        self.MQTTClient = MQTTClient

    def pubs(self, topic_end=None):
        return [e for e in self.log if e[0] == "pub"
                and (topic_end is None or e[1].endswith(topic_end.encode()))]
