"""The OCPP 1.6J link in the network thread: hw/wsock.py's WebSocket client
carrying evse/ocpp.py's messages, and the App's Bus (status snapshot in,
commands out, replies in, journal acknowledgements out), as evse/link.py
does for MQTT. Imported only when the OCPP backend is configured
(docs/ocpp.md). Every socket call is here, in the network thread; nothing
here can stall the control loop (it only touches the Bus's rings and reads
the journal's immutable `live` tuple).

    link = OcppLink(app, cp, ws, url, auth)
    link.run(sleep_ms, stop, hook)        # or step() in a loop: ms to wait
    link = make(app, cfg, ident, password, model)   # on the board (hw/system.py)
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
_NTP_EVERY_MS = const(21600000)  # the RTC set by NTP again after 6 h
PROTOCOL = b"ocpp1.6"
KEPT = "ocpp.json"  # what the central system set that outlives a reboot (ChargePoint.kept)
# FirmwareStatusNotification for each evse.ota phase (PH_IDLE .. PH_SWITCHING)
_FW_STATUS = const((None, "Downloading", "Downloaded", "DownloadFailed", "Installing"))


def url_and_identity(url, device_id):
    """(the URL to open, the charge point's identity): a URL ending in "/"
    gets the device id appended (OCPP-J 1.6 section 3.1.1: the identity is
    the URL's last path segment)."""
    if url.endswith("/"):
        url += device_id
    return url, url[url.rfind("/") + 1:]


def rand_below(n):
    """A random int in [0, n) from os.urandom (the ChargePoint's message ids)."""
    import os

    return int.from_bytes(os.urandom(4), "big") % n


def make(app, cfg, device_id, password=None, model="evse-mpy", log=None, defer_tls=True,
         root=""):
    """The OcppLink the configuration asks for, over the board's socket and
    ssl (cfg: backend "ocpp", ocpp_url; wss:// takes mqtt_ca as the central
    system's CA). What the central system set and a reboot keeps (the
    intervals, the charging profiles) is read back from root + KEPT."""
    import os
    import socket

    from evse.app import REMOTE_KEYS, VERSION
    from evse.ocpp import MAX_TEXT, ChargePoint
    from hw import net
    from hw.wsock import WebSocket

    url, ident = url_and_identity(cfg["ocpp_url"], device_id)
    ctx = None
    if url.startswith("wss://"):
        import ssl

        from evse.tls import context

        f = open(cfg["mqtt_ca"], "rb")
        try:
            ctx = context(ssl, f.read())
        finally:
            f.close()

    cp = ChargePoint("evse-mpy", model, ident, VERSION, rand_below, clock=net.clock,
                     cfg=app.cfg, remote_keys=REMOTE_KEYS)
    ws = WebSocket(socket, os.urandom, max_bytes=MAX_TEXT, ssl=ctx)
    link = OcppLink(app, cp, ws, url, auth_header(ident, password), log=log,
                    net_ready=net.net_ready, sync_time=net.sync_time,
                    defer_tls=defer_tls and ctx is not None, kept=root + KEPT)
    link.restore()
    return link


def auth_header(ident, password):
    """HTTP Basic for the OCPP 1.6 security profiles 1 and 2 (user: the
    charge point's identity), or None without a password."""
    if not password:
        return None
    return basic_auth(ident, password)


class OcppLink:
    def __init__(self, app, cp, ws, url, auth=None, log=None, clock=ticks_ms, net_ready=None,
                 sync_time=None, defer_tls=False, kept=None):
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
        self.net_ready = net_ready  # () -> the network is up (Wi-Fi joined)
        self.sync_time = sync_time  # sets the RTC by NTP (blocking, seconds at most)
        self._ntp_at = None
        # wss:// on a board without a hardware CP interlock: no TLS handshake
        # (seconds of CPU) while the contactor is closed, as evse/link.py
        self.defer_tls = defer_tls
        self.deferred = 0
        self.ota = None  # evse/ota.py Runner (hw/system.run_all), on a board that takes updates
        self.kept = kept  # the file ChargePoint.kept() goes to when it changes (None: nowhere)
        self._fw_phase = -1  # the update's phase and result as last reported (-1: not yet)
        self._fw_result = -1

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
        if self._ntp_at is not None and ticks_diff(now, self._ntp_at) >= _NTP_EVERY_MS:
            self._ntp_at = None  # due: forgotten before it ages past half the ticks' period
        if not self.up:
            wait = ticks_diff(self.next_try, now)
            if 0 < wait <= _BACKOFF_MAX_MS:  # (more: a try due for more than half
                return wait if wait < _IDLE_MS else _IDLE_MS  # the ticks' period)
            if self.net_ready is not None and not self.net_ready():
                return _IDLE_MS
            if self.defer_tls and self.bus.snap.v[B.S_CONTACTOR]:
                self.deferred += 1
                return _IDLE_MS
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
            if self.sync_time is not None and (
                    self._ntp_at is None or ticks_diff(now, self._ntp_at) >= _NTP_EVERY_MS):
                self._ntp_at = now
                try:
                    self.sync_time()
                except Exception as e:
                    self.log("ocpp: time not synced: %r" % e)
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
            self._send(cp.receive(memoryview(ws.dec.msg)[:ws.dec.n], now))
        if cp.dirty:
            self._keep(cp)
        cp.cfg = self.app.cfg  # a set_config gives the App a new dict
        j = self.app.journal
        if j is not None:
            cp.journal(j.live)
        cmds = cp.cmds
        while cmds:
            m = cmds[0]
            ring = bus.urgent if isinstance(m, dict) and m.get("cmd") in ("stop", "pause") \
                else bus.cmds
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
        if cp.update is not None or self.ota is not None:
            self._firmware(cp, now)
        if bus.snap.read(self.v):
            self._send(cp.poll(self.v, now))

    def restore(self):
        """At boot: what the central system set before the reboot, from `kept`."""
        if self.kept is None:
            return
        from evse.config import read_json

        try:
            self.cp.restore(read_json(self.kept))
        except Exception as e:  # unreadable: the defaults, and the file is written anew
            self.log("ocpp: %s not read: %r" % (self.kept, e))
        self.cp.dirty = False

    def _keep(self, cp):
        cp.dirty = False
        if self.kept is None:
            return
        from evse.config import write_json_atomic

        try:
            write_json_atomic(self.kept, cp.kept())
        except OSError as e:  # a flash error costs the setting's survival, nothing else
            self.log("ocpp: %s not written: %r" % (self.kept, e))

    def _firmware(self, cp, now):
        """UpdateFirmware to the board's update (evse/ota.py Runner, `ota`,
        set by hw/system.run_all when the board takes updates), and its
        phases back as FirmwareStatusNotification."""
        o = self.ota
        u = cp.update
        if u is not None:
            t = cp.secs(now)
            if u[1] is not None and t is not None and t < u[1]:
                return  # its retrieveDate has not come yet
            cp.update = None
            why = "no ota_key.bin on this board" if o is None else o.offer(
                {"cmd": "update", "url": u[0]})
            if why is not None:
                self.log("ocpp: UpdateFirmware: %s" % why)
                cp.firmware("DownloadFailed")
                return
        if o is None:
            return
        ph = o.phase  # two ints, not a tuple: this runs at every pass
        res = o.result
        was = self._fw_phase
        if ph == was and res == self._fw_result:
            return
        self._fw_phase = ph
        was_res = self._fw_result
        self._fw_result = res
        if was < 0:  # this boot's first look: a trial that just ended, only
            if res == 3 and o.rolled:  # R_ROLLED_BACK, recorded at this boot
                cp.firmware("InstallationFailed")
            return
        if ph != was:
            s = _FW_STATUS[ph]  # by evse.ota PH_*
            if s is not None:
                cp.firmware(s)
        if res == 2 and was_res != 2:  # R_COMMITTED: the trial proved itself
            cp.firmware("Installed")

    def close(self):
        self.stopped = True
        if self.up:
            self.up = False
            try:
                self.ws.close()
            except Exception:
                pass
