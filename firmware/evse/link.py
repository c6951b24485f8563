"""The backend link over MQTT: what the network thread runs (docs/mqtt.md).

The control thread runs App.tick every 10 ms and never touches the network;
this thread runs `Link.run()` and never touches the charger: it holds only
the App's Bus (evse/bus.py: the status snapshot the control thread writes
after every step, commands in, replies out, acknowledged journal records)
and the journal, whose immutable `live` tuple it reads. Every call into the MQTT client
may block, but never for longer than SOCK_TIMEOUT_S: connect() gets that
timeout, and the client's wait_msg sets it again where umqtt.simple's
would switch the socket to blocking without one (`client_class`). A broker
that is down, refuses, or accepts and then says nothing (a black hole) costs
this thread one timeout per attempt and the control thread nothing.

Per connection: connect with a last will (`online` topic, "offline",
retained), publish "online" (retained, QoS 1), subscribe to the command
topic, publish the Home Assistant discovery configs when enabled. Then each
step: take incoming commands, publish replies, publish journal records at
QoS 1 (each waits for its PUBACK; the App removes the record once told),
the status when it changed (at most every _STATUS_MIN_MS) and at least every
`mqtt_status_s`, telemetry every `mqtt_telemetry_s` while a vehicle is
connected, and a PINGREQ (awaiting PINGRESP) when nothing came from the
broker for half the keepalive. Any error: the socket is closed (no
DISCONNECT, so the broker sends the will) and the next attempt waits
`backoff_ms()`: 1 s doubling to 60 s, half of it random (jitter).

`mqtt` is the MQTT client module: micropython-lib's umqtt.simple (1.7.0 or
1.8.0), imported when None; on the host the same file, unmodified, loaded
by tools/host/umqtt_host.py over a socket adapter (tools/host/mpsocket.py).
The Link uses it through its public API and the subclass `client_class`.
"""
import random

from micropython import const

from evse import bus as B
from evse import payloads as PL
from evse.charger import FAULTS
from evse.commands import command_id
from evse import sleep_ms, ticks_add, ticks_diff, ticks_ms
from evse.app import VERSION

SOCK_TIMEOUT_S = 5  # bound of every blocking socket call of the client
_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(60000)
_STATUS_MIN_MS = const(500)  # status changes are published at most this often
_STEP_MS = const(50)  # pause between two steps while connected
_IDLE_MS = const(250)  # longest pause while waiting to reconnect
_PUB_PER_STEP = const(4)  # journal records published per step
_CMDS_PER_STEP = const(32)  # incoming messages taken per step
_MAX_OWN_REPLIES = const(16)  # error replies waiting to be published (beyond: the oldest go)
_REFUSALS_PER_S = const(4)  # replies to refused payloads, at most this many a second,
_REFUSALS_BURST = const(8)  # after a burst of this many; the rest are counted, not answered
_URGENT = const(("stop", "pause"))  # commands that never wait behind a flood
_NTP_EVERY_MS = const(6 * 3600 * 1000)
STABLE_MS = 30000  # a connection up this long ends the run of failures (and the backoff)
_SHORT_MS = const(10000)  # one lost sooner counts as short-lived (_SHORT_WARN in a row: a warning)
_SHORT_WARN = const(3)
ACK_WAIT_MS = 30000  # a record the backend has not confirmed is sent again after this,
_ACK_WAIT_MAX_MS = const(600000)  # doubling up to this
_ACKED = const((None, 0, 0))  # _sent's entry for a record confirmed (waiting for its removal)


def backoff_ms(failures, rand):
    """The wait after `failures` failed attempts in a row (>= 1): 1 s, 2 s,
    4 s, ... capped at 60 s; half of it fixed, half random ("equal jitter"),
    so that chargers cut off together do not come back together.
    `rand(n)` returns an integer in [0, n)."""
    d = _BACKOFF_MIN_MS << (failures - 1 if failures < 7 else 6)
    if d > _BACKOFF_MAX_MS:
        d = _BACKOFF_MAX_MS
    return d // 2 + rand(d // 2 + 1)


def _rand(n):
    return random.getrandbits(30) % n if n > 0 else 0


def describe(e):
    """A log line's worth of an exception: its class and errno or code,
    never the client's configuration (credentials)."""
    args = getattr(e, "args", ())
    code = args[0] if args else ""
    if isinstance(code, int):
        if type(e).__name__ == "MQTTException":
            return "refused by the broker (CONNACK %d%s)" % (
                code, {4: ": bad user name or password", 5: ": not authorized"}.get(code, ""))
        more = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        return "%s %d%s" % (type(e).__name__, code, ": " + more[:60] if more else "")
    return type(e).__name__ + (": " + code[:60] if isinstance(code, str) and code else "")


_PINGRESP = const(0xD0)
_PUBLISH = const(0x30)
_MAX_PUBLISH = const(1024)  # bytes of a PUBLISH's payload taken; beyond, read past
_SKIP_CHUNK = const(256)
_POLL_MS = const(5)  # while a packet's bytes trickle in


def client_class(base):
    """micropython-lib's umqtt.simple MQTTClient (`base`; 1.7.0 and 1.8.0)
    with every socket call bounded by `timeout` (seconds).

    connect(clean_session, timeout) sets that timeout on its socket before
    the TCP connect, which bounds the connect, the TLS handshake and the
    CONNACK wait. The library's own wait_msg (which check_msg, publish at
    QoS 1 and subscribe go through) switches the socket to blocking with no
    timeout after a packet's first byte, so every later read could wait
    forever. This subclass has its own wait_msg, written from MQTT 3.1.1
    (section 2: fixed header; 3.3 PUBLISH; 3.13 PINGRESP), that keeps the
    timeout, with the contract the library's callers rely on: None when no
    packet is waiting (non-blocking) or for a PINGRESP; a PUBLISH goes to
    the callback (QoS 1 answered with PUBACK) and its type byte is
    returned; any other packet's type byte is returned with the rest of the
    packet left for the caller to read (publish reads its PUBACK, subscribe
    its SUBACK).

    A PUBLISH is read whole within `timeout` of its first byte, whatever
    pace its bytes come at (non-blocking reads against a deadline: a peer
    that drip-feeds a byte every few seconds cannot hold the thread), and
    only its first _MAX_PUBLISH payload bytes are kept: a larger payload is
    read past and the callback gets its size (an int) instead."""

    class Client(base):
        timeout = SOCK_TIMEOUT_S
        _b1 = bytearray(1)  # a packet's first byte, read without allocating (one
        # client at a time uses this class: each Link makes its own)

        def _bound(self):
            ssl = self.ssl
            # ssl: None, or the evse.tls.Wrapper the link passes with TLS
            s = self.sock if ssl is None or ssl.raw is None else ssl.raw
            s.settimeout(self.timeout)

        def _take(self, n):
            """Exactly n bytes, before the packet's deadline."""
            got = b""
            while True:
                part = self.sock.read(n - len(got))
                if part:
                    got += part
                    if len(got) == n:
                        return got
                elif part is not None:
                    raise OSError(-1)  # b"": the broker closed mid-packet
                if ticks_diff(self._deadline, ticks_ms()) <= 0:
                    raise OSError(110)  # ETIMEDOUT: the packet is too slow
                sleep_ms(_POLL_MS)

        def _length(self):
            """The fixed header's Remaining Length (1 to 4 bytes, 7 bits each),
            each byte read before the packet's deadline (without allocating)."""
            b1 = self._b1
            n = 0
            for shift in (0, 7, 14, 21):
                while True:
                    got = self.sock.readinto(b1)
                    if got:
                        break
                    if got is not None:
                        raise OSError(-1)  # 0: the broker closed mid-packet
                    if ticks_diff(self._deadline, ticks_ms()) <= 0:
                        raise OSError(110)  # ETIMEDOUT: the packet is too slow
                    sleep_ms(_POLL_MS)
                n |= (b1[0] & 0x7F) << shift
                if not b1[0] & 0x80:
                    return n
            raise OSError(-1)  # malformed: a fifth length byte

        def wait_msg(self):
            got = self.sock.readinto(self._b1)
            self._bound()
            if got is None:
                return None  # non-blocking and nothing waiting
            if not got:
                raise OSError(-1)  # the broker closed the connection
            kind = self._b1[0]
            self._deadline = ticks_add(ticks_ms(), int(self.timeout * 1000))
            self.sock.setblocking(False)  # the rest against the deadline
            try:
                if kind == _PINGRESP:
                    if self._length():
                        raise OSError(-1)  # a PINGRESP carries nothing
                    return None
                if kind & 0xF0 != _PUBLISH:
                    return kind  # the caller reads the rest (PUBACK, SUBACK)
                qos = (kind >> 1) & 3
                left = self._length()
                t = self._take(2)
                topic = self._take((t[0] << 8) | t[1])
                left -= 2 + len(topic)
                pid = None
                if qos:
                    if qos != 1:
                        raise OSError(-1)  # we subscribe at QoS 0 and never ask for 2
                    pid = self._take(2)
                    left -= 2
                if left < 0:
                    raise OSError(-1)
                if left > _MAX_PUBLISH:
                    n = left
                    while n:  # read past it, within the deadline
                        n -= len(self._take(n if n < _SKIP_CHUNK else _SKIP_CHUNK))
                    self.cb(topic, left)
                else:
                    self.cb(topic, self._take(left) if left else b"")
                if pid is not None:
                    self._bound()
                    self.sock.write(b"\x40\x02" + pid)  # PUBACK
                return kind
            finally:
                self._bound()

    return Client


def _no_log(text):
    pass


def _close(c):
    """Close the client's socket, with no DISCONNECT (the broker sends the will)."""
    try:
        c.sock.close()
    except Exception:
        pass


class Link:
    def __init__(self, app, cfg, device_id, mqtt=None, ssl=None, rand=None, log=None,
                 sync_time=None, net_ready=None, timeout_s=SOCK_TIMEOUT_S, defer_tls=True,
                 password=None):
        if app.bus is None or app.journal is None:
            raise ValueError("Link: the App must be made with backend=True")
        # All this thread ever holds of the App (the seam, evse/bus.py):
        self.bus = app.bus
        self.journal = app.journal
        self.cfg = cfg
        # secrets.json's, given apart: cfg is the App's, which set_config writes to flash
        self.password = password if password is not None else cfg["mqtt_password"]
        self.device_id = device_id
        self.topics = PL.Topics(cfg["mqtt_prefix"], device_id)
        self._cmd_topic = self.topics.cmd.encode()
        self._ack_topic = self.topics.ack.encode()
        self._e2e = cfg.get("mqtt_ack", "backend") == "backend"
        # the site's grid feed is read from the broker (docs/site.md); this
        # cfg never changes (a remote set_config gives the App a new one, and
        # mode moves only between smart and solar there)
        self._feed = cfg["grid_meter"] == "mqtt" and cfg["mode"] != "normal"
        self.ota = None  # evse.ota.Runner, set by hw/system.run_all when there is one (its report)
        self.mqtt = mqtt
        self.ssl = ssl
        self.rand = rand if rand is not None else _rand
        self.log = log if log is not None else _no_log
        self.sync_time = sync_time
        self.net_ready = net_ready
        self.timeout_s = timeout_s
        # A TLS handshake computes its key exchange with the interpreter
        # held (on the ESP32 for longer than the 100 ms the contactor has to
        # open): with TLS, no (re)connect while the contactor is closed,
        # unless the board opens it in hardware (defer_tls False).
        self.defer_tls = defer_tls and ssl is not None
        self.deferred = 0  # connect attempts put off for the contactor
        self.client = None
        self.alive = ticks_ms()  # the thread's last sign of life (hw/watchdog.py)
        self._cls = None  # client_class(self.mqtt.MQTTClient)
        self.stopped = False
        self.failures = 0  # failed attempts (or links lost before STABLE_MS) in a row
        self.connects = 0
        self.short = 0  # connections in a row lost within _SHORT_MS of their CONNACK
        self._up_at = None  # when the connection came up, until it counts as stable
        self.next_try = ticks_ms()
        self.last_error = None
        # seq -> [rid, sent at, wait ms] for each record published on this
        # connection and not confirmed yet; _ACKED once confirmed
        self._sent = {}
        self._live = None  # the journal's live tuple when _sent was last tidied
        self._acks = []  # seqs confirmed that did not fit into the Bus yet
        self.resent = 0  # records sent again for want of the backend's ack
        self.bad_acks = 0  # ack messages that could not be read
        self._own = []  # error replies made here (undecodable commands, busy)
        self._refusals = _REFUSALS_BURST  # replies to refused payloads still allowed now
        self._refusals_at = ticks_ms()
        self.unanswered = 0  # refused payloads not answered (a flood)
        self._snap = B.fields(len(app.bus.snap.v))  # the snapshot as read this step
        self._shown = B.fields(B.KEY_N)  # ... and its status key as the last status published it
        self._status_at = None  # None: publish the status at the next step
        self._tele_at = None  # the last telemetry while a vehicle is connected
        self._tail_at = ticks_ms()  # the last one is due (after the boot too)
        self._rx_at = 0
        self._tx_at = 0
        self._ntp_at = None

    # ------------------------------------------------------------ loop
    def run(self, sleep_ms, stop=None, hook=None):
        """The network thread: step until stopped; `hook()` at every pass
        (hw/system.run_all: the OTA steps, evse/ota.py Runner)."""
        while not self.stopped and (stop is None or not stop()):
            self.alive = ticks_ms()
            if hook is not None:
                hook()
            w = self.step()
            if w > 0:
                sleep_ms(w)
        c = self.client
        if c is not None and self.stopped:
            self.client = None
            _close(c)

    def step(self):
        """One pass; returns the ms to wait before the next one."""
        if self.client is None:
            wait = ticks_diff(self.next_try, ticks_ms())
            if 0 < wait <= _BACKOFF_MAX_MS:  # (more: a try due for more than half
                return wait if wait < _IDLE_MS else _IDLE_MS  # the ticks' period)
            if self.defer_tls and self.bus.snap.v[B.S_CONTACTOR]:
                if not self.deferred:
                    self.log("mqtt: TLS connect deferred while the contactor is closed")
                self.deferred += 1
                return _IDLE_MS
            self._connect()
            return 0
        try:
            self._service()
        except Exception as e:  # OSError, MQTTException, anything: reconnect
            self._lost(e)
            return 0
        return _STEP_MS

    def stop(self):
        """Stop at once, as a power cut would: no DISCONNECT (sim)."""
        self.stopped = True
        c = self.client
        self.client = None
        if c is not None:
            _close(c)

    def close(self):
        """Orderly end (before a reboot): `offline`, then DISCONNECT."""
        self.stopped = True
        c = self.client
        self.client = None
        if c is None:
            return
        try:
            c.publish(self.topics.online.encode(), b"offline", True, 1)
            c.disconnect()
        except Exception:
            _close(c)

    # ------------------------------------------------------- connection
    def _connect(self):
        cfg = self.cfg
        t = self.topics
        if self.net_ready is not None and not self.net_ready():
            self._failed(OSError("network not up"))
            return
        c = None
        try:
            cls = self._cls
            if cls is None:  # made at the first attempt: client_class(MQTTClient)
                mod = self.mqtt
                if mod is None:
                    import umqtt.simple as mod
                    self.mqtt = mod
                cls = self._cls = client_class(mod.MQTTClient)
            port = cfg["mqtt_port"] or (8883 if cfg["mqtt_tls"] else 1883)
            user = cfg["mqtt_user"]
            pw = self.password
            cls.timeout = self.timeout_s  # on the class: one instance attribute fewer
            tls = None
            if self.ssl is not None:  # evse.tls is loaded only with TLS
                from evse.tls import Wrapper

                tls = Wrapper(self.ssl)
            # bytes: umqtt.simple writes len(s) then s, which is only right for
            # bytes; and it needs a password whenever there is a user
            c = cls(("evse-" + self.device_id).encode(), cfg["mqtt_host"], port,
                    user=user.encode() if user else None,
                    password=(pw or "").encode() if user else None,
                    keepalive=cfg["mqtt_keepalive_s"],
                    ssl=tls)
            c.set_callback(self._on_msg)
            c.set_last_will(t.online.encode(), b"offline", True, 1)
            c.connect(True, self.timeout_s)
            self.alive = ticks_ms()
            c.publish(t.online.encode(), b"online", True, 1)
            c.subscribe(self._cmd_topic, 0)
            if self._e2e:
                c.subscribe(self._ack_topic, 0)
            if self._feed:
                c.subscribe((t.base + "grid").encode(), 0)
            if cfg["mqtt_ha_discovery"]:
                from evse import hass  # only when enabled: its code stays out of RAM otherwise

                for topic, payload in hass.discovery(
                        cfg["mqtt_ha_prefix"], t, self.device_id, VERSION,
                        int(cfg["max_current_a"]), cfg["mode"] != "normal",
                        cfg["mqtt_remote_config"]):
                    c.publish(topic.encode(), payload.encode(), True, 0)
        except Exception as e:
            if c is not None:
                _close(c)
            self._failed(e)
            return
        if self.stopped:
            _close(c)
            return
        now = ticks_ms()
        self.client = c
        self._sent = {}  # a new connection: everything not confirmed goes again
        self._live = None
        self.deferred = 0
        self._up_at = now  # failures are forgotten once the link has stayed up
        self.connects += 1
        self.last_error = None
        self._rx_at = self._tx_at = now
        self._status_at = None  # publish the status now
        if self._tele_at is not None:  # and the telemetry, whatever the outage's length
            self._tele_at = ticks_add(now, -self.cfg["mqtt_telemetry_s"] * 1000)
        if self._tail_at is not None:  # (a stamp left for more than half the ticks'
            self._tail_at = now  # period would read as days ahead)
        self.log("mqtt: connected to %s:%d" % (cfg["mqtt_host"], port))
        if self.sync_time is not None and (
                self._ntp_at is None or ticks_diff(now, self._ntp_at) >= _NTP_EVERY_MS):
            self._ntp_at = now
            try:
                self.sync_time()
            except Exception as e:
                self.log("mqtt: time not synced: %s" % describe(e))

    def _failed(self, e):
        self.failures += 1
        d = backoff_ms(self.failures, self.rand)
        self.next_try = ticks_add(ticks_ms(), d)
        self.last_error = describe(e)
        self.log("mqtt: %s; next attempt in %d ms" % (self.last_error, d))

    def _lost(self, e):
        c = self.client
        self.client = None
        if c is not None:
            _close(c)
        up = self._up_at
        if up is not None and ticks_diff(ticks_ms(), up) < _SHORT_MS:
            self.short += 1
            if self.short == _SHORT_WARN:
                self.log("mqtt: the broker closed the connection within %d s of the CONNACK %d "
                         "times in a row: is another client using device id %s?"
                         % (_SHORT_MS // 1000, _SHORT_WARN, self.device_id))
        else:
            self.short = 0
        self._up_at = None
        self.log("mqtt: link lost")
        self._failed(e)

    # ---------------------------------------------------------- service
    def _on_msg(self, topic, msg):
        """Called by the client inside check_msg/wait_msg/publish: queue
        only, never publish from here."""
        if topic != self._cmd_topic:
            if topic == self._ack_topic:
                self._on_ack(msg)
            elif self._feed:  # the only other topic subscribed to
                from evse.site import decode_grid

                r = decode_grid(msg)
                if r is not None:
                    self.bus.grid.put(r)
            return
        m, err = PL.decode_cmd(msg)
        if err is None and m.get("cmd") == "update":  # this thread's, never the App's
            o = self.ota
            err = "updates: no ota_key.bin on this board" if o is None else o.offer(m)
            if err is None:
                self._own.append({"id": command_id(m), "ok": True})
                return
        elif err is None:
            bus = self.bus
            if bus.cmds.put(m):
                return
            if m.get("cmd") in _URGENT and bus.urgent.put(m):
                return  # the queue is full of others: stop and pause jump it
            err = "busy: too many commands, try again"
        now = ticks_ms()
        d = ticks_diff(now, self._refusals_at)  # below 0: more than half the ticks'
        gain = d * _REFUSALS_PER_S // 1000 if d >= 0 else _REFUSALS_BURST  # period ago
        if gain > 0:
            self._refusals = min(_REFUSALS_BURST, self._refusals + gain)
            self._refusals_at = now
        if self._refusals <= 0:
            self.unanswered += 1  # a flood: not every payload earns a reply
            return
        self._refusals -= 1
        if len(self._own) >= _MAX_OWN_REPLIES:
            self._own.pop(0)
            self.unanswered += 1
        self._own.append({"id": command_id(m), "ok": False, "error": err})

    def _pub(self, c, topic, payload, retain=False, qos=0):
        c.publish(topic.encode(), payload.encode(), retain, qos)
        self._tx_at = self.alive = ticks_ms()
        if qos:
            self._rx_at = self._tx_at

    def _service(self):
        c = self.client
        bus = self.bus
        t = self.topics
        for _ in range(_CMDS_PER_STEP):
            op = c.check_msg()  # non-blocking first byte, then bounded (client_class)
            if op is None:
                break
            self._rx_at = ticks_ms()
        while self._own:
            self._pub(c, t.reply, PL.reply(self._own.pop(0)))
        for _ in range(16):
            r = bus.replies.get()
            if r is None:
                break
            self._pub(c, t.reply, PL.reply(r))
        self._journal(c, self.journal, bus)
        self._status(c, bus.snap)
        now = ticks_ms()
        if self._up_at is not None and ticks_diff(now, self._up_at) >= STABLE_MS:
            self._up_at = None  # the link has stayed up: the run of failures is over
            self.failures = 0
            self.short = 0
        if self._ntp_at is not None and ticks_diff(now, self._ntp_at) >= _NTP_EVERY_MS:
            self._ntp_at = None  # due: forget the time before it ages past half the period
        half = self.cfg["mqtt_keepalive_s"] * 500
        if ticks_diff(now, self._rx_at) >= half or ticks_diff(now, self._tx_at) >= half:
            # PINGREQ, then wait (bounded) for the PINGRESP: in blocking mode
            # wait_msg returns None only for a PINGRESP
            c.ping()
            self._tx_at = ticks_ms()
            for _ in range(_CMDS_PER_STEP):
                if c.wait_msg() is None:
                    self._rx_at = ticks_ms()
                    return
            raise OSError("no PINGRESP")

    def _on_ack(self, msg):
        """The backend has committed these records: {"rids": [...]}."""
        try:
            rids = PL.decode_ack(msg)
        except ValueError:
            self.bad_acks += 1
            return
        sent = self._sent
        for rid in rids:
            for seq in sent:  # at most the journal's max_records
                if sent[seq][0] == rid:  # published on this connection, not confirmed yet
                    sent[seq] = _ACKED
                    self._acks.append(seq)
                    break

    def _journal(self, c, journal, bus):
        """Publish the journal's records at QoS 1. A record leaves the
        journal when the backend confirms its rid (mqtt_ack "backend"), or
        at the PUBACK (mqtt_ack "broker", and records without a rid);
        one not confirmed within ACK_WAIT_MS is sent again, the wait
        doubling, and all of them again on a new connection."""
        acks = self._acks
        while acks and bus.acks.put(acks[0]):
            acks.pop(0)
        live = journal.live
        sent = self._sent
        if live is not self._live:  # records went: forget them
            self._live = live
            if sent:
                seqs = [r[0] for r in live]
                for s in list(sent):
                    if s not in seqs:
                        del sent[s]
        now = ticks_ms()
        n = 0
        for seq, kind, data in live:
            st = sent.get(seq)
            if st is not None and (st[0] is None or ticks_diff(now, st[1]) < st[2]):
                continue  # confirmed, or not yet due again
            if n >= _PUB_PER_STEP:
                break
            self._pub(c, self.topics.session if kind == "s" else self.topics.event, data, qos=1)
            n += 1
            rid = PL.rid_of(data) if self._e2e else None
            if rid is None:  # the PUBACK is the confirmation
                sent[seq] = _ACKED
                acks.append(seq)
            elif st is None:
                sent[seq] = [rid, now, ACK_WAIT_MS]
            else:
                self.resent += 1
                st[1] = now
                st[2] = st[2] * 2 if st[2] < _ACK_WAIT_MAX_MS // 2 else _ACK_WAIT_MAX_MS
                if self.resent == 1 or self.resent % 100 == 0:
                    self.log("mqtt: records not confirmed by the backend, sent again (%d); "
                             "is the backend running, does the broker take our publishes?"
                             % self.resent)
        while acks and bus.acks.put(acks[0]):
            acks.pop(0)

    def unconfirmed(self):
        """Records published and waiting for the backend's confirmation."""
        k = 0
        for st in self._sent.values():
            if st[0] is not None:
                k += 1
        return k

    def _status(self, c, snap):
        cur = self._snap
        if not snap.read(cur):
            return  # overlapped the control thread's writes: the next step
        now = ticks_ms()
        shown = self._shown
        since = None if self._status_at is None else ticks_diff(now, self._status_at)
        due = since is None or since >= self.cfg["mqtt_status_s"] * 1000
        o = self.ota
        if o is not None and o.changed:  # an update's news (evse/ota.py Runner)
            o.changed = False
            due = True
        if not due and since >= _STATUS_MIN_MS:
            for i in range(B.KEY_N):
                if cur[i] != shown[i]:
                    due = True
                    break
        if due:
            self._pub(c, self.topics.status, PL.status(
                cur, FAULTS, VERSION,
                (self.connects, self.resent, self.unconfirmed(), self.short),
                None if self.ota is None else self.ota.report()),
                retain=True)
            for i in range(B.KEY_N):
                shown[i] = cur[i]
            self._status_at = now
        if PL.connected(cur):
            self._tail_at = None
            if self._tele_at is None or ticks_diff(
                    now, self._tele_at) >= self.cfg["mqtt_telemetry_s"] * 1000:
                self._pub(c, self.topics.telemetry, PL.telemetry(cur))
                self._tele_at = now
            return
        if self._tele_at is not None:  # the vehicle has just left
            self._tele_at = None
            self._tail_at = now
        # One last message once the meter shows no current (the first poll
        # after the contactor opened), so that no dashboard keeps the last
        # reading of the session; at the latest two polls on, as it is.
        if self._tail_at is not None and (PL.at_rest(cur) or ticks_diff(
                now, self._tail_at) >= self.cfg.get("meter_poll_s", 1) * 2000 + 2000):
            self._pub(c, self.topics.telemetry, PL.telemetry(cur))
            self._tail_at = None
