#!/bin/sh
''''exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@" #'''
# The two lines above: run by a shell (`tools/backend.py ...`), this file
# starts itself again with the project's virtualenv, where paho-mqtt and
# psycopg are (make setup); to Python the second line is a string.
"""Reference backend for the chargers' MQTT link (docs/mqtt.md, "Reference backend").

    tools/backend.py [OPTIONS] run [--share GROUP] [--client-id ID] [--batch N]
                                   [--status-flush-s S] [--quiet]
    tools/backend.py [OPTIONS] sessions [--device ID] [--json]
    tools/backend.py [OPTIONS] events [--device ID] [--json]
    tools/backend.py [OPTIONS] quarantine [--device ID] [--json]
    tools/backend.py [OPTIONS] cmd DEVICE COMMAND [ARGS...] [--ttl S] [--timeout S]
    tools/backend.py [OPTIONS] cmd DEVICE --payload TEXT
    tools/backend.py [OPTIONS] release URL (--device ID ... | --all) [--force] [--timeout S]
    tools/backend.py [OPTIONS] chargers [--device ID] [--json]

OPTIONS: --broker HOST:PORT (127.0.0.1:1883), --user, --password (or the
environment variable EVSE_MQTT_PASSWORD), --ca FILE (TLS, verifying the
broker), --prefix (evse), --db URL (sqlite:///PATH or postgresql://...;
default $EVSE_BACKEND_DB, else ~/.local/share/evse/backend.db).

`run`: a persistent session (clean_session false) at QoS 1 on PREFIX/+/#.
paho's network thread only hands messages to a queue; one database thread
takes them in batches, validates each against the schema of its kind,
stores a batch in one transaction, and only after the commit sends, for
records that carry a "rid", the end-to-end acknowledgement
PREFIX/<device>/ack {"rids": [...]} (QoS 0, at most 32 per message, one
message per device and batch) after which the charger removes them from its
journal, and the PUBACKs (so the broker keeps what is not stored). paho's
client is made lighter for that load (BatchClient). Records are stored once
per (device, rid), or, from firmware without rids, per (device, session id)
and (device, boot, n).
A message that fails its schema goes to the quarantine table (and is
acknowledged), never into the tables and never fatal. The latest status and
online value of each charger are kept in memory and written in batches.
"""
import argparse
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import ssl
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "firmware"))
sys.path.insert(1, os.path.join(ROOT, "tools", "host"))

import paho.mqtt.client as paho  # noqa: E402

import clitext  # noqa: E402  (tools/host/clitext.py)
from clitext import first_line, safe  # noqa: E402

from evse.tls import context as tls_context  # noqa: E402

DEFAULT_DB = os.path.join(os.path.expanduser("~"), ".local", "share", "evse", "backend.db")
ACK_RIDS_MAX = 32  # rids per acknowledgement message
MAX_RECORD_BYTES = 4096  # a session record or event is under 600 bytes
MAX_STATUS_BYTES = 4096
QUARANTINE_KEEP = 1024  # characters of a quarantined payload kept (escaped)
TX_TRIES = 5  # a batch that PostgreSQL rolled back (deadlock, serialization) is tried again
TX_RETRY_S = 0.05  # first wait before it is, doubling

# ------------------------------------------------------------------ logs




_out_lock = threading.Lock()


def log(text):
    with _out_lock:
        sys.stdout.write("%s %s\n" % (time.strftime("%H:%M:%S"), text))
        sys.stdout.flush()


def fail(text, code=1):
    """One clear line on stderr, no traceback."""
    return clitext.fail(__file__, text, code)


# ------------------------------------------------------------ validation
RID_RE = re.compile(r"[0-9a-f]{8}-[1-9][0-9]{0,17}\Z")
DEVICE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
WORD_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
PRINTABLE_RE = re.compile(r"[\x20-\x7e]{0,64}\Z")
I64 = 2 ** 63 - 1
STATES = {"A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F"}
TIME_BASES = ("epoch", "uptime")
ENERGY_STATUSES = ("measured", "late_start", "no_start_reading", "no_stop_reading",
                   "meter_reset", "no_meter")
UNKNOWN_KEYS_MAX = 8


class Bad(Exception):
    """A message that fails its schema; the text says why (safe to log)."""


def _what(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    return {int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(v), type(v).__name__)


_ABSENT = object()  # what _field returns for a missing or null field that may be so


def _field(d, key, null, required):
    """The value of `key` in d, or _ABSENT when it is missing and not
    required, or null and null is allowed; Bad when missing and required.
    The shared preamble of _int, _choice, _word and _number."""
    if key not in d:
        if required:
            raise Bad("%s: missing" % key)
        return _ABSENT
    v = d[key]
    return _ABSENT if v is None and null else v


def _int(d, key, lo=0, hi=I64, null=False, required=True):
    v = _field(d, key, null, required)
    if v is _ABSENT:
        return None
    if type(v) is not int:  # bool is not an int here
        raise Bad("%s: an integer expected, got %s" % (key, _what(v)))
    if not lo <= v <= hi:
        raise Bad("%s: out of range %d..%d" % (key, lo, hi))
    return v


def _choice(d, key, allowed, null=False, required=True):
    v = _field(d, key, null, required)
    if v is _ABSENT:
        return None
    if type(v) is not str or v not in allowed:
        raise Bad("%s: one of %s expected" % (key, ", ".join(allowed)))
    return v


def _word(d, key, null=False, required=True):
    v = _field(d, key, null, required)
    if v is _ABSENT:
        return None
    if type(v) is not str or not WORD_RE.match(v):
        raise Bad("%s: a word of [a-z0-9_] expected, got %s" % (key, _what(v)))
    return v


def _number(d, key, lo, hi, null=True, required=False):
    v = _field(d, key, null, required)
    if v is _ABSENT:
        return None
    if type(v) not in (int, float) or not lo <= v <= hi:  # NaN fails both
        raise Bad("%s: a number %s..%s expected, got %s" % (key, lo, hi, _what(v)))
    return float(v)


def _scalars(d, known):
    """Keys this backend does not know (a newer firmware's): at most a few,
    each a plain scalar, so that nothing nested or huge is stored."""
    if len(d) <= len(known) and known.issuperset(d):
        return
    extra = [k for k in d if k not in known]
    if len(extra) > UNKNOWN_KEYS_MAX:
        raise Bad("%d unknown fields" % len(extra))
    for k in extra:
        v = d[k]
        if not PRINTABLE_RE.match(k) or not k:
            raise Bad("a field name that is not printable ASCII")
        if v is None or v is True or v is False:
            continue
        if type(v) is int and -I64 - 1 <= v <= I64:
            continue
        if type(v) is float and v == v and abs(v) != float("inf"):
            continue
        if type(v) is str and PRINTABLE_RE.match(v):
            continue
        raise Bad("%s: unknown field with %s" % (safe(k, 40), _what(v)))


def _pairs(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise Bad("duplicate field %s" % safe(k, 40))
            seen.add(k)
    return d


def _no_constant(name):
    raise Bad("%s is not JSON" % name)


# one decoder for every message (json.loads with arguments builds one per call)
_DECODE = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constant).decode


def load_object(payload, limit):
    """bytes -> dict, or Bad: size first (a 16 MB payload is not parsed),
    strict UTF-8, strict JSON (no NaN, no duplicate field), an object."""
    if len(payload) > limit:
        raise Bad("payload too large: %d bytes, at most %d" % (len(payload), limit))
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("payload is not UTF-8 text")
    try:
        d = _DECODE(text)
    except RecursionError:
        raise Bad("nested too deeply")
    except ValueError:
        raise Bad("malformed JSON")
    if not isinstance(d, dict):
        raise Bad("a JSON object expected, got %s" % _what(d))
    return d, text


def readable_rid(d):
    """The record's rid when it is well formed (so it can be acknowledged)."""
    v = d.get("rid") if isinstance(d, dict) else None
    return v if type(v) is str and RID_RE.match(v) else None


SESSION_KEYS = frozenset((
    "rid", "id", "boot", "start", "stop", "time", "meter_start_wh", "meter_stop_wh",
    "energy_wh", "energy_status", "estimate_wh", "peak_a", "reason", "errors"))
EVENT_KEYS = frozenset(("rid", "type", "boot", "n", "at", "time", "code", "reason", "fw",
                        "detail", "file", "result", "version", "error", "dropped_events",
                        "dropped_sessions", "skipped_bytes"))


def check_rid(d):
    if "rid" not in d:
        return None
    rid = readable_rid(d)
    if rid is None:
        raise Bad("rid: \"<8 hex digits>-<n>\" expected")
    return rid


def check_session(d):
    """A session record (payloads.session_record) -> the row's values."""
    rid = check_rid(d)
    r = {"rid": rid, "id": _int(d, "id"), "boot": _int(d, "boot"),
         "start": _int(d, "start", -I64, I64, null=True, required=False),
         "stop": _int(d, "stop", -I64, I64, null=True, required=False),
         "time": _choice(d, "time", TIME_BASES),
         "meter_start_wh": _int(d, "meter_start_wh", null=True, required=False),
         "meter_stop_wh": _int(d, "meter_stop_wh", null=True, required=False),
         "energy_wh": _int(d, "energy_wh", null=True, required=False),
         "energy_status": _choice(d, "energy_status", ENERGY_STATUSES, null=True,
                                  required=False),
         "estimate_wh": _int(d, "estimate_wh", null=True, required=False),
         "peak_a": _number(d, "peak_a", 0, 10000),
         "reason": _word(d, "reason")}
    errors = d.get("errors")
    if errors is not None:
        if type(errors) is not list or len(errors) > 32:
            raise Bad("errors: an array of at most 32 fault codes expected")
        for e in errors:
            if type(e) is not str or not WORD_RE.match(e):
                raise Bad("errors: fault codes (words) expected")
    r["errors"] = errors
    _scalars(d, SESSION_KEYS)
    return r


def check_event(d):
    """An event (payloads.event) -> the row's values."""
    rid = check_rid(d)
    r = {"rid": rid, "type": _word(d, "type"), "boot": _int(d, "boot"), "n": _int(d, "n"),
         "at": _int(d, "at", -I64, I64, null=True, required=False),
         "time": _choice(d, "time", TIME_BASES, null=True, required=False)}
    for k in ("code", "reason", "result"):
        _word(d, k, null=True, required=False)
    for k in ("fw", "detail", "file", "version", "error"):
        if k in d and (type(d[k]) is not str or not PRINTABLE_RE.match(d[k])):
            raise Bad("%s: printable text of at most 64 characters expected" % k)
    for k in ("dropped_events", "dropped_sessions", "skipped_bytes"):
        _int(d, k, null=True, required=False)
    _scalars(d, EVENT_KEYS)
    return r


def check_status(d):
    if type(d.get("state")) is not str or d["state"] not in STATES:
        raise Bad("state: one of %s expected" % ", ".join(sorted(STATES)))


# ------------------------------------------------------------- database
SCHEMA = (
    # rkey: the record's rid, or for records without one (older firmware)
    # "id:<session id>" / "bn:<boot>:<n>", the keys used before rids
    """CREATE TABLE IF NOT EXISTS sessions (
        device TEXT NOT NULL, rkey TEXT NOT NULL, rid TEXT, id BIGINT NOT NULL, boot BIGINT,
        start_time BIGINT, stop_time BIGINT, time_base TEXT,
        meter_start_wh BIGINT, meter_stop_wh BIGINT, energy_wh BIGINT, energy_status TEXT,
        estimate_wh BIGINT, peak_a DOUBLE PRECISION, reason TEXT, errors TEXT,
        received_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL,
        PRIMARY KEY (device, rkey))""",
    """CREATE TABLE IF NOT EXISTS events (
        device TEXT NOT NULL, rkey TEXT NOT NULL, rid TEXT, boot BIGINT, n BIGINT,
        kind TEXT, at_time BIGINT, time_base TEXT,
        received_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL,
        PRIMARY KEY (device, rkey))""",
    """CREATE TABLE IF NOT EXISTS chargers (
        device TEXT PRIMARY KEY, online TEXT, status TEXT,
        updated_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        received_at DOUBLE PRECISION NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL,
        rid TEXT, reason TEXT NOT NULL, size BIGINT NOT NULL, payload TEXT NOT NULL)""",
)
SESSION_COLS = ("device", "rkey", "rid", "id", "boot", "start_time", "stop_time", "time_base",
                "meter_start_wh", "meter_stop_wh", "energy_wh", "energy_status", "estimate_wh",
                "peak_a", "reason", "errors", "received_at", "payload")
EVENT_COLS = ("device", "rkey", "rid", "boot", "n", "kind", "at_time", "time_base",
              "received_at", "payload")
QUARANTINE_COLS = ("received_at", "device", "kind", "rid", "reason", "size", "payload")
SCHEMA_LOCK = 0x65767365  # PostgreSQL advisory lock key ("evse") held while the tables are made
# Tables written before rids (keys (device, id) and (device, boot, n)):
# renamed *_v1 and copied into the new ones with the old keys as rkey.
MIGRATE = (
    ("sessions", "INSERT INTO sessions (device, rkey, id, boot, start_time, stop_time, "
     "time_base, meter_start_wh, meter_stop_wh, energy_wh, peak_a, reason, errors, "
     "received_at, payload) SELECT device, 'id:' || CAST(id AS TEXT), id, boot, start_time, "
     "stop_time, time_base, meter_start_wh, meter_stop_wh, energy_wh, peak_a, reason, errors, "
     "received_at, payload FROM sessions_v1"),
    ("events", "INSERT INTO events (device, rkey, boot, n, kind, at_time, time_base, "
     "received_at, payload) SELECT device, 'bn:' || CAST(boot AS TEXT) || ':' || "
     "CAST(n AS TEXT), boot, n, kind, at_time, time_base, received_at, payload FROM events_v1"),
)


def mask_url(url):
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class DBError(Exception):
    """The database cannot be reached or refuses everything (fatal)."""


class Store:
    """SQLite (WAL, one transaction per batch) or PostgreSQL (psycopg 3, COPY
    into a temporary table and one INSERT .. SELECT .. ON CONFLICT DO NOTHING
    RETURNING per batch). `write` is the only writer; it returns the keys of
    the rows that were new."""

    def __init__(self, url):
        self.url = url
        if url.startswith("sqlite:///") or "://" not in url:
            self.kind = "sqlite"
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
            folder = os.path.dirname(os.path.abspath(path))
            if path == DEFAULT_DB:
                os.makedirs(folder, exist_ok=True)
            if not os.path.isdir(folder):
                raise DBError("no folder %s" % folder)
            try:
                self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                            check_same_thread=False)
                # WAL: readers (the listing commands) never block the writer;
                # synchronous FULL: a committed batch survives a power cut,
                # which the acknowledgement after it promises.
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                raise DBError(first_line(e))
            self.ph = "?"
            self.errors = (sqlite3.Error,)
            self.fatal = (sqlite3.OperationalError,)
        elif url.startswith(("postgresql://", "postgres://")):
            self.kind = "pg"
            try:
                import psycopg
            except ImportError:
                raise DBError("PostgreSQL needs the psycopg package (make setup installs it "
                              "into .venv: run tools/backend.py with .venv/bin/python)")
            try:
                self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
            except psycopg.Error as e:
                raise DBError(first_line(e))
            self.ph = "%s"
            self.errors = (psycopg.Error,)
            self.fatal = (psycopg.OperationalError, psycopg.InterfaceError)
        else:
            raise DBError("--db: sqlite:///PATH or postgresql://... expected")
        try:
            self._schema()
        except self.errors as e:
            raise DBError(first_line(e))

    def _begin(self):
        if self.kind == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.execute("BEGIN")

    def _commit(self):
        self.conn.execute("COMMIT")

    def _rollback(self):
        try:
            self.conn.execute("ROLLBACK")
        except self.errors:
            pass

    def _columns(self, table):
        try:
            cur = self.conn.execute("SELECT * FROM %s WHERE 1 = 0" % table)
            return [c[0] for c in cur.description]
        except self.errors:
            self._rollback_if_pg()
            return None

    def _rollback_if_pg(self):
        if self.kind == "pg" and self.conn.info.transaction_status != 0:
            self._rollback()

    def _schema(self):
        old = []
        for t, _ in MIGRATE:
            cols = self._columns(t)
            if cols is not None and "rkey" not in cols:
                old.append(t)
        self._begin()
        try:
            if self.kind == "pg":  # instances starting together create the tables one at a time
                self.conn.execute("SELECT pg_advisory_xact_lock(%d)" % SCHEMA_LOCK)
            for t in old:
                self.conn.execute("ALTER TABLE %s RENAME TO %s_v1" % (t, t))
                if self.kind == "pg":  # its primary key's index keeps the old name
                    self.conn.execute("ALTER INDEX %s_pkey RENAME TO %s_v1_pkey" % (t, t))
            for sql in SCHEMA:
                self.conn.execute(sql)
            for t, sql in MIGRATE:
                if t in old:
                    self.conn.execute(sql)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        if self.kind == "pg":
            for t in ("sessions", "events"):
                self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS %s_in (LIKE %s) "
                                  "ON COMMIT DELETE ROWS" % (t, t))
        self.migrated = old

    def sql(self, text):
        return text.replace("?", self.ph)

    def _insert(self, table, cols, rows):
        """Insert rows, skipping keys already there; the (device, rkey) of
        the rows that were new."""
        if not rows:
            return set()
        if self.kind == "pg":
            cur = self.conn.cursor()
            with cur.copy("COPY %s_in (%s) FROM STDIN" % (table, ", ".join(cols))) as cp:
                for r in rows:
                    cp.write_row(r)
            # in key order, as every instance's batches: two instances
            # never wait for each other's rows in opposite orders
            cur.execute("INSERT INTO %s SELECT * FROM %s_in ORDER BY device, rkey "
                        "ON CONFLICT (device, rkey) DO NOTHING RETURNING device, rkey"
                        % (table, table))
            return set(cur.fetchall())
        sql = "INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (device, rkey) DO NOTHING" % (
            table, ", ".join(cols), ", ".join("?" * len(cols)))
        new = set()
        cur = self.conn.cursor()
        for r in rows:
            cur.execute(sql, r)
            if cur.rowcount == 1:
                new.add((r[0], r[1]))
        return new

    def write(self, sessions, events, quarantine, chargers):
        """One transaction; raises the driver's error (rolled back). A
        transaction the server rolled back for another's sake is tried again
        (TX_TRIES times, waits doubling from TX_RETRY_S)."""
        chargers = sorted(chargers, key=lambda r: r[0])  # locked in device order by all
        wait = TX_RETRY_S
        for i in range(TX_TRIES):
            try:
                return self._write(sessions, events, quarantine, chargers)
            except self.errors as e:
                # SQLSTATE class 40, rolled back by the server for another
                # transaction's sake (40P01 a deadlock, 40001 a serialization
                # failure): nothing wrong with the batch or the database.
                # psycopg raises them as OperationalErrors, otherwise fatal.
                if not str(getattr(e, "sqlstate", None) or "").startswith("40") or \
                        i == TX_TRIES - 1:
                    raise
                log("the database rolled a batch back (%s); trying it again"
                    % first_line(e))
                time.sleep(wait)
                wait *= 2

    def _write(self, sessions, events, quarantine, chargers):
        self._begin()
        try:
            new_s = self._insert("sessions", SESSION_COLS, sessions)
            new_e = self._insert("events", EVENT_COLS, events)
            cur = self.conn.cursor()
            if quarantine:
                cur.executemany(self.sql("INSERT INTO quarantine (%s) VALUES (%s)" % (
                    ", ".join(QUARANTINE_COLS), ", ".join("?" * len(QUARANTINE_COLS)))),
                    quarantine)
            if chargers:
                cur.executemany(self.sql(
                    "INSERT INTO chargers (device, online, status, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (device) DO UPDATE SET "
                    "online = COALESCE(excluded.online, chargers.online), "
                    "status = COALESCE(excluded.status, chargers.status), "
                    "updated_at = excluded.updated_at"), chargers)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return new_s, new_e

    def alive(self):
        try:
            self.conn.execute("SELECT 1").fetchall()
            return True
        except self.errors:
            return False

    def rows(self, sql, params=()):
        return self.conn.execute(self.sql(sql), params).fetchall()


def open_store(url):
    """A Store, or SystemExit with one line."""
    try:
        return Store(url)
    except DBError as e:
        raise SystemExit(fail("cannot open the database %s: %s" % (mask_url(url), e)))


# ------------------------------------------------------------------ MQTT
class Received:
    """A PUBLISH as BatchClient hands it to on_message: what paho's
    MQTTMessage has for it (without its MQTTMessageInfo and Condition,
    which only an outgoing message needs)."""

    __slots__ = ("_topic", "mid", "qos", "retain", "dup", "payload", "timestamp")
    properties = None

    def __init__(self, topic):
        self._topic, self.mid = topic, 0

    @property
    def topic(self):
        return self._topic.decode("utf-8")  # UnicodeDecodeError as paho's


class BatchClient(paho.Client):
    """paho's client (2.x) with what a backend under load needs, measured
    with tools/fleet.py (docs/mqtt.md, "Inside"):

    - the socket read 64 KiB at a time: paho reads a packet's first byte,
      each byte of its length and then its body with one recv() each, and
      every recv() hands the GIL over to the database thread and back;
    - every packet already read handled at each wake-up: paho handles one
      per select() when it has nothing in flight;
    - `send_raw(data)`: a batch's PUBACKs and acknowledgements written as
      one queued packet (one wake-up of the network thread and one send()
      for a batch, where ack() and publish() cost one each per message);
    - on_message called directly (no per-topic callbacks are used here).
    Nothing else changes: connecting, TLS, keepalive and reconnecting are
    paho's."""

    _rbuf = b""  # what was read from the socket, from _rpos on not yet taken
    _rpos = 0

    def _sock_recv(self, bufsize):
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf, pos = super()._sock_recv(65536), 0
            if not buf:
                return buf  # closed by the broker
            self._rbuf = buf
        self._rpos = pos + bufsize
        return buf[pos:pos + bufsize]

    def loop_read(self, max_packets=1):
        rc = super().loop_read(max_packets)
        # each pass takes at least one packet or empties the buffer
        while rc == paho.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf) and \
                self._sock is not None:
            rc = super().loop_read(max_packets)
        return rc

    def _packet_read(self):
        """A packet whole in the buffer is taken at once, a PUBLISH at QoS 0
        or 1 decoded here (MQTT 3.1.1); anything else is paho's."""
        buf, pos = self._rbuf, self._rpos
        end = len(buf)
        if self._in_packet["command"] or end - pos < 2 or self._protocol == paho.MQTTv5:
            return super()._packet_read()
        n, mult, i = 0, 1, pos + 1
        while True:
            if i >= end or i > pos + 4:
                return super()._packet_read()  # a partial length, or a bad one: paho's
            b = buf[i]
            n += (b & 0x7F) * mult
            mult <<= 7
            i += 1
            if not b & 0x80:
                break
        if end - i < n:
            return super()._packet_read()  # the rest is still to come
        cmd, stop = buf[pos], i + n
        self._rpos = stop
        qos = (cmd >> 1) & 3
        if cmd & 0xF0 == paho.PUBLISH and qos < 2 and n >= 2:
            off = i + 2 + ((buf[i] << 8) | buf[i + 1])
            m = Received(buf[i + 2:off])
            if qos:
                m.mid = (buf[off] << 8) | buf[off + 1] if off + 2 <= stop else 0
                off += 2
            if off > stop:
                return paho.MQTT_ERR_PROTOCOL
            m.qos, m.retain, m.dup = qos, bool(cmd & 1), bool(cmd & 8)
            m.payload = buf[off:stop]
            m.timestamp = paho.time_func()
            self._handle_on_message(m)
            rc = paho.MQTT_ERR_SUCCESS
            if qos and not self._manual_ack:
                rc = self._send_puback(m.mid)
        else:
            self._in_packet = {"command": cmd, "have_remaining": 1, "remaining_count": [],
                               "remaining_mult": 1, "remaining_length": n,
                               "packet": bytearray(buf[i:stop]), "to_process": 0, "pos": 0}
            try:
                rc = self._packet_handle()
            except paho.MalformedPacket:
                rc = paho.MQTT_ERR_PROTOCOL
            self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [],
                               "remaining_mult": 1, "remaining_length": 0,
                               "packet": bytearray(b""), "to_process": 0, "pos": 0}
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()
        return rc

    def reconnect(self):
        self._rbuf, self._rpos = b"", 0
        return super().reconnect()

    def _sock_close(self):
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def _handle_on_message(self, message):
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    def send_raw(self, data):
        """Queue ready-made MQTT 3.1.1 packets (bytes) behind what is queued."""
        if data and self._sock is not None:
            self._packet_queue(paho.PUBACK, bytes(data), 0, 0)


def puback(mid):
    return b"\x40\x02" + mid.to_bytes(2, "big")


def publish0(topic, payload):
    """A PUBLISH at QoS 0 (MQTT 3.1.1): topic and payload as bytes."""
    body = len(topic).to_bytes(2, "big") + topic + payload
    n, head = len(body), bytearray(b"\x30")
    while True:
        b, n = n & 0x7F, n >> 7
        head.append(b | (0x80 if n else 0))
        if not n:
            return bytes(head) + body


def ack_payloads(rids):
    """{"rids": [...]} for a device's stored records, at most ACK_RIDS_MAX
    a message (the longest, 32 rids of 18 digits, is 1,002 bytes: under the
    1024 the firmware reads). The rids passed RID_RE: no escaping needed."""
    return [('{"rids": ["%s"]}' % '", "'.join(rids[i:i + ACK_RIDS_MAX])).encode()
            for i in range(0, len(rids), ACK_RIDS_MAX)]


def mqtt_client(a, client_id, clean):
    c = BatchClient(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                    protocol=paho.MQTTv311, manual_ack=not clean)
    if a.user:
        c.username_pw_set(a.user, a.password)
    if a.ca:
        try:
            with open(a.ca, "rb") as f:
                c.tls_set_context(tls_context(ssl, f.read()))
        except (OSError, ValueError, ssl.SSLError) as e:
            raise SystemExit(fail("--ca %s: %s" % (a.ca, first_line(e))))
    return c


def connect_or_exit(c, a):
    host, port = a.broker
    try:
        c.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as e:
        raise SystemExit(fail("cannot reach the broker %s:%d: %s" % (host, port, first_line(e))))
    nodelay(c)


def nodelay(c):
    """TCP_NODELAY: an acknowledgement leaves at once, not after Nagle's wait."""
    try:
        c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class Msg:
    __slots__ = ("device", "kind", "payload", "mid", "qos", "gen", "t")

    def __init__(self, device, kind, payload, mid, qos, gen, t):
        self.device, self.kind, self.payload = device, kind, payload
        self.mid, self.qos, self.gen, self.t = mid, qos, gen, t


class Backend:
    """paho's thread: on_message -> self.q (never the database). The DB
    thread (`writer`): batches -> validate -> one transaction -> PUBACKs and
    acknowledgements."""

    def __init__(self, a, store, client):
        self.a, self.db, self.c = a, store, client
        self.q = queue.SimpleQueue()
        self.gen = 0  # connection count: a PUBACK goes only to the connection that delivered
        self.latest = {}  # device -> [online, status] not yet written
        self.latest_lock = threading.Lock()
        self.closing = threading.Event()
        self.done = threading.Event()
        self.fatal = None
        self.counts = {"sessions": 0, "duplicates": 0, "events": 0, "quarantined": 0,
                       "acks": 0, "batches": 0}
        self.dropped_seen = None
        self.quiet = a.quiet
        self._flushed = 0
        self.last_summary = time.monotonic()

    # ---- network thread
    def on_message(self, client, userdata, msg):
        t = time.time()
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # not ours (MQTT wants UTF-8): acknowledged, not stored
            topic = ""
        if topic.startswith("$SYS/"):
            self._sys(topic, msg.payload)
            return
        if self.closing.is_set():
            return  # not acknowledged: the broker delivers it again next time
        parts = topic.split("/")
        ours = len(parts) >= 3 and "/".join(parts[:-2]) == self.a.prefix
        device, kind = (parts[-2], parts[-1]) if ours else ("", "")
        if msg.qos == 0 and kind in ("status", "online"):
            self._latest(device, kind, msg.payload, t)
            return
        if msg.qos == 0 and kind == "reply" and not self.quiet:
            log("reply %s: %s" % (safe(device, 40), safe(msg.payload)))
        if msg.qos or kind in ("session", "event"):
            self.q.put(Msg(device, kind if ours else None, msg.payload, msg.mid, msg.qos,
                           self.gen, t))

    def _latest(self, device, kind, payload, t):
        with self.latest_lock:
            self.latest.setdefault(device, [None, None, t])
            e = self.latest[device]
            e[0 if kind == "online" else 1] = payload
            e[2] = t

    def _sys(self, topic, payload):
        if topic.endswith("/publish/messages/dropped"):
            try:
                n = int(payload)
            except ValueError:
                return
            if self.dropped_seen is not None and n > self.dropped_seen:
                log("broker: %d messages dropped since it started (its queue limits); "
                    "chargers re-send what is not acknowledged" % n)
            self.dropped_seen = n

    def on_connect(self, client, userdata, flags, rc, props=None):
        if rc.is_failure:
            log("connection refused: %s" % rc)
            if self.gen == 0:
                self.fatal = "the broker refused the connection: %s" % rc
                self.done.set()
            return
        self.gen += 1
        nodelay(client)
        log("connected as %s (session present: %s; network thread %d)"
            % (self.client_id, flags.session_present, threading.get_native_id()))
        subs = [(self.topic, 1)]
        if not self.a.no_sys:
            subs.append(("$SYS/broker/publish/messages/dropped", 0))
        client.subscribe(subs)

    def on_subscribe(self, client, userdata, mid, rcs, props=None):
        if any(rc.is_failure for rc in rcs[:1]):
            log("subscription to %s refused (the ACL?)" % self.topic)
            self.fatal = "the broker refused the subscription to %s" % self.topic
            self.done.set()
            return
        log("subscribed to %s" % self.topic)

    # ---- database thread
    def writer(self):
        log("database thread %d" % threading.get_native_id())
        try:
            while True:
                items = self._take()
                if items is None:
                    break
                self._batch(items)
            self._flushed = 0
            self._batch([])  # the last statuses
        except DBError as e:
            self.fatal = "database error: %s; stopping, unacknowledged (the broker and the " \
                         "chargers keep the records)" % e
        except Exception as e:  # a bug: say it in one line, the broker keeps the records
            self.fatal = "internal error: %s: %s" % (type(e).__name__, first_line(e))
        self.done.set()

    def _take(self):
        """Up to --batch messages: waits for the first (or the status flush),
        takes what else is queued without waiting."""
        flush_s = self.a.status_flush_s
        items = []
        try:
            items.append(self.q.get(timeout=flush_s))
        except queue.Empty:
            if self.closing.is_set():
                return None
        while len(items) < self.a.batch:
            try:
                items.append(self.q.get_nowait())
            except queue.Empty:
                break
        return items

    def _status_rows(self):
        with self.latest_lock:
            latest, self.latest = self.latest, {}
        rows, bad = [], []
        for device, (online, status, t) in latest.items():
            if not DEVICE_RE.match(device):
                continue
            text = {}
            for name, v in (("online", online), ("status", status)):
                if v is None:
                    continue
                try:
                    if name == "status":
                        d, text[name] = load_object(v, MAX_STATUS_BYTES)
                        check_status(d)
                    else:
                        s = v.decode("utf-8")
                        if s not in ("online", "offline"):
                            raise Bad("online or offline expected")
                        text[name] = s
                except (Bad, UnicodeDecodeError) as e:
                    text.pop(name, None)
                    bad.append(self._q_row(t, device, name, None, str(e), v))
            if text:
                rows.append((device, text.get("online"), text.get("status"), t))
        return rows, bad

    def _q_row(self, t, device, kind, rid, reason, payload):
        return (t, safe(device, 64), kind or "?", rid, reason, len(payload),
                safe(payload, QUARANTINE_KEEP))

    def _batch(self, items):
        sessions, events, quarantine, acks, seen = [], [], [], [], {}
        info = []  # (msg, what, key, rid, detail) in order, for logs and acks
        for m in items:
            if m.kind in ("status", "online"):  # at QoS 1 (online is): kept as at QoS 0
                self._latest(m.device, m.kind, m.payload, m.t)
            what, key, rid, row, detail = self._classify(m)
            if what in ("session", "event"):
                if key in seen:  # twice in one batch: the second is a duplicate
                    what = "dup-" + what
                else:
                    seen[key] = True
                    (sessions if what == "session" else events).append(row)
            elif what == "quarantine":
                quarantine.append(row)
            info.append((m, what, key, rid, detail))
        now = time.monotonic()
        chargers, bad_status = [], []
        if now - self._flushed >= self.a.status_flush_s:
            self._flushed = now
            chargers, bad_status = self._status_rows()
        quarantine += bad_status
        if not (sessions or events or quarantine or chargers):
            self._after_commit(info, set(), set())
            return
        try:
            new_s, new_e = self.db.write(sessions, events, quarantine, chargers)
        except self.db.errors as e:
            if isinstance(e, self.db.fatal) or not self.db.alive():
                raise DBError(first_line(e))
            # something in this batch the database refuses: one by one, and
            # quarantine what it refuses alone
            new_s, new_e = self._one_by_one(sessions, events, quarantine, chargers, info, e)
        self.counts["batches"] += 1
        self.counts["quarantined"] += len(quarantine)
        self._after_commit(info, new_s, new_e)

    def _one_by_one(self, sessions, events, quarantine, chargers, info, first_error):
        log("the database refused a batch (%s); storing its records one by one" %
            first_line(first_error))
        new_s, new_e = set(), set()
        refused = {}
        for kind, rows in (("session", sessions), ("event", events)):
            for r in rows:
                try:
                    s, e = self.db.write([r] if kind == "session" else [],
                                         [r] if kind == "event" else [], [], [])
                    new_s |= s
                    new_e |= e
                except self.db.errors as e:
                    if isinstance(e, self.db.fatal) or not self.db.alive():
                        raise DBError(first_line(e))
                    refused[(r[0], r[1])] = first_line(e)
        q = list(quarantine)
        for i, (m, what, key, rid, detail) in enumerate(info):
            if what in ("session", "event") and key in refused:
                reason = "refused by the database: %s" % refused[key]
                q.append(self._q_row(m.t, m.device, m.kind, rid, reason, m.payload))
                info[i] = (m, "quarantine", None, rid, reason)
        try:
            self.db.write([], [], q, chargers)
        except self.db.errors as e:
            raise DBError(first_line(e))
        self.counts["quarantined"] += len(q) - len(quarantine)
        return new_s, new_e

    def _classify(self, m):
        """-> (what, key, rid, row, detail); what: session, event, quarantine
        or ignore (other topics, acknowledged and not stored)."""
        kind = m.kind
        if kind not in ("session", "event"):
            return "ignore", None, None, None, None
        rid = None
        try:
            if not DEVICE_RE.match(m.device):
                raise Bad("device id: 1 to 32 of [A-Za-z0-9_-] expected")
            d, text = load_object(m.payload, MAX_RECORD_BYTES)
            rid = readable_rid(d)
            if kind == "session":
                r = check_session(d)
                rkey = rid if rid else "id:%d" % r["id"]
                row = (m.device, rkey, rid, r["id"], r["boot"], r["start"], r["stop"], r["time"],
                       r["meter_start_wh"], r["meter_stop_wh"], r["energy_wh"],
                       r["energy_status"], r["estimate_wh"], r["peak_a"], r["reason"],
                       "[]" if r["errors"] == [] else json.dumps(r["errors"]), m.t, text)
                return "session", (m.device, rkey), rid, row, r
            r = check_event(d)
            rkey = rid if rid else "bn:%d:%d" % (r["boot"], r["n"])
            row = (m.device, rkey, rid, r["boot"], r["n"], r["type"], r["at"], r["time"], m.t,
                   text)
            return "event", (m.device, rkey), rid, row, text
        except Bad as e:
            return ("quarantine", None, rid,
                    self._q_row(m.t, m.device, kind, rid, str(e), m.payload), str(e))

    def _after_commit(self, info, new_s, new_e):
        c, counts, quiet = self.c, self.counts, self.quiet
        acks = {}
        pubacks, out = bytearray(), bytearray()
        gen = self.gen
        for m, what, key, rid, detail in info:
            if m.qos and m.gen == gen:
                pubacks += puback(m.mid)  # after the commit: at least once
            if what == "ignore":
                continue
            if rid is not None:
                acks.setdefault(m.device, []).append(rid)
            dev = None if quiet and what != "quarantine" else safe(m.device, 40)
            if what == "quarantine":
                log("quarantined %s from %s: %s (%d bytes)" % (m.kind, dev, detail,
                                                               len(m.payload)))
            elif what.endswith("session"):
                if what == "session" and key in new_s:
                    counts["sessions"] += 1
                    if not quiet:
                        log("session %s/%d: %s Wh, %s%s" % (
                            dev, detail["id"], detail["energy_wh"], detail["reason"],
                            " (rid %s)" % rid if rid else ""))
                else:
                    counts["duplicates"] += 1
                    if not quiet:
                        log("session %s/%d again: already stored%s" % (
                            dev, detail["id"], " (rid %s)" % rid if rid else ""))
            elif what.endswith("event"):
                if what == "event" and key in new_e:
                    counts["events"] += 1
                    if not quiet:
                        log("event %s: %s" % (dev, safe(detail)))
                else:
                    counts["duplicates"] += 1
        prefix = self.a.prefix
        for device, rids in acks.items():
            topic = ("%s/%s/ack" % (prefix, device)).encode()
            for payload in ack_payloads(rids):
                # QoS 0: the charger subscribes at QoS 0 anyway, and an
                # acknowledgement lost on the way costs only a re-send
                # (answered "already stored" and acknowledged again)
                out += publish0(topic, payload)
                counts["acks"] += 1
        # the acknowledgements first: a backend killed in the middle of this
        # write then loses PUBACKs rather than acknowledgements (the broker
        # delivers again what it has no PUBACK for: "already stored",
        # acknowledged again), not acknowledgements of PUBACKed records
        # (those wait for the charger's re-send, 30 s). PUBACKs only to the
        # connection that delivered the messages.
        c.send_raw(out + pubacks if gen == self.gen else out)
        if quiet and time.monotonic() - self.last_summary >= 10:
            self.last_summary = time.monotonic()
            log("%(sessions)d sessions, %(duplicates)d duplicates, %(events)d events, "
                "%(quarantined)d quarantined, %(acks)d acks, %(batches)d batches" % counts)

    def run(self):
        a = self.a
        self.topic = "%s/+/#" % a.prefix
        if a.share:
            self.topic = "$share/%s/%s" % (a.share, self.topic)
        self.client_id = a.client_id or "evse-backend" + ("-" + a.share if a.share else "")
        c = self.c
        c.max_inflight_messages_set(1000)  # our acknowledgements in flight
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 8)
        c.on_connect = self.on_connect
        c.on_subscribe = self.on_subscribe
        c.on_message = self.on_message
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.closing.set())
        connect_or_exit(c, a)
        c.loop_start()
        w = threading.Thread(target=self.writer, name="db", daemon=True)
        w.start()
        while not self.closing.is_set() and not self.done.is_set():
            self.closing.wait(0.2)
        self.closing.set()  # the writer stores what is queued, then stops
        w.join(30)
        deadline = time.monotonic() + 5
        while c.want_write() and time.monotonic() < deadline:  # our last PUBACKs and acks out
            time.sleep(0.01)
        c.disconnect()
        c.loop_stop()
        log("stopped: %(sessions)d sessions, %(duplicates)d duplicates, %(events)d events, "
            "%(quarantined)d quarantined" % self.counts)
        if self.fatal:
            return fail(self.fatal)
        return 0


def cmd_run(a):
    store = open_store(a.db)
    if store.migrated:
        log("database: tables %s from before rids kept as *_v1, their rows copied"
            % ", ".join(store.migrated))
    client_id = a.client_id or "evse-backend" + ("-" + a.share if a.share else "")
    b = Backend(a, store, mqtt_client(a, client_id, clean=False))
    return b.run()


def _fmt_time(v, base):
    if v is None:
        return "-"
    if base == "epoch":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v))
    return "+%ss" % v


def _where(a):
    return (" WHERE device = ?", (a.device,)) if a.device else ("", ())


def cmd_sessions(a):
    db = open_store(a.db)
    w, params = _where(a)
    rows = db.rows("SELECT device, id, boot, start_time, stop_time, time_base, meter_start_wh, "
                   "meter_stop_wh, energy_wh, peak_a, reason, errors, rid, energy_status "
                   "FROM sessions" + w + " ORDER BY device, received_at, id", params)
    cols = ("device", "id", "boot", "start", "stop", "time", "meter_start_wh", "meter_stop_wh",
            "energy_wh", "peak_a", "reason", "errors", "rid", "energy_status")
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
    db = open_store(a.db)
    w, params = _where(a)
    for r in db.rows("SELECT device, boot, n, kind, payload FROM events" + w +
                     " ORDER BY device, received_at, boot, n", params):
        print(r[4] if a.json else "%-20s boot %s #%s  %-16s %s" % (r[0], r[1], r[2], r[3], r[4]))
    return 0


def cmd_quarantine(a):
    db = open_store(a.db)
    w, params = _where(a)
    rows = db.rows("SELECT received_at, device, kind, rid, reason, size, payload FROM quarantine"
                   + w + " ORDER BY received_at", params)
    for r in rows:
        if a.json:
            print(json.dumps(dict(zip(QUARANTINE_COLS, r))))
        else:
            print("%s %-20s %-8s %s (%d bytes): %s" % (
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r[0])), r[1], r[2], r[4], r[5],
                r[6][:120]))
    if not a.json:
        print("%d quarantined message(s)" % len(rows))
    return 0


def build_command(words, ttl=None):
    """['set_current', '10'], ttl 60 -> {"cmd": "set_current", "amps": 10, "ttl_s": 60}."""
    if not words:
        raise ValueError("a command is needed (set_current AMPS [--ttl S], pause, resume, "
                         "authorize, stop, reset_error, reboot, set_config KEY VALUE, "
                         "update URL)")
    name, args = words[0], words[1:]

    def num(s):
        v = float(s)
        return int(v) if v == int(v) else v

    if ttl is not None and name != "set_current":
        raise ValueError("--ttl is for set_current")
    if name == "set_current":
        if len(args) != 1:
            raise ValueError("set_current AMPS [--ttl S] (the TTL as the option --ttl)")
        try:
            msg = {"cmd": name, "amps": num(args[0])}
        except ValueError:
            raise ValueError("set_current AMPS: a number expected")
        if ttl is not None:
            msg["ttl_s"] = num(ttl)
        return msg
    if name == "update":
        if len(args) != 1:
            raise ValueError("update URL (the bundle's; `release` offers it to several)")
        return {"cmd": name, "url": args[0]}
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
            msg = build_command(a.words, a.ttl)
        except ValueError as e:
            sys.stderr.write("backend.py cmd: %s\n" % e)
            return 2
        cid = "b-" + uuid.uuid4().hex[:10]
        msg["id"] = cid
        payload = json.dumps(msg).encode()
    got = send_commands(a, {a.device: (cid, payload)})
    if isinstance(got, int):
        return got
    r = got[a.device]
    if r is None:
        sys.stderr.write("backend.py cmd: no reply from %s within %s s (offline?)\n"
                         % (a.device, a.timeout))
        return 3
    print(json.dumps(r))
    return 0 if r.get("ok") is True else 1


def send_commands(a, todo):
    """Publish each {device: (id, payload)} on its cmd topic and wait (up to
    a.timeout) for the replies: {device: reply dict, or None}, or an exit
    code when the broker is not reached."""
    c = mqtt_client(a, "evse-backend-cmd-" + uuid.uuid4().hex[:8], clean=True)
    ready = threading.Event()
    lock = threading.Lock()
    got = {d: None for d in todo}
    left = [len(todo)]  # replies still awaited
    done = threading.Event()
    refused = []
    want = {("%s/%s/reply" % (a.prefix, d)): d for d in todo}

    def on_connect(client, userdata, flags, rc, props=None):
        if rc.is_failure:
            refused.append(str(rc))
            ready.set()
            return
        client.subscribe([(t, 1) for t in want])

    def on_subscribe(client, userdata, mid, rcs, props=None):
        ready.set()

    def on_message(client, userdata, m):
        d = want.get(m.topic)
        try:
            r = json.loads(m.payload.decode())
        except ValueError:
            return
        if d is None or not isinstance(r, dict) or r.get("id") != todo[d][0]:
            return
        with lock:
            if got[d] is None:
                got[d] = r
                left[0] -= 1
                if not left[0]:
                    done.set()

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    try:
        connect_or_exit(c, a)
    except SystemExit:
        return 3
    c.loop_start()
    try:
        if not ready.wait(a.timeout) or refused:
            return fail("cmd: %s" % ("the broker refused the connection: %s" % refused[0]
                                      if refused else "no subscription to the reply topics"), 3)
        for d, (_, payload) in todo.items():
            c.publish("%s/%s/cmd" % (a.prefix, d), payload, qos=1).wait_for_publish(a.timeout)
        done.wait(a.timeout)
    finally:
        c.loop_stop()
        c.disconnect()
    with lock:
        return dict(got)


def cmd_release(a):
    """Offer an update bundle (its URL) to one charger, several, or every
    charger the database knows; one line per charger with its answer."""
    if bool(a.device) == a.all:
        return fail("release: name chargers with --device, or --all", 2)
    devices = list(a.device or ())
    if a.all:
        db = open_store(a.db)
        devices = [r[0] for r in db.rows("SELECT device FROM chargers ORDER BY device", ())]
        if not devices:
            return fail("release: no charger in the database yet (run `backend.py run`)", 1)
    todo = {}
    for d in devices:
        msg = build_command(["update", a.url])
        msg["id"] = "r-" + uuid.uuid4().hex[:10]
        if a.force:
            msg["force"] = True
        todo[d] = (msg["id"], json.dumps(msg).encode())
    got = send_commands(a, todo)
    if isinstance(got, int):
        return got
    bad = 0
    for d in devices:
        r = got[d]
        if r is None:
            print("%-20s no reply within %s s (offline?)" % (d, a.timeout))
        elif r.get("ok") is True:
            print("%-20s downloading" % d)
        else:
            print("%-20s refused: %s" % (d, r.get("error")))
        bad += r is None or r.get("ok") is not True
    return 1 if bad else 0


def charger_rows(db, device=None):
    """[{device, online, fw, state, phase, got, size, staged, result, error}, ...]
    from the latest status each charger sent (`run` stores it)."""
    w, params = (" WHERE device = ?", (device,)) if device else ("", ())
    out = []
    for dev, online, status in db.rows("SELECT device, online, status FROM chargers" + w
                                       + " ORDER BY device", params):
        try:
            st = json.loads(status) if status else {}
        except ValueError:
            st = {}
        o = st.get("ota") if isinstance(st.get("ota"), dict) else {}
        out.append({"device": dev, "online": online, "fw": st.get("fw"),
                    "state": st.get("state"), "phase": o.get("phase"), "got": o.get("got"),
                    "size": o.get("size"), "staged": o.get("staged"),
                    "trial": o.get("trial"), "result": o.get("result"),
                    "error": o.get("error") or o.get("reason")})
    return out


def cmd_chargers(a):
    rows = charger_rows(open_store(a.db), a.device)
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print("%-20s %-7s %-10s %-5s %-11s %6s  %-10s %-11s %s"
          % ("device", "online", "fw", "state", "update", "done", "staged", "result", "error"))
    for r in rows:
        done = "-" if not r["size"] else "%d %%" % (100 * (r["got"] or 0) // r["size"])
        print("%-20s %-7s %-10s %-5s %-11s %6s  %-10s %-11s %s"
              % (r["device"], r["online"] or "-", r["fw"] or "-", r["state"] or "-",
                 ("trial" if r["trial"] else r["phase"]) or "-", done, r["staged"] or "-",
                 r["result"] or "-", r["error"] or ""))
    print("%d charger(s)" % len(rows))
    return 0


def hostport(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("HOST:PORT expected")
    return host, int(port)


def positive(kind):
    def f(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("a number expected")
        if v <= 0:
            raise argparse.ArgumentTypeError("above 0 expected")
        return v
    return f


def parse_args(argv):
    p = argparse.ArgumentParser(prog="backend.py", description="Reference backend for the "
                                "chargers' MQTT link: stores sessions and events, sends commands.")
    p.add_argument("--broker", type=hostport, default=("127.0.0.1", 1883), metavar="HOST:PORT")
    p.add_argument("--user")
    p.add_argument("--password", default=os.environ.get("EVSE_MQTT_PASSWORD"),
                   help="(default: $EVSE_MQTT_PASSWORD)")
    p.add_argument("--ca", metavar="FILE", help="TLS: the CA that signed the broker's certificate")
    p.add_argument("--prefix", default="evse")
    p.add_argument("--db", default=os.environ.get("EVSE_BACKEND_DB") or "sqlite:///" + DEFAULT_DB,
                   metavar="URL", help="sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB "
                   "(default: $EVSE_BACKEND_DB, else sqlite:///%s)" % DEFAULT_DB)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="subscribe and store sessions and events")
    r.add_argument("--share", metavar="GROUP", help="shared subscription group")
    r.add_argument("--client-id", help="MQTT client id (stable: the session persists)")
    r.add_argument("--batch", type=positive(int), default=2000, metavar="N",
                   help="at most N messages per transaction (2000)")
    r.add_argument("--status-flush-s", type=positive(float), default=1.0, metavar="S",
                   help="write the latest status of the chargers every S seconds (1)")
    r.add_argument("--quiet", action="store_true",
                   help="no line per record: a summary every 10 s")
    r.add_argument("--no-sys", action="store_true",
                   help="do not watch the broker's $SYS drop counter (brokers without it)")
    for name in ("sessions", "events", "quarantine"):
        s = sub.add_parser(name, help="list stored %s" % name)
        s.add_argument("--device")
        s.add_argument("--json", action="store_true")
    ch = sub.add_parser("chargers", help="each charger's latest status: firmware, update")
    ch.add_argument("--device")
    ch.add_argument("--json", action="store_true")
    rl = sub.add_parser("release", help="offer an update bundle (its URL) to chargers")
    rl.add_argument("url")
    rl.add_argument("--device", action="append", help="a charger (repeat for several)")
    rl.add_argument("--all", action="store_true", help="every charger in the database")
    rl.add_argument("--force", action="store_true", help="also a version that is not newer")
    rl.add_argument("--timeout", type=float, default=10.0)
    c = sub.add_parser("cmd", help="send a command and wait for the reply")
    c.add_argument("device")
    c.add_argument("words", nargs="*", metavar="COMMAND")
    c.add_argument("--ttl", metavar="S", help="set_current: seconds the limit holds")
    c.add_argument("--payload", help="send this text as it is")
    c.add_argument("--timeout", type=float, default=10.0)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    try:
        return {"run": cmd_run, "sessions": cmd_sessions, "events": cmd_events,
                "quarantine": cmd_quarantine, "cmd": cmd_cmd, "chargers": cmd_chargers,
                "release": cmd_release}[a.what](a)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
