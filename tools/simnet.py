#!/usr/bin/env python3
"""The simulator's network side (CPython only): `tools/sim.py --broker`.

- `LinkProxy`: a TCP proxy between the firmware and the broker that the
  simulator controls. Scenario `broker` events switch it: "down" closes the
  connections it carries and refuses new ones (the port is closed), "up"
  listens again. `blackhole=True` instead accepts and then never answers
  nor forwards (a broker that says nothing).
- `BlackHole`: a TCP server that accepts connections and never answers.
- `SimNet`: what the runner (tools/simcore/runner.py) calls in broker mode:
  it boots each App with its backend (the journal and the Bus), runs the
  firmware's Link (firmware/evse/link.py) in a thread with micropython-lib's
  umqtt.simple (build/umqtt-<version>, loaded by tools/host/umqtt_host.py
  over tools/host/mpsocket.py; $EVSE_UMQTT picks 1.7.0 or 1.8.0, the
  default) through the proxy, publishes
  the scenario's `cmd` events on the command topic with its own client
  (paho-mqtt, as a backend would), and collects the replies.

    tools/simnet.py blackhole [PORT]    a black hole on 127.0.0.1 until Ctrl-C
"""
import json
import os
import random
import socket
import ssl
import sys
import threading
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (os.path.join(_ROOT, "tools"), os.path.join(_ROOT, "tools", "host"),
           os.path.join(_ROOT, "firmware")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from evse import config as _config
from evse.link import Link
from evse.payloads import Topics
from evse.tls import context as tls_context
from simcore.simapp import SimApp

import mpsocket
import umqtt_host

import paho.mqtt.client as paho


BACKEND_WAIT_S = 2  # for the backend client's subscription before the run
LINK_JOIN_S = 1  # for a Link's thread to finish its step at a reboot or the end


def sleep_ms(ms):
    time.sleep(ms / 1000.0)


class _Pipe(threading.Thread):
    def __init__(self, src, dst, proxy):
        super().__init__(daemon=True)
        self.src = src
        self.dst = dst
        self.proxy = proxy

    def run(self):
        try:
            while True:
                data = self.src.recv(65536)
                if not data:
                    break
                if self.proxy.blackhole:
                    continue
                self.dst.sendall(data)
        except OSError:
            pass
        for s in (self.src, self.dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LinkProxy:
    """127.0.0.1:`port` -> (host, port) of the broker."""

    def __init__(self, host, port, listen_port=0):
        self.target = (host, port)
        self.blackhole = False
        self.lock = threading.Lock()
        self.conns = []
        self.lsock = None
        self.port = listen_port
        self.up = False
        self.set_up(True)

    def _listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(8)
        self.port = s.getsockname()[1]
        self.lsock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, lsock):
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            if self.blackhole:
                with self.lock:
                    self.conns.append(c)
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            _Pipe(c, u, self).start()
            _Pipe(u, c, self).start()

    def set_up(self, up):
        if up and not self.up:
            self._listen()
        elif not up and self.up:
            try:
                self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
            except OSError:
                pass
            self.lsock.close()
            self.lsock = None
            self.drop()
        self.up = up

    def drop(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self):
        self.set_up(False)


class BlackHole:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def parse_hostport(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("--broker: HOST:PORT expected, got %r" % text)
    return host, int(port)


def sim_device_id(name):
    """The device id of a simulated charger without `mqtt_device_id`."""
    ok = "".join([c if c.isalnum() or c in "_-" else "-" for c in name])
    return ("sim-" + ok)[:32]


class SimNet:
    def __init__(self, host, port, log=None, backend_auth=None):
        self.mqtt = umqtt_host.load()  # umqtt_host.MissingClient: run `make setup`
        self.backend_auth = backend_auth  # (user, password) of the backend side, else the charger's
        self.host = host
        self.port = port
        self.proxy = LinkProxy(host, port)
        self.log = log or (lambda text: None)
        self.link = None
        self.thread = None
        self.app = None
        self.links = []  # every Link of the run (connect counts)
        self._lock = threading.Lock()
        self._replies = []
        self._notes = []
        self.backend = None
        self.topics = None
        self.ready = threading.Event()

    def config(self, scen_config, name):
        """The scenario's config with the link pointed at the proxy; starts
        the backend client (before the run, so that the run's clock does
        not wait for it)."""
        cfg = dict(scen_config)
        cfg["mqtt_host"] = "127.0.0.1"
        cfg["mqtt_port"] = self.proxy.port
        if not cfg.get("mqtt_device_id"):
            cfg["mqtt_device_id"] = sim_device_id(name)
        full = _config.validate(cfg)
        self.topics = Topics(full["mqtt_prefix"], full["mqtt_device_id"])
        self.backend = self._backend(full)
        return cfg

    # ------------------------------------------------------- backend side
    def _backend(self, cfg):
        """A paho client connected straight to the broker, as the backend
        would be: sends the scenario's commands and reads the replies. A
        broker that does not answer (a black hole) does not stop the run:
        the commands are then lost, with a note."""
        c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                        client_id="sim-backend-%d-%d" % (os.getpid(), random.getrandbits(24)),
                        protocol=paho.MQTTv311)
        if self.backend_auth is not None:  # a broker whose ACL gives the charger only its own
            c.username_pw_set(*self.backend_auth)  # topics, and its user name as client id
        elif cfg["mqtt_user"]:
            c.username_pw_set(cfg["mqtt_user"], cfg["mqtt_password"])
        if cfg["mqtt_tls"]:
            with open(cfg["mqtt_ca"], "rb") as f:
                c.tls_set_context(tls_context(ssl, f.read()))
        self.ready = threading.Event()
        settled = threading.Event()

        def on_connect(client, userdata, flags, rc, props=None):
            if rc.is_failure:
                settled.set()  # refused: the run goes on without it
            else:
                client.subscribe(self.topics.reply, 1)

        def on_subscribe(client, userdata, mid, rcs, props=None):
            self.ready.set()
            settled.set()

        def on_message(client, userdata, msg):
            try:
                r = json.loads(msg.payload.decode())
            except ValueError:
                r = {"id": None, "ok": False, "error": "undecodable reply"}
            with self._lock:
                self._replies.append(r)

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        c.connect_async(self.host, self.port, keepalive=30)
        c.loop_start()
        settled.wait(BACKEND_WAIT_S)
        return c

    # ------------------------------------------------------- runner hooks
    def boot(self, board, cfg, now, meter, flash_dir, grid=None):
        graceful = self.app is not None and self.app.reboot_requested
        self._stop_link(graceful)
        app = SimApp(board, cfg, now, meter, flash_dir, backend=True, clock=lambda: int(time.time()),
                  grid=grid)
        ctx = None
        if cfg["mqtt_tls"]:
            with open(cfg["mqtt_ca"], "rb") as f:
                ctx = mpsocket.tls(tls_context(ssl, f.read()))
        link = Link(app, cfg, cfg["mqtt_device_id"], mqtt=self.mqtt, ssl=ctx,
                    log=self._link_log)
        halt = threading.Event()
        self.link = (link, halt)
        self.links.append(link)
        self.app = app
        self.thread = threading.Thread(target=link.run, args=(sleep_ms, halt.is_set),
                                       daemon=True, name="network")
        self.thread.start()
        return app

    def _link_log(self, text):
        self.log(text)
        with self._lock:
            self._notes.append(text)

    def _stop_link(self, graceful=False, wait=False):
        """Stop the current Link without holding up the caller (the runner,
        the control thread): a power cut closes its socket at once; a
        reboot lets it finish its step and closes in order (offline, then
        DISCONNECT), in a thread of its own. `wait`: for the end of a run."""
        if self.link is None:
            return
        (link, halt), thread = self.link, self.thread
        self.link = self.thread = None
        if not graceful or link.client is None:
            link.stop()
            if wait:
                thread.join(LINK_JOIN_S)
            return

        def close():
            halt.set()
            thread.join(LINK_JOIN_S)
            if thread.is_alive():
                link.stop()
            else:
                link.close()

        if wait:
            close()
        else:
            threading.Thread(target=close, daemon=True).start()

    def power_off(self):
        self._stop_link()
        self.app = None

    def cmd(self, msg, now=None):
        if not self.ready.is_set():
            with self._lock:
                self._notes.append("cmd dropped: the backend client is not connected")
            return
        self.backend.publish(self.topics.cmd, json.dumps(msg), qos=0)

    def broker(self, up):
        self.proxy.set_up(up)

    def take(self):
        with self._lock:
            r, n = self._replies, self._notes
            self._replies, self._notes = [], []
        return r, n

    def close(self):
        self._stop_link(graceful=True, wait=True)
        if self.backend is not None:
            self.backend.loop_stop()
            self.backend.disconnect()
        self.proxy.close()


def main(argv):
    if len(argv) < 2 or argv[1] != "blackhole" or len(argv) > 3 or (
            len(argv) == 3 and not argv[2].isdigit()):
        sys.stderr.write("usage: simnet.py blackhole [PORT]\n")
        return 2
    hole = BlackHole(int(argv[2]) if len(argv) == 3 else 0)
    print("black hole on 127.0.0.1:%d (accepts, never answers); Ctrl-C ends it" % hole.port)
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hole.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
