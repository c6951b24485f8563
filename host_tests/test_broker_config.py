"""deploy/mosquitto/: mosquitto started with exactly the shipped
mosquitto.conf and acl (tools/fleet.py's Broker replaces only the two
listener ports, with free ones; certificates and passwords are made here),
tried as a charger with its own credentials would, and as the backend.

Expectations come from issue 12 (a device publishes only under its own
evse/<id>/ and reads only its own cmd and ack; the backend reads all and
writes cmd and ack; persistence; size limits; TLS) and MQTT 3.1.1 (a
refused CONNACK; messages of one connection arrive in order, which is how
"not delivered" is shown without sleeping: a marker published after the
refused message arrives and the refused one has not).
"""
import os
import re
import socket
import ssl
import struct

import pytest

from backend_env import Client, fleet

USERS = {"dev1": "pw-dev1", "dev2": "pw-dev2", "evse-backend": "pw-backend",
         "evse-ops": "pw-ops", "evse-site": "pw-site"}


@pytest.fixture(scope="module")
def broker():
    b = fleet.Broker(USERS)
    yield b
    b.close()


def test_the_file_is_the_shipped_one_with_only_its_ports_changed(broker):
    with open(os.path.join(broker.dir, "mosquitto.conf")) as f:
        used = f.read().splitlines()
    shipped = broker.shipped.splitlines()
    assert len(used) == len(shipped)
    diff = [(a, b) for a, b in zip(shipped, used) if a != b]
    assert [a for a, _ in diff] == ["listener 8883", "listener 1883 127.0.0.1"], diff
    with open(os.path.join(fleet.BROKER_DIR, "acl")) as f, \
            open(os.path.join(broker.dir, "acl")) as g:
        assert f.read() == g.read()
    # the list, as the broker reads it
    conf = dict(line.split(None, 1) for line in shipped if line and not line.startswith("#"))
    assert conf["persistence"] == "true" and conf["allow_anonymous"] == "false"
    assert 0 < int(conf["max_queued_bytes"]) and 0 < int(conf["message_size_limit"]) <= 65536


def test_anonymous_and_wrong_passwords_are_refused(broker):
    c = Client(broker.port, None, None)
    assert c.refused is not None
    c.close()
    c = Client(broker.port, "dev1", "wrong")
    assert c.refused is not None
    c.close()
    c = Client(broker.port, "dev1", USERS["dev1"])
    assert c.refused is None
    c.close()


def _marker_after(sender, receiver, forbidden, marker_topic):
    """Publish each (topic, payload) of `forbidden` then a marker; once the
    marker is received, nothing forbidden may have been."""
    for topic, payload in forbidden:
        sender.publish(topic, payload)
    sender.publish(marker_topic, b"marker")
    receiver.wait_for(lambda t, p: t == marker_topic and p == b"marker", 10, "the marker")
    with receiver.cond:
        return [t for t, p in receiver.msgs if p != b"marker"]


def test_a_device_publishes_only_its_own_topics(broker):
    be = Client(broker.port, "evse-backend", USERS["evse-backend"], topics=["evse/#"])
    dev1 = Client(broker.port, "dev1", USERS["dev1"])
    try:
        seen = _marker_after(dev1, be, [
            ("evse/dev2/session", b'{"id": 1}'),  # as another charger
            ("evse/dev2/status", b'{"state": "A"}'),
            ("evse/dev2/cmd", b'{"cmd": "pause"}'),  # commanding another charger
            ("evse/dev1/cmd", b'{"cmd": "pause"}'),  # even its own
            ("evse/dev1/ack", b'{"rids": []}'),
            ("evse/dev1/other", b"x"),
            ("evse/dev1", b"x"),
            ("elsewhere/dev1/session", b"x"),
        ] + [("evse/dev1/" + k, b'{"ok": 1}') for k in
             ("online", "status", "telemetry", "session", "event", "reply")],
            "evse/dev1/event")
        assert seen == ["evse/dev1/" + k for k in
                        ("online", "status", "telemetry", "session", "event", "reply")], seen
    finally:
        dev1.close()
        be.close()


def test_a_device_reads_only_its_own_cmd_and_ack(broker):
    dev1 = Client(broker.port, "dev1", USERS["dev1"], topics=["#", "evse/+/cmd", "evse/dev2/ack"])
    be = Client(broker.port, "evse-backend", USERS["evse-backend"])
    dev2 = Client(broker.port, "dev2", USERS["dev2"])
    try:
        dev2.publish("evse/dev2/session", b'{"id": 5}')
        dev2.publish("evse/dev2/status", b'{"state": "A"}')
        seen = _marker_after(be, dev1, [("evse/dev2/cmd", b'{"cmd": "pause"}'),
                                        ("evse/dev2/ack", b'{"rids": ["00000000-1"]}'),
                                        ("evse/dev1/cmd", b'{"cmd": "resume"}')],
                             "evse/dev1/ack")
        assert seen == ["evse/dev1/cmd"], seen
    finally:
        for c in (dev1, be, dev2):
            c.close()


def test_the_backend_reads_all_and_writes_only_cmd_and_ack(broker):
    be = Client(broker.port, "evse-backend", USERS["evse-backend"])
    watch = Client(broker.port, "evse-backend-2", None, topics=["#"])  # unknown user: refused
    assert watch.refused is not None
    watch.close()
    dev2 = Client(broker.port, "dev2", USERS["dev2"], topics=["evse/dev2/#"])
    try:
        seen = _marker_after(be, dev2, [("evse/dev2/status", b'{"state": "F"}'),
                                        ("evse/dev2/session", b'{"id": 999}'),
                                        ("evse/dev2/cmd", b'{"cmd": "pause"}')],
                             "evse/dev2/ack")
        assert seen == ["evse/dev2/cmd"], seen
    finally:
        be.close()
        dev2.close()


def test_the_ops_user_sends_commands_and_reads_replies_only(broker):
    ops = Client(broker.port, "evse-ops", USERS["evse-ops"], topics=["evse/#"])
    dev1 = Client(broker.port, "dev1", USERS["dev1"], topics=["evse/dev1/#"])
    try:
        seen = _marker_after(ops, dev1, [("evse/dev1/ack", b'{"rids": ["00000000-1"]}')],
                             "evse/dev1/cmd")
        assert seen == [], seen
        dev1.publish("evse/dev1/session", b'{"id": 1}')
        dev1.publish("evse/dev1/reply", b'{"id": "x", "ok": true}')
        ops.wait_for(lambda t, p: t == "evse/dev1/reply", 10, "the reply")
        assert "evse/dev1/session" not in ops.topics_seen()
    finally:
        ops.close()
        dev1.close()


def test_the_site_user_reads_status_and_writes_limits_and_grid_only(broker):
    site = Client(broker.port, "evse-site", USERS["evse-site"], topics=["evse/#"])
    dev1 = Client(broker.port, "dev1", USERS["dev1"], topics=["evse/dev1/#"])
    dev2 = Client(broker.port, "dev2", USERS["dev2"], topics=["evse/+/grid"])
    try:
        # the site may not acknowledge records in the backend's place, nor
        # read sessions and events
        seen = _marker_after(site, dev1, [("evse/dev1/ack", b'{"rids": ["00000000-1"]}'),
                                          ("evse/dev1/grid", b'{"a": [1, 2, 3], "t": 1}')],
                             "evse/dev1/cmd")
        assert seen == ["evse/dev1/grid"], seen
        dev1.publish("evse/dev1/session", b'{"id": 1}')
        dev1.publish("evse/dev1/status", b'{"state": "A"}')
        site.wait_for(lambda t, p: t == "evse/dev1/status", 10, "the status")
        assert "evse/dev1/session" not in site.topics_seen()
        # a charger reads its own grid feed, not another's
        site.publish("evse/dev1/grid", b'{"a": [1, 2, 3], "t": 2}')
        site.publish("evse/dev2/grid", b'{"a": [4, 5, 6], "t": 2}')
        dev2.wait_for(lambda t, p: t == "evse/dev2/grid", 10, "its grid feed")
        assert "evse/dev1/grid" not in dev2.topics_seen()
    finally:
        for c in (site, dev1, dev2):
            c.close()


def test_a_device_cannot_take_the_backends_session_by_its_client_id(broker):
    be = Client(broker.port, "evse-backend", USERS["evse-backend"], client_id="evse-backend",
                topics=["evse/+/session"], clean=False)
    try:
        thief = Client(broker.port, "dev1", USERS["dev1"], client_id="evse-backend")
        # the client id is the user name: the thief is dev1, the backend stays
        thief.publish("evse/dev1/session", b'{"id": 7}')
        be.wait_for(lambda t, p: t == "evse/dev1/session", 10, "dev1's session")
        assert be.disconnects == 0
        thief.close()
        # and two connections with one device's credentials: the second replaces the first
        a = Client(broker.port, "dev2", USERS["dev2"], client_id="a")
        b = Client(broker.port, "dev2", USERS["dev2"], client_id="b")
        b.publish("evse/dev2/online", b"online")
        assert a.disconnects >= 1 or a.c.is_connected() is False or _eventually_dropped(a)
        a.close()
        b.close()
    finally:
        be.close()


def _eventually_dropped(c):
    import time
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if c.disconnects:
            return True
        time.sleep(0.05)
    return False


def test_oversized_messages_never_reach_anyone(broker):
    be = Client(broker.port, "evse-backend", USERS["evse-backend"], topics=["evse/#"])
    try:
        dev1 = Client(broker.port, "dev1", USERS["dev1"])
        seen = _marker_after(dev1, be, [("evse/dev1/session", b"x" * 9000)], "evse/dev1/event")
        assert seen == [], seen  # above message_size_limit: dropped
        dev1.close()
        # 16 MB announced: the broker drops the connection once it has read the length
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        s.sendall(fleet.connect_packet("dev1", "dev1", USERS["dev1"]))
        assert s.recv(4)[:2] == b"\x20\x02"
        topic = b"evse/dev1/session"
        head = bytes((0x32,)) + fleet._vlen(16 * 1024 * 1024) + struct.pack("!H", len(topic))
        s.sendall(head + topic + b"\x00\x01" + b"x" * 65536)
        with pytest.raises(OSError):
            for _ in range(300):
                s.sendall(b"x" * 65536)  # refused long before 16 MB: reset or closed
                if not s.recv(1, socket.MSG_DONTWAIT) if _readable(s) else False:
                    raise ConnectionResetError("closed")
        s.close()
        dev2 = Client(broker.port, "dev2", USERS["dev2"])
        dev2.publish("evse/dev2/event", b"{}")
        be.wait_for(lambda t, p: t == "evse/dev2/event", 10, "a message after it")
        dev2.close()
        assert re.search(r"dev1.*(disconnect|exceed|too large|protocol error)",
                         broker.logtext(), re.I | re.S)
    finally:
        be.close()


def _readable(s):
    import select
    return bool(select.select([s], [], [], 0)[0])


def test_tls_listener_with_the_ca(broker):
    dev1 = Client(broker.tls_port, "dev1", USERS["dev1"], tls_ca=broker.ca,
                  topics=["evse/dev1/cmd"])
    try:
        be = Client(broker.port, "evse-backend", USERS["evse-backend"])
        be.publish("evse/dev1/cmd", b'{"cmd": "pause"}')
        dev1.wait_for(lambda t, p: t == "evse/dev1/cmd", 10, "the command over TLS")
        be.close()
    finally:
        dev1.close()
    # plain MQTT on the TLS port gets nothing; a wrong CA fails the handshake
    s = socket.create_connection(("127.0.0.1", broker.tls_port), timeout=5)
    s.sendall(fleet.connect_packet("dev1", "dev1", USERS["dev1"]))
    try:
        assert s.recv(4)[:2] != b"\x20\x02"
    except OSError:
        pass
    s.close()
    ctx = ssl.create_default_context()  # the system's CAs, not ours
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", broker.tls_port), timeout=5) as raw:
            ctx.wrap_socket(raw, server_hostname="localhost")


def test_persistence_keeps_the_backends_queue_across_a_restart(broker):
    be = Client(broker.port, "evse-backend", USERS["evse-backend"], topics=["evse/+/session"],
                clean=False)
    be.close()  # offline: its session keeps what comes
    dev1 = Client(broker.port, "dev1", USERS["dev1"])
    for i in range(5):
        dev1.publish("evse/dev1/session", b'{"id": %d}' % i)
    dev1.close()
    broker.stop()  # SIGTERM: saves the queues to data/
    broker.start()
    be = Client(broker.port, "evse-backend", USERS["evse-backend"], clean=False)
    try:
        be.wait_for(lambda t, p: p == b'{"id": 4}', 10, "the queued sessions")
        assert [p for t, p in be.msgs] == [b'{"id": %d}' % i for i in range(5)]
    finally:
        be.close()
