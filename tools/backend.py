#!/usr/bin/env python3
"""Reference backend for the chargers' MQTT link (docs/mqtt.md).

    tools/backend.py [OPTIONS] run [--share GROUP] [--client-id ID]
    tools/backend.py [OPTIONS] sessions [--device ID] [--json]
    tools/backend.py [OPTIONS] events [--device ID] [--json]
    tools/backend.py [OPTIONS] cmd DEVICE COMMAND [ARGS...] [--timeout S]
    tools/backend.py [OPTIONS] cmd DEVICE --payload TEXT

OPTIONS: --broker HOST:PORT (127.0.0.1:1883), --user, --password (or the
environment variable EVSE_MQTT_PASSWORD), --ca FILE (TLS, verifying the
broker), --prefix (evse), --db URL (sqlite:///evse-backend.db).

`run` subscribes with a persistent session (clean_session false, a fixed
client id) at QoS 1 to PREFIX/+/# and stores session records and events;
each message is acknowledged (PUBACK) only once it is committed, so the
broker keeps it while the backend is down, and a record delivered twice
(the charger publishes again when a PUBACK was lost) is stored once: the
tables' keys are (device, session id) and (device, boot, event n). Status
and online messages keep the latest per charger. With --share GROUP it
subscribes to $share/GROUP/PREFIX/+/# so that several instances (each
with its own --client-id) split the messages between them.

`sessions` and `events` list what is stored. `cmd` sends one command
(`set_current 10 [TTL_S]`, `pause`, `resume`, `authorize`, `stop`,
`reset_error`, `reboot`, `set_config KEY VALUE`; or a raw --payload) and
waits for the charger's reply: exit 0 when it is ok, 1 when refused,
3 without a reply in time.

Databases: SQLite (default, `sqlite:///PATH`) or PostgreSQL
(`postgresql://USER@HOST/DB`, needs the psycopg (3) or psycopg2 package
and an existing database); the SQL is the same for both.
"""
import argparse
import json
import os
import signal
import sqlite3
import ssl
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "firmware"))

import paho.mqtt.client as paho  # noqa: E402

from evse.tls import context as tls_context  # noqa: E402

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        device TEXT NOT NULL, id BIGINT NOT NULL, boot BIGINT,
        start_time BIGINT, stop_time BIGINT, time_base TEXT,
        meter_start_wh BIGINT, meter_stop_wh BIGINT, energy_wh BIGINT,
        peak_a DOUBLE PRECISION, reason TEXT, errors TEXT,
        received_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL,
        PRIMARY KEY (device, id))""",
    """CREATE TABLE IF NOT EXISTS events (
        device TEXT NOT NULL, boot BIGINT NOT NULL, n BIGINT NOT NULL,
        kind TEXT, at_time BIGINT, time_base TEXT,
        received_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL,
        PRIMARY KEY (device, boot, n))""",
    """CREATE TABLE IF NOT EXISTS chargers (
        device TEXT PRIMARY KEY, online TEXT, status TEXT,
        updated_at DOUBLE PRECISION)""",
)


class DB:
    """The same SQL on SQLite and PostgreSQL (ON CONFLICT needs SQLite
    3.24+ / PostgreSQL 9.5+); `?` placeholders become `%s` for psycopg."""

    def __init__(self, url):
        self.url = url
        if url.startswith("sqlite:///") or "://" not in url:
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
            self.conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
            self.ph = "?"
        elif url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg as pg
            except ImportError:
                try:
                    import psycopg2 as pg
                except ImportError:
                    raise SystemExit("backend.py: PostgreSQL needs the psycopg (or psycopg2) "
                                     "package: pip install 'psycopg[binary]'")
            self.conn = pg.connect(url)
            self.ph = "%s"
        else:
            raise SystemExit("backend.py: --db: sqlite:///PATH or postgresql://... expected")
        self.lock = threading.Lock()
        for sql in SCHEMA:
            self.run(sql)
        self.conn.commit()

    def run(self, sql, params=()):
        cur = self.conn.cursor()
        cur.execute(sql.replace("?", self.ph), params)
        return cur

    def store_session(self, device, r, payload):
        """True when new, False when this session was already stored."""
        with self.lock:
            cur = self.run(
                "INSERT INTO sessions (device, id, boot, start_time, stop_time, time_base, "
                "meter_start_wh, meter_stop_wh, energy_wh, peak_a, reason, errors, received_at, "
                "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (device, id) DO NOTHING",
                (device, r["id"], r.get("boot"), r.get("start"), r.get("stop"), r.get("time"),
                 r.get("meter_start_wh"), r.get("meter_stop_wh"), r.get("energy_wh"),
                 r.get("peak_a"), r.get("reason"), json.dumps(r.get("errors")), time.time(),
                 payload))
            self.conn.commit()
            return cur.rowcount == 1

    def store_event(self, device, e, payload):
        with self.lock:
            cur = self.run(
                "INSERT INTO events (device, boot, n, kind, at_time, time_base, received_at, "
                "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, boot, n) DO NOTHING",
                (device, e["boot"], e["n"], e.get("type"), e.get("at"), e.get("time"),
                 time.time(), payload))
            self.conn.commit()
            return cur.rowcount == 1

    def store_charger(self, device, column, value):
        with self.lock:
            self.run("INSERT INTO chargers (device, %s, updated_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (device) DO UPDATE SET %s = excluded.%s, "
                     "updated_at = excluded.updated_at" % (column, column, column),
                     (device, value, time.time()))
            self.conn.commit()

    def rows(self, sql, params=()):
        with self.lock:
            return self.run(sql, params).fetchall()


# ------------------------------------------------------------------ MQTT
def mqtt_client(a, client_id, clean):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                    protocol=paho.MQTTv311, manual_ack=not clean)
    if a.user:
        c.username_pw_set(a.user, a.password)
    if a.ca:
        with open(a.ca, "rb") as f:
            c.tls_set_context(tls_context(ssl, f.read()))
    return c


def log(text):
    sys.stdout.write("%s %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stdout.flush()


def cmd_run(a):
    db = DB(a.db)
    topic = "%s/+/#" % a.prefix
    if a.share:
        topic = "$share/%s/%s" % (a.share, topic)
    client_id = a.client_id or "evse-backend" + ("-" + a.share if a.share else "")
    c = mqtt_client(a, client_id, clean=False)
    counts = {"sessions": 0, "duplicates": 0, "events": 0}
    stop = threading.Event()
    failed = []

    def on_connect(client, userdata, flags, rc, props=None):
        if rc.is_failure:
            log("connection refused: %s" % rc)
            return
        log("connected as %s (session present: %s)" % (client_id, flags.session_present))
        client.subscribe(topic, 1)

    def on_subscribe(client, userdata, mid, rcs, props=None):
        log("subscribed to %s" % topic)

    def on_message(client, userdata, msg):
        if stop.is_set():
            return
        parts = msg.topic.split("/")
        try:
            if len(parts) >= 3 and "/".join(parts[:-2]) == a.prefix:
                handle(parts[-2], parts[-1], msg.payload)
        except Exception as e:  # the database: stop unacknowledged, the broker keeps it
            log("cannot store %s: %s: %s; stopping" % (msg.topic, type(e).__name__, e))
            failed.append(e)
            stop.set()
            return
        if msg.qos:
            client.ack(msg.mid, msg.qos)  # after the commit: at least once

    def handle(device, kind, payload):
        text = payload.decode("utf-8", "replace")
        try:
            if kind == "session":
                r = json.loads(text)
                if db.store_session(device, r, text):
                    counts["sessions"] += 1
                    log("session %s/%s: %s Wh, %s" % (device, r["id"], r.get("energy_wh"),
                                                       r.get("reason")))
                else:
                    counts["duplicates"] += 1
                    log("session %s/%s again: already stored" % (device, r["id"]))
            elif kind == "event":
                e = json.loads(text)
                if db.store_event(device, e, text):
                    counts["events"] += 1
                    log("event %s: %s" % (device, text))
            elif kind == "status":
                db.store_charger(device, "status", text)
            elif kind == "online":
                db.store_charger(device, "online", text)
                log("%s %s" % (device, text))
            elif kind == "reply":
                log("reply %s: %s" % (device, text))
        except (ValueError, KeyError, TypeError) as e:
            log("bad %s message from %s dropped: %s" % (kind, device, e))

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    host, port = a.broker
    c.connect_async(host, port, keepalive=30)
    c.loop_start()
    stop.wait()
    c.loop_stop()
    c.disconnect()
    log("stopped: %(sessions)d sessions, %(duplicates)d duplicates, %(events)d events" % counts)
    return 1 if failed else 0


def _fmt_time(v, base):
    if v is None:
        return "-"
    if base == "epoch":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v))
    return "+%ss" % v


def cmd_sessions(a):
    db = DB(a.db)
    sql = ("SELECT device, id, boot, start_time, stop_time, time_base, meter_start_wh, "
           "meter_stop_wh, energy_wh, peak_a, reason, errors FROM sessions")
    params = ()
    if a.device:
        sql += " WHERE device = ?"
        params = (a.device,)
    rows = db.rows(sql + " ORDER BY device, id", params)
    cols = ("device", "id", "boot", "start", "stop", "time", "meter_start_wh", "meter_stop_wh",
            "energy_wh", "peak_a", "reason", "errors")
    if a.json:
        for r in rows:
            d = dict(zip(cols, r))
            d["errors"] = json.loads(d["errors"]) if d["errors"] else None
            print(json.dumps(d))
        return 0
    print("%-20s %5s  %-19s  %-19s  %9s  %-12s %s"
          % ("device", "id", "start", "stop", "energy_wh", "reason", "errors"))
    for r in rows:
        print("%-20s %5s  %-19s  %-19s  %9s  %-12s %s"
              % (r[0], r[1], _fmt_time(r[3], r[5]), _fmt_time(r[4], r[5]),
                 "-" if r[8] is None else r[8], r[10], r[11]))
    print("%d session(s)" % len(rows))
    return 0


def cmd_events(a):
    db = DB(a.db)
    sql = "SELECT device, boot, n, kind, payload FROM events"
    params = ()
    if a.device:
        sql += " WHERE device = ?"
        params = (a.device,)
    for r in db.rows(sql + " ORDER BY device, boot, n", params):
        print(r[4] if a.json else "%-20s boot %s #%s  %-16s %s" % (r[0], r[1], r[2], r[3], r[4]))
    return 0


def build_command(words):
    """['set_current', '10', '60'] -> {"cmd": "set_current", "amps": 10, "ttl_s": 60}."""
    if not words:
        raise ValueError("a command is needed (set_current AMPS [TTL_S], pause, resume, "
                         "authorize, stop, reset_error, reboot, set_config KEY VALUE)")
    name, args = words[0], words[1:]

    def num(s):
        v = float(s)
        return int(v) if v == int(v) else v

    if name == "set_current":
        if not 1 <= len(args) <= 2:
            raise ValueError("set_current AMPS [TTL_S]")
        msg = {"cmd": name, "amps": num(args[0])}
        if len(args) == 2:
            msg["ttl_s"] = num(args[1])
        return msg
    if name == "set_config":
        if len(args) != 2:
            raise ValueError("set_config KEY VALUE (VALUE as JSON, or a plain string)")
        try:
            value = json.loads(args[1])
        except ValueError:
            value = args[1]
        return {"cmd": name, "key": args[0], "value": value}
    if args:
        raise ValueError("%s takes no arguments" % name)
    return {"cmd": name}


def cmd_cmd(a):
    if a.payload is not None:
        payload = a.payload.encode()
        cid = None
        try:
            d = json.loads(a.payload)
            cid = d.get("id") if isinstance(d, dict) else None
        except ValueError:
            pass
    else:
        try:
            msg = build_command(a.words)
        except ValueError as e:
            sys.stderr.write("backend.py cmd: %s\n" % e)
            return 2
        cid = "b-" + uuid.uuid4().hex[:10]
        msg["id"] = cid
        payload = json.dumps(msg).encode()
    base = "%s/%s/" % (a.prefix, a.device)
    c = mqtt_client(a, "evse-backend-cmd-" + uuid.uuid4().hex[:8], clean=True)
    ready = threading.Event()
    got = []
    done = threading.Event()

    def on_connect(client, userdata, flags, rc, props=None):
        client.subscribe(base + "reply", 1)

    def on_subscribe(client, userdata, mid, rcs, props=None):
        ready.set()

    def on_message(client, userdata, m):
        try:
            r = json.loads(m.payload.decode())
        except ValueError:
            return
        if isinstance(r, dict) and r.get("id") == cid:
            got.append(r)
            done.set()

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    host, port = a.broker
    try:
        c.connect(host, port, keepalive=30)
    except OSError as e:
        sys.stderr.write("backend.py cmd: cannot reach the broker %s:%d: %s\n" % (host, port, e))
        return 3
    c.loop_start()
    try:
        if not ready.wait(a.timeout):
            sys.stderr.write("backend.py cmd: no subscription to %sreply\n" % base)
            return 3
        c.publish(base + "cmd", payload, qos=1).wait_for_publish(a.timeout)
        if not done.wait(a.timeout):
            sys.stderr.write("backend.py cmd: no reply from %s within %s s (offline?)\n"
                             % (a.device, a.timeout))
            return 3
    finally:
        c.loop_stop()
        c.disconnect()
    print(json.dumps(got[0]))
    return 0 if got[0].get("ok") is True else 1


def hostport(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("HOST:PORT expected")
    return host, int(port)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="backend.py", description="Reference backend for the "
                                "chargers' MQTT link: stores sessions and events, sends commands.")
    p.add_argument("--broker", type=hostport, default=("127.0.0.1", 1883), metavar="HOST:PORT")
    p.add_argument("--user")
    p.add_argument("--password", default=os.environ.get("EVSE_MQTT_PASSWORD"),
                   help="(default: $EVSE_MQTT_PASSWORD)")
    p.add_argument("--ca", metavar="FILE", help="TLS: the CA that signed the broker's certificate")
    p.add_argument("--prefix", default="evse")
    p.add_argument("--db", default=os.environ.get("EVSE_BACKEND_DB", "sqlite:///evse-backend.db"),
                   metavar="URL", help="sqlite:///PATH (default) or postgresql://...")
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="subscribe and store sessions and events")
    r.add_argument("--share", metavar="GROUP", help="shared subscription group")
    r.add_argument("--client-id", help="MQTT client id (stable: the session persists)")
    for name in ("sessions", "events"):
        s = sub.add_parser(name, help="list stored %s" % name)
        s.add_argument("--device")
        s.add_argument("--json", action="store_true")
    c = sub.add_parser("cmd", help="send a command and wait for the reply")
    c.add_argument("device")
    c.add_argument("words", nargs="*", metavar="COMMAND")
    c.add_argument("--payload", help="send this text as it is")
    c.add_argument("--timeout", type=float, default=10.0)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    return {"run": cmd_run, "sessions": cmd_sessions, "events": cmd_events,
            "cmd": cmd_cmd}[a.what](a)


if __name__ == "__main__":
    sys.exit(main())
