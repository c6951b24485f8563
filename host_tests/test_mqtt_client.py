"""The firmware's MQTT client is micropython-lib's umqtt.simple, unmodified
(build/umqtt-<version>/umqtt/simple.py, copied by `make setup`), run under
CPython through tools/host/mpsocket.py, with the Link's subclass
(evse.link.client_class). Every test runs with both versions boards have:
1.7.0 (frozen into ESP32 firmware 1.28) and 1.8.0 (`mip` today).

Against a real mosquitto it publishes, subscribes, delivers, pings; a
refused CONNACK raises MQTTException. Against brokers that say nothing
(a black hole that never answers CONNACK, a broker that goes silent in the
middle of a CONNACK or of a PUBLISH, a path that goes silent after the
connection) every call returns or raises within the timeout, where the
library alone (connect without a timeout, wait_msg's setblocking(True))
would wait forever. The Link against a black hole gives up within its
timeout and tries again.
"""
import inspect
import os
import socket
import sys
import threading
import time

import pytest

from mqtt_env import ROOT, Mosquitto, Watcher, wait_until

sys.path.insert(0, os.path.join(ROOT, "tools", "host"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import simnet  # noqa: E402
import umqtt_host  # noqa: E402

from evse import link as L  # noqa: E402

T = 0.5  # the socket timeout in these tests (the Link's is 5 s)


@pytest.fixture(params=umqtt_host.VERSIONS)
def umqtt(request):
    """The umqtt.simple module of one version; fails (not skips) when
    `make setup` has not put it into build/."""
    msg = umqtt_host.missing(request.param)
    if msg:
        pytest.fail(msg)
    return umqtt_host.load(request.param)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    m = Mosquitto(tmp_path_factory.mktemp("mosquitto-client"))
    yield m
    m.stop()


def _client(umqtt, port, name, got=None, **kw):
    c = L.client_class(umqtt.MQTTClient)(name, "127.0.0.1", port, keepalive=30, **kw)
    c.timeout = T
    c.set_callback(lambda t, m: got.append((t, m)) if got is not None else None)
    return c


def _bounded(fn, limit=T + 1.0):
    """fn() must raise OSError within `limit` seconds."""
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        fn()
    dt = time.monotonic() - t0
    assert dt < limit, dt
    return e.value, dt


def test_the_files_are_micropython_libs_and_the_socket_is_the_adapter(umqtt):
    with open(umqtt_host.path(umqtt.UMQTT_VERSION)) as f:
        src = f.read()
    assert src.startswith("import socket\n")
    with open(os.path.join(os.path.dirname(ROOT), "shared", "vendor", "micropython-lib",
                           "umqtt.simple-" + umqtt.UMQTT_VERSION, "umqtt", "simple.py")) as f:
        assert f.read() == src  # copied as it is (when ../shared is there)
    import mpsocket
    assert umqtt.socket is mpsocket
    assert "timeout" in inspect.signature(umqtt.MQTTClient.connect).parameters


def _scripted(umqtt, script, cid=b"w"):
    """A client connected to a peer that answers CONNECT with CONNACK and
    then sends `script`; returns (client, what it received, peer)."""
    b = Silent(b"\x20\x02\x00\x00" + script)
    got = []
    c = _client(umqtt, b.port, cid, got)
    c.connect(True, T)
    time.sleep(0.2)  # the script is in the client's socket buffer
    return c, got, b


def _peer_read(b, n=4096, wait=2.0):
    """What the scripted peer received after CONNECT (the client's answers)."""
    s = b.conns[-1]
    s.settimeout(wait)
    try:
        return s.recv(n)
    except OSError:
        return b""


def test_wait_msg_reads_mqtt_3_1_1_packets(umqtt):
    """The subclass's wait_msg against bytes laid out as MQTT 3.1.1 says:
    a QoS 0 PUBLISH with a two-byte Remaining Length (200-byte payload), a
    QoS 1 PUBLISH (answered with PUBACK for its packet id), a PINGRESP (None),
    and a SUBACK whose type byte is returned with its body left unread."""
    payload = bytes(range(200))
    topic = b"evse/x/cmd"
    rl = 2 + len(topic) + len(payload)  # 212: two length bytes
    p0 = b"\x30" + bytes((rl & 0x7F | 0x80, rl >> 7)) + b"\x00" + bytes((len(topic),)) + topic + payload
    p1 = b"\x32" + bytes((2 + len(topic) + 2 + 3,)) + b"\x00" + bytes((len(topic),)) + topic + b"\x12\x34" + b"abc"
    c, got, b = _scripted(umqtt, p0 + p1 + b"\xd0\x00" + b"\x90\x03\x00\x01\x00")
    try:
        assert c.wait_msg() == 0x30 and got[-1] == (topic, payload)
        assert c.wait_msg() == 0x32 and got[-1] == (topic, b"abc")
        assert _peer_read(b).endswith(b"\x40\x02\x12\x34")  # PUBACK, same packet id
        assert c.wait_msg() is None  # PINGRESP
        assert c.wait_msg() == 0x90 and c.sock.read(4) == b"\x03\x00\x01\x00"
    finally:
        b.close()


@pytest.mark.parametrize("script", [
    b"\x30\xff\xff\xff\xff\x01",  # a Remaining Length of five bytes
    b"\x34\x07\x00\x01t\x00\x01ab",  # QoS 2, which the charger never asks for
    b"\xd0\x01\x00",  # a PINGRESP with a body
    b"\x30\x03\x00\x05ab",  # a topic longer than the packet
], ids=["length", "qos2", "pingresp", "topic"])
def test_wait_msg_refuses_malformed_packets(umqtt, script):
    """A malformed packet is a protocol error: OSError (the Link reconnects),
    within the timeout, never an assert or a hang."""
    c, got, b = _scripted(umqtt, script, b"m")
    try:
        _bounded(c.wait_msg)
        assert got == []
    finally:
        b.close()


def test_publish_subscribe_retain_will_and_ping(umqtt, broker):
    got = []
    v = umqtt.UMQTT_VERSION.encode()
    c = _client(umqtt, broker.port, b"c1-" + v, got)
    c.set_last_will(b"t/%s/c1/online" % v, b"offline", True, 1)
    assert c.connect(True, T) == 0
    c.subscribe(b"t/%s/x/#" % v, 1)
    c.publish(b"t/%s/x/a" % v, b"one", False, 1)  # returns after its PUBACK
    c.publish(b"t/%s/x/b" % v, "tw\u00f6".encode(), True, 0)
    wait_until(lambda: c.check_msg() is None and len(got) >= 2, 5, "both messages")
    assert sorted(got) == [(b"t/%s/x/a" % v, b"one"), (b"t/%s/x/b" % v, "tw\u00f6".encode())]
    assert c.sock.s.gettimeout() == T  # bounded again after check_msg
    t0 = time.monotonic()
    assert c.check_msg() is None  # nothing there: at once
    assert time.monotonic() - t0 < 0.05
    c.ping()
    assert c.wait_msg() is None  # the PINGRESP
    w = Watcher(broker.port, ["t/%s/c1/online" % v.decode()])
    c.sock.close()  # gone without DISCONNECT: the broker sends the will
    assert w.wait_for(lambda t, x: x == "offline", 5)
    w.close()


def test_refused_connect_raises_mqttexception(umqtt, tmp_path):
    m = Mosquitto(tmp_path, users={"u": "right"})
    try:
        c = _client(umqtt, m.port, b"c2", user=b"u", password=b"wrong")
        with pytest.raises(umqtt.MQTTException) as e:
            c.connect(True, T)
        assert e.value.args[0] in (4, 5)
    finally:
        m.stop()


def test_black_hole_connect_is_bounded_by_the_timeout_and_unbounded_without(umqtt):
    hole = simnet.BlackHole()
    try:
        err, dt = _bounded(lambda: _client(umqtt, hole.port, b"c3").connect(True, T))
        assert isinstance(err, TimeoutError) and dt >= T * 0.9
        # the library's default (timeout=None): waits for the CONNACK forever
        plain = umqtt.MQTTClient(b"c3b", "127.0.0.1", hole.port)
        errors = []

        def run():
            try:
                plain.connect()
            except OSError as e:
                errors.append(e)

        th = threading.Thread(target=run, daemon=True)
        th.start()
        th.join(T * 3)
        assert th.is_alive()
        for s in hole.conns:
            s.close()
        th.join(5)
        assert not th.is_alive() and errors  # the peer went: OSError
    finally:
        hole.close()


class Silent:
    """A broker that reads CONNECT, writes `first` and then says nothing."""

    def __init__(self, first):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.first = first
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            while True:
                s, _ = self.srv.accept()
                self.conns.append(s)
                s.recv(1024)
                s.sendall(self.first)
        except OSError:
            pass

    def close(self):
        for s in self.conns:
            s.close()
        self.srv.close()


def test_broker_silent_in_the_middle_of_connack_or_of_a_publish(umqtt):
    b = Silent(b"\x20")  # CONNACK's first byte only
    try:
        _bounded(lambda: _client(umqtt, b.port, b"c5").connect(True, T))
    finally:
        b.close()
    b = Silent(b"\x20\x02\x00\x00\x30")  # CONNACK, then a PUBLISH's first byte only
    try:
        c = _client(umqtt, b.port, b"c6")
        c.connect(True, T)
        _bounded(c.check_msg)  # umqtt.simple alone: setblocking(True), then forever
        # the library's own wait_msg, for comparison: the socket left unbounded
        plain = umqtt.MQTTClient(b"c6b", "127.0.0.1", b.port)
        plain.set_callback(lambda t, m: None)
        plain.connect(True, T)
        assert plain.sock.s.gettimeout() == T

        def run():
            try:
                plain.check_msg()
            except Exception:
                pass  # released when the broker's side closes

        th = threading.Thread(target=run, daemon=True)
        th.start()
        th.join(T * 3)
        assert th.is_alive() and plain.sock.s.gettimeout() is None  # waits forever
    finally:
        b.close()


def test_path_silent_after_connect_bounds_puback_and_pingresp(umqtt, broker):
    proxy = simnet.LinkProxy("127.0.0.1", broker.port)
    try:
        c = _client(umqtt, proxy.port, b"c4", [])
        c.connect(True, T)
        c.subscribe(b"t/c4", 0)
        c.publish(b"t/x", b"1", False, 1)
        assert c.check_msg() is None  # leaves the socket bounded, not blocking
        proxy.blackhole = True
        err, dt = _bounded(lambda: c.publish(b"t/x", b"2", False, 1))
        assert dt >= T * 0.9
        c.ping()
        _bounded(c.wait_msg)
        proxy.blackhole = False
        proxy.drop()  # the connection is cut
        with pytest.raises(OSError):
            for _ in range(50):  # the first writes may still go into the buffer
                c.publish(b"t/x", b"3", False, 1)
    finally:
        proxy.close()


def test_link_gives_up_on_a_black_hole_within_its_timeout_and_retries(umqtt, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "host_tests", "core_cases"))
    from fakes import Board, Meter

    import evse as ticks
    from evse import config
    from evse.app import App

    hole = simnet.BlackHole()
    halt = threading.Event()
    try:
        cfg = config.validate({"mqtt_host": "127.0.0.1", "mqtt_port": hole.port})
        app = App(Board(), cfg, ticks.ticks_ms(), Meter(), str(tmp_path), backend=True)
        logs = []
        link = L.Link(app, cfg, "bh-" + umqtt.UMQTT_VERSION, mqtt=umqtt, log=logs.append,
                      timeout_s=T, rand=lambda n: 0)
        th = threading.Thread(target=link.run, args=(ticks.sleep_ms, halt.is_set))
        t0 = time.monotonic()
        th.start()
        # attempt 1 times out after T, backoff 0.5 s, attempt 2 times out after T
        wait_until(lambda: link.failures >= 2, 4 * T + 2, "two timed-out attempts")
        assert time.monotonic() - t0 < 4 * T + 1.5
        assert hole.accepted >= 2 and link.client is None
        assert all("TimeoutError" in x and "next attempt" in x for x in logs), logs
    finally:
        halt.set()
        th.join(T + 2)
        hole.close()
    assert not th.is_alive()


class Drip(Silent):
    """After CONNACK, sends `script` one byte every `gap` seconds."""

    def __init__(self, script, gap):
        self.script, self.gap = script, gap
        Silent.__init__(self, b"\x20\x02\x00\x00")

    def _run(self):
        try:
            s, _ = self.srv.accept()
            self.conns.append(s)
            s.recv(1024)
            s.sendall(self.first)
            for i in range(len(self.script)):
                time.sleep(self.gap)
                s.sendall(self.script[i:i + 1])
        except OSError:
            pass


def test_a_drip_fed_publish_is_bounded_as_a_whole(umqtt):
    """A peer that sends a PUBLISH one byte at a time, each byte sooner than
    the socket timeout: the whole packet still has only the timeout (the
    library alone would wait as long as the bytes keep coming)."""
    topic = b"evse/d/cmd"
    body = b"\x00" + bytes((len(topic),)) + topic + b'{"cmd": "pause"}'
    b = Drip(b"\x30" + bytes((len(body),)) + body, T * 0.4)
    try:
        got = []
        c = _client(umqtt, b.port, b"d", got)
        c.connect(True, T)
        c.sock.setblocking(True)
        c.sock.settimeout(T)
        _bounded(c.wait_msg, T * 1.5 + 0.5)  # first byte after 0.4 T, then T for the rest
        assert got == []
    finally:
        b.close()


def test_a_huge_publish_is_read_past_and_the_stream_stays_in_step(umqtt):
    """A 5000-byte command: the callback gets its size, not the bytes, and
    the next packet (a PINGRESP, then a small PUBLISH) is read right."""
    topic = b"evse/h/cmd"
    big = bytes(5000)
    rl = 2 + len(topic) + len(big)
    p0 = (b"\x30" + bytes((rl & 0x7F | 0x80, rl >> 7)) + b"\x00" + bytes((len(topic),))
          + topic + big)
    p1 = b"\x30" + bytes((2 + len(topic) + 2,)) + b"\x00" + bytes((len(topic),)) + topic + b"ok"
    c, got, b = _scripted(umqtt, p0 + b"\xd0\x00" + p1, b"h")
    try:
        assert c.wait_msg() == 0x30 and got == [(topic, 5000)]
        assert c.wait_msg() is None
        assert c.wait_msg() == 0x30 and got[-1] == (topic, b"ok")
    finally:
        b.close()
