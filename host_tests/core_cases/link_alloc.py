"""Heap allocation of the network thread's step, measured inside real
MicroPython (the unix port, with micropython-lib's real umqtt.simple against
a real mosquitto). Run by test_micropython_link_alloc.py:

    MICROPYPATH=firmware:host_tests/core_cases:build/umqtt-<v>
    micropython host_tests/core_cases/link_alloc.py PORT

The App (the core cases' rig: fake board and meter, a real journal) and the
Link run in this one thread, the App's ticks outside the measured windows.
Prints `ALLOC <window> <bytes> <steps>` for each window, measured after a
warm-up pass of the same window (a code path's first run may intern names
once): `waiting_ack` a record published and waiting for the backend's
confirmation, `idle` connected with nothing to send (no command, no status
due, no vehicle, the journal empty after the confirmation), `ping` a keepalive PINGREQ and its PINGRESP, `status` one status
publication, `charging_idle` a vehicle charging between two publications.
"""
import gc
import sys

from evse import link as L
from evse import ticks_add, ticks_ms

from fakes import Rig

PORT = int(sys.argv[1])
CFG = {"mqtt_host": "127.0.0.1", "mqtt_port": PORT, "mqtt_status_s": 60,
       "mqtt_keepalive_s": 60, "mqtt_telemetry_s": 300, "max_current_a": 16}


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


rig = Rig(cfg=CFG)
link = L.Link(rig.app, rig.cfg, "alloc-%d" % PORT)
for _ in range(200):
    link.step()
    if link.client is not None:
        break
if link.client is None:
    fail("not connected: %s" % link.last_error)
for _ in range(100):  # the boot event out (waiting for the backend), the status out
    rig.run(10)
    link.step()
    if link.unconfirmed() and link._status_at is not None:
        break
if not link.unconfirmed():
    fail("the boot event was not published")


def window(name, steps, setup=None):
    for attempt in (0, 1):  # warm-up, then the measured pass
        if setup is not None:
            setup()
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        for _ in range(steps):
            link.step()
        used = gc.mem_alloc() - before
        gc.enable()
        if link.client is None:
            fail("%s: the link was lost: %s" % (name, link.last_error))
    print("ALLOC %s %d %d" % (name, used, steps))


def quiet_for_half_the_keepalive():
    back = ticks_add(ticks_ms(), -CFG["mqtt_keepalive_s"] * 500)
    link._rx_at = link._tx_at = back


def status_due():
    link._status_at = ticks_add(ticks_ms(), -CFG["mqtt_status_s"] * 1000)


window("waiting_ack", 400)  # a record published, its confirmation not yet in
# The backend's side: confirm the journal's records on the ack topic, with
# another connection of the same client.
import json  # noqa: E402

import umqtt.simple  # noqa: E402

backend = umqtt.simple.MQTTClient(b"alloc-backend-%d" % PORT, "127.0.0.1", PORT)
backend.connect()
rids = [json.loads(r[2])["rid"] for r in rig.app.journal.live]
backend.publish(link.topics.ack.encode(), json.dumps({"rids": rids}).encode(), False, 1)
backend.disconnect()
for _ in range(100):
    rig.run(10)
    link.step()
    if not rig.app.journal.live:
        break
if rig.app.journal.live:
    fail("the journal did not empty after the backend's confirmation")
window("idle", 400)
window("ping", 1, quiet_for_half_the_keepalive)
window("status", 1, status_due)
rig.charge(3000)  # C2 at 16 A: the snapshot changes every tick (energy, uptime)
link.step()  # the status change and the first telemetry go out
link.step()
window("charging_idle", 400)
print("STATE %s %d" % (rig.app.out.state, rig.app.out.offer_ma))
