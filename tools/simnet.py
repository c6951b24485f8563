"""The simulator's network side (CPython only): `tools/sim.py --broker`.

- `LinkProxy`: a TCP proxy between the firmware and the broker that the
  simulator controls. Scenario `broker` events switch it: "down" closes the
  connections it carries and refuses new ones (the port is closed), "up"
  listens again. `blackhole=True` instead accepts and then never answers
  nor forwards (a broker that says nothing).
- `BlackHole`: a TCP server that accepts connections and never answers.
- `SimNet`: what the runner (tools/simcore/runner.py) calls in broker mode:
  it boots each App with its backend (the journal and the Bus), runs the
  firmware's Link (firmware/evse/link.py) in a thread with the host
  umqtt.simple (tools/host/umqtt/simple.py) through the proxy, publishes
  the scenario's `cmd` events on the command topic with its own client
  (paho-mqtt, as a backend would), and collects the replies.
"""
import json
import os
import random
import socket
import ssl
import threading
import time

from evse.app import App
from evse.link import Link
from evse.payloads import Topics
from evse.tls import context as tls_context

import paho.mqtt.client as paho


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

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
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
    def __init__(self, host, port, log=None):
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
        self.cfg = None

    def config(self, scen_config, name):
        """The scenario's config with the link pointed at the proxy."""
        cfg = dict(scen_config)
        cfg["mqtt_host"] = "127.0.0.1"
        cfg["mqtt_port"] = self.proxy.port
        if not cfg.get("mqtt_device_id"):
            cfg["mqtt_device_id"] = sim_device_id(name)
        return cfg

    # ------------------------------------------------------- backend side
    def _backend(self, cfg):
        """A paho client connected straight to the broker, as the backend
        would be: sends the scenario's commands and reads the replies."""
        c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                        client_id="sim-backend-%d-%d" % (os.getpid(), random.getrandbits(24)),
                        protocol=paho.MQTTv311)
        if cfg["mqtt_user"]:
            c.username_pw_set(cfg["mqtt_user"], cfg["mqtt_password"])
        if cfg["mqtt_tls"]:
            with open(cfg["mqtt_ca"], "rb") as f:
                c.tls_set_context(tls_context(ssl, f.read()))
        ready = threading.Event()

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe(self.topics.reply, 1)

        def on_subscribe(client, userdata, mid, rcs, props=None):
            ready.set()

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
        c.connect(self.host, self.port, keepalive=30)
        c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("cannot subscribe to the broker at %s:%d" % (self.host, self.port))
        return c

    # ------------------------------------------------------- runner hooks
    def boot(self, board, cfg, now, meter, flash_dir):
        graceful = self.app is not None and self.app.reboot_requested
        self._stop_link(graceful)
        app = App(board, cfg, now, meter, flash_dir, backend=True, clock=lambda: int(time.time()))
        if self.backend is None:
            self.cfg = cfg
            self.topics = Topics(cfg["mqtt_prefix"], cfg["mqtt_device_id"])
            self.backend = self._backend(cfg)
        ctx = None
        if cfg["mqtt_tls"]:
            with open(cfg["mqtt_ca"], "rb") as f:
                ctx = tls_context(ssl, f.read())
        link = Link(app, cfg, cfg["mqtt_device_id"], ssl=ctx, log=self._link_log)
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

    def _stop_link(self, graceful=False):
        if self.link is None:
            return
        (link, halt), thread = self.link, self.thread
        self.link = self.thread = None
        if graceful:  # as runtime.run() before machine.reset()
            halt.set()
            thread.join(10)
            link.close()
        else:  # a power cut: the connection just dies
            link.stop()
            thread.join(10)

    def power_off(self):
        self._stop_link()
        self.app = None

    def cmd(self, msg):
        self.backend.publish(self.topics.cmd, json.dumps(msg), qos=0)

    def broker(self, up):
        self.proxy.set_up(up)

    def take(self):
        with self._lock:
            r, n = self._replies, self._notes
            self._replies, self._notes = [], []
        return r, n

    def close(self):
        self._stop_link(graceful=True)
        if self.backend is not None:
            self.backend.loop_stop()
            self.backend.disconnect()
        self.proxy.close()
