#!/bin/sh
''''exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@" #'''
"""Fleet load generator: N chargers against the shipped broker set-up and
tools/backend.py, loopback only (docs/mqtt.md, "Fleet benchmark").

    tools/fleet.py [--scenario steady|storm|broker-kill|backend-kill]
                   [--n N] [--db sqlite|postgres] [--records R] [--rate R/S]
                   [--duration S] [--drain-s S] [--resend-s S] [--json FILE]

It starts everything itself in a temporary folder: mosquitto with exactly
deploy/mosquitto/mosquitto.conf and acl (listener ports replaced by free
ones; a password per charger), a PostgreSQL cluster of its own (initdb) or a
SQLite file, and `tools/backend.py run`. Then it opens N MQTT connections,
one per charger, each speaking what the firmware speaks: CONNECT with its
device id as user and client id, `online` retained, a status, SUBSCRIBE to
its own `ack` (QoS 0, as the firmware), and its journal records (payloads
from firmware/evse/payloads.py, session_record and event, each with its
"rid") published one at a time at QoS 1, each waiting for its PUBACK; a
record leaves the charger's journal only when its rid comes back in an ack;
what is not acknowledged is sent again after a reconnect and after
--resend-s (doubling at each re-send up to 600 s, as the firmware).

Scenarios: `steady` (each charger one record every N/--rate seconds for
--duration), `storm` (every charger arrives with --records records
journaled, all connecting at once), `broker-kill` (steady, with the broker
killed -9 half way and restarted), `backend-kill` (steady, the backend
killed -9 half way and restarted). Figures: records stored per second,
end-to-end latency (first publish to acknowledgement) p50/p99, CPU of the
broker and the backend, records lost (not in the database at the end, goal
0), duplicates stored (goal 0), acknowledged but not stored (must be 0).
Everything is bounded: N <= 10,000, the run by --duration + --drain-s.
"""
import argparse
import asyncio
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
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
        self.out = os.path.join(folder, "backend.out")
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


class Stats:
    def __init__(self):
        self.made = 0
        self.publishes = 0
        self.resent = 0
        self.acked = 0
        self.ack_unknown = 0
        self.latency = []
        self.connects = 0
        self.lost_connections = 0
        self.refused = 0
        self.acked_rids = set()
        self.first_pub = None
        self.last_ack = None


class Charger(asyncio.Protocol):
    """One charger's connection. Its journal: rid -> [topic, payload, made
    at, last sent at or None (not yet sent on this connection)]."""

    def __init__(self, fleet, dev, password):
        self.fleet, self.dev, self.password = fleet, dev, password
        self.nonce = "%08x" % random.getrandbits(32)
        self.n = 0
        self.sid = 0
        self.journal = {}
        self.t = None
        self.buf = bytearray()
        self.mid = 0
        self.puback = None
        self.ready = None
        self.wake = asyncio.Event()
        self.base = "%s/%s/" % (PREFIX, dev)

    # --- the journal
    def add_record(self, now):
        self.n += 1
        rid = "%s-%d" % (self.nonce, self.n)
        if self.n % 5 == 0:
            text = PL.event("fault", (("code", "rcd"),), 1, self.n, int(time.time()), "epoch",
                            rid=rid)
            topic = self.base + "event"
        else:
            self.sid += 1
            t = int(time.time())
            text = PL.session_record(self.sid, 1, t - 3600, t, "epoch", 1000000 + self.sid,
                                     1011000 + self.sid, 11000, 16000, "unplugged", [],
                                     rid=rid)
            topic = self.base + "session"
        assert text.startswith('{"rid": "%s"' % rid), text  # the protocol: rid first
        self.journal[rid] = [topic, text.encode(), now, None, 0]
        self.fleet.stats.made += 1
        self.wake.set()

    # --- the connection
    def connection_made(self, t):
        self.t = t
        t.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t.write(connect_packet(self.dev, self.dev, self.password))

    def connection_lost(self, exc):
        self.t = None
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionError("lost"))
        if self.puback is not None and not self.puback.done():
            self.puback.set_exception(ConnectionError("lost"))
        self.wake.set()

    def data_received(self, data):
        self.buf += data
        buf = self.buf
        while len(buf) >= 2:
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(buf):
                    return
                b = buf[i]
                n += (b & 0x7F) * mult
                mult <<= 7
                i += 1
                if not b & 0x80:
                    break
            if len(buf) < i + n:
                return
            kind, body = buf[0], bytes(buf[i:i + n])
            del buf[:i + n]
            self.packet(kind, body)

    def packet(self, kind, body):
        t = kind >> 4
        if t == 2:  # CONNACK
            if body[1] != 0:
                self.fleet.stats.refused += 1
                self.t.close()
                return
            self.t.write(publish_packet(self.base + "online", b"online", 1, self.next_mid(),
                                        retain=True))
            self.t.write(publish_packet(self.base + "status", STATUS, 0, retain=True))
            self.t.write(packet(0x82, struct.pack("!H", self.next_mid()) +
                                _s((self.base + "ack").encode()) + b"\x00"))
        elif t == 9:  # SUBACK
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(True)
        elif t == 4:  # PUBACK
            mid = struct.unpack("!H", body[:2])[0]
            if self.puback is not None and not self.puback.done() and mid == self.puback_mid:
                self.puback.set_result(True)
        elif t == 3:  # PUBLISH: our ack
            qos = (kind >> 1) & 3
            tl = struct.unpack("!H", body[:2])[0]
            topic = body[2:2 + tl].decode()
            off = 2 + tl
            if qos:
                self.t.write(b"\x40\x02" + body[off:off + 2])
                off += 2
            if topic == self.base + "ack":
                self.on_ack(body[off:])

    def on_ack(self, payload):
        now = time.monotonic()
        st = self.fleet.stats
        try:
            rids = PL.decode_ack(payload)  # the firmware's own reading of it
        except ValueError:
            st.ack_unknown += 1
            return
        for rid in rids:
            r = self.journal.pop(rid, None)
            if r is None:
                st.ack_unknown += 1  # a re-sent record acknowledged twice
                continue
            st.acked += 1
            st.acked_rids.add((self.dev, rid))
            st.latency.append(now - r[2])
            st.last_ack = now
        self.wake.set()

    def next_mid(self):
        self.mid = self.mid % 65535 + 1
        return self.mid

    async def run(self, loop, port, stop_at):
        """Connect, publish the journal, reconnect with backoff, until
        stop_at (monotonic) or until the fleet says stop."""
        fails = 0
        fleet = self.fleet
        while not fleet.stopping and time.monotonic() < stop_at:
            try:
                self.ready = loop.create_future()
                await loop.create_connection(lambda: self, "127.0.0.1", port)
                await asyncio.wait_for(self.ready, 15)
                fleet.stats.connects += 1
                fails = 0
                for r in self.journal.values():
                    r[3] = None  # after a reconnect: everything not acknowledged again
                await self.publish_loop(stop_at)
            except (OSError, ConnectionError, asyncio.TimeoutError):
                pass
            if self.t is not None:
                self.t.close()
                self.t = None
            if fleet.stopping:
                break
            fleet.stats.lost_connections += 1
            fails += 1
            d = min(8.0, 0.5 * 2 ** (fails - 1))  # the firmware's backoff, capped for a bench
            await asyncio.sleep(d / 2 + random.random() * d / 2)

    async def publish_loop(self, stop_at):
        st = self.fleet.stats
        resend = self.fleet.resend_s
        while self.t is not None and not self.fleet.stopping:
            now = time.monotonic()
            todo = None
            for rid, r in self.journal.items():
                # as the firmware: the wait doubles at each re-send, up to 600 s
                if r[3] is None or now - r[3] >= min(resend * 2 ** max(r[4] - 1, 0), 600):
                    todo = (rid, r)
                    break
            if todo is None:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            rid, r = todo
            if r[4]:
                st.resent += 1
            r[4] += 1
            mid = self.next_mid()
            self.puback_mid = mid
            self.puback = asyncio.get_running_loop().create_future()
            self.t.write(publish_packet(r[0], r[1], 1, mid))
            st.publishes += 1
            if st.first_pub is None:
                st.first_pub = now
            r[3] = now
            await asyncio.wait_for(self.puback, 10)  # as umqtt.simple: one at a time


class Fleet:
    def __init__(self, n, resend_s):
        self.n = n
        self.resend_s = resend_s
        self.stats = Stats()
        self.stopping = False
        self.t0 = time.monotonic()
        self.chargers = [Charger(self, "fleet-%05d" % i, "pw-%05d" % i) for i in range(n)]

    def users(self):
        return {c.dev: c.password for c in self.chargers}

    def pending(self):
        return sum(len(c.journal) for c in self.chargers)


async def _drive(fleet, port, scenario, records, rate, duration, drain_s, events):
    """events: [(at_s, callable)] run in a thread at those times."""
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    stop_at = t0 + duration + drain_s
    if scenario == "storm":
        for c in fleet.chargers:
            for _ in range(records):
                c.add_record(t0)
    tasks = []
    for i, c in enumerate(fleet.chargers):  # ramp: 200 connections at a time
        tasks.append(loop.create_task(c.run(loop, port, stop_at)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    pending_events = sorted(events, key=lambda e: e[0])
    running = []
    interval = 1.0 / rate if rate else None
    next_t = time.monotonic()
    made = 0
    i = 0
    while time.monotonic() < stop_at:
        now = time.monotonic()
        while pending_events and now - t0 >= pending_events[0][0]:
            _, fn = pending_events.pop(0)
            running.append(loop.run_in_executor(None, fn))  # the load goes on meanwhile
        if scenario != "storm" and now - t0 < duration and interval:
            while next_t <= now:
                fleet.chargers[i % fleet.n].add_record(now)
                i += 1
                made += 1
                next_t += interval
        elif (now - t0 >= duration or scenario == "storm") and fleet.pending() == 0 \
                and not pending_events and all(f.done() for f in running):
            break
        await asyncio.sleep(0.01)
    for f in running:
        await f  # a kill and restart that failed raises here
    fleet.stopping = True
    for c in fleet.chargers:
        c.wake.set()
        if c.t is not None:
            c.t.close()
    await asyncio.wait(tasks, timeout=10)
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


def run(scenario="steady", n=100, db="sqlite", records=30, rate=None, duration=10.0,
        drain_s=60.0, resend_s=30.0, backend_args=(), keep=False, log=print):
    """One scenario end to end; returns the figures (a dict)."""
    if not 1 <= n <= N_MAX:
        raise ValueError("--n: 1..%d" % N_MAX)
    rate = rate if rate is not None else n / 10.0
    folder = tempfile.mkdtemp(prefix="evse-fleet-")
    fleet = Fleet(n, resend_s)
    users = fleet.users()
    users[BACKEND_USER] = "backend-pw"
    broker = pg = backend = None
    try:
        broker = Broker(users)
        if db == "postgres":
            pg = Postgres()
            url = pg.url
        else:
            url = "sqlite:///" + os.path.join(folder, "fleet.db")
        backend = BackendProc(broker, url, folder, "--quiet", *backend_args)
        events = []
        if scenario == "broker-kill":
            def kill_broker():
                broker.kill9()
                time.sleep(1.0)
                broker.start()
            events.append((duration / 2, kill_broker))
        elif scenario == "backend-kill":
            def kill_backend():
                backend.kill9()
                time.sleep(1.0)
                backend.start()
            events.append((duration / 2, kill_backend))
        cpu0 = (broker.cpu(), backend.cpu(), pg.pid_cpu() if pg else 0.0)
        wall = asyncio.run(_drive(fleet, broker.port, scenario, records, rate, duration,
                                  drain_s, events))
        cpu1 = (broker.cpu(), backend.cpu(), pg.pid_cpu() if pg else 0.0)
        time.sleep(0.5)
        st = fleet.stats
        made = {(c.dev, "%s-%d" % (c.nonce, k)) for c in fleet.chargers
                for k in range(1, c.n + 1)}
        stored, rows = stored_rids(url)
        span = (st.last_ack - st.first_pub) if st.last_ack and st.first_pub else None
        res = {
            "scenario": scenario, "n": n, "db": db, "records_made": len(made),
            "records_stored": len(stored & made), "lost": len(made - stored),
            "duplicates_stored": rows - len(stored), "acked_not_stored": len(st.acked_rids - stored),
            "pending_at_end": fleet.pending(),
            "stored_per_s": round(len(stored & made) / span, 1) if span else None,
            "latency_p50_ms": round(pct(st.latency, 50) * 1000, 1) if st.latency else None,
            "latency_p99_ms": round(pct(st.latency, 99) * 1000, 1) if st.latency else None,
            "wall_s": round(wall, 2), "publishes": st.publishes, "resent": st.resent,
            "acks_for_unknown_rids": st.ack_unknown, "connects": st.connects,
            "lost_connections": st.lost_connections, "refused_connections": st.refused,
            "broker_cpu_pct": round(100 * (cpu1[0] - cpu0[0]) / wall, 1),
            "backend_cpu_pct": round(100 * (cpu1[1] - cpu0[1]) / wall, 1),
            "postgres_cpu_pct": round(100 * (cpu1[2] - cpu0[2]) / wall, 1) if pg else None,
            "offered_per_s": None if scenario == "storm" else rate,
        }
        res["broker_dropped_log"] = broker.logtext().count("Outgoing messages are being dropped")
        res["backend_log_tail"] = backend.text()[-600:]
        return res
    finally:
        if backend is not None:
            backend.stop()
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
    p.add_argument("--json", metavar="FILE", help="append the figures as a JSON line")
    a = p.parse_args(argv)
    if not 1 <= a.n <= N_MAX or a.duration > 600 or a.drain_s > 600:
        p.error("--n 1..%d, --duration and --drain-s at most 600" % N_MAX)
    try:
        res = run(a.scenario, a.n, a.db, a.records, a.rate, a.duration, a.drain_s, a.resend_s)
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
