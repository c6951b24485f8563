"""The network thread's logic (evse/link.py) against a fake umqtt.simple:
what it publishes and subscribes, how it backs off, how bad commands are
answered, journal records published at QoS 1 and acknowledged, timeouts
on every socket, credentials kept out of the log."""
import json

from evse import bus as B
from evse import link as L

from fakes import FakeMQTT, Rig


class Time:
    def __init__(self):
        self.ms = 1000

    def __call__(self):
        return self.ms


def _setup(cfg=None):
    t = Time()
    L.ticks_ms = t
    rig = Rig(cfg=cfg)
    mod = FakeMQTT()
    logs = []
    link = L.Link(rig.app, rig.cfg, "dev1", mqtt=mod, rand=lambda n: 0, log=logs.append)
    return t, rig, mod, link, logs


def _restore():
    from evse import ticks_ms
    L.ticks_ms = ticks_ms


def test_backoff_doubles_from_1_s_to_a_minute_with_jitter():
    top = [L.backoff_ms(n, lambda k: k - 1) for n in range(1, 10)]
    low = [L.backoff_ms(n, lambda k: 0) for n in range(1, 10)]
    assert top == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000], top
    assert low == [x // 2 for x in top], low
    for n in range(1, 12):
        assert 500 <= L.backoff_ms(n, L._rand) <= 60000


def test_connect_will_online_subscribe_and_bounded_socket():
    t, rig, mod, link, logs = _setup()
    try:
        assert link.step() == 0 and link.client is not None
        assert mod.log[:5] == [
            ("will", b"evse/dev1/online", b"offline", True, 1),
            ("connect", True, L.SOCK_TIMEOUT_S),  # the timeout, before the TCP connect
            ("pub", b"evse/dev1/online", b"online", True, 1),
            ("sub", b"evse/dev1/cmd", 0),
            ("sub", b"evse/dev1/ack", 0)], mod.log
        c = mod.clients[0]
        assert c.args[0] == b"evse-dev1" and c.args[2] == 1883 and c.args[5] == 30
        raw = c.sock
        assert raw.timeout == L.SOCK_TIMEOUT_S  # set before connect()
        assert isinstance(c, mod.MQTTClient)  # the client's own class, subclassed
        raw.setblocking(False)  # as check_msg does; then a packet's first byte
        raw.rx += b"\x30\x06\x00\x01t" + b"msg"  # a PUBLISH (QoS 0) on topic "t"
        assert c.wait_msg() == 0x30
        assert raw.timeout == L.SOCK_TIMEOUT_S  # the rest read bounded, not "forever"
        raw.rx += b"\xd0\x00"
        assert c.wait_msg() is None and raw.timeout == L.SOCK_TIMEOUT_S  # a PINGRESP
        raw.setblocking(False)
        assert c.wait_msg() is None and raw.timeout == L.SOCK_TIMEOUT_S  # nothing there
        try:
            c.wait_msg()  # bounded and nothing comes: the timeout's OSError
            assert False
        except OSError:
            pass
        link.step()
        st = [json.loads(p[2]) for p in mod.pubs("/status")]
        assert st and st[0]["state"] == "A" and mod.pubs("/status")[0][3] is True  # retained
        ev = mod.pubs("/event")
        assert ev and ev[0][4] == 1 and json.loads(ev[0][2])["type"] == "boot"
        assert "connected" in logs[0]
    finally:
        _restore()


def test_failures_back_off_and_never_raise():
    t, rig, mod, link, logs = _setup({"mqtt_user": "u", "mqtt_password": "hunter2"})
    try:
        mod.fail = OSError(111)
        waits = []
        for _ in range(9):
            link.step()
            assert link.client is None
            waits.append(L.ticks_diff(link.next_try, t.ms))
            assert link.step() > 0  # waiting: nothing happens
            t.ms = link.next_try
        assert waits == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000], waits
        assert all([c.sock.closed for c in mod.clients])
        mod.fail = mod.MQTTException(5)
        link.step()
        assert "not authorized" in link.last_error
        mod.fail = None
        t.ms = link.next_try
        link.step()
        assert link.client is not None and link.failures == 10  # not yet: up, not stable
        t.ms += L.STABLE_MS
        link.step()
        assert link.client is not None and link.failures == 0
        assert mod.clients[-1].args[3:5] == (b"u", b"hunter2")
        assert not [x for x in logs if "hunter2" in x], logs
    finally:
        _restore()


def test_a_broker_that_drops_every_connection_at_once_gets_the_backoff():
    """Accepted, then closed right away (a broker that kicks us, or another
    charger with the same device id): the failures are not forgotten at
    the CONNACK, so the attempts back off to a minute instead of coming
    every second, and a warning names the device id."""
    t, rig, mod, link, logs = _setup()
    try:
        waits = []
        for _ in range(8):
            link.step()
            assert link.client is not None
            mod.fail_publish = OSError(104)  # the broker closes the connection
            rig.run(10)
            link.step()
            mod.fail_publish = None
            assert link.client is None
            waits.append(L.ticks_diff(link.next_try, t.ms))
            t.ms = link.next_try
        assert waits == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000], waits
        assert link.short == 8
        warn = [x for x in logs if "another client using device id dev1" in x]
        assert len(warn) == 1, logs
    finally:
        _restore()


def test_commands_good_and_bad():
    t, rig, mod, link, logs = _setup()
    try:
        link.step()
        mod.inbox = [
            (b"evse/dev1/cmd", b'{"cmd": "set_current", "amps": 10, "id": "g"}'),
            (b"evse/dev1/cmd", b"{not json"),
            (b"evse/dev1/cmd", b"\xff"),
            (b"evse/dev1/cmd", b"x" * 600),
            (b"evse/dev1/cmd", b'{"cmd": "set_current", "amps": "ten", "id": "t"}'),
            (b"evse/other/cmd", b'{"cmd": "pause"}'),
        ]
        link.step()
        rig.run(10)
        link.step()
        replies = [json.loads(p[2]) for p in mod.pubs("/reply")]
        assert replies[:3] == [
            {"id": None, "ok": False, "error": "malformed JSON"},
            {"id": None, "ok": False, "error": "payload is not UTF-8 text"},
            {"id": None, "ok": False, "error": "payload too large: 600 bytes, at most 512"}]
        assert replies[3] == {"id": "g", "ok": True}
        assert replies[4]["id"] == "t" and "amps" in replies[4]["error"]
        assert len(replies) == 5
        assert rig.app.bus.snap.v[B.S_BACKEND] == 10000
        # too many at once: the Bus takes 8 and 2 more pauses (stop and pause
        # jump the queue), the rest are answered "busy"
        mod.inbox = [(b"evse/dev1/cmd", b'{"cmd": "pause", "id": %d}' % i) for i in range(12)]
        link.step()
        link.step()
        busy = [json.loads(p[2]) for p in mod.pubs("/reply")][5:]
        assert [r["id"] for r in busy] == [10, 11] and "busy" in busy[0]["error"], busy
    finally:
        _restore()


def _ack(*rids):
    return (b"evse/dev1/ack", json.dumps({"rids": list(rids)}).encode())


def _rids(mod, topic_end):
    return [json.loads(p[2])["rid"] for p in mod.pubs(topic_end)]


def test_journal_records_leave_only_when_the_backend_confirms_them():
    """QoS 1, and the broker's PUBACK is not enough: a record leaves the
    journal when the backend names its rid on the ack topic (after its
    commit). A malformed ack, or one naming other rids, removes nothing."""
    t, rig, mod, link, logs = _setup()
    try:
        link.step()
        link.step()
        boot = _rids(mod, "/event")
        assert boot == ["5eed0001-1"] and mod.pubs("/event")[0][4] == 1
        rig.charge(1000)
        rig.run(50, "A")
        assert [r[1] for r in rig.live()] == ["e", "s"]  # PUBACKed, not confirmed
        link.step()
        sess = mod.pubs("/session")
        assert len(sess) == 1 and sess[0][4] == 1 and json.loads(sess[0][2])["id"] == 1
        rid = json.loads(sess[0][2])["rid"]
        assert rid == "5eed0001-2", rid
        link.step()
        assert len(mod.pubs("/session")) == 1  # not again while it waits for the ack
        mod.inbox = [(b"evse/dev1/ack", b"{not json"), (b"evse/dev1/ack", b'{"rids": 5}'),
                     _ack("5eed0001-99", "ffffffff-2"), (b"evse/dev1/ack", 2000)]
        link.step()
        rig.run(10)
        assert [r[1] for r in rig.live()] == ["e", "s"] and link.bad_acks == 3
        mod.inbox = [_ack(rid, boot[0])]
        link.step()
        rig.run(10)
        assert rig.live() == [] and link.unconfirmed() == 0
        link.step()
        assert len(mod.pubs("/session")) == 1 and len(mod.pubs("/event")) == 1
    finally:
        _restore()


def test_unconfirmed_records_go_again_after_a_timeout_and_on_a_new_connection():
    t, rig, mod, link, logs = _setup()
    try:
        link.step()
        link.step()
        assert _rids(mod, "/event") == ["5eed0001-1"]
        for wait in (L.ACK_WAIT_MS, 2 * L.ACK_WAIT_MS, 4 * L.ACK_WAIT_MS):
            t.ms += wait - 1
            link.step()
            assert len(mod.pubs("/event")) == 1 + link.resent  # not yet
            t.ms += 1
            link.step()  # due: sent again, the same payload, the wait doubled
        assert _rids(mod, "/event") == ["5eed0001-1"] * 4 and link.resent == 3
        st = json.loads(mod.pubs("/status")[-1][2])
        assert st["link"] == {"connects": 1, "resent": 2, "unconfirmed": 1,
                              "short_lived": 0}, st["link"]
        assert any("not confirmed by the backend" in x for x in logs), logs
        # the link is lost and comes back: everything unconfirmed goes again at once
        mod.fail_publish = OSError(104)
        rig.board.rcd = True  # a fault: a new event
        rig.run(20)
        link.step()
        assert link.client is None
        mod.fail_publish = None
        t.ms = link.next_try
        link.step()
        link.step()
        assert _rids(mod, "/event")[-2:] == ["5eed0001-1", "5eed0001-2"], _rids(mod, "/event")
        mod.inbox = [_ack("5eed0001-1", "5eed0001-2")]
        link.step()
        rig.run(10)
        assert rig.live() == []
    finally:
        _restore()


def test_with_mqtt_ack_broker_the_puback_confirms():
    """mqtt_ack "broker" (no reference backend, e.g. Home Assistant alone):
    the broker's PUBACK removes the record, and no ack topic is read."""
    t, rig, mod, link, logs = _setup({"mqtt_ack": "broker"})
    try:
        link.step()
        assert ("sub", b"evse/dev1/ack", 0) not in mod.log
        link.step()
        rig.charge(1000)
        rig.run(50, "A")
        assert [r[1] for r in rig.live()] == ["s"]  # the boot event: PUBACKed, removed
        link.step()
        rig.run(10)
        assert rig.live() == [] and len(mod.pubs("/session")) == 1
    finally:
        _restore()


def test_publish_error_drops_the_link_and_keeps_the_record():
    t, rig, mod, link, logs = _setup()
    try:
        link.step()
        mod.fail_publish = OSError(104)
        rig.charge(1000)
        rig.run(50, "A")
        link.step()
        assert link.client is None and mod.clients[0].sock.closed
        assert "OSError 104" in link.last_error
        assert [r[1] for r in rig.live()] == ["e", "s"]  # still there
        mod.fail_publish = None
        t.ms = link.next_try
        link.step()
        link.step()
        mod.inbox = [_ack(*(_rids(mod, "/event") + _rids(mod, "/session")))]
        link.step()
        rig.run(10)
        assert rig.live() == []
    finally:
        _restore()


def test_status_on_change_at_most_twice_a_second_and_every_60_s():
    t, rig, mod, link, logs = _setup()
    try:
        link.step()
        link.step()
        n = len(mod.pubs("/status"))
        assert n == 1
        t.ms += 1000
        link.step()
        assert len(mod.pubs("/status")) == 1  # nothing changed
        rig.run(600, "B")
        link.step()
        assert len(mod.pubs("/status")) == 2
        rig.run(50, "A")
        t.ms += 100
        link.step()
        assert len(mod.pubs("/status")) == 2  # changed, but too soon
        t.ms += 400
        link.step()
        assert len(mod.pubs("/status")) == 3
        t.ms += 60000
        link.step()
        assert len(mod.pubs("/status")) == 4  # the periodic one
        # while a vehicle was connected, and one last one after it had left
        tel = [json.loads(p[2]) for p in mod.pubs("/telemetry")]
        assert [(d["state"], d["ev_a"]) for d in tel] == [("B1", 0.0), ("A", 0.0)], tel
    finally:
        _restore()


def test_a_last_telemetry_once_the_meter_shows_the_vehicle_gone():
    """After the vehicle leaves, one more telemetry message, as soon as the
    meter reads no current (not the session's last reading, which the
    snapshot holds until the meter's next poll), or two meter polls plus
    2 s on, as it is; then none until a vehicle comes."""
    t, rig, mod, link, logs = _setup()
    try:
        rig.meter.a_ma = 16000
        rig.charge(3000)
        link.step()
        link.step()
        n = len(mod.pubs("/telemetry"))
        assert n and json.loads(mod.pubs("/telemetry")[-1][2])["ev_a"] == 16.0
        rig.run(600, "A")  # unplugged; the meter has not polled since
        t.ms += 600
        link.step()
        assert len(mod.pubs("/telemetry")) == n  # 16 A is not what an idle charger draws
        rig.meter.a_ma = 0  # the meter's poll after the contactor opened
        rig.run(10)
        t.ms += 10
        link.step()
        tel = [json.loads(p[2]) for p in mod.pubs("/telemetry")]
        assert len(tel) == n + 1 and (tel[-1]["state"], tel[-1]["ev_a"]) == ("A", 0.0), tel
        assert tel[-1]["session"] is None and tel[-1]["meter_wh"] == 5000
        t.ms += 60000
        rig.run(10)
        link.step()
        assert len(mod.pubs("/telemetry")) == n + 1
        # A meter that keeps reading some current: the last message 4 s on
        # (meter_poll_s 1), with what it reads.
        rig.run(600, "B")
        rig.meter.a_ma = 500
        rig.run(10)
        link.step()
        assert len(mod.pubs("/telemetry")) == n + 2
        rig.run(600, "A")
        t.ms += 100
        link.step()  # the vehicle has left: 4 s from here
        t.ms += 3990
        link.step()
        assert len(mod.pubs("/telemetry")) == n + 2
        t.ms += 10
        link.step()
        tel = [json.loads(p[2]) for p in mod.pubs("/telemetry")]
        assert len(tel) == n + 3 and (tel[-1]["state"], tel[-1]["ev_a"]) == ("A", 0.5), tel
    finally:
        _restore()


def test_telemetry_at_once_after_an_outage_of_a_week():
    """A vehicle connected through a broker outage of more than half the
    ticks' period (a week; ticks_ms wraps every 2**30 ms on a board): the
    first telemetry goes as soon as the link is back, and every
    mqtt_telemetry_s after, not once the ticks come round days later."""
    from evse import TICKS_PERIOD, ticks_add

    t, rig, mod, link, logs = _setup()
    try:
        rig.run(600, "B")
        link.step()
        link.step()
        n = len(mod.pubs("/telemetry"))
        assert n >= 1
        mod.fail_publish = OSError(104)  # the broker goes
        t.ms += 10000
        link.step()
        assert link.client is None
        mod.fail_publish = None
        mod.fail = OSError(113)  # and stays away
        for _ in range(2):  # (ticks_add takes less than half the period at a time)
            t.ms = ticks_add(t.ms, TICKS_PERIOD // 4 + 30000)
        mod.fail = None
        link.next_try = t.ms  # as a try every minute through the week leaves it
        link.step()
        link.step()
        assert link.client is not None
        assert len(mod.pubs("/telemetry")) == n + 1
        t.ms = ticks_add(t.ms, rig.cfg["mqtt_telemetry_s"] * 1000)
        link.step()
        assert len(mod.pubs("/telemetry")) == n + 2
    finally:
        _restore()


def test_ping_when_the_broker_was_quiet_for_half_the_keepalive():
    t, rig, mod, link, logs = _setup()
    try:
        link.step()
        link.step()  # publishes the boot event: an answer (PUBACK) at t
        t.ms += 14000
        link.step()
        assert ("ping",) not in mod.log
        t.ms += 1000
        link.step()
        assert ("ping",) in mod.log and link.client is not None
        assert not mod.clients[0].sock.rx  # the PINGRESP was read
    finally:
        _restore()


def test_a_user_without_a_password_sends_an_empty_one():
    """umqtt.simple sends a password whenever there is a user name."""
    t, rig, mod, link, logs = _setup({"mqtt_user": "ch\u00e4rger"})
    try:
        link.step()
        assert mod.clients[0].args[3:5] == ("ch\u00e4rger".encode(), b"")
    finally:
        _restore()


class _Poison:
    """Stands for app.charger, app.meter and app.inp while the link runs:
    any use of it raises."""

    def __getattr__(self, name):
        raise RuntimeError("the network thread read %s" % name)


def test_the_link_reads_only_the_snapshot_the_bus_and_the_journal():
    """The one seam between the threads: while the link steps, the charger,
    the meter and the inputs are out of its reach (any read raises), and it
    still publishes the status, the telemetry and the journal from the
    snapshot the control thread wrote."""
    t, rig, mod, link, logs = _setup({"max_current_a": 16})
    app = rig.app
    mine = (app.charger, app.meter, app.inp)
    try:
        rig.charge(3000)  # C2, 16 A, the meter answering
        app.charger = app.meter = app.inp = _Poison()
        link.step()
        link.step()
        assert link.client is not None and link.failures == 0, logs
        st = json.loads(mod.pubs("/status")[-1][2])
        assert st["state"] == "C2" and st["contactor"] is True and st["offer_a"] == 16.0, st
        assert st["session"] == 1 and st["limits"]["max_a"] == 16.0, st
        tel = json.loads(mod.pubs("/telemetry")[-1][2])
        assert tel["state"] == "C2" and tel["session"] == 1, tel
        assert mod.pubs("/event")  # the journal's boot event
        assert not hasattr(link, "app")
        # A write under way (the control thread between begin and end): the
        # link keeps what it had and publishes nothing half-written.
        app.charger, app.meter, app.inp = mine
        rig.run(600, "A")  # unplugged
        n = len(mod.pubs("/status"))
        app.bus.snap.begin()
        t.ms += 1000
        link.step()
        assert len(mod.pubs("/status")) == n
        app.bus.snap.end()
        link.step()
        assert len(mod.pubs("/status")) == n + 1
        assert json.loads(mod.pubs("/status")[-1][2])["state"] == "A"
    finally:
        app.charger, app.meter, app.inp = mine
        _restore()


class _Ctx:
    """What the Link is given as `ssl`: an SSLContext's wrap_socket."""

    def wrap_socket(self, sock, server_hostname=None):
        return sock


def test_tls_connects_wait_while_the_contactor_is_closed():
    """A TLS handshake holds the interpreter for its key exchange: with TLS
    the link does not (re)connect while the contactor is closed, unless the
    board opens it in hardware; without TLS it connects at once."""
    for tls, defer, connects_charging in ((True, True, False), (True, False, True),
                                          (False, True, True)):
        t = Time()
        L.ticks_ms = t
        try:
            rig = Rig(cfg={"mqtt_tls": tls, "mqtt_ca": "ca.pem"} if tls else None)
            rig.charge(2000)
            assert rig.app.out.contactor
            mod = FakeMQTT()
            logs = []
            link = L.Link(rig.app, rig.cfg, "dev1", mqtt=mod, ssl=_Ctx() if tls else None,
                          rand=lambda n: 0, log=logs.append, defer_tls=defer)
            for _ in range(5):
                link.step()
                t.ms += 300
            assert (link.client is not None) == connects_charging, (tls, defer, logs)
            if not connects_charging:
                assert not mod.clients and link.deferred == 5
                assert logs == ["mqtt: TLS connect deferred while the contactor is closed"]
                rig.run(600, "B")  # the vehicle stops: the contactor opens
                assert not rig.app.out.contactor
                link.step()
                assert link.client is not None and link.deferred == 0
                from evse import tls as _tls

                assert isinstance(mod.clients[0].args[6], _tls.Wrapper)
        finally:
            _restore()


def test_a_deferred_tls_connect_goes_at_once_even_after_a_week_of_charging():
    """The deferred TLS connect waits for the contactor to open, however long
    that takes: after more than half the ticks' period (a week; ticks_ms
    wraps every 2**30 ms on a board) the try due since then goes as soon as
    it opens, not once the ticks come round days later."""
    from evse import TICKS_PERIOD, ticks_add

    t = Time()
    L.ticks_ms = t
    try:
        rig = Rig(cfg={"mqtt_tls": True, "mqtt_ca": "ca.pem"})
        rig.charge(2000)
        mod = FakeMQTT()
        link = L.Link(rig.app, rig.cfg, "dev1", mqtt=mod, ssl=_Ctx(), rand=lambda n: 0,
                      log=lambda s: None, defer_tls=True)
        link.step()
        assert link.client is None and link.deferred == 1
        for _ in range(2):  # (ticks_add takes less than half the period at a time)
            t.ms = ticks_add(t.ms, TICKS_PERIOD // 4 + 30000)
            link.step()
        assert link.client is None and link.deferred == 3
        rig.run(600, "B")  # the vehicle stops: the contactor opens
        assert not rig.app.out.contactor
        link.step()
        assert link.client is not None and link.deferred == 0
    finally:
        _restore()


def test_a_flood_of_junk_neither_delays_a_stop_nor_earns_a_reply_each():
    """600 malformed payloads a second with a pause and a stop among them:
    each is done at the next control tick after it is read, the junk gets at most
    a burst of 8 replies and then 4 a second, and the valid commands that
    fit are all answered."""
    t, rig, mod, link, logs = _setup()
    try:
        rig.charge(1000)
        link.step()
        link.step()
        n0 = len(mod.pubs("/reply"))
        junk = [(b"evse/dev1/cmd", b"{junk %d" % i) for i in range(600)]
        junk[150] = (b"evse/dev1/cmd", b'{"cmd": "pause", "id": "hold"}')
        junk[300] = (b"evse/dev1/cmd", b'{"cmd": "stop", "id": "halt"}')
        mod.inbox = junk
        steps = 0
        while mod.inbox and steps < 100:
            link.step()
            rig.run(10)
            t.ms += 50  # one step every 50 ms: 600 payloads in about a second
            steps += 1
        assert not mod.inbox and steps <= 25, steps  # read at the pace they come
        link.step()
        replies = [json.loads(p[2]) for p in mod.pubs("/reply")][n0:]
        assert {"id": "hold", "ok": True} in replies, replies[-5:]
        assert {"id": "halt", "ok": True} in replies, replies[-5:]
        # stopped: the session ended and the PWM is off (the contactor then
        # opens when the vehicle follows, Table A.6 sequence 10.2)
        assert rig.app.out.session is None and rig.app.out.offer_ma == 0
        refused = [r for r in replies if r["id"] is None]
        assert 8 <= len(refused) <= 8 + 4 * (steps * 50 // 1000 + 1), len(refused)
        assert link.unanswered == 598 - len(refused)
    finally:
        _restore()


def test_junk_earns_replies_again_a_week_after_a_flood():
    """The allowance of replies to junk refills with time, also once the
    ticks have gone more than half their period (ticks_ms wraps: 2**30 ms
    on a board) since the last refusal: a week of quiet after a flood, a
    burst of 8 replies again, not none for days."""
    from evse import TICKS_PERIOD, ticks_add

    t, rig, mod, link, logs = _setup()
    try:
        link.step()
        link.step()

        def junk(n):
            before = len(mod.pubs("/reply"))
            mod.inbox = [(b"evse/dev1/cmd", b"{junk %d" % i) for i in range(n)]
            steps = 0
            while mod.inbox and steps < 50:
                link.step()
                steps += 1
            link.step()
            return len([p for p in mod.pubs("/reply")[before:] if json.loads(p[2])["id"] is None])

        assert junk(40) == 8  # the burst, then nothing: no time has gone
        for _ in range(2):  # (ticks_add takes less than half the period at a time)
            t.ms = ticks_add(t.ms, TICKS_PERIOD // 4 + 30000)
        assert junk(40) == 8
    finally:
        _restore()


def _cmd_burst(mod, link, rig, first):
    """50 commands whose ids, fields and values bring 20 new characters
    each (from JSON escapes, as they arrive), through the link and the App
    to their replies; what the fake client recorded dropped after. The
    ids of the set_current replies, which are always answered."""
    ids = []
    for i in range(50):
        t = "".join(["\\u%04x" % (first + 20 * i + k) for k in range(20)])
        mod.inbox = [
            (b"evse/dev1/cmd", ('{"cmd": "set_current", "amps": 10, "id": "%s"}' % t).encode()),
            (b"evse/dev1/cmd", ('{"cmd": "pause", "id": 1, "%s": 2}' % t).encode()),
            (b"evse/dev1/cmd", ('{"cmd": "%s", "id": "%s"}' % (t, t)).encode()),
            (b"evse/dev1/cmd", ('{"cmd": "set_config", "id": 2, "key": "mqtt_user", '
                                '"value": "%s"}' % t).encode()),
        ]
        link.step()
        rig.run(10)
        link.step()
        for p in mod.pubs("/reply"):
            r = json.loads(p[2])
            if r.get("ok") is True:
                ids.append(r["id"])
        del mod.log[:]
    return ids


def test_commands_with_new_characters_never_grow_the_heap_for_good():
    """A backend (or anyone who may publish to cmd) sending ids, field
    names and values made of characters the firmware has never seen: the
    replies and the checks intern none of them (MicroPython keeps a qstr
    for each character of a str that is iterated or indexed, for good).
    Measured on the unix ports (test_core_payloads.py says why not the
    others): 200 commands, 1,000 new characters."""
    import gc
    import sys

    t, rig, mod, link, logs = _setup({"mqtt_remote_config": True})
    try:
        link.step()
        ids = _cmd_burst(mod, link, rig, 0x4E00)  # warm-up: every path once
        assert len(ids) == 50 and ids[0] == json.loads('"%s"' % "".join(
            ["\\u%04x" % (0x4E00 + k) for k in range(20)])), ids[:1]
        measure = hasattr(gc, "mem_alloc") and sys.platform != "webassembly"
        if measure:
            gc.collect()
            before = gc.mem_alloc()
        assert len(_cmd_burst(mod, link, rig, 0x6E00)) == 50
        if measure:
            gc.collect()
            grown = gc.mem_alloc() - before
            assert grown <= 64, "the heap grew by %d bytes for good" % grown
    finally:
        _restore()
