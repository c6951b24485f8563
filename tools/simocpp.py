"""The simulator's OCPP side (CPython only): `tools/sim.py --ocpp URL`.

`SimOcpp` is what the runner (tools/simcore/runner.py) calls when the
scenario's charger talks OCPP 1.6J to a central system: it boots each App
with its backend (the journal and the Bus) and runs the firmware's OCPP link
(firmware/hw/ocpp_link.py over hw/wsock.py and evse/ocpp.py, on
tools/host/mpsocket.py's socket) in a thread, as the board's network thread
does. A ws:// central system is reached through simnet.LinkProxy, so that
scenario `broker` events cut and restore the connection (the central system
unreachable); a wss:// one directly (its certificate names its host), and
`broker` events are then only noted.

The scenario's `cmd` events are the charger's local commands here (the
button, a local display): the App takes them in-process and they are
answered in the trace, as without a backend. What the central system asks
(RemoteStartTransaction, ChangeAvailability, ...) reaches the App through
the link.
"""
import os
import ssl
import threading
import time

import simnet
from evse import config as _config
from evse import ws as W
from evse.app import REMOTE_KEYS, VERSION
from evse.ocpp import ChargePoint
from evse.tls import context as tls_context
from hw.ocpp_link import OcppLink, auth_header, rand_below, url_and_identity
from hw.wsock import WebSocket
from simcore.simapp import SimApp

import mpsocket

LINK_JOIN_S = 2  # for the link's thread to end at a reboot or the end


class SimOcpp:
    def __init__(self, url, password=None, log=None):
        tls, host, port, path = W.parse_url(url)  # ValueError: not ws:// or wss://
        self.password = password
        self.log = log or (lambda text: None)
        self.proxy = None
        if tls:
            self.url = url
        else:
            self.proxy = simnet.LinkProxy(host, port)
            self.url = "ws://127.0.0.1:%d%s" % (self.proxy.port, path)
        self.link = None
        self.thread = None
        self.app = None
        self.links = []  # every link of the run (connect counts)
        self._lock = threading.Lock()
        self._replies = []
        self._notes = []

    def config(self, scen_config, name):
        """The scenario's config with the OCPP backend pointed at the proxy."""
        cfg = dict(scen_config)
        cfg["backend"] = "ocpp"
        cfg["mqtt_host"] = None
        cfg["ocpp_url"] = self.url
        if not cfg.get("mqtt_device_id"):
            cfg["mqtt_device_id"] = simnet.sim_device_id(name)
        _config.validate(cfg)
        return cfg

    # ------------------------------------------------------- runner hooks
    def boot(self, board, cfg, now, meter, flash_dir, grid=None):
        self._stop_link()
        app = SimApp(board, cfg, now, meter, flash_dir, backend=True,
                     clock=lambda: int(time.time()), grid=grid)
        url, ident = url_and_identity(cfg["ocpp_url"], cfg["mqtt_device_id"])
        ctx = None
        if url.startswith("wss://"):
            with open(cfg["mqtt_ca"], "rb") as f:
                ctx = mpsocket.tls(tls_context(ssl, f.read()))
        cp = ChargePoint("evse-mpy", "sim", ident, VERSION, rand_below, clock=lambda: int(time.time()),
                         cfg=app.cfg, remote_keys=REMOTE_KEYS)
        link = OcppLink(app, cp, WebSocket(mpsocket, os.urandom, ssl=ctx), url,
                        auth_header(ident, self.password), log=self._link_log)
        self.link = link
        self.links.append(link)
        self.app = app
        self.thread = threading.Thread(target=link.run, args=(simnet.sleep_ms,), daemon=True,
                                       name="network")
        self.thread.start()
        return app

    def _link_log(self, text):
        self.log(text)
        with self._lock:
            self._notes.append(text)

    def _stop_link(self):
        if self.link is None:
            return
        link, thread = self.link, self.thread
        self.link = self.thread = None
        link.stopped = True  # the thread ends after its step; then the socket goes
        thread.join(LINK_JOIN_S)
        link.close()

    def power_off(self):
        self._stop_link()
        self.app = None

    def cmd(self, msg, now):
        if self.app is None:
            self._notes.append("cmd dropped: no supply")
            return
        r = self.app.command(msg, now)
        with self._lock:
            self._replies.append(r)

    def broker(self, up):
        if self.proxy is None:
            with self._lock:
                self._notes.append("central system %s: not cut (wss:// is not proxied)"
                                   % ("up" if up else "down"))
            return
        self.proxy.set_up(up)

    def take(self):
        with self._lock:
            r, n = self._replies, self._notes
            self._replies, self._notes = [], []
        return r, n

    def close(self):
        self._stop_link()
        if self.proxy is not None:
            self.proxy.close()
