"""The host umqtt.simple (tools/host/umqtt/simple.py) is honest: against a
real mosquitto it publishes, subscribes and delivers like umqtt.simple;
blocking calls block (QoS 1 publish until its PUBACK, connect until the
CONNACK), check_msg does not, and a dead connection raises OSError."""
import os
import sys
import threading
import time

import pytest

from mqtt_env import ROOT, Mosquitto, Watcher, wait_until

sys.path.insert(0, os.path.join(ROOT, "tools", "host"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import simnet  # noqa: E402
from umqtt.simple import MQTTClient, MQTTException  # noqa: E402


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    m = Mosquitto(tmp_path_factory.mktemp("mosquitto-client"))
    yield m
    m.stop()


def _client(port, name, got=None):
    c = MQTTClient(name, "127.0.0.1", port, keepalive=30)
    c.set_callback(lambda t, m: got.append((t, m)) if got is not None else None)
    return c


def test_publish_subscribe_retain_and_will(broker):
    got = []
    c = _client(broker.port, "c1", got)
    c.set_last_will(b"t/c1/online", b"offline", True, 1)
    assert c.connect() == 0
    c.subscribe(b"t/#", 1)
    c.publish(b"t/a", b"one", False, 1)  # returns after its PUBACK
    c.publish("t/b", "tw\u00f6", True, 0)
    wait_until(lambda: c.check_msg() is None and len(got) >= 2, 5, "both messages")
    assert sorted(got) == [(b"t/a", b"one"), (b"t/b", "tw\u00f6".encode())]
    t0 = time.monotonic()
    assert c.check_msg() is None  # nothing there: at once
    assert time.monotonic() - t0 < 0.05
    c.ping()
    c.sock.settimeout(5)
    assert c.wait_msg() is None  # the PINGRESP
    w = Watcher(broker.port, ["t/c1/online"])
    c.sock.close()  # gone without DISCONNECT: the broker sends the will
    assert w.wait_for(lambda t, x: x == "offline", 5)
    w.close()


def test_refused_connect_raises_mqttexception(tmp_path):
    m = Mosquitto(tmp_path, users={"u": "right"})
    try:
        c = MQTTClient("c2", "127.0.0.1", m.port, user="u", password="wrong")
        with pytest.raises(MQTTException) as e:
            c.connect()
        assert e.value.args[0] in (4, 5)
    finally:
        m.stop()


def test_blocking_calls_block_and_dead_sockets_raise_oserror(broker):
    hole = simnet.BlackHole()
    try:
        c = MQTTClient("c3", "127.0.0.1", hole.port)
        errors = []

        def run():
            try:
                c.connect()
            except OSError as e:
                errors.append(e)

        th = threading.Thread(target=run, daemon=True)
        th.start()
        th.join(0.5)
        assert th.is_alive()  # waits for a CONNACK that never comes
        for s in hole.conns:
            s.close()
        th.join(5)
        assert not th.is_alive() and errors  # the peer went: OSError
    finally:
        hole.close()
    # QoS 1 waits for the PUBACK: through a proxy that stops forwarding
    proxy = simnet.LinkProxy("127.0.0.1", broker.port)
    try:
        c = _client(proxy.port, "c4", [])
        c.connect()
        c.publish(b"t/x", b"1", False, 1)
        proxy.blackhole = True
        c.sock.settimeout(0.5)
        t0 = time.monotonic()
        with pytest.raises(OSError):
            c.publish(b"t/x", b"2", False, 1)
        assert time.monotonic() - t0 >= 0.45
        proxy.blackhole = False
        proxy.drop()  # the connection is cut
        with pytest.raises(OSError):
            for _ in range(50):  # the first writes may still go into the buffer
                c.publish(b"t/x", b"3", False, 1)
    finally:
        proxy.close()
