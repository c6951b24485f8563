"""The backend link end to end, against a real mosquitto started here.

The firmware runs in tools/sim.py --broker --realtime (the App in the
control thread, the Link in the network thread, micropython-lib's
umqtt.simple on real sockets: build/umqtt-<version>, $EVSE_UMQTT or 1.8.0,
see tools/host/umqtt_host.py); tools/backend.py is the backend. Each test names what it
holds the link to: status and last will, commands and their replies, a
broker restart with the journal replayed into the backend's database, a
power loss, a black-holed broker that the control loop does not notice,
TLS and credentials that never leak, shared subscriptions.
"""
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time

import pytest

from mqtt_env import (ROOT, Mosquitto, Watcher, backend_cli, finish, make_ca, start_backend,
                      start_sim, stop, wait_until, write_scenario)

sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "host"))
import simnet  # noqa: E402  (tools/simnet.py)
import umqtt_host  # noqa: E402
from test_sim import check_iec_timing, check_rules  # noqa: E402

STATUS_FIELDS = ("state", "duty", "offer_a", "contactor", "error", "session", "energy_wh",
                 "ev_a", "limits", "faults", "uptime_s", "boot", "fw", "journal", "link")
CHARGE = [{"t": 0, "ev": "A"}, {"t": 0.3, "ev": "B"}, {"t": 0.3, "ev_draw": {"max_a": 16}},
          {"t": 0.8, "ev": "C"}]


@pytest.fixture(scope="module", autouse=True)
def real_client():
    """The client the simulator runs: fail (not skip) when it is missing."""
    msg = umqtt_host.missing()
    if msg:
        pytest.fail(msg)
    return umqtt_host.load()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    m = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield m
    m.stop()


@pytest.fixture
def reaper():
    """reaper(thing): a process or a Mosquitto stopped at the end of the
    test, however it ends."""
    things = []
    yield things.append
    for t in reversed(things):
        if isinstance(t, Mosquitto):
            t.stop()
        elif t.poll() is None:
            t.kill()
            t.wait(5)


def _status(text):
    return json.loads(text)


def _is(topic_end, pred=None):
    def match(t, x):
        return t.endswith(topic_end) and (pred is None or pred(x))
    return match


def _charging(x):
    d = json.loads(x)
    return d["state"] == "C2" and d["contactor"]


def _rows(db, sql):
    c = sqlite3.connect(str(db))
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


# ------------------------------------------------------------------ tests
def test_status_retained_and_last_will_when_the_firmware_dies(broker, tmp_path):
    w = Watcher(broker.port, ["evse/will-1/#"])
    scen = write_scenario(tmp_path, "will", 60, CHARGE, {"mqtt_device_id": "will-1"})
    p = start_sim(scen, broker.port, tmp_path)
    try:
        w.wait_for(_is("/online", lambda x: x == "online"), 10, "online")
        t, text, _ = w.wait_for(_is("/status", _charging), 10, "a charging status")
        d = _status(text)
        assert tuple(d) == STATUS_FIELDS, list(d)
        assert d["session"] == 1 and d["offer_a"] == 32.0 and d["error"] is None
        assert d["limits"]["max_a"] == 32.0 and d["fw"] and d["boot"] == 1
        w.wait_for(_is("/telemetry"), 10, "telemetry while a vehicle is connected")
        n = len(w.msgs)
        p.kill()  # as a power cut: no DISCONNECT, no last words
        p.wait(5)
        w.wait_for(_is("/online", lambda x: x == "offline"), 5, "the last will", start=n)
    finally:
        if p.poll() is None:
            p.kill()
        w.close()
    late = Watcher(broker.port, ["evse/will-1/online", "evse/will-1/status"])
    try:  # both retained: a backend that comes later knows
        assert late.wait_for(_is("/online"), 5)[1:] == ("offline", True)
        assert _status(late.wait_for(_is("/status"), 5)[1])["state"] == "C2"
    finally:
        late.close()


BIG = b'{"cmd": "pause", "id": "big", "pad": "' + b"x" * 600 + b'"}'


def test_commands_and_replies_including_malformed_ones(broker, tmp_path):
    w = Watcher(broker.port, ["evse/cmd-1/#"])
    scen = write_scenario(tmp_path, "cmds", 60, CHARGE,
                          {"mqtt_device_id": "cmd-1", "mqtt_remote_config": True})
    p = start_sim(scen, broker.port, tmp_path)
    cmd = "evse/cmd-1/cmd"
    cases = [
        (b'{"cmd": "set_current", "amps": 10, "id": "ok-1"}', True, None),
        (b'{"cmd": "set_current", "amps": 10', False, "malformed JSON"),
        (b"\xff\xfe\x00", False, "payload is not UTF-8 text"),
        (b"[1, 2]", False, "command must be a JSON object"),
        (b'{"cmd": "launch", "id": "u"}', False, "cmd: unknown command 'launch'"),
        (b'{"cmd": "set_current", "amps": "16", "id": "t"}', False, "amps: must be a number"),
        (b'{"cmd": "set_current", "amps": 100, "id": "r"}', False, "amps: 100 out of range 6..80"),
        (b'{"cmd": "pause", "id": "f", "now": true}', False, "now: unknown field for pause"),
        (BIG, False, "payload too large: %d bytes, at most 512" % len(BIG)),
        (b'{"cmd": "set_config", "key": "mqtt_host", "value": "x", "id": "c1"}', False,
         "mqtt_host: cannot be changed over MQTT, only on the device (config.json)"),
        (b'{"cmd": "set_config", "key": "rcd_selftest", "value": false, "id": "c3"}', False,
         "rcd_selftest: cannot be changed over MQTT, only on the device (config.json)"),
        (b'{"cmd": "set_config", "key": "max_current_a", "value": 500, "id": "c2"}', False,
         "max_current_a: must be a number in 6..80, got 500"),
    ]
    try:
        w.wait_for(_is("/status", _charging), 10, "a charging status")
        for payload, ok, error in cases:
            n = len(w.msgs)
            w.publish(cmd, payload)
            r = json.loads(w.wait_for(_is("/reply"), 5, "a reply to %r" % payload[:40],
                                      start=n)[1])
            assert r["ok"] is ok, (payload, r)
            assert r.get("error") == error, (payload, r)
            if ok or b'"id"' not in payload or b"x" * 600 in payload:
                assert r["id"] == (None if not ok else "ok-1"), r
            else:
                assert r["id"] is not None, r
        d = _status(w.wait_for(_is("/status", lambda x: _status(x)["offer_a"] == 10.0), 5)[1])
        assert d["limits"]["backend_a"] == 10.0 and d["limits"]["max_a"] == 32.0
        # the backend tool: a command and its reply
        db = tmp_path / "b.db"
        r = backend_cli(broker.port, db, "cmd", "cmd-1", "set_config", "max_current_a", "16")
        assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True, r
        w.wait_for(_is("/status", lambda x: _status(x)["limits"]["max_a"] == 16.0), 5)
        r = backend_cli(broker.port, db, "cmd", "cmd-1", "set_current", "8")
        assert r.returncode == 0, r
        w.wait_for(_is("/status", lambda x: _status(x)["offer_a"] == 8.0), 5)
        r = backend_cli(broker.port, db, "cmd", "cmd-1", "set_current", "100")
        assert r.returncode == 1 and "out of range" in r.stdout, r
        r = backend_cli(broker.port, db, "cmd", "nobody", "pause", "--timeout", "0.5")
        assert r.returncode == 3 and "no reply" in r.stderr, r
    finally:
        p.send_signal(signal.SIGINT)
        out = finish(p, 20)
        w.close()
    assert "Traceback" not in out, out


def test_broker_restart_mid_session_replays_the_journal_exactly_once(tmp_path, reaper):
    mosq = Mosquitto(tmp_path / "mosq", persistence=True)
    reaper(mosq)
    db = tmp_path / "backend.db"
    flash = tmp_path / "flash"
    backend = start_backend(mosq.port, db, tmp_path)
    reaper(backend)
    events = [{"t": 0, "ev": "A"}, {"t": 0.3, "ev": "B"}, {"t": 0.8, "ev": "C"},
              {"t": 2.0, "ev": "A"},  # session 1 ends with the broker up
              {"t": 2.5, "ev": "B"}, {"t": 3.0, "ev": "C"},
              {"t": 5.5, "ev": "A"},  # session 2 ends while the broker is down
              {"t": 6.0, "fault": {"temp_c": 75}}, {"t": 6.5, "fault": {"temp_c": 25}},
              {"t": 7.0, "ev": "B"}, {"t": 7.3, "ev": "C"}]  # session 3 under way
    scen = write_scenario(tmp_path, "restart", 13, events, {"mqtt_device_id": "rst-1"})
    p = start_sim(scen, mosq.port, tmp_path, flash=flash)
    reaper(p)
    wait_until(lambda: _rows(db, "SELECT id FROM sessions") == [(1,)], 10, "session 1")
    time.sleep(1.5)  # into session 2
    mosq.stop()  # mid-session: the journal keeps what ends meanwhile
    wait_until(lambda: os.path.exists(flash / "journal.log"), 10,
               "records journaled while the broker is away")
    time.sleep(1.5)
    mosq.start()
    wait_until(lambda: len(_rows(db, "SELECT id FROM sessions")) == 2, 15,
               "session 2 replayed from the journal")
    out = finish(p, 30)
    assert "Traceback" not in out, out
    rows = _rows(db, "SELECT id, reason, energy_wh, time_base FROM sessions ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [(1, "unplugged"), (2, "unplugged")], rows
    assert all(r[2] >= 0 and r[3] == "epoch" for r in rows), rows
    ev = _rows(db, "SELECT kind, payload FROM events ORDER BY boot, n")
    kinds = [e[0] for e in ev]
    assert kinds[0] == "boot" and "fault" in kinds and "clear" in kinds, ev
    assert not os.path.exists(flash / "journal.log")  # all acknowledged
    trace = (tmp_path / "sim.jsonl").read_text()
    assert "mqtt: link lost" in trace and trace.count("mqtt: connected") >= 2
    # the same record delivered again (a PUBACK lost on the way) is stored once
    session1 = _rows(db, "SELECT payload FROM sessions WHERE id = 1")[0][0]
    w = Watcher(mosq.port, ["evse/rst-1/session"])
    w.publish("evse/rst-1/session", session1)
    w.close()
    wait_until(lambda: "session rst-1/1 again" in open(backend.out_path).read(), 10,
               "the backend to see the duplicate")
    assert _rows(db, "SELECT COUNT(*) FROM sessions") == [(2,)]
    r = backend_cli(mosq.port, db, "sessions")
    assert r.returncode == 0 and "2 session(s)" in r.stdout, r.stdout
    assert r.stdout.count("rst-1") == 2 and "unplugged" in r.stdout
    log = stop(backend)
    assert "stopped: 2 sessions, 1 duplicates" in log, log


def test_power_loss_gets_its_session_record_after_the_reboot(broker, tmp_path, reaper):
    """A power cut in the simulator (the link dies without a DISCONNECT),
    then a real one: the process killed at whatever it was doing and
    started again on the same flash. Each cut session gets one record."""
    db = tmp_path / "backend.db"
    flash = tmp_path / "flash"
    backend = start_backend(broker.port, db, tmp_path)
    reaper(backend)
    w = Watcher(broker.port, ["evse/pl-1/status"])
    try:
        scen = write_scenario(tmp_path, "cut", 60, CHARGE + [
            # charging from 3 s (the X1 after boot); after the cut the vehicle
            # is still in C: session 2, charging 3 s after the power is back
            {"t": 5.5, "fault": {"power": "off"}}, {"t": 6.0, "fault": {"power": "on"}}],
            {"mqtt_device_id": "pl-1"})
        p = start_sim(scen, broker.port, tmp_path, flash=flash, tag="run1")
        reaper(p)
        wait_until(lambda: len(_rows(db, "SELECT id FROM sessions")) == 1, 15, "session 1")
        w.wait_for(_is("/status", lambda x: _charging(x) and _status(x)["session"] == 2), 15)
        p.kill()  # now the process itself: whatever it was doing
        p.wait(5)
        assert json.loads((flash / "state.json").read_text())["open"]["id"] == 2
        # 5 s: a stopped session's record waits for the meter's next poll
        scen = write_scenario(tmp_path, "back", 5, [
            {"t": 0, "ev": "A"}, {"t": 0.5, "ev": "B"}, {"t": 1.0, "ev": "C"},
            {"t": 2.5, "ev": "A"}], {"mqtt_device_id": "pl-1"})
        out = finish(start_sim(scen, broker.port, tmp_path, flash=flash, tag="run2"), 30)
        assert "#3" in out, out  # the session counter went on
        wait_until(lambda: len(_rows(db, "SELECT id FROM sessions")) == 3, 10, "3 sessions")
    finally:
        stop(backend)
        w.close()
    rows = _rows(db, "SELECT id, boot, reason, stop_time, meter_start_wh, meter_stop_wh, "
                     "energy_wh FROM sessions ORDER BY id")
    # in the simulator the meter kept counting across the cut
    assert rows[0][:4] == (1, 1, "power_loss", None), rows
    assert rows[0][5] > rows[0][4] and rows[0][6] == rows[0][5] - rows[0][4] > 0, rows
    # the killed process took its simulated meter with it: no energy claimed
    assert rows[1][:4] == (2, 2, "power_loss", None), rows
    assert rows[2][:3] == (3, 3, "unplugged"), rows
    boots = _rows(db, "SELECT boot FROM events WHERE kind = 'boot' ORDER BY boot")
    assert boots == [(1,), (2,), (3,)], boots
    assert "open" not in json.loads((flash / "state.json").read_text())


def _gap(out):
    """(longest gap ms, gaps above 50 ms) from sim.py's summary."""
    for line in out.splitlines():
        if line.startswith("Control steps:"):
            return (float(line.split("longest gap ")[1].split(" ms")[0]),
                    int(line.split("), ")[1].split(" gaps")[0]))
    raise AssertionError("no control-step line in:\n" + out)


GOAL_MS = 50


def _on_time(measure):
    """measure() -> (longest gap ms, gaps above the goal, report). The goal
    is 50 ms. A shared 2-core VM stalls a process now and then, whatever it
    runs (seen in many runs: 63 ms, once 859 ms in a full suite, 10 ms in
    the same test alone and under load); one such isolated gap, under 2 s,
    earns one more run, which must meet the goal. The link itself, were it
    to block the control loop, would cost the 5 s socket timeout, at every
    attempt."""
    gap, late, report = measure()
    print("\n" + report)
    if gap <= GOAL_MS:
        return gap
    assert late == 1 and gap < 2000, report
    gap, late, report = measure()
    print("again: " + report)
    assert gap <= GOAL_MS, report
    return gap


def test_black_hole_broker_control_loop_keeps_its_period(tmp_path):
    """A broker that accepts TCP and never answers: the link times out and
    backs off in its thread; the control steps stay 10 ms apart."""
    runs = []

    def measure():
        d = tmp_path / ("run%d" % len(runs))
        d.mkdir()
        hole = simnet.BlackHole()
        events = CHARGE + [{"t": 2.5, "ev": "B"}, {"t": 3.5, "ev": "C"},
                           {"t": 5.5, "fault": {"rcd": True}}, {"t": 6.3, "ev": "A"}]
        scen = write_scenario(d, "hole", 7, events, {"mqtt_device_id": "bh-1"})
        try:
            out = finish(start_sim(scen, hole.port, d), 30)
        finally:
            hole.close()
        runs.append((d, out, hole.accepted))
        gap, late = _gap(out)
        return gap, late, "black-holed broker: longest gap between control steps %.1f ms" % gap

    _on_time(measure)
    d, out, accepted = runs[-1]
    assert accepted >= 2  # tried, timed out, backed off, tried again
    rows = [json.loads(s) for s in (d / "sim.jsonl").read_text().splitlines()]
    notes = [n for r in rows for n in r.get("notes", ())]
    assert any("TimeoutError" in n and "next attempt" in n for n in notes), notes
    assert not any("connected" in n for n in notes), notes
    scen_n = {"duration_ms": 7000}
    check_rules(rows, scen_n)
    check_iec_timing(rows, scen_n)  # C -> B and the RCD trip still open at once


class Gaps:
    """Wraps App.tick: the longest time between two control steps, and
    how many came later than GOAL_MS after the one before."""

    def __init__(self, app):
        self.tick = app.tick
        self.last = None
        self.max_ms = 0
        self.late = 0
        self.n = 0
        app.tick = self

    def __call__(self, now):
        t = time.monotonic()
        if self.last is not None:
            gap = (t - self.last) * 1000
            self.max_ms = max(self.max_ms, gap)
            self.late += gap > GOAL_MS
        self.last = t
        self.n += 1
        return self.tick(now)


@pytest.mark.parametrize("version", umqtt_host.VERSIONS)
def test_broker_black_holed_mid_connection(broker, tmp_path, version):
    """Connected, then the path to the broker goes silent: the board's
    runtime (hw/system.run_all on the fake machine: the control loop in its
    thread, the real umqtt.simple in the network thread) keeps its period
    while the link notices (a QoS 1 record without PUBACK), backs off, and
    delivers it later; the watchdog is fed throughout."""
    from test_watchdog_runtime import make_ctx

    from evse.link import Link
    from hw import system

    def measure():
        proxy = simnet.LinkProxy("127.0.0.1", broker.port)
        d = tmp_path / ("run%d" % len(os.listdir(tmp_path)))
        d.mkdir()
        w, raw, ctx = make_ctx(d, {"mqtt_host": "127.0.0.1", "mqtt_port": proxy.port,
                                   "mqtt_keepalive_s": 10})
        logs = []
        link = Link(ctx.app, ctx.cfg, "mid-1", mqtt=umqtt_host.load(version), log=logs.append,
                    timeout_s=1)
        gaps = Gaps(ctx.app)
        halt = threading.Event()
        lines = []
        watcher = Watcher(broker.port, ["evse/mid-1/#"])
        runner = threading.Thread(target=system.run_all, args=(ctx, link),
                                  kwargs={"out": lines.append, "stop": halt.is_set})
        runner.start()
        try:
            watcher.wait_for(_is("/event", lambda x: json.loads(x)["type"] == "boot"), 10)
            proxy.blackhole = True
            w.inputs[raw["rcd"]["pin"]] = 1  # an RCD trip: an event at QoS 1 into the silence
            wait_until(lambda: link.client is None, 5, "the link to notice")
            time.sleep(2.5)  # reconnects into the black hole and times out
            assert link.client is None
            proxy.blackhole = False
            watcher.wait_for(_is("/event", lambda x: json.loads(x).get("code") == "rcd"), 10,
                             "the fault event after the silence")
        finally:
            halt.set()
            runner.join(10)
            proxy.close()
            watcher.close()
        assert not runner.is_alive()
        assert link.connects >= 2 and any("TimeoutError" in x for x in logs), logs
        assert ctx.supervisor.reason == 0 and w.feeds == gaps.n, (w.feeds, gaps.n)
        return gaps.max_ms, gaps.late, (
            "black hole mid-connection: %d control steps, longest gap %.1f ms"
            % (gaps.n, gaps.max_ms))

    _on_time(measure)


def test_tls_with_ca_and_credentials_that_never_leak(tmp_path):
    secret = "Pw-9f3Qx-never-shown"
    ca, crt, key = make_ca(tmp_path, server=True)
    mosq = Mosquitto(tmp_path / "mosq", tls=(ca, crt, key),
                     users={"charger": secret, "watcher": "watcher-pw"})
    from evse.tls import context
    ctx = context(ssl, open(ca, "rb").read())
    w = Watcher(mosq.port, ["#"], user="watcher", password="watcher-pw", tls_ctx=ctx)
    base = {"mqtt_device_id": "tls-1", "mqtt_tls": True, "mqtt_ca": ca, "mqtt_user": "charger"}
    try:
        scen = write_scenario(tmp_path, "tls", 4, CHARGE, dict(base, mqtt_password=secret))
        out = finish(start_sim(scen, mosq.port, tmp_path, tag="good"), 30)
        w.wait_for(_is("/status", _charging), 5, "a status over TLS")
        assert "1 boot(s), 1 connection(s)" in out, out
        scen = write_scenario(tmp_path, "tls-bad", 1.5, CHARGE[:1],
                              dict(base, mqtt_password="Wrong-pw-" + secret[::-1]))
        bad = finish(start_sim(scen, mosq.port, tmp_path, tag="bad"), 30)
        assert "0 connection(s)" in bad and "refused by the broker (CONNACK " in bad, bad
    finally:
        w.close()
        mosq.stop()
    seen = "\n".join(m[1] for m in w.msgs) + "\n".join(m[0] for m in w.msgs)
    for text in (out, bad, seen, (tmp_path / "good.jsonl").read_text(),
                 (tmp_path / "bad.jsonl").read_text(), mosq.logtext()):
        assert secret not in text and secret[::-1] not in text


def test_shared_subscription_splits_the_load_and_stores_each_session_once(broker, tmp_path,
                                                                          reaper):
    db = tmp_path / "shared.db"
    b1 = start_backend(broker.port, db, tmp_path, "run", "--share", "g", "--client-id", "b1",
                       tag="b1")
    reaper(b1)
    b2 = start_backend(broker.port, db, tmp_path, "run", "--share", "g", "--client-id", "b2",
                       tag="b2")
    reaper(b2)
    w = Watcher(broker.port, ["evse/none"])
    try:
        for i in range(1, 13):
            rec = json.dumps({"id": i, "boot": 1, "start": 0, "stop": 60, "time": "uptime",
                              "meter_start_wh": 0, "meter_stop_wh": 10, "energy_wh": 10,
                              "peak_a": 16.0, "reason": "unplugged", "errors": []})
            for _ in range(2):  # each one twice
                w.publish("evse/share-1/session", rec)
        wait_until(lambda: _rows(db, "SELECT COUNT(*) FROM sessions") == [(12,)], 10, "12")
        time.sleep(0.3)
    finally:
        w.close()
        l1, l2 = stop(b1), stop(b2)
    assert _rows(db, "SELECT COUNT(*) FROM sessions") == [(12,)]
    assert "session share-1/" in l1 and "session share-1/" in l2, (l1, l2)  # both worked


def test_the_grid_feed_from_the_broker_drives_smart_mode_and_its_loss_is_a_fault(broker, tmp_path):
    """grid_meter "mqtt" (docs/site.md): a feeder publishes the grid
    currents (house plus what the charger's telemetry says it draws) on the
    charger's own grid topic; the offer keeps the 25 A fuse; a stale
    retained reading is ignored; once the feed stops, the grid reading is
    lost after 30 s: the grid_meter fault and the fallback current."""
    dev = "grid-1"
    w = Watcher(broker.port, ["evse/%s/#" % dev])
    scen = write_scenario(tmp_path, "grid", 150, CHARGE, {
        "mqtt_device_id": dev, "mode": "smart", "grid_meter": "mqtt", "mains_max_a": 25,
        "mqtt_telemetry_s": 1, "fallback_current_a": 6})
    topic = "evse/%s/grid" % dev
    # an hour-old retained reading, there before the charger: no reading
    w.publish(topic, json.dumps({"a": [1, 1, 1], "t": int(time.time()) - 3600}).encode())
    house = [5.0, 5.0, 5.0]
    feeding = threading.Event()
    feeding.set()
    done = threading.Event()

    def feeder():
        while not done.is_set():
            if feeding.is_set():
                ev = [0.0, 0.0, 0.0]
                for t, text, _ in reversed(w.msgs[-50:]):
                    if t.endswith("/telemetry"):
                        ev = [x or 0.0 for x in json.loads(text)["current_a"]]
                        break
                a = [round(house[i] + ev[i], 2) for i in range(3)]
                w.c.publish(topic, json.dumps({"a": a, "t": int(time.time())}), qos=0,
                            retain=True)
            done.wait(0.5)

    p = start_sim(scen, broker.port, tmp_path)
    th = threading.Thread(target=feeder, daemon=True)
    try:
        w.wait_for(_is("/online", lambda x: x == "online"), 10, "online")
        th.start()
        # 25 A fuse, 5 A of house: 20 A of room, the vehicle takes its 16 A
        w.wait_for(_is("/status", lambda x: _status(x)["offer_a"] == 20.0
                       and _status(x)["state"] == "C2"), 20, "an offer of 20 A")
        house[0] = 18.0  # 25 - 18: 7 A of room on L1
        w.wait_for(_is("/status", lambda x: _status(x)["offer_a"] == 7.0), 20, "7 A")
        feeding.clear()  # the feed stops: lost after 30 s without a reading
        d = _status(w.wait_for(_is("/status", lambda x: _status(x)["error"] == "grid_meter"),
                               45, "the grid_meter fault")[1])
        assert d["offer_a"] == 6.0 and d["state"] == "C2", d
        feeding.set()
        w.wait_for(_is("/status", lambda x: _status(x)["error"] is None
                       and _status(x)["offer_a"] == 7.0), 20, "the feed back")
    finally:
        done.set()
        p.send_signal(signal.SIGINT)
        out = finish(p, 20)
        w.c.publish(topic, b"", qos=0, retain=True).wait_for_publish(5)  # no retained leftovers
        w.close()
    assert "Traceback" not in out, out


def test_the_charger_on_the_shipped_broker_set_up_and_one_whose_publishes_it_refuses(tmp_path,
                                                                                    reaper):
    """deploy/mosquitto as shipped (only its ports changed: backend_env's
    fleet.Broker), the configuration an installer runs: the charger over
    the TLS listener with its CA and its own password, the backend with its
    own. dev1's session is stored and confirmed: its journal empties. A
    charger with dev1's credentials but dev2's device id is refused every
    publish by the ACL (mosquitto PUBACKs them anyway, MQTT 3.1.1): no
    confirmation comes, so it keeps its records, re-sends them and says so,
    and nothing of it is stored."""
    from backend_env import fleet

    b = fleet.Broker({"dev1": "pw-dev1", "evse-backend": "pw-backend", "evse-ops": "pw-ops"})
    ops = ("evse-ops", "pw-ops")  # the simulator's own backend side
    reaper(b.proc)
    try:
        db = tmp_path / "shipped.db"
        backend = start_backend(b.port, db, tmp_path, "--user", "evse-backend",
                                "--password", "pw-backend")
        reaper(backend)
        events = CHARGE + [{"t": 3.0, "ev": "A"}]
        tls = {"mqtt_tls": True, "mqtt_ca": b.ca, "mqtt_user": "dev1",
               "mqtt_password": "pw-dev1"}
        good = write_scenario(tmp_path, "dev1", 7, events, dict(tls, mqtt_device_id="dev1"))
        # long enough for a re-send: ACK_WAIT_MS (30 s) after the first publish
        bad = write_scenario(tmp_path, "dev2", 34, events, dict(tls, mqtt_device_id="dev2"))
        flash_good, flash_bad = tmp_path / "f1", tmp_path / "f2"
        # one after the other: the broker takes the user name as the client
        # id, so two chargers with dev1's credentials would take turns
        out1 = finish(start_sim(good, b.tls_port, tmp_path, flash=flash_good, tag="good",
                                backend=ops), 40)
        out2 = finish(start_sim(bad, b.tls_port, tmp_path, flash=flash_bad, tag="bad",
                                backend=ops), 60)
        wait_until(lambda: _rows(db, "SELECT device, id FROM sessions") == [("dev1", 1)], 10,
                   "dev1's session stored")
        log = stop(backend)
    finally:
        b.close()
    assert "Traceback" not in out1 + out2, (out1, out2)
    assert "1 connection(s)" in out1 and "1 connection(s)" in out2, (out1, out2)
    assert not os.path.exists(flash_good / "journal.log"), out1  # all confirmed
    assert _rows(db, "SELECT COUNT(*) FROM events WHERE device = 'dev2'") == [(0,)], log
    assert _rows(db, "SELECT COUNT(*) FROM sessions WHERE device = 'dev2'") == [(0,)], log
    from evse.journal import Journal

    kept = Journal(str(flash_bad / "journal.log")).load()
    assert [k for _, k, _ in kept].count("s") == 1, kept  # its session, never deleted
    trace = (tmp_path / "bad.jsonl").read_text()
    assert "records not confirmed by the backend, sent again" in trace, trace[-3000:]
    assert "does the broker take our publishes?" in trace
