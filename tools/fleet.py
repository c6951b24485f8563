#!/bin/sh
''''exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@" #'''
"""Fleet load generator: N chargers against the shipped broker set-up and
tools/backend.py, loopback only (docs/mqtt.md, "Fleet benchmark").

    tools/fleet.py [--scenario steady|storm|broker-kill|backend-kill]
                   [--n N] [--db sqlite|postgres] [--records R] [--rate R/S]
                   [--duration S] [--drain-s S] [--resend-s S] [--procs P]
                   [--backend-args ARGS] [--json FILE]

It starts everything itself in a temporary folder: mosquitto with exactly
deploy/mosquitto/mosquitto.conf and acl (listener ports replaced by free
ones; a password per charger), a PostgreSQL cluster of its own (initdb) or a
SQLite file, and `tools/backend.py run`. Then it opens N MQTT connections,
one per charger, each speaking what the firmware speaks: CONNECT with its
device id as user and client id, `online` retained, a status, SUBSCRIBE to
its own `ack` (QoS 0, as the firmware), and its journal records (payloads
from firmware/evse/payloads.py, session_record and event, each with its
"rid") published one at a time at QoS 1, each waiting for its PUBACK; a
record leaves the charger's journal only when its rid comes back in an ack
(read with the firmware's payloads.decode_ack); what is not acknowledged is
sent again after a reconnect and after --resend-s (doubling at each re-send
up to 600 s, as the firmware); no PUBACK within 10 s: a new connection.

The chargers live in --procs forked processes (2), each owning a slice of
them on one selector with non-blocking sockets; a record's payload and
PUBLISH header are made once, before the start. At most 64 connections are
between TCP connect and SUBACK at once (mosquitto's accept backlog is 100).

Scenarios: `steady` (each charger one record every N/--rate seconds for
--duration), `storm` (every charger arrives with --records records
journaled, all connecting at once), `broker-kill` (steady, with the broker
killed -9 half way and restarted; with --kills K, K times at even gaps), `backend-kill` (steady, the backend
killed -9 half way and restarted). Figures: records stored per second
(first publish to last acknowledgement), end-to-end latency (record made to
its acknowledgement) p50/p99, CPU of the broker, the backend (and its two
threads), PostgreSQL and the generator, and what every other process on
the machine used meanwhile, CPU per record stored, records lost (not in the
database at the end, goal 0), duplicates stored (goal 0), acknowledged but
not stored (must be 0), why connections failed. Everything is bounded:
N <= 10,000, the run by --duration + --drain-s.
"""
import argparse
import collections
import errno
import glob
import heapq
import json
import multiprocessing
import os
import random
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "firmware"))
sys.path.insert(1, os.path.join(ROOT, "tools", "host"))  # micropython.const under CPython

from evse import payloads as PL  # noqa: E402
from waiting import wait_until  # noqa: E402  (tools/host/waiting.py)

BROKER_DIR = os.path.join(ROOT, "deploy", "mosquitto")
BACKEND = os.path.join(ROOT, "tools", "backend.py")
PREFIX = "evse"
BACKEND_USER = "evse-backend"
N_MAX = 10000
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_s(pid):
    """User + system CPU seconds of a process (0 once it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def _as_user(user):
    """Run as `user` when we are root (mosquitto drops to its own user;
    PostgreSQL refuses root), else as ourselves."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _give(path, user):
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "%s:" % user, path], check=True)


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Proc:
    """A child process whose CPU time is summed over its restarts."""

    def __init__(self):
        self.proc = None
        self.cpu_done = 0.0

    def cpu(self):
        return self.cpu_done + (cpu_s(self.proc.pid) if self.alive() else 0.0)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            self.cpu_done += cpu_s(self.proc.pid)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.alive():
            self.cpu_done += cpu_s(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---------------------------------------------------------------- broker
def broker_conf(text, tls_port, port):
    """The shipped mosquitto.conf with its two listener ports replaced (the
    only change); refuses a file whose listeners are not the shipped ones."""
    out, n = re.subn(r"(?m)^listener 8883$", "listener %d" % tls_port, text)
    out, m = re.subn(r"(?m)^listener 1883 127\.0\.0\.1$", "listener %d 127.0.0.1" % port, out)
    if (n, m) != (1, 1):
        raise RuntimeError("deploy/mosquitto/mosquitto.conf: expected the listeners "
                           "'listener 8883' and 'listener 1883 127.0.0.1'")
    return out


class Broker(Proc):
    """mosquitto with the shipped configuration in a folder of its own:
    passwd made from `users` ({name: password}), a CA and a server
    certificate for 127.0.0.1/localhost made with openssl."""

    def __init__(self, users, folder=None):
        super().__init__()
        self.dir = folder or tempfile.mkdtemp(prefix="evse-broker-")
        self.port, self.tls_port = free_port(), free_port()
        with open(os.path.join(BROKER_DIR, "mosquitto.conf")) as f:
            self.shipped = f.read()
        with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
            f.write(broker_conf(self.shipped, self.tls_port, self.port))
        shutil.copyfile(os.path.join(BROKER_DIR, "acl"), os.path.join(self.dir, "acl"))
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.ca = make_certs(os.path.join(self.dir, "certs"))
        pw = os.path.join(self.dir, "passwd")
        with open(pw, "w") as f:
            for name, secret in users.items():
                f.write("%s:%s\n" % (name, secret))
        subprocess.run(["mosquitto_passwd", "-U", pw], check=True, capture_output=True)
        os.chmod(pw, 0o600)
        _give(self.dir, "mosquitto")
        self.log = os.path.join(self.dir, "broker.log")
        self.start()

    def start(self):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([binary, "-c", "mosquitto.conf"], cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: %s" % self.logtext()[-2000:])
            return _accepts(self.port) and _accepts(self.tls_port)

        wait_until(up, 15, "mosquitto")

    def save(self):
        """SIGUSR1: mosquitto writes its persistence file now (as its
        autosave does every autosave_interval): the backend's session and
        subscription are then in it, as in a broker that has been running
        for a while, and survive a kill -9."""
        db = os.path.join(self.dir, "data", "mosquitto.db")
        before = os.stat(db).st_mtime_ns if os.path.exists(db) else None
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: os.path.exists(db) and os.stat(db).st_mtime_ns != before, 10,
                   "mosquitto's persistence file")

    def logtext(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_certs(folder):
    """A CA and a server certificate (CN localhost, SAN 127.0.0.1 and
    localhost) signed by it; returns the CA's path."""
    os.makedirs(folder, exist_ok=True)
    ca, cakey = os.path.join(folder, "ca.crt"), os.path.join(folder, "ca.key")
    crt, key = os.path.join(folder, "server.crt"), os.path.join(folder, "server.key")
    csr, ext = os.path.join(folder, "server.csr"), os.path.join(folder, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", cakey, "-out", ca, "-days", "2", "-subj", "/CN=evse test CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return ca


# ------------------------------------------------------------ PostgreSQL
def pg_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


class Postgres(Proc):
    """A PostgreSQL cluster of its own (initdb) on 127.0.0.1 and a free
    port; `url` for the backend (user evse, trust on loopback)."""

    def __init__(self):
        super().__init__()
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (make setup installs it)")
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="evse-pg-")
        self.data = os.path.join(self.dir, "data")
        _give(self.dir, "postgres")
        r = subprocess.run(_as_user("postgres") + [
            os.path.join(bindir, "initdb"), "-D", self.data, "-U", "evse", "--auth=trust",
            "-E", "UTF8", "--no-instructions"], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("initdb failed: %s" % r.stderr.strip()[-500:])
        self.port = free_port()
        self.url = "postgresql://evse@127.0.0.1:%d/postgres" % self.port
        self.log = os.path.join(self.dir, "postgres.log")
        self.start()

    def start(self):
        log = open(self.log, "a")
        _give(self.log, "postgres")
        self.proc = subprocess.Popen(_as_user("postgres") + [
            os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
            "-h", "127.0.0.1", "-k", self.dir, "-c", "max_connections=20",
            "-c", "shared_buffers=64MB"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

        def up():
            if self.proc.poll() is not None:
                with open(self.log) as f:
                    raise RuntimeError("postgres exited: %s" % f.read()[-1000:])
            r = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-h", "127.0.0.1",
                                "-p", str(self.port), "-q"])
            return r.returncode == 0

        wait_until(up, 30, "PostgreSQL")

    def pid_cpu(self):
        """CPU of the postmaster and its children (the backend's session)."""
        total = 0.0
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                master = int(f.readline())
        except (OSError, ValueError):
            return 0.0
        for d in glob.glob("/proc/[0-9]*"):
            try:
                with open(d + "/stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()
                if int(st[1]) == master or int(d[6:]) == master:
                    total += (int(st[11]) + int(st[12])) / CLK
            except (OSError, ValueError, IndexError):
                pass
        return total

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------- backend
class BackendProc(Proc):
    def __init__(self, broker, db_url, folder, *extra, user=BACKEND_USER, password="backend-pw"):
        super().__init__()
        auth = ["--user", user, "--password", password] if user else []
        self.args = [sys.executable, BACKEND, "--broker", "127.0.0.1:%d" % broker.port] + auth + [
            "--db", db_url, "run"] + list(extra)
        self.out = os.path.join(folder, "%s.out" % (user or "backend"))
        self.start()

    def start(self):
        with open(self.out, "a") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        start = len(self.text())
        wait_until(lambda: "subscribed" in self.text()[start:] or not self.alive(), 20,
                   "the backend's subscription")
        if not self.alive():
            raise RuntimeError("the backend exited: %s" % self.text()[-2000:])

    def text(self):
        try:
            with open(self.out) as f:
                return f.read()
        except OSError:
            return ""


# ------------------------------------------------------------- MQTT wire
def _vlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(b):
    return struct.pack("!H", len(b)) + b


def packet(kind, body):
    return bytes((kind,)) + _vlen(len(body)) + body


def connect_packet(client_id, user, password, keepalive=60):
    flags = 0xC2  # user name, password, clean session
    return packet(0x10, _s(b"MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive) +
                  _s(client_id.encode()) + _s(user.encode()) + _s(password.encode()))


def publish_packet(topic, payload, qos=0, mid=0, retain=False, dup=False):
    head = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    return packet(head, _s(topic.encode()) + (struct.pack("!H", mid) if qos else b"") + payload)


STATUS = (b'{"state": "A", "duty": 100.0, "offer_a": 0.0, "contactor": false, "error": null, '
          b'"session": null, "energy_wh": null, "ev_a": null, "limits": {"max_a": 32.0, '
          b'"cable_a": null, "backend_a": null, "backend_ttl_s": null, "fallback_a": 6.0, '
          b'"paused": false, "derate": false, "meter_fallback": false}, "faults": [], '
          b'"uptime_s": 5, "boot": 1, "fw": "fleet", "journal": {"pending": 0, "dropped": 0, '
          b'"errors": 0}}')


# A charger's connection goes DOWN -> CONNECTING (TCP) -> CONNACK -> SUBACK
# -> READY, and back to DOWN when it fails (with the firmware's backoff).
DOWN, CONNECTING, CONNACK, SUBACK, READY, HANDSHAKE = range(6)
STATE_NAMES = ("down", "connecting", "waiting for CONNACK", "waiting for SUBACK", "ready",
               "in the TLS handshake")
_WANT = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)  # nothing moved now
CONNECT_TIMEOUT_S = 15.0  # CONNECT to SUBACK
PUBACK_TIMEOUT_S = 10.0  # as umqtt.simple's socket timeout in the firmware
PING_S = 30.0  # keepalive 60 s: a PINGREQ after 30 s without sending
RAMP = 200  # connections opened per RAMP_S, over all workers
RAMP_S = 0.05
# connections between TCP connect and SUBACK at once, over all workers:
# mosquitto listens with a backlog of 100, and a connection the kernel
# dropped from a full accept queue comes back seconds later (SYN-ACK
# retransmissions), its CONNECT then taking the session of the charger's
# next connection
HANDSHAKES = 64
STATUS_S = 0.2  # a worker's report to the parent
PREBUILD = 300000  # records a worker makes before the start, at most


def _resend_wait(resend_s, sends):
    """As the firmware: the wait doubles at each re-send, up to 600 s."""
    return min(resend_s * 2 ** max(sends - 1, 0), 600.0)


class Charger:
    """One charger: its journal and its connection, a non-blocking socket in
    its worker's selector. journal: rid -> [PUBLISH head (fixed header and
    topic, made once), payload, made at, sent at (None: queued in todo),
    sends]; todo: the rids to send, in journal order. One QoS 1 PUBLISH in
    flight at a time, as umqtt.simple."""

    __slots__ = ("w", "dev", "password", "nonce", "n", "sid", "added", "journal", "todo",
                 "sock", "state", "rbuf", "out", "mid", "inflight", "inflight_at", "fails",
                 "deadline", "tx_at", "resend_at", "base", "ack_topic", "session_head",
                 "event_head")

    def __init__(self, w, i):
        self.w = w
        self.dev = "fleet-%05d" % i
        self.password = "pw-%05d" % i
        self.nonce = "%08x" % random.getrandbits(32)
        self.n = self.sid = self.added = 0
        self.journal = {}
        self.todo = collections.deque()
        self.sock = None
        self.state = DOWN
        self.rbuf = bytearray()
        self.out = bytearray()
        self.mid = 0
        self.inflight = None
        self.inflight_at = self.deadline = self.tx_at = 0.0
        self.fails = 0
        self.resend_at = None
        self.base = "%s/%s/" % (PREFIX, self.dev)
        self.ack_topic = (self.base + "ack").encode()
        self.session_head = _s((self.base + "session").encode())
        self.event_head = _s((self.base + "event").encode())

    # --- the journal
    def build(self):
        """The next record's (rid, PUBLISH head, payload), from the
        firmware's evse/payloads.py."""
        self.n += 1
        rid = "%s-%d" % (self.nonce, self.n)
        t = int(time.time())
        if self.n % 5 == 0:
            text = PL.event("fault", (("code", "rcd"),), 1, self.n, t, "epoch", rid=rid)
            topic = self.event_head
        else:
            self.sid += 1
            text = PL.session_record(self.sid, 1, t - 3600, t, "epoch", 1000000 + self.sid,
                                     1011000 + self.sid, 11000, 16000, "unplugged", [],
                                     rid=rid)
            topic = self.session_head
        assert text.startswith('{"rid": "%s"' % rid), text  # the protocol: rid first
        payload = text.encode()
        head = b"\x32" + _vlen(len(topic) + 2 + len(payload)) + topic  # QoS 1, then the mid
        return rid, head, payload

    def add_record(self, now, built=None):
        """A record into the journal (made at `now`): `built` by build()
        beforehand, or now."""
        rid, head, payload = built or self.build()
        self.added += 1  # records 1..added made (built in the order they are added)
        self.journal[rid] = [head, payload, now, None, 0]
        self.todo.append(rid)
        self.w.made += 1
        if self.state == READY and self.inflight is None:
            self.pump(now)

    # --- the connection
    def connect(self, now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(("127.0.0.1", self.w.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self.fail(now, "connect: %s" % errno.errorcode.get(err, err))
            return
        self.sock = s
        self.state = CONNECTING
        self.w.connecting += 1
        self.deadline = now + CONNECT_TIMEOUT_S
        self.rbuf.clear()
        self.out.clear()
        self.inflight = None
        self.w.sel.register(s, selectors.EVENT_WRITE, self)

    def fail(self, now, why):
        """The connection is gone (or never came): close, back off."""
        w = self.w
        if self.sock is not None:
            try:
                w.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None
        if self.state in (CONNECTING, HANDSHAKE, CONNACK, SUBACK):
            w.connecting -= 1
        self.state = DOWN
        self.inflight = None
        if w.stopping:
            return
        w.lost_connections += 1
        w.why[why] = w.why.get(why, 0) + 1
        self.fails += 1
        d = min(8.0, 0.5 * 2 ** (self.fails - 1))  # the firmware's backoff, capped for a bench
        w.retry(self, now + d / 2 + random.random() * d / 2)

    def send(self, data):
        if self.out:
            self.out += data
            return
        try:
            n = self.sock.send(data)
        except _WANT:
            n = 0
        except OSError as e:
            self.fail(time.monotonic(), "send: %s" % errno.errorcode.get(e.errno, e.errno))
            return
        if n < len(data):
            self.out += data[n:]
            self.w.sel.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def on_write(self, now):
        if self.state == CONNECTING:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail(now, "connect: %s" % errno.errorcode.get(err, err))
                return
            if self.w.tls is not None:  # as the firmware on the shipped 8883 listener
                self.w.sel.unregister(self.sock)
                self.sock = self.w.tls.wrap_socket(self.sock, server_hostname="localhost",
                                                   do_handshake_on_connect=False)
                self.w.sel.register(self.sock, selectors.EVENT_WRITE, self)
                self.state = HANDSHAKE
                self.handshake(now)
                return
            self.mqtt_connect(now)
            return
        if self.state == HANDSHAKE:
            self.handshake(now)
            return
        try:
            n = self.sock.send(self.out)
        except _WANT:
            return
        except OSError as e:
            self.fail(now, "send: %s" % errno.errorcode.get(e.errno, e.errno))
            return
        del self.out[:n]
        if not self.out:
            self.w.sel.modify(self.sock, selectors.EVENT_READ, self)

    def mqtt_connect(self, now):
        self.state = CONNACK
        self.w.sel.modify(self.sock, selectors.EVENT_READ, self)
        self.send(connect_packet(self.dev, self.dev, self.password))
        self.tx_at = now

    def handshake(self, now):
        """One step of the TLS handshake (non-blocking), then the CONNECT."""
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.w.sel.modify(self.sock, selectors.EVENT_READ, self)
            return
        except ssl.SSLWantWriteError:
            self.w.sel.modify(self.sock, selectors.EVENT_WRITE, self)
            return
        except (ssl.SSLError, OSError) as e:
            self.fail(now, "TLS: %s" % (getattr(e, "reason", None) or type(e).__name__))
            return
        self.w.handshakes += 1
        self.mqtt_connect(now)

    def on_read(self, now):
        if self.state == HANDSHAKE:
            self.handshake(now)
            return
        try:
            data = self.sock.recv(65536)
            # TLS: one record per recv(); what else is already decrypted
            # would wait for the next byte on the socket
            while self.w.tls is not None and data and self.sock.pending():
                data += self.sock.recv(65536)
        except _WANT:
            return
        except OSError as e:
            self.fail(now, "recv: %s" % errno.errorcode.get(e.errno, e.errno))
            return
        if not data:
            self.fail(now, "closed by the broker (%s)" % STATE_NAMES[self.state])
            return
        buf = self.rbuf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 2:
            n, mult, i, whole = 0, 1, pos + 1, False
            while i < end:
                b = buf[i]
                n += (b & 0x7F) * mult
                mult <<= 7
                i += 1
                if not b & 0x80:
                    whole = True
                    break
            if not whole or end < i + n:
                break  # a partial packet: wait for the rest
            kind = buf[pos]
            body = bytes(buf[i:i + n])
            pos = i + n
            self.packet(kind, body, now)
            if self.sock is None:
                return
        del buf[:pos]

    def packet(self, kind, body, now):
        t = kind >> 4
        if t == 4:  # PUBACK
            if self.inflight is not None and body[:2] == self.inflight:
                self.inflight = None
                self.pump(now)
        elif t == 3:  # PUBLISH: our ack (QoS 0, as the firmware subscribes)
            qos = (kind >> 1) & 3
            tl = (body[0] << 8) | body[1]
            off = 2 + tl
            if qos:
                self.send(b"\x40\x02" + body[off:off + 2])
                off += 2
            if body[2:2 + tl] == self.ack_topic:
                self.on_ack(body[off:], now)
        elif t == 2:  # CONNACK
            if len(body) < 2 or body[1] != 0:
                self.w.refused += 1
                self.fail(now, "CONNACK refused")
                return
            self.state = SUBACK
            self.send(publish_packet(self.base + "online", b"online", 1, self.next_mid(),
                                     retain=True) +
                      publish_packet(self.base + "status", STATUS, 0, retain=True) +
                      packet(0x82, struct.pack("!H", self.next_mid()) + _s(self.ack_topic) +
                             b"\x00"))
            self.tx_at = now
        elif t == 9:  # SUBACK
            if self.state == SUBACK:
                self.state = READY
                self.w.connecting -= 1
                self.fails = 0
                self.w.connects += 1
                # after a (re)connect: everything not acknowledged again
                for r in self.journal.values():
                    r[3] = None
                self.todo = collections.deque(self.journal)
                self.resend_at = None
                self.pump(now)

    def on_ack(self, payload, now):
        w = self.w
        try:
            rids = PL.decode_ack(payload)  # the firmware's own reading of it
        except ValueError:
            w.ack_unknown += 1
            return
        journal = self.journal
        for rid in rids:
            r = journal.pop(rid, None)
            if r is None:
                w.ack_unknown += 1  # a re-sent record acknowledged twice
                continue
            w.acked += 1
            w.acked_rids.append((self.dev, rid))
            w.latency.append(now - r[2])
            w.last_ack = now

    def next_mid(self):
        self.mid = self.mid % 65535 + 1
        return self.mid

    def pump(self, now):
        """Send the next record when nothing is in flight."""
        journal, todo = self.journal, self.todo
        while todo:
            rid = todo.popleft()
            r = journal.get(rid)
            if r is None or r[3] is not None:
                continue  # acknowledged meanwhile, or already sent again
            w = self.w
            if r[4]:
                w.resent += 1
            r[4] += 1
            mid = self.next_mid().to_bytes(2, "big")
            self.inflight, self.inflight_at = mid, now
            r[3] = now
            due = now + _resend_wait(w.resend_s, r[4])
            if self.resend_at is None or due < self.resend_at:
                self.resend_at = due
            w.publishes += 1
            if w.first_pub is None:
                w.first_pub = now
            self.tx_at = now
            self.send(r[0] + mid + r[1])
            return

    def tick(self, now):
        """Every few tenths of a second: timeouts, re-sends, keepalive."""
        st = self.state
        if st == READY:
            if self.inflight is not None:
                if now - self.inflight_at > PUBACK_TIMEOUT_S:
                    self.fail(now, "no PUBACK")  # the firmware reconnects
                return
            if not self.todo and self.resend_at is not None and now >= self.resend_at:
                resend_s, nxt = self.w.resend_s, None
                for rid, r in self.journal.items():
                    if r[3] is None:
                        continue
                    due = r[3] + _resend_wait(resend_s, r[4])
                    if due <= now:
                        r[3] = None
                        self.todo.append(rid)
                    elif nxt is None or due < nxt:
                        nxt = due
                self.resend_at = nxt
                self.pump(now)
            elif now - self.tx_at > PING_S:
                self.tx_at = now
                self.send(b"\xc0\x00")
        elif st != DOWN and now > self.deadline:
            self.fail(now, "no CONNACK/SUBACK" if st != CONNECTING else "connect timeout")


class Worker:
    """One process's share of the fleet: chargers lo..hi-1 on one selector."""

    def __init__(self, lo, hi, port, resend_s, ca=None):
        self.port, self.resend_s = port, resend_s
        self.tls = None  # the client context when the chargers use TLS (ca: the CA file)
        if ca:
            self.tls = ssl.create_default_context(cafile=ca)
        self.handshakes = 0
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        self.made = self.publishes = self.resent = self.acked = self.ack_unknown = 0
        self.connects = self.lost_connections = self.refused = 0
        self.why = {}  # why connections failed: count
        self.connecting = 0  # chargers between connect() and SUBACK
        self.latency, self.acked_rids = [], []
        self.first_pub = self.last_ack = None
        self.timers = []  # (at, index): chargers to connect
        self.chargers = [Charger(self, i) for i in range(lo, hi)]
        self._idx = {id(c): k for k, c in enumerate(self.chargers)}

    def retry(self, c, at):
        heapq.heappush(self.timers, (at, self._idx[id(c)]))

    def pending(self):
        return sum(len(c.journal) for c in self.chargers)


    def figures(self):
        return {"made": self.made, "publishes": self.publishes, "resent": self.resent,
                "acked": self.acked, "ack_unknown": self.ack_unknown,
                "connects": self.connects, "lost_connections": self.lost_connections,
                "handshakes": self.handshakes,
                "refused": self.refused, "why": self.why, "first_pub": self.first_pub,
                "last_ack": self.last_ack}


def _worker(lo, hi, k, workers, cfg, conn):
    """A generator process (forked): its chargers until the parent says stop."""
    random.seed()  # not the parent's sequence (nonces)
    w = Worker(lo, hi, cfg["port"], cfg["resend_s"], cfg.get("ca"))
    duration = cfg["duration"]
    steady = cfg["scenario"] != "storm"
    rate = cfg["rate"] * len(w.chargers) / cfg["n"] if steady else 0
    chargers = w.chargers
    # every record's payload made before the start (PL.session_record is
    # 15 us: CPU the system under test would not get), up to PREBUILD
    prebuilt = collections.deque()
    if steady:
        for rr in range(min(PREBUILD, int(rate * duration) + 2)):
            prebuilt.append(chargers[rr % len(chargers)].build())
    else:
        for c in chargers:
            for _ in range(cfg["records"]):
                c.add_record(0.0)
    conn.send(("ready",))
    msg = conn.recv()
    if msg[0] != "go":
        return
    t0 = msg[1]
    cpu0 = sum(os.times()[:2])
    for c in chargers:
        for r in c.journal.values():
            r[2] = t0  # the storm's records: made at the start
    per_step = max(1, RAMP // workers)
    max_hs = max(1, HANDSHAKES // workers)
    for j in range(len(w.chargers)):
        heapq.heappush(w.timers, (t0 + (j // per_step) * RAMP_S, j))
    interval = 1.0 / rate if rate else None
    next_rec, rr = t0, 0
    next_tick = next_status = time.monotonic()
    sel, timers = w.sel, w.timers
    while True:
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            if w.connecting >= max_hs:
                break
            _, j = heapq.heappop(timers)
            if chargers[j].state == DOWN:
                chargers[j].connect(now)
        gen_done = not steady or now - t0 >= duration
        if interval and not gen_done:
            while next_rec <= now:
                chargers[rr % len(chargers)].add_record(
                    now, prebuilt.popleft() if prebuilt else None)
                rr += 1
                next_rec += interval
        if now >= next_tick:
            next_tick = now + 0.25
            for c in chargers:
                c.tick(now)
        if now >= next_status:
            next_status = now + STATUS_S
            conn.send(("status", w.pending(), gen_done, w.acked))
            if conn.poll():
                if conn.recv() == "stop":
                    break
        timeout = 0.02
        if timers and w.connecting < max_hs:
            timeout = max(0.0, min(timeout, timers[0][0] - now))
        for key, mask in sel.select(timeout):
            c = key.data
            now = time.monotonic()
            if mask & selectors.EVENT_READ:
                c.on_read(now)
            if mask & selectors.EVENT_WRITE and c.sock is not None:
                c.on_write(now)
    w.stopping = True
    for c in chargers:
        c.fail(time.monotonic(), "stop")
    res = w.figures()
    res["latency"] = w.latency
    res["acked_rids"] = w.acked_rids
    res["made_rids"] = [(c.dev, c.nonce, c.added) for c in chargers]
    res["pending"] = w.pending()
    res["cpu_s"] = sum(os.times()[:2]) - cpu0
    conn.send(("result", res))
    conn.close()


class Generator:
    """The load generator: `procs` forked processes, each owning a slice of
    the N chargers (its own selector, its own share of the rate)."""

    def __init__(self, n, procs, cfg):
        ctx = multiprocessing.get_context("fork")
        self.procs = []
        procs = max(1, min(procs, n))
        for k in range(procs):
            lo, hi = n * k // procs, n * (k + 1) // procs
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(lo, hi, k, procs, cfg, theirs), daemon=True)
            p.start()
            theirs.close()
            self.procs.append([p, mine, None, None])  # process, pipe, last status, result
        deadline = time.monotonic() + 300
        for p, conn, _, _ in self.procs:  # each has made its chargers and records
            while not conn.poll(0.2):
                if not p.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("a generator process did not start (exit code %s)"
                                       % p.exitcode)
            if conn.recv()[0] != "ready":
                raise RuntimeError("a generator process did not start")
        self.t0 = time.monotonic() + 0.05
        for e in self.procs:
            e[1].send(("go", self.t0))

    def poll(self):
        """Read the workers' reports; -> (pending, all done generating)."""
        for e in self.procs:
            p, conn = e[0], e[1]
            try:
                while conn.poll():
                    msg = conn.recv()
                    if msg[0] == "status":
                        e[2] = msg
                    else:
                        e[3] = msg[1]
            except (EOFError, OSError):
                if e[3] is None:
                    raise RuntimeError("a generator process exited (exit code %s)" % p.exitcode)
            if e[3] is None and not p.is_alive():
                raise RuntimeError("a generator process exited (exit code %s)" % p.exitcode)
        if any(e[2] is None for e in self.procs):
            return None, False
        return sum(e[2][1] for e in self.procs), all(e[2][2] for e in self.procs)

    def cpu(self):
        return sum(cpu_s(e[0].pid) for e in self.procs if e[3] is None)

    def stop(self, timeout=60):
        """-> the workers' results, merged."""
        for e in self.procs:
            try:
                e[1].send("stop")
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + timeout
        for e in self.procs:
            while e[3] is None and time.monotonic() < deadline:
                try:
                    if e[1].poll(0.1):
                        msg = e[1].recv()
                        if msg[0] == "result":
                            e[3] = msg[1]
                except (EOFError, OSError):
                    break
            e[0].join(5)
            if e[3] is None:
                raise RuntimeError("a generator process gave no result")
        out = {}
        for e in self.procs:
            for key, v in e[3].items():
                if key in ("first_pub", "last_ack"):
                    both = [x for x in (out.get(key), v) if x is not None]
                    out[key] = (min if key == "first_pub" else max)(both) if both else None
                elif isinstance(v, list):
                    out.setdefault(key, []).extend(v)
                elif isinstance(v, dict):
                    for k2, n in v.items():
                        out.setdefault(key, {})[k2] = out.get(key, {}).get(k2, 0) + n
                else:
                    out[key] = out.get(key, 0) + v
        return out


def _drive(gen, duration, drain_s, t0, events):
    """Until every record is acknowledged after the load (or the time is
    up); events: [(at_s, callable)] run in threads at those times (the load
    goes on meanwhile). -> wall seconds."""
    stop_at = t0 + duration + drain_s
    pending_events = sorted(events, key=lambda e: e[0])
    running, errors = [], []

    def call(fn):
        try:
            fn()
        except Exception as e:  # a kill and restart that failed
            errors.append(e)

    while time.monotonic() < stop_at:
        now = time.monotonic()
        while pending_events and now - t0 >= pending_events[0][0]:
            _, fn = pending_events.pop(0)
            th = threading.Thread(target=call, args=(fn,), daemon=True)
            th.start()
            running.append(th)
        pending, gen_done = gen.poll()
        if gen_done and pending == 0 and not pending_events and \
                not any(th.is_alive() for th in running):
            break
        time.sleep(0.05)
    for th in running:
        th.join(60)
    if errors:
        raise errors[0]
    return time.monotonic() - t0


def stored_rids(db_url):
    """{(device, rid)} of the fleet's rows, and the number of rows."""
    sql = ("SELECT device, rid FROM sessions WHERE device LIKE 'fleet-%' UNION ALL "
           "SELECT device, rid FROM events WHERE device LIKE 'fleet-%'")
    if db_url.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        conn = sqlite3.connect(db_url[len("sqlite:///"):])
        rows = conn.execute(sql).fetchall()
        conn.close()
    return set(rows), len(rows)


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def machine_cpu_s():
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK  # all but idle and iowait


def thread_cpu_s(pid, tid):
    try:
        with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def raise_fd_limit(need):
    """N connections need N descriptors here and in the broker (which
    inherits this limit): the soft limit raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, need))
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    if soft != resource.RLIM_INFINITY and soft < need:
        raise RuntimeError("%d connections need %d file descriptors; the limit is %d "
                           "(ulimit -n)" % (need // 2, need, soft))


def run(scenario="steady", n=100, db="sqlite", records=30, rate=None, duration=10.0,
        drain_s=60.0, resend_s=30.0, backend_args=(), keep=False, log=print, procs=2,
        kills=1, backends=1, tls=False):
    """One scenario end to end; returns the figures (a dict)."""
    if not 1 <= n <= N_MAX:
        raise ValueError("--n: 1..%d" % N_MAX)
    rate = rate if rate is not None else n / 10.0
    raise_fd_limit(2 * n + 256)
    folder = tempfile.mkdtemp(prefix="evse-fleet-")
    users = {"fleet-%05d" % i: "pw-%05d" % i for i in range(n)}
    users[BACKEND_USER] = "backend-pw"
    if backends > 1:  # the second instance's own user (the ACL's evse-backend-2)
        users[BACKEND_USER + "-2"] = "backend-pw-2"
    broker = pg = backend = gen = None
    more = []  # the backend instances besides `backend`
    try:
        broker = Broker(users)
        if db == "postgres":
            pg = Postgres()
            url = pg.url
        else:
            url = "sqlite:///" + os.path.join(folder, "fleet.db")
        if backends > 1:  # one shared subscription, one database: the broker deals the load
            backend_args = ("--share", "fleet") + tuple(backend_args)
            more.append(BackendProc(broker, url, folder, "--quiet", *backend_args,
                                    user=BACKEND_USER + "-2", password="backend-pw-2"))
        backend = BackendProc(broker, url, folder, "--quiet", *backend_args)
        broker.save()  # the backend's session on disk before the load
        events = []
        if scenario == "broker-kill":
            # `kills` times at even gaps over the load (once: half way), each
            # down for a second or half a gap; mosquitto's persistence file is
            # the one saved before the load (autosave_interval 30 s never comes)
            gap = duration / (kills + 1)
            down = min(1.0, gap / 2)

            def kill_broker():
                first = time.monotonic()
                for i in range(kills):
                    broker.kill9()
                    time.sleep(down)
                    broker.start()
                    wait = first + gap * (i + 1) - time.monotonic()
                    if i + 1 < kills and wait > 0:
                        time.sleep(wait)
            events.append((gap, kill_broker))
        elif scenario == "backend-kill":
            def kill_backend():
                backend.kill9()
                time.sleep(1.0)
                backend.start()
            events.append((duration / 2, kill_backend))
        gen = Generator(n, procs, {"port": broker.tls_port if tls else broker.port,
                                   "ca": broker.ca if tls else None, "resend_s": resend_s,
                                   "duration": duration, "scenario": scenario,
                                   "records": records, "rate": rate, "n": n})
        t0 = gen.t0  # the workers start together, their records made
        load0 = os.getloadavg()
        cpu0 = (broker.cpu(), sum(b.cpu() for b in [backend] + more),
                pg.pid_cpu() if pg else 0.0, machine_cpu_s(), sum(os.times()[:2]))
        wall = _drive(gen, duration, drain_s, t0, events)
        cpu1 = (broker.cpu(), sum(b.cpu() for b in [backend] + more),
                pg.pid_cpu() if pg else 0.0, machine_cpu_s(), sum(os.times()[:2]))
        tids = [int(x) for x in re.findall(r"network thread (\d+)\)", backend.text())[-1:] +
                re.findall(r"database thread (\d+)", backend.text())[-1:]]
        threads = [thread_cpu_s(backend.proc.pid, t) for t in tids] if backend.alive() else []
        st = gen.stop()
        gen = None
        time.sleep(0.5)
        made = {(dev, "%s-%d" % (nonce, k)) for dev, nonce, last in st["made_rids"]
                for k in range(1, last + 1)}
        acked = set(st["acked_rids"])
        stored, rows = stored_rids(url)
        span = (st["last_ack"] - st["first_pub"]) if st["last_ack"] and st["first_pub"] else None
        pcts = [round(100 * (cpu1[i] - cpu0[i]) / wall, 1) for i in range(5)]
        gen_cpu = round(100 * st["cpu_s"] / wall + pcts[4], 1)
        ours = pcts[0] + pcts[1] + (pcts[2] if pg else 0) + gen_cpu
        res = {
            "scenario": scenario, "n": n, "db": db,
            "broker_kills": kills if scenario == "broker-kill" else 0, "backends": 1 + len(more),
            "tls": bool(tls), "records_made": len(made),
            "records_stored": len(stored & made), "lost": len(made - stored),
            "duplicates_stored": rows - len(stored), "acked_not_stored": len(acked - stored),
            "pending_at_end": st["pending"],
            "stored_per_s": round(len(stored & made) / span, 1) if span else None,
            "latency_p50_ms": round(pct(st["latency"], 50) * 1000, 1) if st["latency"] else None,
            "latency_p99_ms": round(pct(st["latency"], 99) * 1000, 1) if st["latency"] else None,
            "wall_s": round(wall, 2), "publishes": st["publishes"], "resent": st["resent"],
            "acks_for_unknown_rids": st["ack_unknown"], "connects": st["connects"],
            "tls_handshakes": st["handshakes"], "lost_connections": st["lost_connections"],
            "refused_connections": st["refused"],
            "connection_failures": st.get("why") or {},
            "broker_cpu_pct": pcts[0], "backend_cpu_pct": pcts[1],
            "backend_threads_cpu_s": {"network": round(threads[0], 2),
                                      "database": round(threads[1], 2)}
            if len(threads) == 2 else None,
            "postgres_cpu_pct": pcts[2] if pg else None,
            "generator_cpu_pct": gen_cpu, "generator_procs": max(1, min(procs, n)),
            # CPU per record stored, each process and all of them: what 2 cores can carry
            "cpu_us_per_record": {k: round(v * wall * 1e4 / max(1, len(stored & made)), 1)
                                  for k, v in (("broker", pcts[0]), ("backend", pcts[1]),
                                               ("postgres", pcts[2] if pg else 0.0),
                                               ("generator", gen_cpu), ("all", ours))},
            "other_cpu_pct": round(max(0.0, pcts[3] - ours), 1),
            "cores": os.cpu_count(), "loadavg_1m": [round(load0[0], 2),
                                                    round(os.getloadavg()[0], 2)],
            "offered_per_s": None if scenario == "storm" else rate,
        }
        res["broker_dropped_log"] = broker.logtext().count("Outgoing messages are being dropped")
        res["backend_log_tail"] = backend.text()[-600:]
        if more:  # what each instance stored, from its own count at its orderly stop
            counts = []
            for b in [backend] + more:
                b.stop()
                m = re.findall(r"stopped: (\d+) sessions, \d+ duplicates, (\d+) events", b.text())
                counts.append(int(m[-1][0]) + int(m[-1][1]) if m else None)
            res["stored_by_backend"] = counts
        return res
    finally:
        if gen is not None:
            for e in gen.procs:
                if e[0].is_alive():
                    e[0].kill()
        for b in [backend] + more:
            if b is not None:
                b.stop()
        if broker is not None:
            broker.close()
        if pg is not None:
            pg.close()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="fleet.py", description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="steady",
                   choices=("steady", "storm", "broker-kill", "backend-kill"))
    p.add_argument("--n", type=int, default=100, help="chargers (1..%d)" % N_MAX)
    p.add_argument("--db", default="sqlite", choices=("sqlite", "postgres"))
    p.add_argument("--records", type=int, default=30, help="storm: records each charger has")
    p.add_argument("--rate", type=float, help="records per second in all (default N/10)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    p.add_argument("--drain-s", type=float, default=60.0, help="seconds allowed to drain")
    p.add_argument("--resend-s", type=float, default=30.0,
                   help="a record not acknowledged is sent again after this (firmware: 30)")
    p.add_argument("--procs", type=int, default=2,
                   help="generator processes, each with a slice of the chargers (2)")
    p.add_argument("--backend-args", default="", metavar="ARGS",
                   help="more options for `tools/backend.py run`, e.g. \"--batch 5000\"")
    p.add_argument("--backends", type=int, default=1, choices=(1, 2),
                   help="backend instances sharing the work (2: a shared subscription, one "
                        "database)")
    p.add_argument("--tls", action="store_true",
                   help="chargers on the shipped broker's TLS listener (8883), as in the "
                        "field; without it the loopback listener (1883)")
    p.add_argument("--kills", type=int, default=1,
                   help="broker-kill: kill -9s at even gaps over the load (1: half way)")
    p.add_argument("--json", metavar="FILE", help="append the figures as a JSON line")
    a = p.parse_args(argv)
    if not 1 <= a.n <= N_MAX or a.duration > 600 or a.drain_s > 600 or not 1 <= a.kills <= 256:
        p.error("--n 1..%d, --duration and --drain-s at most 600, --kills 1..256" % N_MAX)
    try:
        res = run(a.scenario, a.n, a.db, a.records, a.rate, a.duration, a.drain_s, a.resend_s,
                  backend_args=shlex.split(a.backend_args), procs=a.procs, kills=a.kills,
                  backends=a.backends, tls=a.tls)
    except RuntimeError as e:
        sys.stderr.write("fleet.py: %s\n" % e)
        return 1
    tail = res.pop("backend_log_tail")
    for k, v in res.items():
        print("%-24s %s" % (k, v))
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    if res["lost"] or res["duplicates_stored"] or res["acked_not_stored"]:
        sys.stderr.write("fleet.py: records lost or duplicated; the backend's log ends:\n%s\n"
                         % tail)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
