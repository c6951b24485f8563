"""The OCPP 1.6J link in the network thread: hw/wsock.py's WebSocket client
carrying evse/ocpp.py's messages, and the App's Bus (status snapshot in,
commands out, replies in, journal acknowledgements out), as evse/link.py
does for MQTT. Imported only when the OCPP backend is configured
(docs/ocpp.md). Every socket call is here, in the network thread; nothing
here can stall the control loop (it only touches the Bus's rings and reads
the journal's immutable `live` tuple).

    link = OcppLink(app, cp, ws, url, auth)
    link.run(sleep_ms, stop, hook)        # or step() in a loop: ms to wait
"""
from micropython import const

from evse import bus as B
from evse import ticks_add, ticks_diff, ticks_ms
from evse.ws import OP_CLOSE, OP_TEXT, basic_auth

_STEP_MS = const(50)  # between passes while connected
_IDLE_MS = const(500)  # longest wait while not connected
_BACKOFF_MIN_MS = const(2000)
_BACKOFF_MAX_MS = const(300000)
_RX_PER_STEP = const(4)  # messages taken per pass
PROTOCOL = b"ocpp1.6"


def auth_header(ident, password):
    """HTTP Basic for the OCPP 1.6 security profiles 1 and 2 (user: the
    charge point's identity), or None without a password."""
    if not password:
        return None
    return basic_auth(ident, password)


class OcppLink:
    def __init__(self, app, cp, ws, url, auth=None, log=None, clock=ticks_ms):
        self.app = app
        self.bus = app.bus
        self.cp = cp
        self.ws = ws
        self.url = url  # ws[s]://host:port/path/<identity>
        self.auth = auth
        self.log = log if log is not None else (lambda text: None)
        self.ticks = clock
        self.v = B.fields(len(app.bus.snap.v))
        self.up = False
        self.failures = 0
        self.next_try = clock()
        self.stopped = False
        self.alive = clock()
        self.connects = 0
        self.lost = 0

    def run(self, sleep_ms, stop=None, hook=None):
        while not self.stopped and (stop is None or not stop()):
            self.alive = self.ticks()
            if hook is not None:
                hook()
            w = self.step()
            if w > 0:
                sleep_ms(w)

    def step(self):
        """One pass; the ms to wait before the next one."""
        now = self.ticks()
        if not self.up:
            wait = ticks_diff(self.next_try, now)
            if wait > 0:
                return wait if wait < _IDLE_MS else _IDLE_MS
            try:
                self.ws.connect(self.url, PROTOCOL, self.auth)
            except Exception as e:
                self._failed(e, now)
                return 0
            self.up = True
            self.failures = 0
            self.connects += 1
            self.cp.connected(now)
            self.log("ocpp: connected")
        try:
            self._service(now)
        except Exception as e:  # OSError, WsError, anything: reconnect
            self.up = False
            self.lost += 1
            self.cp.lost()
            try:
                self.ws.close()
            except Exception:
                pass
            self._failed(e, self.ticks())
            return 0
        return _STEP_MS

    def _failed(self, e, now):
        self.failures += 1
        w = _BACKOFF_MIN_MS << (self.failures - 1 if self.failures < 9 else 8)
        self.next_try = ticks_add(now, w if w < _BACKOFF_MAX_MS else _BACKOFF_MAX_MS)
        self.log("ocpp: no connection (%r), again in %d s" % (e, w // 1000))

    def _send(self, text):
        if text is not None:
            self.ws.send_text(text.encode())

    def _service(self, now):
        cp = self.cp
        ws = self.ws
        bus = self.bus
        for _ in range(_RX_PER_STEP):
            op = ws.poll()
            if op == OP_CLOSE:
                raise OSError(-1)  # the central system closed: reconnect
            if op != OP_TEXT:
                break
            self._send(cp.receive(bytes(ws.dec.msg[:ws.dec.n]), now))
        j = self.app.journal
        if j is not None:
            cp.journal(j.live)
        cmds = cp.cmds
        while cmds:
            m = cmds[0]
            ring = bus.urgent if m.get("cmd") in ("stop", "pause") else bus.cmds
            if not ring.put(m):
                break
            cmds.pop(0)
        acks = cp.acks
        while acks and bus.acks.put(acks[0]):
            acks.pop(0)
        r = bus.replies.get()
        while r is not None:
            self._send(cp.reply(r))
            r = bus.replies.get()
        if bus.snap.read(self.v):
            self._send(cp.poll(self.v, now))

    def close(self):
        self.stopped = True
        if self.up:
            self.up = False
            try:
                self.ws.close()
            except Exception:
                pass
