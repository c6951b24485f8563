"""A real mosquitto for the tests, and what talks to it.

`Mosquitto(folder)` writes a minimal mosquitto.conf into `folder` (a
listener on 127.0.0.1 only, on a free port; persistence when asked for;
TLS and a password file when asked for), starts the broker, and stops it
again (`stop()`, also at the end of the test through the fixtures).
`make_ca()` makes a throw-away CA (and a server certificate) with openssl.
`Watcher` is a paho-mqtt client that records every message it sees and
waits (with a deadline) for one that matches. `start_sim()` and
`start_backend()` run tools/sim.py and tools/backend.py as processes.
"""
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "tools", "sim.py")
BACKEND = os.path.join(ROOT, "tools", "backend.py")
if os.path.join(ROOT, "tools", "host") not in sys.path:  # (conftest.py puts it first)
    sys.path.append(os.path.join(ROOT, "tools", "host"))
# tools/host/waiting.py, shared with tools/fleet.py; the tests import it from here
from waiting import wait_until  # noqa: E402,F401


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mosquitto_binary():
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    assert os.access(path, os.X_OK), "mosquitto is not installed: run `make setup`"
    return path


def make_ca(folder, server=False):
    """A throw-away CA (EC P-256, 2 days) in `folder`: ca.key and ca.pem;
    with `server`, also server.key and server.pem for 127.0.0.1 (subject
    and SAN) signed by it. -> (ca, cert, key), cert and key None without
    `server`."""
    d = str(folder)
    os.makedirs(d, exist_ok=True)

    def sh(*args):
        subprocess.run(args, cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
       "-subj", "/CN=evse-test-ca")
    ca = os.path.join(d, "ca.pem")
    if not server:
        return ca, None, None
    sh("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
       "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return ca, os.path.join(d, "server.pem"), os.path.join(d, "server.key")


class Mosquitto:
    def __init__(self, folder, persistence=False, tls=None, users=None):
        """tls: (ca, cert, key) files; users: {name: password}."""
        self.dir = str(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.log = os.path.join(self.dir, "mosquitto.log")
        lines = ["listener %d 127.0.0.1" % self.port,
                 # as root, mosquitto would drop to the user "mosquitto",
                 # which cannot write into our folder
                 "user %s" % getpass.getuser(),
                 "persistence %s" % ("true" if persistence else "false"),
                 "persistence_location %s/" % self.dir,
                 "log_dest file %s" % self.log,
                 "log_type error", "log_type warning", "log_type notice",
                 "log_type information"]
        if users:
            pw = os.path.join(self.dir, "passwd")
            with open(pw, "w") as f:
                f.write("")
            for name, secret in users.items():
                subprocess.run(["mosquitto_passwd", "-b", pw, name, secret], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", "password_file %s" % pw]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += ["cafile %s" % tls[0], "certfile %s" % tls[1], "keyfile %s" % tls[2]]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("mosquitto exited: %s" % self.logtext())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(up, 10, "mosquitto on port %d" % self.port)

    def stop(self):
        """SIGTERM: mosquitto saves its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def logtext(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""


class Watcher:
    """Records (topic, text, retain) of every message on `topics`."""

    def __init__(self, port, topics=("#",), user=None, password=None, tls_ctx=None):
        self.msgs = []
        self.cond = threading.Condition()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                             client_id="watcher-%d-%d" % (os.getpid(), free_port()))
        if user:
            self.c.username_pw_set(user, password)
        if tls_ctx is not None:
            self.c.tls_set_context(tls_ctx)
        subscribed = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe([(t, 1) for t in topics])
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert subscribed.wait(10), "watcher: no SUBACK"

    def _on_message(self, c, u, m):
        with self.cond:
            self.msgs.append((m.topic, m.payload.decode("utf-8", "replace"), m.retain))
            self.cond.notify_all()

    def wait_for(self, pred, timeout, what="a message", start=0):
        """The first message from index `start` on with pred(topic, text)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.msgs):
                    t, text, retain = self.msgs[i]
                    if pred(t, text):
                        return self.msgs[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %.1f s; seen:\n%s" % (
                        what, timeout, "\n".join("%s %s" % m[:2] for m in self.msgs[-30:])))
                self.cond.wait(left)

    def on(self, suffix):
        with self.cond:
            return [m for m in self.msgs if m[0].endswith(suffix)]

    def publish(self, topic, payload, qos=1):
        self.c.publish(topic, payload, qos=qos).wait_for_publish(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def write_scenario(folder, name, duration_s, events, config=None):
    path = os.path.join(str(folder), name + ".json")
    with open(path, "w") as f:
        json.dump({"name": name, "duration_s": duration_s, "config": config or {},
                   "events": events}, f)
    return path


def start_sim(scenario, port, folder, flash=None, tag="sim", backend=None):
    """tools/sim.py --broker 127.0.0.1:PORT --realtime as a process; its
    output goes to FOLDER/TAG.out and the trace to FOLDER/TAG.jsonl.
    backend: (user, password) of the simulator's backend side."""
    folder = str(folder)
    args = [sys.executable, SIM, "--scenario", scenario, "--trace",
            os.path.join(folder, tag + ".jsonl"), "--realtime", "--no-live",
            "--broker", "127.0.0.1:%d" % port]
    if flash is not None:
        args += ["--flash", str(flash)]
    env = None
    if backend is not None:
        args += ["--backend-user", backend[0]]
        env = dict(os.environ, EVSE_SIM_BACKEND_PASSWORD=backend[1])
    out = open(os.path.join(folder, tag + ".out"), "w")
    p = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT, env=env)
    p.out_path = out.name
    out.close()
    return p


def finish(p, timeout=60):
    """Wait for a process; returns its output text."""
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
        raise
    with open(p.out_path) as f:
        return f.read()


def start_backend(port, db, folder, *extra, tag="backend"):
    args = [sys.executable, BACKEND, "--broker", "127.0.0.1:%d" % port, "--db",
            "sqlite:///" + str(db)] + list(extra)
    if "run" not in extra:
        args.append("run")
    out = open(os.path.join(str(folder), tag + ".out"), "w")
    p = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT)
    p.out_path = out.name
    out.close()
    wait_until(lambda: "subscribed" in open(p.out_path).read() or p.poll() is not None, 10,
               "the backend's subscription")
    assert p.poll() is None, open(p.out_path).read()
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
    return finish(p, 15)


def backend_cli(port, db, *args, timeout=30):
    r = subprocess.run([sys.executable, BACKEND, "--broker", "127.0.0.1:%d" % port, "--db",
                        "sqlite:///" + str(db)] + list(args), cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
    return r
