"""Heap allocation of the OCPP link's step (hw/ocpp_link.py with
evse/ocpp.py), measured inside real MicroPython (the unix port, its socket,
hw/wsock.py) against a real central system (the `ocpp` package, started by
test_micropython_ocpp_alloc.py):

    MICROPYPATH=firmware:host_tests/core_cases micropython \\
        host_tests/core_cases/ocpp_alloc.py ws://127.0.0.1:PORT/ocpp/CP1

The App (the core cases' rig) and the link run in this one thread, the
App's ticks outside the measured windows. Prints `ALLOC <window> <bytes>
<steps>` for each, measured after a warm-up pass: `idle` registered, the
status confirmed, nothing due; `charging_idle` a transaction running, the
snapshot changing every tick, between two messages; `profile_idle` the
same with a charging profile in force (its limit evaluated every second);
`heartbeat` one Heartbeat and its answer (JSON text: allocates, printed).
Each window's steps are 5 ms apart, so that it spans real time as the
link's own pace does (its evaluations run by the clock).
"""
import gc
import os
import socket
import sys
import time

from evse import ocpp as O
from evse import ticks_add, ticks_ms
from hw.net import clock
from hw.ocpp_link import OcppLink, rand_below
from hw.wsock import WebSocket

from fakes import Rig

URL = sys.argv[1]


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


rig = Rig(cfg={"max_current_a": 16})
cp = O.ChargePoint("evse-mpy", "alloc", "SN1", "0.5.0", rand_below, cfg=rig.app.cfg,
                   meter_interval_s=3600, clock=clock)  # the board's clock, as hw/ocpp_link.make
link = OcppLink(rig.app, cp, WebSocket(socket, os.urandom), URL)


def until(pred, what, n=3000):
    for _ in range(n):
        rig.run(10)
        w = link.step()
        if pred():
            return
        if w > 0:
            time.sleep_ms(w if w < 5 else 5)
    fail("%s: not reached (up %s, registration %s)" % (what, link.up, cp.registration))


until(lambda: cp.registration == O.ACCEPTED and cp._cp0 and cp._shown is not None
      and not cp.busy(ticks_ms()), "accepted, statuses confirmed")


def window(name, steps, setup=None):
    """`steps` link steps 5 ms apart (2 s for 400: the profile's limit is
    evaluated every second), measured after a warm-up pass."""
    for attempt in (0, 1):  # warm-up, then the measured pass
        until(lambda: not cp.busy(ticks_ms()), "no call outstanding before " + name)
        if setup is not None:
            setup()
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        for _ in range(steps):
            link.step()
            time.sleep_ms(5)
        used = gc.mem_alloc() - before
        gc.enable()
        if not link.up:
            fail("%s: the link was lost" % name)
    print("ALLOC %s %d %d" % (name, used, steps))


def heartbeat_due():
    cp._sent_at = ticks_add(ticks_ms(), -cp.heartbeat_ms)


window("idle", 400)
window("heartbeat", 100, heartbeat_due)
rig.charge(3000)  # C2 at 16 A: the snapshot changes every tick (energy, uptime)
until(lambda: cp._tx is not None and cp._tx[1] is not None and not cp._queue
      and not cp.busy(ticks_ms()) and cp._shown is not None and O.status_name(cp._shown) == "Charging",
      "the transaction started, Charging confirmed")
rig.run(10)
window("charging_idle", 400)
print("WAITING profile")  # the test sends SetChargingProfile now
until(lambda: cp.sc is not None and cp._lim is not None, "the profile's limit")
window("profile_idle", 400)
until(lambda: rig.app.out.offer_ma == 10000, "the offer at the profile's 10 A")
print("STATE %s %d" % (rig.app.out.state, rig.app.out.offer_ma))
