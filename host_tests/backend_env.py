"""Helpers for the backend and broker tests: tools/fleet.py's Broker (the
shipped deploy/mosquitto configuration), Postgres and BackendProc, and a
stand-in charger (paho) that speaks the acknowledgement protocol."""
import importlib.util
import json
import os
import sqlite3
import threading
import time

import paho.mqtt.client as paho

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fleet = _load("fleet_tool", "tools/fleet.py")
backend = _load("backend_tool", "tools/backend.py")


class Client:
    """A paho client recording (topic, payload bytes) of what it receives;
    `refused` holds a refused CONNACK's reason."""

    def __init__(self, port, user, password, client_id=None, topics=(), tls_ca=None,
                 clean=True, sub_qos=1):
        self.msgs = []
        self.cond = threading.Condition()
        self.disconnects = 0
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                             client_id=client_id or "%s-%d" % (user, fleet.free_port()),
                             clean_session=clean)
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls_ca:
            self.c.tls_set(ca_certs=tls_ca)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused = None
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect
        self.topics = list(topics)
        self.sub_qos = sub_qos
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert self.connected.wait(10), "no CONNACK"
        if self.topics and self.refused is None:
            assert self.subscribed.wait(10), "no SUBACK"

    def _on_connect(self, c, u, flags, rc, props=None):
        if rc.is_failure:
            self.refused = str(rc)
        elif self.topics:
            c.subscribe([(t, self.sub_qos) for t in self.topics])
        self.connected.set()

    def _on_disconnect(self, *a):
        self.disconnects += 1

    def _on_message(self, c, u, m):
        with self.cond:
            self.msgs.append((m.topic, bytes(m.payload)))
            self.cond.notify_all()

    def wait_for(self, pred, timeout=10, what="a message"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.msgs:
                    if pred(*m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %.0f s; got %s" % (
                        what, timeout, [(t, p[:80]) for t, p in self.msgs[-20:]]))
                self.cond.wait(left)

    def topics_seen(self):
        with self.cond:
            return [t for t, _ in self.msgs]

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(10)
        return info

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def acked_rids(client):
    out = []
    with client.cond:
        for t, p in client.msgs:
            if t.endswith("/ack"):
                out += json.loads(p)["rids"]
    return out


def session(rid=None, sid=1, **over):
    d = {} if rid is None else {"rid": rid}
    d.update({"id": sid, "boot": 1, "start": 1700000000, "stop": 1700003600, "time": "epoch",
              "meter_start_wh": 1000, "meter_stop_wh": 2000, "energy_wh": 1000,
              "energy_status": "measured", "estimate_wh": None, "peak_a": 16.0,
              "reason": "unplugged", "errors": []})
    d.update(over)
    return d


def event(rid=None, n=1, **over):
    d = {} if rid is None else {"rid": rid}
    d.update({"type": "fault", "code": "rcd", "boot": 1, "n": n, "at": 1700000000,
              "time": "epoch"})
    d.update(over)
    return d


def rows(url, sql):
    if url.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(url) as conn:
            return conn.execute(sql).fetchall()
    conn = sqlite3.connect(url[len("sqlite:///"):], timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
