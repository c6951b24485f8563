"""tools/backend.py against real peers: mosquitto with the shipped
configuration (deploy/mosquitto), SQLite and a PostgreSQL cluster of the
test's own, and a stand-in charger (paho) that speaks the protocol of
docs/mqtt.md: records with a "rid" at QoS 1, acknowledgements on
evse/<id>/ack {"rids": [...]} (at most 32), sent only after the commit.

Hostile input goes through a permissive broker (host_tests/mqtt_env.py,
anonymous, no size limit) so that what the shipped broker would already
refuse (an empty device id, a 16 MB payload) reaches the backend too.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from backend_env import ROOT, Client, acked_rids, backend, event, fleet, rows, session
from mqtt_env import Mosquitto, wait_until

BACKEND = os.path.join(ROOT, "tools", "backend.py")
USERS = {"dev1": "pw1", "dev2": "pw2", "evse-backend": "backend-pw"}


@pytest.fixture(scope="module")
def broker():
    b = fleet.Broker(USERS)
    yield b
    b.close()


@pytest.fixture(scope="module")
def pg():
    p = fleet.Postgres()
    yield p
    p.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "b.db")
    pg = request.getfixturevalue("pg")
    name = "t%d" % fleet.free_port()
    subprocess.run([os.path.join(pg.bindir, "createdb"), "-h", "127.0.0.1", "-p",
                    str(pg.port), "-U", "evse", name], check=True)
    return pg.url.rsplit("/", 1)[0] + "/" + name


def _backend(broker, url, folder, *extra):
    return fleet.BackendProc(broker, url, str(folder), *extra)


def test_records_stored_once_and_acknowledged_after_the_commit(broker, db_url, tmp_path):
    b = _backend(broker, db_url, tmp_path)
    dev = Client(broker.port, "dev1", "pw1", topics=["evse/dev1/ack"])
    stored_at_ack = []

    def on_ack(c, u, m):  # the rows must be committed when the ack arrives
        rids = json.loads(m.payload)["rids"]
        have = {r[0] for r in rows(db_url, "SELECT rid FROM sessions UNION ALL "
                                           "SELECT rid FROM events")}
        stored_at_ack.append(all(r in have for r in rids))
        dev._on_message(c, u, m)

    dev.c.on_message = on_ack
    try:
        dev.publish("evse/dev1/session", json.dumps(session("0a0b0c0d-1", 1)))
        dev.publish("evse/dev1/session", json.dumps(session("0a0b0c0d-1", 1)))  # again
        dev.publish("evse/dev1/event", json.dumps(event("0a0b0c0d-2", 2)))
        # a wiped flash: session 1 again, under a new boot nonce: a new session
        dev.publish("evse/dev1/session", json.dumps(session("ffff0000-1", 1, energy_wh=5)))
        # older firmware: no rid, the old keys (device, id) and (device, boot, n)
        dev.publish("evse/dev1/session", json.dumps(session(None, 9)))
        dev.publish("evse/dev1/session", json.dumps(session(None, 9)))
        dev.publish("evse/dev1/event", json.dumps(event(None, 7)))
        dev.publish("evse/dev1/event", json.dumps(event(None, 7)))
        wait_until(lambda: sorted(acked_rids(dev)).count("0a0b0c0d-1") == 2 and
                   {"0a0b0c0d-2", "ffff0000-1"} <= set(acked_rids(dev)), 15, "the acks")
        wait_until(lambda: len(rows(db_url, "SELECT * FROM sessions")) == 3 and
                   len(rows(db_url, "SELECT * FROM events")) == 2, 10, "the rows")
    finally:
        dev.close()
        b.stop()
        log = b.text()
    assert stored_at_ack and all(stored_at_ack), stored_at_ack
    s = rows(db_url, "SELECT device, id, rid, energy_wh FROM sessions ORDER BY rkey")
    assert sorted(s, key=str) == sorted([("dev1", 1, "0a0b0c0d-1", 1000), ("dev1", 1, "ffff0000-1", 5),
                                         ("dev1", 9, None, 1000)], key=str), s
    assert sorted(rows(db_url, "SELECT rkey, rid, n FROM events"), key=str) == sorted(
        [("0a0b0c0d-2", "0a0b0c0d-2", 2), ("bn:1:7", None, 7)], key=str)
    assert "session dev1/1 again: already stored" in log
    for _, p in dev.msgs:  # the format of an acknowledgement
        d = json.loads(p)
        assert list(d) == ["rids"] and 1 <= len(d["rids"]) <= 32
    assert "0a0b0c0d-9" not in acked_rids(dev)


def test_a_backlog_is_stored_in_batches_and_acknowledged_32_rids_at_a_time(broker, tmp_path):
    url = "sqlite:///%s" % (tmp_path / "b.db")
    b = _backend(broker, url, tmp_path)
    b.stop()  # its session keeps what comes now
    dev = Client(broker.port, "dev2", "pw2", topics=["evse/dev2/ack"])
    try:
        for i in range(1, 101):
            dev.publish("evse/dev2/session", json.dumps(session("12345678-%d" % i, i)))
        b.start()
        wait_until(lambda: len(acked_rids(dev)) >= 100, 20, "100 acks")
    finally:
        dev.close()
        b.stop()
        log = b.text()
    assert sorted(acked_rids(dev)) == sorted("12345678-%d" % i for i in range(1, 101))
    sizes = [len(json.loads(p)["rids"]) for _, p in dev.msgs]
    assert max(sizes) <= 32 and len(sizes) < 100, sizes  # batched: fewer messages than records
    assert rows(url, "SELECT COUNT(*) FROM sessions") == [(100,)]
    assert rows(url, "PRAGMA journal_mode") == [("wal",)]
    print("ack messages for 100 records:", len(sizes), sizes)
    assert "stopped: 100 sessions, 0 duplicates" in log


def test_acknowledgements_are_what_the_firmware_reads():
    from evse import payloads
    longest = ["%08x-%d" % (i, 10 ** 17 + i) for i in range(70)]  # 18 digits: RID_RE's longest
    assert all(backend.RID_RE.match(r) for r in longest)
    out = backend.ack_payloads(longest)
    assert [len(payloads.decode_ack(p)) for p in out] == [32, 32, 6]
    assert sum((payloads.decode_ack(p) for p in out), []) == longest
    assert max(len(p) for p in out) <= 1024  # evse/link.py's _MAX_PUBLISH
    assert [json.loads(p) for p in backend.ack_payloads(["0a0b0c0d-1"])] == [
        {"rids": ["0a0b0c0d-1"]}]
    # on the wire: a QoS 0 PUBLISH of exactly that payload
    pkt = backend.publish0(b"evse/d/ack", out[0])
    assert pkt[0] == 0x30 and pkt.endswith(b"\x00\x0aevse/d/ack" + out[0])


BAD = [
    # (topic, payload, rid that can be acknowledged or None, words of the reason)
    ("evse/bad1/session", session("00000001-1", "abc"), "00000001-1", "id: an integer"),
    ("evse/bad1/session", session("00000001-2", True), "00000001-2", "id: an integer"),
    ("evse/bad1/session", session("00000001-3", 2 ** 64), "00000001-3", "id: out of range"),
    ("evse/bad1/session", session("00000001-4", None), "00000001-4", "id: an integer"),
    ("evse/bad1/session", session("00000001-5", {"a": 1}), "00000001-5", "id: an integer"),
    ("evse/bad1/session", session("00000001-6", 6, energy_wh="lots"), "00000001-6", "energy_wh"),
    ("evse/bad1/session", session("00000001-7", 7, energy_wh={"x": 1}), "00000001-7",
     "energy_wh"),
    ("evse/bad1/event", event("00000001-8", 8, boot=None), "00000001-8", "boot"),
    ("evse/bad1/session", session("00000001-9", 9, extra=[[[[[[[[1]]]]]]]]), "00000001-9",
     "unknown field"),
    ("evse/bad1/session", '{"rid": "00000001-10", "id": ' + "[" * 50000 + "]" * 50000 + "}",
     None, "payload too large"),
    ("evse/bad1/session", '{"rid": "00000001-11", "id": ' + "[" * 500 + "]" * 500 + "}",
     "00000001-11", "id: an integer"),
    ("evse/bad1/session", '{"rid": "00000001-17", "id": ' + "[" * 2000 + "]" * 2000 + "}",
     None, "nested too deeply"),
    ("evse/bad1/session", '{"rid": "00000001-12", "id": 12, "id": 1}', None, "duplicate field"),
    ("evse/bad1/session", session("00000001-13", 13, peak_a=float("nan")), None, "not JSON"),
    ("evse/bad1/session", session("00000001-14", 14, reason="x\n01:02:03 session forged: 1 Wh"),
     "00000001-14", "reason"),
    ("evse/bad1/session", b"\xff\xfe not utf-8", None, "not UTF-8"),
    ("evse/bad1/session", "not json", None, "malformed JSON"),
    ("evse/bad1/session", "[1, 2]", None, "a JSON object expected"),
    ("evse/bad1/session", session("bad-rid", 15), None, "rid"),
    ("evse//session", session("00000001-16", 16), None, "device id"),
    ("evse/bad1/session", "x" * (16 * 1024 * 1024), None, "payload too large"),
]


def test_hostile_records_are_quarantined_acknowledged_and_never_fatal(tmp_path):
    mosq = Mosquitto(tmp_path / "mosq")  # anonymous, no size limit: everything gets through
    url = "sqlite:///%s" % (tmp_path / "q.db")
    try:
        b = fleet.BackendProc(mosq, url, str(tmp_path), user=None)
    except Exception:
        mosq.stop()
        raise
    dev = Client(mosq.port, None, None, topics=["evse/bad1/ack"])
    try:
        for topic, payload, _, _ in BAD:
            if isinstance(payload, dict):
                payload = json.dumps(payload)
            dev.publish(topic, payload)
        dev.publish("evse/bad1/session", json.dumps(session("00000001-99", 99)))  # a good one
        wait_until(lambda: "00000001-99" in acked_rids(dev), 20, "the good record's ack")
        wait_until(lambda: len(rows(url, "SELECT * FROM quarantine")) == len(BAD), 10,
                   "the quarantine")
    finally:
        dev.close()
        b.stop()
        log = b.text()
        mosq.stop()
    assert b.proc.returncode == 0, log
    assert rows(url, "SELECT id, rid FROM sessions") == [(99, "00000001-99")]
    assert rows(url, "SELECT COUNT(*) FROM events") == [(0,)]
    q = rows(url, "SELECT device, kind, rid, reason, size FROM quarantine")
    assert len(q) == len(BAD)
    for (topic, payload, rid, words), (device, kind, qrid, reason, size) in zip(BAD, q):
        assert words in reason, (topic, reason)
        assert qrid == rid, (reason, qrid, rid)
    expected = {rid for _, _, rid, _ in BAD if rid} | {"00000001-99"}
    assert set(acked_rids(dev)) == expected
    # one line per entry, none forged: every line starts with the time
    lines = log.splitlines()
    assert lines and all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines
    assert not any("session forged" in line and "quarantined" not in line for line in lines)
    assert "Traceback" not in log
    assert max(len(line) for line in lines) < 1000  # a 16 MB payload is not echoed


def test_latest_status_kept_in_memory_and_written_in_batches(broker, tmp_path):
    url = "sqlite:///%s" % (tmp_path / "s.db")
    b = _backend(broker, url, tmp_path, "--status-flush-s", "0.5")
    dev = Client(broker.port, "dev1", "pw1")
    try:
        for i in range(200):
            dev.publish("evse/dev1/status", json.dumps({"state": "C2", "uptime_s": i}), qos=0)
        dev.publish("evse/dev1/online", "online", retain=True)
        wait_until(lambda: rows(url, "SELECT online, status FROM chargers") ==
                   [("online", json.dumps({"state": "C2", "uptime_s": 199}))], 10, "the status")
        dev.publish("evse/dev1/status", json.dumps({"state": "nope"}), qos=0)
        wait_until(lambda: rows(url, "SELECT reason FROM quarantine"), 10, "the bad status")
    finally:
        dev.close()
        b.stop()
    assert "state" in rows(url, "SELECT reason FROM quarantine")[0][0]


def test_tables_from_before_rids_are_migrated(tmp_path):
    path = tmp_path / "old.db"
    import sqlite3
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE sessions (device TEXT NOT NULL, id BIGINT NOT NULL, boot BIGINT, "
                 "start_time BIGINT, stop_time BIGINT, time_base TEXT, meter_start_wh BIGINT, "
                 "meter_stop_wh BIGINT, energy_wh BIGINT, peak_a DOUBLE PRECISION, reason TEXT, "
                 "errors TEXT, received_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL, "
                 "PRIMARY KEY (device, id))")
    conn.execute("CREATE TABLE events (device TEXT NOT NULL, boot BIGINT NOT NULL, "
                 "n BIGINT NOT NULL, kind TEXT, at_time BIGINT, time_base TEXT, "
                 "received_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL, "
                 "PRIMARY KEY (device, boot, n))")
    conn.execute("INSERT INTO sessions VALUES ('d', 1, 1, 0, 60, 'uptime', 0, 10, 10, 16.0, "
                 "'unplugged', '[]', 1.0, '{}')")
    conn.execute("INSERT INTO events VALUES ('d', 1, 3, 'boot', 0, 'uptime', 1.0, '{}')")
    conn.commit()
    conn.close()
    st = backend.Store("sqlite:///%s" % path)
    assert st.migrated == ["sessions", "events"]
    assert st.rows("SELECT device, rkey, id FROM sessions") == [("d", "id:1", 1)]
    assert st.rows("SELECT device, rkey, boot, n FROM events") == [("d", "bn:1:3", 1, 3)]
    assert st.rows("SELECT COUNT(*) FROM sessions_v1") == [(1,)]
    assert backend.Store("sqlite:///%s" % path).migrated == []  # once


def _pg_db(pg):
    name = "t%d" % fleet.free_port()
    subprocess.run([os.path.join(pg.bindir, "createdb"), "-h", "127.0.0.1", "-p",
                    str(pg.port), "-U", "evse", name], check=True)
    return pg.url.rsplit("/", 1)[0] + "/" + name


def test_a_batch_postgresql_rolls_back_for_a_deadlock_is_tried_again(pg):
    """Instances of a shared subscription write the same chargers' statuses.
    Each locks them in device order, and a batch the server rolls back
    (here a deadlock with a session that takes B, then A) is written again
    rather than stopping the backend (psycopg raises DeadlockDetected, an
    OperationalError, which is fatal for anything else)."""
    import threading
    import psycopg
    url = _pg_db(pg)
    st = backend.Store(url)
    st.write([], [], [], [("A", "online", None, 1.0), ("B", "online", None, 1.0)])
    other = psycopg.connect(url, autocommit=True)
    other.execute("SET deadlock_timeout = '60s'")  # the Store's session finds the deadlock
    other.execute("BEGIN")
    other.execute("UPDATE chargers SET updated_at = 2 WHERE device = 'B'")
    out = []

    def write():  # given B before A: locked A, then B
        try:
            out.append(st.write([], [], [], [("B", "online", None, 3.0),
                                             ("A", "online", None, 3.0)]))
        except Exception as e:
            out.append(e)

    t = threading.Thread(target=write)
    t.start()
    wait_until(lambda: other.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
               .fetchone()[0] == 1, 10)  # the Store waits for B, holding A
    other.execute("UPDATE chargers SET updated_at = 2 WHERE device = 'A'")  # the deadlock
    other.execute("COMMIT")
    t.join(30)
    other.close()
    assert out == [(set(), set())], out
    assert st.rows("SELECT device, updated_at FROM chargers ORDER BY device") == [
        ("A", 3.0), ("B", 3.0)]  # written after the other transaction, whole


def test_instances_starting_together_make_the_tables_once(pg):
    """CREATE TABLE IF NOT EXISTS from two sessions at once fails in one of
    them (a unique violation in pg_type); the schema is made under an
    advisory lock."""
    import threading
    url = _pg_db(pg)
    out = []

    def open_one():
        try:
            out.append(backend.Store(url).kind)
        except Exception as e:
            out.append(e)

    ts = [threading.Thread(target=open_one) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert out == ["pg"] * 4, out


def _cli(*args, env=None, timeout=30):
    e = dict(os.environ)
    e.pop("EVSE_BACKEND_DB", None)
    e.update(env or {})
    return subprocess.run([BACKEND] + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=e)


def test_command_line_runs_with_the_venv_and_answers_in_one_line(tmp_path):
    r = _cli("--help")  # the file itself, through its shebang
    assert r.returncode == 0 and "--db" in r.stdout, r
    # no broker there
    port = fleet.free_port()
    r = _cli("--broker", "127.0.0.1:%d" % port, "--db", "sqlite:///%s" % (tmp_path / "x.db"),
             "run")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r
    assert "cannot reach the broker 127.0.0.1:%d" % port in r.stderr and "Traceback" not in r.stderr
    # no database there
    r = _cli("--db", "postgresql://evse:secret@127.0.0.1:%d/x" % port, "sessions")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r
    assert "cannot open the database postgresql://evse:***@127.0.0.1" in r.stderr
    assert "secret" not in r.stderr
    r = _cli("--db", "sqlite:///%s" % (tmp_path / "missing" / "x.db"), "sessions")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot open" in r.stderr, r
    # the default database is outside the repository
    r = _cli("sessions", env={"HOME": str(tmp_path)})
    assert r.returncode == 0, r
    assert (tmp_path / ".local" / "share" / "evse" / "backend.db").exists()
    assert not os.path.exists(os.path.join(ROOT, "evse-backend.db"))
    # options are named
    assert backend.build_command(["set_current", "10"], ttl="60") == {
        "cmd": "set_current", "amps": 10, "ttl_s": 60}
    r = _cli("--db", "sqlite:///%s" % (tmp_path / "y"), "cmd", "dev1", "set_current", "10", "60")
    assert r.returncode == 2 and "--ttl" in r.stderr, r
    assert backend.build_command(["update", "https://h/b.evu"]) == {
        "cmd": "update", "url": "https://h/b.evu"}
    r = _cli("--db", "sqlite:///%s" % (tmp_path / "y"), "release", "http://h/b.evu")
    assert r.returncode == 2 and "--device, or --all" in r.stderr, r
    r = _cli("--db", "sqlite:///%s" % (tmp_path / "z"), "release", "http://h/b.evu", "--all")
    assert r.returncode == 1 and "no charger in the database" in r.stderr, r


def test_shebang_is_the_venvs(tmp_path):
    with open(BACKEND) as f:
        head = f.read(200)
    assert head.startswith("#!/bin/sh\n") and ".venv/bin/python" in head.splitlines()[1]
    assert os.access(BACKEND, os.X_OK)
    r = subprocess.run([sys.executable, BACKEND, "--help"], capture_output=True, text=True)
    assert r.returncode == 0


def test_over_tls_a_backlog_is_read_and_acknowledged(broker, tmp_path):
    """BatchClient's 64 KiB reads and whole-packet decoding on a TLS socket:
    the backend on the broker's TLS listener, verifying its certificate.
    (Last in the file: it shares the broker's evse-backend session.)"""
    url = "sqlite:///%s" % (tmp_path / "b.db")
    dev = Client(broker.port, "dev1", "pw1", topics=["evse/dev1/ack"])
    args = [sys.executable, BACKEND, "--broker", "localhost:%d" % broker.tls_port, "--ca",
            broker.ca, "--user", "evse-backend", "--password", "backend-pw", "--db", url, "run",
            "--quiet"]
    out = tmp_path / "backend.out"
    with open(out, "w") as f:
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "subscribed" in out.read_text() or p.poll() is not None, 20,
                   "the backend's subscription over TLS")
        assert p.poll() is None, out.read_text()
        for i in range(1, 301):  # published at once: many packets per TLS read
            dev.c.publish("evse/dev1/session", json.dumps(session("0000abcd-%d" % i, i)), qos=1)
        wait_until(lambda: len(acked_rids(dev)) >= 300, 30, "300 acks over TLS")
    finally:
        dev.close()
        p.terminate()
        p.wait(20)
    assert sorted(acked_rids(dev)) == sorted("0000abcd-%d" % i for i in range(1, 301))
    assert rows(url, "SELECT COUNT(*) FROM sessions") == [(300,)]
    assert "stopped: 300 sessions, 0 duplicates" in out.read_text()
