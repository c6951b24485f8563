"""The OCPP 1.6J message layer (evse/ocpp.py) against a real central
system: the `ocpp` package (requirements.txt), which validates every
message both ways against the official OCPP 1.6 JSON schemas, on a
`websockets` server on loopback (ws_env.py), the charge point's side
through our WebSocket client (hw/wsock.py over tools/host/mpsocket.py) and
a real App on the fake board (core_cases/fakes.Rig) whose status snapshot
the charge point reads. Time is the Rig's (10 ms control steps): the
BootNotification intervals and the heartbeat run on it, not on sleeps.

The central system records each call it accepted (after the schema check)
and every message it sent; a CALLERROR it sent means one of ours was
refused, and no test expects one unless it says so.
"""
import asyncio
import json
import os
import sys
import time

import pytest
from ocpp.exceptions import NotSupportedError
from ocpp.v16 import call
from ocpp.v16.enums import RegistrationStatus

import mpsocket
from evse import bus as B
from evse import ocpp as O
from evse import ws as W
from hw.wsock import WebSocket
from ocpp_env import LOOP_S, NOW, Env
from ocpp_env import charging_profile as _cs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_cases"))
from fakes import Rig  # noqa: E402

PROTO = b"ocpp1.6"


def _kind(text):
    """The MessageTypeId of a message the central system sent, None for text
    that is not an OCPP-J message (the malformed ones tests send)."""
    try:
        m = json.loads(text)
        return m[0] if isinstance(m, list) and m else None
    except ValueError:
        return None


class Station:
    """The charge point: a Rig's App, our WebSocket client, evse.ocpp. The
    clock (fakes.Clock) moves only when a test moves it, not with the Rig's
    ticks, so the charge point reads it at every use (rebase_ms=0) instead of
    counting on from a reading with the ticks (test_secs_count_on_with_the_ticks)."""

    def __init__(self, env, clock=None, cfg=None, flash=None, **kw):
        self.rig = Rig(clock=clock, cfg=cfg, flash=flash)  # flash: a board's, after a power cut
        self.v = B.fields(len(self.rig.app.bus.snap.v))
        from evse.app import REMOTE_KEYS

        self.cp = O.ChargePoint("OpenEVSE-MPY", "evse-mpy", "SN0001", "0.5.0",
                                lambda n: 0x1234567 % n, clock=clock, cfg=self.rig.app.cfg,
                                remote_keys=REMOTE_KEYS, rebase_ms=0, **kw)
        self.ws = WebSocket(mpsocket, os.urandom, timeout_s=5)
        self.ws.connect(env.server.url("/ocpp/CP1"), PROTO)
        self.cp.connected(self.rig.now)
        self.replies = []  # our answers to the central system's calls
        self.log = []  # ("tx", action, Rig ms) of our CALLs, ("rx", type, Rig ms) of messages
        self.quiet = 0  # steps in a row with no CALL of ours sent or outstanding

    def step(self, ms=100, ev=None):
        """`ms` of the control loop, then the network side once."""
        self.rig.run(ms, ev)
        self.rig.app.bus.snap.read(self.v)
        op = self.ws.poll()
        while op == W.OP_TEXT:
            text = bytes(self.ws.dec.msg[:self.ws.dec.n])
            self.log.append(("rx", _kind(text), self.rig.t))
            reply = self.cp.receive(text, self.rig.now)
            if reply is not None:
                self.replies.append(json.loads(reply))
                self.ws.send_text(reply.encode())
            op = self.ws.poll()
        # the App's side, through the Bus as MQTT's link does
        bus = self.rig.app.bus
        self.cp.journal(self.rig.app.journal.live)
        while self.cp.cmds and bus.cmds.put(self.cp.cmds[0]):
            self.cp.cmds.pop(0)
        while self.cp.acks and bus.acks.put(self.cp.acks[0]):
            self.cp.acks.pop(0)
        r = bus.replies.get()
        while r is not None:
            reply = self.cp.reply(r)
            if reply is not None:
                self.replies.append(json.loads(reply))
                self.ws.send_text(reply.encode())
            r = bus.replies.get()
        out = self.cp.poll(self.v, self.rig.now)
        if out is not None:
            self.ws.send_text(out.encode())
            self.log.append(("tx", json.loads(out)[2], self.rig.t))
            self.quiet = 0
        elif not self.cp.busy(self.rig.now):
            self.quiet += 1
        time.sleep(0.002)  # the server's thread answers

    def sent_at(self, action):
        """Rig ms when each CALL of `action` went, with when the message
        before it came (its answer's predecessor: the last thing received)."""
        out = []
        last_rx = None
        for e in self.log:
            if e[0] == "rx":
                last_rx = e[2]
            elif e[1] == action:
                out.append((e[2], last_rx))
        return out

    def pump(self, until, ms=100, ev=None):
        end = time.monotonic() + LOOP_S
        while not until():
            assert time.monotonic() < end, "pump: the condition never came"
            self.step(ms, ev)

    def settle(self, ev=None, ms=100, first_ms=0):
        """Run `first_ms` (the charger's own timers: X1 3 s, a closing 3 s),
        then until our CALL is answered and nothing more is due."""
        end = self.rig.t + first_ms
        while self.rig.t < end:
            self.step(ms, ev)
        self.quiet = 0
        self.pump(lambda: self.quiet >= 3, ms, ev)


@pytest.fixture
def env():
    e = Env()
    yield e
    if e.station is not None:
        e.station.ws.close()
    e.server.stop()


def statuses(env, connector=1):
    return [(c[1]["status"], c[1]["error_code"]) for c in env.named("StatusNotification")
            if c[1]["connector_id"] == connector]


def test_boot_accepted_then_status_and_heartbeat(env):
    st = env.station = Station(env)
    st.settle("A")
    boot = env.named("BootNotification")
    assert len(boot) == 1
    assert boot[0][1] == {"charge_point_vendor": "OpenEVSE-MPY", "charge_point_model": "evse-mpy",
                          "charge_point_serial_number": "SN0001", "firmware_version": "0.5.0"}
    assert st.cp.registration == O.ACCEPTED and st.cp.heartbeat_ms == 60000
    assert st.cp.time == NOW
    assert statuses(env, 0) == [("Available", "NoError")]
    assert statuses(env) == [("Available", "NoError")]
    # heartbeats at the interval the central system gave, on the Rig's clock
    st.pump(lambda: len(env.named("Heartbeat")) == 2, ms=1000)
    calls = [e for e in st.log if e[0] == "tx"]
    assert [c[1] for c in calls] == ["BootNotification", "StatusNotification",
                                     "StatusNotification", "Heartbeat", "Heartbeat"]
    # each a heartbeat interval (60 s, 1 s steps) after the CALL before it
    assert 60000 <= calls[3][2] - calls[2][2] <= 61000
    assert 60000 <= calls[4][2] - calls[3][2] <= 61000
    assert env.errors_sent() == []


def test_pending_then_rejected_then_accepted_retry_intervals(env):
    env.boot_answers = [(RegistrationStatus.pending, 30), (RegistrationStatus.rejected, 0)]
    st = env.station = Station(env)
    st.pump(lambda: len(env.named("BootNotification")) == 3, ms=500)
    t = st.sent_at("BootNotification")  # (sent, the last answer before) in Rig ms
    assert 30000 <= t[1][0] - t[1][1] <= 30500  # Pending: the interval it gave, from its answer
    assert O.RETRY_MS <= t[2][0] - t[2][1] <= O.RETRY_MS + 500  # Rejected, 0: our own wait
    # nothing but BootNotification before it is Accepted: read on the charge
    # point's own log, in the order it sent (the central system's thread may
    # record the third one after its answer has already let a status go)
    tx = [e for e in st.log if e[0] == "tx"]
    assert [e[1] for e in tx[:3]] == ["BootNotification"] * 3
    st.settle()
    assert st.cp.registration == O.ACCEPTED
    tx = [e[1] for e in st.log if e[0] == "tx"]
    assert "BootNotification" not in tx[3:] and tx[3:]  # the third was the Accepted one
    assert statuses(env) == [("Available", "NoError")]
    assert env.errors_sent() == []


def test_status_through_a_session(env):
    st = env.station = Station(env)
    st.settle("A")
    st.rig.run(2400)  # the charger's X1 time after boot
    st.settle("B", first_ms=1000)  # plugged in: free authorization starts the session, PWM on
    st.settle("C", first_ms=4000)  # the vehicle asks: the contactor closes
    assert st.rig.app.out.contactor
    st.rig.app.command({"cmd": "pause", "id": "p"}, st.rig.now)
    st.settle("C", first_ms=4000)
    st.rig.app.command({"cmd": "resume", "id": "r"}, st.rig.now)
    st.settle("C", first_ms=8000)  # X1 at least 3 s, then PWM, then the closing
    assert st.rig.app.out.contactor
    st.settle("B", first_ms=1000)  # the vehicle is full
    st.rig.app.command({"cmd": "stop", "id": "s"}, st.rig.now)
    st.settle("B", first_ms=1000)
    st.settle("A", first_ms=1000)  # unplugged
    got = statuses(env)
    assert got == [("Available", "NoError"), ("SuspendedEV", "NoError"), ("Charging", "NoError"),
                   ("SuspendedEVSE", "NoError"), ("Charging", "NoError"),
                   ("SuspendedEV", "NoError"), ("Finishing", "NoError"),
                   ("Available", "NoError")], got
    info = [c[1]["info"] for c in env.named("StatusNotification") if c[1]["connector_id"] == 1]
    assert info[:3] == ["IEC A", "IEC B2", "IEC C2"]
    assert env.errors_sent() == []


def test_fault_is_faulted_with_its_error_code(env):
    st = env.station = Station(env)
    st.settle("A")
    st.rig.run(2400)
    st.settle("B", first_ms=1000)
    st.settle("C", first_ms=4000)
    assert st.rig.app.out.contactor
    st.rig.board.rcd = True  # residual current while charging
    st.settle("C", first_ms=500)
    last = env.named("StatusNotification")[-1][1]
    assert (last["status"], last["error_code"], last["vendor_error_code"]) == (
        "Faulted", "GroundFailure", "rcd")
    assert not st.rig.app.out.contactor
    assert env.errors_sent() == []


def test_timestamps_with_a_clock(env):
    from fakes import Clock

    st = env.station = Station(env, clock=Clock(1796205600))  # 2026-12-02T10:00:00Z
    st.settle("A")
    assert [c[1].get("timestamp") for c in env.named("StatusNotification")] == [NOW, NOW]


def test_central_system_calls_answered(env):
    st = env.station = Station(env)
    st.settle("A")
    r = env.csms_call(call.DataTransfer(vendor_id="com.example", data="x"))
    assert r.status == "UnknownVendorId"
    with pytest.raises(NotSupportedError):
        env.csms_call(call.ReserveNow(connector_id=1, expiry_date=NOW, id_tag="T",
                                      reservation_id=1))
    assert st.replies[-1][2] == "NotSupported"
    assert env.errors_sent() == []


def test_malformed_and_unknown_messages(env):
    st = env.station = Station(env)
    st.settle("A")
    raw = [
        ('[2, "u1", "FlyToTheMoon", {}]', [4, "u1", "NotImplemented"]),
        ('[2, "u2", "DataTransfer", []]', [4, "u2", "FormationViolation"]),
        ('[2, "u3", "DataTransfer"]', [4, "u3", "ProtocolError"]),
        ('[2, "u4", "DataTransfer", {"data": "x"}]', [4, "u4", "OccurenceConstraintViolation"]),
        ('[2, "u5", "DataTransfer", {"vendorId": 5}]', [4, "u5", "TypeConstraintViolation"]),
        ('[7, "u6", "Heartbeat", {}]', [4, "u6", "ProtocolError"]),
        ('[2, "u7", "Reset", {}]', [4, "u7", "OccurenceConstraintViolation"]),
        ('[2, "u8", "Reset", {"type": "Warm"}]', [4, "u8", "PropertyConstraintViolation"]),
        ('[2, "u9", "RemoteStopTransaction", {"transactionId": "x"}]',
         [4, "u9", "TypeConstraintViolation"]),
        ('[2, "u10", "RemoteStartTransaction", {"idTag": true}]',
         [4, "u10", "TypeConstraintViolation"]),
        ('[2, "u11", "GetConfiguration", {"key": "HeartbeatInterval"}]',
         [4, "u11", "TypeConstraintViolation"]),
        ('[2, "u12", "ChangeConfiguration", {"key": "HeartbeatInterval"}]',
         [4, "u12", "OccurenceConstraintViolation"]),
        # more keys than GetConfigurationMaxKeys (16)
        (json.dumps([2, "u13", "GetConfiguration", {"key": ["k%d" % i for i in range(17)]}]),
         [4, "u13", "OccurenceConstraintViolation"]),
        # an answer longer than the 2 KB a message may have: a CALLERROR, the link stays up
        (json.dumps([2, "u14", "GetConfiguration", {"key": ["MeterValuesSampledData"] * 16}]),
         [4, "u14", "GenericError"]),
        ('{"not": "a list"}', None),
        ('[2, 17, "Heartbeat", {}]', None),
        ("not json at all [", None),
        ('[3, "nobody-asked", {}]', None),
        ('[4, "nobody-asked", "GenericError", "", {}]', None),
    ]
    for text, want in raw:
        n = len(st.replies)
        bad = st.cp.bad
        env.server.run(env.server.conn(0).send(text))
        st.pump(lambda: len(st.replies) > n or st.cp.bad > bad)
        if want is None:
            assert len(st.replies) == n and st.cp.bad == bad + 1, text
        else:
            assert st.replies[-1][:3] == want, text
            assert len(st.replies[-1]) == 5 and isinstance(st.replies[-1][3], str)
    # still in service: the status goes on
    st.rig.run(2400)
    st.settle("B")
    assert statuses(env)[-1] == ("SuspendedEV", "NoError")


def _plug_and_charge(st, wh_per_step=0):
    st.settle("A")
    st.rig.run(2400)
    st.settle("B", first_ms=1000)
    st.settle("C", first_ms=4000)
    assert st.rig.app.out.contactor


def test_a_whole_transaction(env):
    from fakes import Clock

    clock = Clock(1796205600)
    st = env.station = Station(env, clock=clock, meter_interval_s=10)
    st.rig.meter.energy_wh = 12345
    _plug_and_charge(st)
    start = env.named("StartTransaction")
    assert len(start) == 1
    assert start[0][1] == {"connector_id": 1, "id_tag": "evse-mpy", "meter_start": 12345,
                           "timestamp": NOW}
    assert st.cp._tx[1] == 4711
    for _ in range(25):  # 25 s of charging, 1 kWh
        st.rig.meter.energy_wh += 40
        st.rig.meter.a_ma = 16000
        st.step(1000, "C")
    st.settle("C")  # every CALL sent is answered, so the central system has it
    mv = env.named("MeterValues")
    assert len(mv) >= 2
    # every MeterValueSampleInterval (10 s), 1 s steps, on the Rig's clock when
    # the charge point sent them (the central system's thread may see them later)
    sent = [t for t, _ in st.sent_at("MeterValues")]
    assert len(sent) == len(mv)
    for a, b in zip(sent, sent[1:]):
        assert 10000 <= b - a <= 11000, sent
    sv = mv[0][1]["meter_value"][0]["sampled_value"]
    assert mv[0][1]["transaction_id"] == 4711
    energy = [x for x in sv if x["measurand"] == "Energy.Active.Import.Register"]
    assert energy and energy[0]["unit"] == "Wh" and int(energy[0]["value"]) > 12345
    st.settle("A", first_ms=1000)  # unplugged: the session ends
    st.settle("A", first_ms=2000)
    stop = env.named("StopTransaction")
    assert len(stop) == 1
    assert stop[0][1]["transaction_id"] == 4711
    assert stop[0][1]["meter_stop"] == 12345 + 25 * 40
    assert stop[0][1]["reason"] == "EVDisconnected"
    st.settle("A", first_ms=500)
    assert not [r for r in st.rig.live("s")]  # the record left the journal once confirmed
    assert env.errors_sent() == []


def test_a_transaction_message_refused_goes_again_then_is_given_up(env):
    """OCPP 1.6 4.7: a transaction message the central system failed to
    process (a CALLERROR) goes again, TransactionMessageRetryInterval (60 s)
    x the failures so far later, up to TransactionMessageAttempts (3) tries;
    then it is given up. A StartTransaction and a StopTransaction refused
    once each: the transaction completes with its id and its record leaves
    the journal only once confirmed; a StopTransaction refused three times
    is given up, its record acknowledged (the journal is not held forever)."""
    from fakes import Clock

    st = env.station = Station(env, clock=Clock(1796205600))
    env.refuse = {"StartTransaction": 1, "StopTransaction": 1}
    _plug_and_charge(st)
    st.pump(lambda: len(env.named("StartTransaction")) == 2, ev="C")
    t1, t2 = [c[2] for c in env.named("StartTransaction")]
    assert 60000 <= t2 - t1 <= 62000
    st.settle("C")
    assert st.cp._tx[1] == 4711 and st.rig.app.out.contactor
    st.settle("A", first_ms=1000)
    st.pump(lambda: len(env.named("StopTransaction")) == 2, ev="A")
    s1, s2 = env.named("StopTransaction")
    assert 60000 <= s2[2] - s1[2] <= 62000
    assert s1[1] == s2[1] and s2[1]["transaction_id"] == 4711
    assert st.rig.live("s")  # kept while its StopTransaction is not confirmed
    st.settle("A", first_ms=500)
    assert not st.rig.live("s") and len(env.errors_sent()) == 2
    _, attempts = [(k["key"], k["value"]) for k in env.csms_call(call.GetConfiguration(
        key=["TransactionMessageAttempts"])).configuration_key][0]
    assert attempts == "3"

    env.refuse = {"StopTransaction": 3}
    env.next_tx = 4712
    st.settle("A", first_ms=3000)
    st.settle("B", first_ms=1000)
    st.settle("C", first_ms=4000)
    st.settle("A", first_ms=1000)
    st.pump(lambda: len(env.named("StopTransaction")) == 5, ev="A")
    t = [c[2] for c in env.named("StopTransaction")[2:]]
    assert 60000 <= t[1] - t[0] <= 62000 and 120000 <= t[2] - t[1] <= 122000
    st.settle("A", first_ms=500)
    assert not st.rig.live("s") and st.cp.given_up == 1
    st.settle("A", first_ms=200000)
    assert len(env.named("StopTransaction")) == 5  # given up: not sent a fourth time


def test_remote_start_and_stop(env):
    from fakes import Clock

    env.auth_status = "Invalid"  # the central system starts sessions itself (an app)
    st = env.station = Station(env, clock=Clock(1796205600),
                               cfg={"authorization": "backend"})
    st.settle("A")
    st.rig.run(2400)
    st.settle("B", first_ms=1000)
    assert len(env.named("Authorize")) == 1  # the charge point's own idTag: refused
    assert env.named("StartTransaction") == []  # backend authorization: waits
    r = env.csms_call(call.RemoteStartTransaction(id_tag="TAG1", connector_id=1))
    assert r.status == "Accepted"
    st.settle("C", first_ms=4000)
    assert st.rig.app.out.contactor
    start = env.named("StartTransaction")
    assert len(start) == 1 and start[0][1]["id_tag"] == "TAG1"
    r = env.csms_call(call.RemoteStopTransaction(transaction_id=999))
    assert r.status == "Rejected"  # not ours
    r = env.csms_call(call.RemoteStopTransaction(transaction_id=4711))
    assert r.status == "Accepted"
    st.settle("C", first_ms=500)
    assert st.rig.app.out.duty == 10000 or B.STATES[st.v[B.S_STATE]][1] == "1"  # PWM off
    st.settle("B", first_ms=3000)  # the vehicle stops drawing
    assert not st.rig.app.out.contactor
    stop = env.named("StopTransaction")
    assert len(stop) == 1 and stop[0][1]["reason"] == "Remote"
    assert stop[0][1]["transaction_id"] == 4711
    assert env.errors_sent() == []


def test_a_remote_start_before_the_plug_in_waits_for_the_vehicle_then_lapses(env):
    """RemoteStartTransaction with no vehicle (OCPP 1.6 5.11: Accepted, the
    charge point then waits for one for ConnectionTimeOut, 60 s here): a
    vehicle plugged in 20 s later starts the transaction with that idTag.
    One that comes only after the wait gets the usual Authorize, which the
    central system decides (not a session nobody asked for, nor a charger
    that no longer asks)."""
    from fakes import Clock

    env.auth_status = "Invalid"
    st = env.station = Station(env, clock=Clock(1796205600), cfg={"authorization": "backend"})
    st.settle("A", first_ms=3000)
    r = env.csms_call(call.RemoteStartTransaction(id_tag="TAG1", connector_id=1))
    assert r.status == "Accepted"
    st.settle("A", first_ms=20000)
    st.settle("B", first_ms=1000)
    st.settle("C", first_ms=4000)
    assert st.rig.app.out.contactor and env.named("Authorize") == []
    start = env.named("StartTransaction")
    assert len(start) == 1 and start[0][1]["id_tag"] == "TAG1"
    st.settle("A", first_ms=3000)  # the vehicle leaves: the transaction ends
    assert len(env.named("StopTransaction")) == 1

    r = env.csms_call(call.RemoteStartTransaction(id_tag="TAG2", connector_id=1))
    assert r.status == "Accepted"
    st.settle("A", first_ms=61000)  # no vehicle within ConnectionTimeOut
    st.settle("B", first_ms=3000)
    assert st.rig.app.out.session is None  # the central system says no (Invalid)
    assert len(env.named("Authorize")) == 1 and len(env.named("StartTransaction")) == 1
    assert env.errors_sent() == []


def test_a_remote_start_with_a_tx_profile_limits_its_transaction(env):
    """OCPP 1.6 5.11: a RemoteStartTransaction's chargingProfile (a
    TxProfile) is the transaction's profile once accepted: 10 A here, not
    the installation's 32 A; one of another purpose is Rejected."""
    from fakes import Clock

    st = env.station = Station(env, clock=Clock(1796205600), cfg={"authorization": "backend"})
    env.auth_status = "Invalid"
    st.settle("A", first_ms=3000)
    r = env.csms_call(call.RemoteStartTransaction(
        id_tag="TAG1", connector_id=1, charging_profile=_cs(9, "TxDefaultProfile", 10)))
    assert r.status == "Rejected"
    r = env.csms_call(call.RemoteStartTransaction(
        id_tag="TAG1", connector_id=1, charging_profile=_cs(9, "TxProfile", 10)))
    assert r.status == "Accepted"
    st.settle("B", first_ms=1000)
    assert _offer_settles(st, 10000, 4000) and st.rig.app.out.contactor
    assert st.cp._tx[1] == 4711
    r = env.csms_call(call.GetCompositeSchedule(connector_id=1, duration=60))
    assert [p["limit"] for p in r.charging_schedule["charging_schedule_period"]] == [10.0]
    assert env.errors_sent() == []


def test_start_refused_id_tag_stops_the_session(env):
    from fakes import Clock

    env.tag_status = "Invalid"
    st = env.station = Station(env, clock=Clock(1796205600))
    st.settle("A")
    st.rig.run(2400)
    st.settle("B", first_ms=1000)  # the session starts; the answer to its StartTransaction
    st.settle("C", first_ms=4000)  # refuses it: the session ends, the contactor stays open
    assert not st.rig.app.out.contactor
    assert len(env.named("StartTransaction")) == 1
    assert st.v[B.S_SESSION] == B.NONE
    stop = env.named("StopTransaction")
    assert len(stop) == 1 and stop[0][1]["transaction_id"] == 4711
    assert stop[0][1]["reason"] == "DeAuthorized"  # OCPP 1.6 Reason, 7.43
    assert env.errors_sent() == []


def test_configuration(env):
    st = env.station = Station(env)
    st.settle("A")
    r = env.csms_call(call.GetConfiguration(key=["HeartbeatInterval", "rcd_test", "nope"]))
    assert r.configuration_key == [{"key": "HeartbeatInterval", "readonly": False,
                                    "value": "60"}]
    assert sorted(r.unknown_key) == ["nope", "rcd_test"]  # safety keys are not shown
    r = env.csms_call(call.GetConfiguration())
    keys = {k["key"] for k in r.configuration_key}
    assert {"HeartbeatInterval", "MeterValueSampleInterval", "max_current_a"} <= keys
    assert {"key": "GetConfigurationMaxKeys", "readonly": True, "value": "16"} in \
        r.configuration_key  # OCPP 1.6 Core, required
    assert env.csms_call(call.ChangeConfiguration(key="HeartbeatInterval",
                                                  value="120")).status == "Accepted"
    assert st.cp.heartbeat_ms == 120000
    assert env.csms_call(call.ChangeConfiguration(key="HeartbeatInterval",
                                                  value="soon")).status == "Rejected"
    assert env.csms_call(call.ChangeConfiguration(key="NumberOfConnectors",
                                                  value="2")).status == "Rejected"
    assert env.csms_call(call.ChangeConfiguration(key="rcd_test",
                                                  value="false")).status == "NotSupported"
    # a REMOTE_KEY goes through the App's set_config (mqtt_remote_config is off here)
    assert env.csms_call(call.ChangeConfiguration(key="max_current_a",
                                                  value="10")).status == "Rejected"
    assert env.errors_sent() == []


def test_reset_and_availability(env):
    st = env.station = Station(env)
    st.settle("A")
    r = env.csms_call(call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert r.status == "Accepted"
    st.settle("A")
    assert statuses(env)[-1] == ("Unavailable", "NoError")
    r = env.csms_call(call.ChangeAvailability(connector_id=1, type="Operative"))
    st.settle("A")
    assert statuses(env)[-1] == ("Available", "NoError")
    r = env.csms_call(call.Reset(type="Soft"))
    assert r.status == "Accepted"
    st.settle("A")
    assert st.rig.app.reboot_requested
    assert env.errors_sent() == []


def _state(rig):
    with open(rig.flash + "/state.json") as f:
        return json.load(f)


def _power_cut(env, st):
    """The board loses its supply: nothing more runs, the socket just goes."""
    st.ws.sock.close()
    env.station = None


def test_power_cut_mid_transaction_stop_names_its_transaction_after_the_boot(env):
    """The transactionId the central system gave is kept with the open
    session (state.json, then the session's record): after a power cut the
    next boot's StopTransaction names it, with reason PowerLoss and the
    meter's reading; no second StartTransaction."""
    from fakes import Clock

    st = env.station = Station(env, clock=Clock(1796205600))
    _plug_and_charge(st)
    st.settle("C")
    start = env.named("StartTransaction")
    assert len(start) == 1 and st.cp._tx[1] == 4711
    st.rig.run(100, "C")  # the App takes (session, 4711) from the acks ring
    assert _state(st.rig)["open"]["ref"] == 4711
    wh = st.rig.meter.energy_wh + 700  # what the meter counted until the cut
    _power_cut(env, st)
    env.next_tx = 4712  # a StartTransaction now would get another id
    st = env.station = Station(env, clock=Clock(1796206200), flash=st.rig.flash)
    st.rig.meter.energy_wh = wh
    st.pump(lambda: env.named("StopTransaction"), ev="C")
    stop = env.named("StopTransaction")[0][1]
    assert stop["transaction_id"] == 4711 and stop["reason"] == "PowerLoss"
    assert stop["meter_stop"] == wh
    assert len(env.named("StartTransaction")) == 1
    st.settle("C")
    assert not st.rig.live("s")  # confirmed: the record left the journal
    assert env.errors_sent() == []


def test_a_remote_started_session_cut_before_its_start_was_answered_keeps_its_id_tag(env):
    """RemoteStartTransaction(TAG1), its StartTransaction sent but not yet
    answered, then a power cut: the next boot sends the session's
    StartTransaction from its record with TAG1 (docs/ocpp.md: the idTag of
    the RemoteStartTransaction that started it), not the charge point's own."""
    from fakes import Clock

    env.auth_status = "Invalid"
    st = env.station = Station(env, clock=Clock(1796205600), cfg={"authorization": "backend"})
    st.settle("A", first_ms=3000)
    assert env.csms_call(call.RemoteStartTransaction(id_tag="TAG1", connector_id=1)).status \
        == "Accepted"
    env.hold = {"StartTransaction"}
    st.pump(lambda: env.named("StartTransaction"), ev="B")
    for _ in range(40):
        st.step(100, "C")
    assert _state(st.rig)["open"]["tag"] == "TAG1"
    _power_cut(env, st)
    env.hold = set()
    st = env.station = Station(env, clock=Clock(1796206200), flash=st.rig.flash,
                               cfg={"authorization": "backend"})
    st.pump(lambda: env.named("StopTransaction"), ev="A")
    tags = [c[1]["id_tag"] for c in env.named("StartTransaction")]
    assert tags == ["TAG1", "TAG1"]  # the unanswered one, then the record's
    st.settle("A")
    assert not st.rig.live("s")


def test_transaction_of_an_offline_boot_goes_start_then_stop_when_the_csms_is_back(env):
    """A session that started and was cut by a power loss while the
    central system was never reachable: at the next boot with a connection
    its StartTransaction goes (the session's start time, meterStart the
    meter's reading then), then its StopTransaction with the transactionId
    that StartTransaction got."""
    from fakes import Clock

    rig = Rig(clock=Clock(1796205600))
    rig.charge(5000)  # no link at all this boot
    assert rig.app.out.contactor and rig.app.out.session is not None
    wh0 = rig.app.start_wh
    rig.run(100, "C")
    wh = rig.meter.energy_wh + 400
    st = env.station = Station(env, clock=Clock(1796209200), flash=rig.flash)
    st.rig.meter.energy_wh = wh
    st.pump(lambda: env.named("StopTransaction"), ev="A")
    start = env.named("StartTransaction")
    stop = env.named("StopTransaction")
    assert len(start) == 1 and len(stop) == 1
    assert start[0][1]["meter_start"] == wh0
    assert start[0][1]["timestamp"].startswith("2026-12-02T10:00")  # when it started
    assert stop[0][1]["transaction_id"] == 4711 and stop[0][1]["meter_stop"] == wh
    assert stop[0][1]["reason"] == "PowerLoss"
    assert [c[0] for c in env.calls].index("StartTransaction") < \
        [c[0] for c in env.calls].index("StopTransaction")
    st.settle("A")
    assert not st.rig.live("s")
    assert env.errors_sent() == []


def test_an_earlier_sessions_start_refused_does_not_stop_the_session_under_way(env):
    """An earlier boot's session (cut by a power loss, the central system
    unreachable) goes from its record at the next connection, while a
    vehicle charges in a new session: an idTagInfo Invalid for the old
    session's StartTransaction ends nothing (that session is over; OCPP 1.6
    StopTransactionOnInvalidId is about the transaction it answers), and
    the session under way goes on charging."""
    from fakes import Clock

    rig = Rig(clock=Clock(1796205600))
    rig.charge(5000)  # no link at all this boot
    rig.run(100, "C")
    env.tag_status = ["Invalid", "Accepted"]  # the old session's, then the new one's
    st = env.station = Station(env, clock=Clock(1796209200), flash=rig.flash)
    st.pump(lambda: len(env.named("StartTransaction")) == 2, ev="C")
    st.settle("C", first_ms=4000)
    stop = env.named("StopTransaction")
    assert len(stop) == 1 and stop[0][1]["reason"] == "PowerLoss"
    assert st.rig.app.out.contactor and st.v[B.S_SESSION] != B.NONE
    assert st.cp._tx is not None and st.cp._tx[0] == st.v[B.S_SESSION]
    assert env.errors_sent() == []


def test_start_answered_after_its_session_ended_then_a_power_cut_is_not_sent_twice(env, tmp_path):
    """The StartTransaction's answer comes only after the vehicle left, so
    the session's record has no transactionId; then the supply goes before
    the StopTransaction is confirmed. The transactionId was kept in
    ocpp.json: the next boot sends the StopTransaction with it, and no
    second StartTransaction (the central system would see two
    transactions). Once confirmed, it leaves ocpp.json."""
    from fakes import Clock
    from hw.ocpp_link import KEPT, OcppLink

    path = str(tmp_path / KEPT)
    st = env.station = Station(env, clock=Clock(1796205600))
    link = OcppLink(st.rig.app, st.cp, st.ws, "ws://x/ocpp/CP1", kept=path)
    env.hold.add("StartTransaction")
    st.settle("A")
    st.rig.run(2400)
    st.pump(lambda: env.named("StartTransaction"), ev="B")  # sent, not answered
    for _ in range(50):
        st.step(100, "C")  # it charges 5 s
    assert st.rig.app.out.contactor and st.cp.busy(st.rig.now)
    st.pump(lambda: st.rig.live("s"), ev="A")  # the vehicle leaves: the record
    rec = json.loads(st.rig.live("s")[0][2])
    assert "ref" not in rec
    env.hold = {"StopTransaction"}  # the StartTransaction is answered now
    st.pump(lambda: env.named("StopTransaction"), ev="A")
    assert st.cp._refs == {rec["rid"]: 4711} and st.cp.dirty
    link._keep(st.cp)  # what the link's pass does when the ChargePoint is dirty
    with open(path) as f:
        assert json.load(f)["refs"] == {rec["rid"]: 4711}
    _power_cut(env, st)  # the StopTransaction is still unanswered
    env.hold = set()
    env.next_tx = 4712  # a second StartTransaction would get another id

    st = env.station = Station(env, clock=Clock(1796206200), flash=st.rig.flash)
    link = OcppLink(st.rig.app, st.cp, st.ws, "ws://x/ocpp/CP1", kept=path)
    link.restore()
    rid = rec["rid"]
    while st.rig.live("s"):  # until the App has the record out of the journal
        assert rid in st.cp._refs  # kept (ocpp.json): a power cut now is not a new start
        st.step(100, "A")
    st.settle("A")
    stops = env.named("StopTransaction")
    assert [c[1]["transaction_id"] for c in stops] == [4711, 4711]
    assert len(env.named("StartTransaction")) == 1
    assert not st.rig.live("s")  # confirmed: the record left the journal
    assert st.cp._refs == {} and st.cp.dirty
    link._keep(st.cp)
    with open(path) as f:
        assert json.load(f)["refs"] == {}
    assert env.errors_sent() == []


def test_secs_count_on_with_the_ticks():
    """ChargePoint.secs(): seconds since 2020 (small ints on a 32-bit port),
    read from the clock and counted on with the ticks for 10 minutes, so
    that the profiles' evaluation every second reads no clock; the clock
    again after that, at a connection, or with the central system's time."""
    from fakes import Clock

    clock = Clock(1796205600)
    cp = O.ChargePoint("V", "M", "", "0", lambda n: 0, clock=clock)
    base = 1796205600 - O.UNIX_2020
    assert 0 < base < 2 ** 30  # a small int on a 32-bit port until 2054
    assert cp.secs(1000) == base
    clock.t += 5  # the clock is read again only later
    assert cp.secs(3500) == base + 2
    assert cp.secs(1000 + 599999) == base + 599
    assert cp.secs(1000 + 600000) == 1796205605 - O.UNIX_2020  # read again
    clock.t = 1796209200
    cp.connected(700000)
    assert cp.secs(700000) == 1796209200 - O.UNIX_2020
    none = O.ChargePoint("V", "M", "", "0", lambda n: 0)
    assert none.secs(0) is None
    none._time({"currentTime": "2026-12-02T10:00:00Z"})  # as a Heartbeat's answer gives it
    assert none.secs(10000) == base + 10


def test_calls_refused_while_the_app_takes_no_commands():
    """A central system calling faster than the App takes commands (the
    Bus full, nothing drained) gets CALLERROR GenericError once 8 wait,
    instead of a list that grows without end; once the commands are taken,
    its calls are accepted again. Replies that never come (lost on a full
    Bus) leave at most 8 CALLs waiting for one: the oldest is forgotten."""
    cp = O.ChargePoint("V", "M", "", "0", lambda n: 0, remote_keys=("max_current_a",),
                       cfg={"max_current_a": 16})
    out = []
    for i in range(12):
        t = cp.receive(json.dumps([2, "rs%d" % i, "RemoteStartTransaction", {"idTag": "T"}]), 0)
        out.append(json.loads(t))
    assert [m[0] for m in out[:8]] == [3] * 8 and [m[2] for m in out[:8]] == \
        [{"status": "Accepted"}] * 8
    assert [m[:3] for m in out[8:]] == [[4, "rs%d" % i, "GenericError"] for i in range(8, 12)]
    assert len(cp.cmds) == 8
    del cp.cmds[:]  # the link moved them to the Bus
    t = json.loads(cp.receive(json.dumps([2, "rs12", "RemoteStartTransaction",
                                          {"idTag": "T"}]), 0))
    assert t == [3, "rs12", {"status": "Accepted"}]
    del cp.cmds[:]
    ids = []
    for i in range(10):  # ChangeConfiguration of a remote key: answered by the App's reply
        assert cp.receive(json.dumps([2, "cc%d" % i, "ChangeConfiguration",
                                      {"key": "max_current_a", "value": "10"}]), 0) is None
        ids.append(cp.cmds.pop()["id"])
    assert len(cp._pending) == 8
    assert cp.reply({"id": ids[0], "ok": True}) is None  # forgotten: the oldest two
    assert cp.reply({"id": ids[1], "ok": True}) is None
    assert json.loads(cp.reply({"id": ids[9], "ok": True})) == [3, "cc9", {"status": "Accepted"}]
    assert json.loads(cp.reply({"id": ids[2], "ok": False})) == [3, "cc2",
                                                                  {"status": "Rejected"}]
    for bad in ({"id": "x"}, {"id": "ocpp-"}, {"id": "ocpp-1x"}, {"id": 5}, {}, None):
        assert cp.reply(bad) is None


def _unreported_sessions(n):
    """n sessions, each cut by a power loss, with no link: the flash folder
    they left, and the Rig of the boot after the last."""
    from fakes import Clock

    rig = Rig(clock=Clock(1796205600))
    flash = rig.flash
    for _ in range(n):
        rig.charge(3000)
        rig = Rig(clock=Clock(1796205600), flash=flash)
        rig.run(100, "A")
    return flash, rig


def test_records_wait_when_the_queue_is_full(env):
    """More old sessions than the queue holds: each goes in order as room
    comes, none is dropped."""
    from fakes import Clock

    flash, rig = _unreported_sessions(6)
    assert len(rig.live("s")) >= 5
    st = env.station = Station(env, clock=Clock(1796209200), flash=flash)
    st.pump(lambda: len(env.named("StopTransaction")) >= 6, ev="A")
    st.settle("A")
    ids = [c[1]["transaction_id"] for c in env.named("StopTransaction")]
    assert len(ids) == 6 and len(env.named("StartTransaction")) == 6
    assert not st.rig.live("s")
    assert env.errors_sent() == []


def test_the_session_under_way_goes_behind_earlier_ones_that_fill_the_queue(env):
    """Four earlier sessions, none reported, fill the queue (a StartTransaction
    and a StopTransaction each) when the central system is back, with a
    vehicle charging in a new session: its StartTransaction waits for a place
    instead of being dropped, and every transaction is reported."""
    from fakes import Clock

    flash, _ = _unreported_sessions(4)
    st = env.station = Station(env, clock=Clock(1796209200), flash=flash)
    st.rig.charge(100)
    st.pump(lambda: len(env.named("StartTransaction")) == 5, ev="C")
    st.settle("C")
    assert len(env.named("StopTransaction")) == 4 and not st.rig.live("s")
    assert st.cp._tx is not None and st.cp._tx[0] == st.v[B.S_SESSION] and st.cp._tx[1] == 4711
    assert st.rig.app.out.contactor and st.cp.bad == 0
    assert env.errors_sent() == []


def test_a_session_begun_before_the_link_was_up_starts_at_its_own_time_and_reading(env):
    """The vehicle plugged in before the first message went (the central
    system unreachable, say), the meter silent at the plug-in and answering
    a few seconds later, and ten minutes of charging: the StartTransaction
    says when the transaction started and the meter's reading then (OCPP 1.6
    StartTransaction.req), so meterStop - meterStart is the session's energy."""
    from fakes import Clock

    clock = Clock(1796205600)
    st = env.station = Station(env, clock=clock)
    m = st.rig.meter
    m.energy_wh = 5000

    def run_s(n, ev):  # the control loop alone, its clock going with it
        for _ in range(n):
            st.rig.run(1000, ev)
            clock.t += 1

    run_s(3, "A")
    m.answering, m.ok = False, None  # silent at the plug-in
    run_s(1, "B")
    run_s(4, "C")
    start_s = 1796205600 + 3
    m.answering = True
    run_s(600, "C")
    m.energy_wh += 500
    st.pump(lambda: env.named("StartTransaction"), ev="C")
    start = env.named("StartTransaction")[0][1]
    assert start["meter_start"] == 5000
    assert start_s <= O.parse_time(start["timestamp"]) <= start_s + 2, start["timestamp"]
    st.settle("A", first_ms=3000)
    stop = env.named("StopTransaction")[0][1]
    assert stop["meter_stop"] - start["meter_start"] == 500
    assert env.errors_sent() == []


def test_a_short_session_over_while_its_start_waited_for_the_meter_is_reported(env):
    """The meter silent from the plug-in on, a 10 s session: its
    StartTransaction was still waiting for the meter's start reading when
    it ended. It goes from the session's record (Start, then Stop with the
    id it got), as one of an earlier boot does; nothing is lost, and a
    Relative TxDefaultProfile limited it from its start meanwhile."""
    from fakes import Clock

    st = env.station = Station(env, clock=Clock(1796205600))
    st.settle("A", first_ms=3000)
    r = env.csms_call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=_cs(
        7, "TxDefaultProfile", 10, kind="Relative", start=None)))
    assert r.status == "Accepted"
    m = st.rig.meter
    m.answering, m.ok = False, None
    offers = []
    for _ in range(10):
        st.step(100, "B")
    for _ in range(100):
        st.step(100, "C")
        if st.rig.app.out.contactor:  # what the vehicle may draw
            offers.append(st.rig.app.out.offer_ma)
    assert env.named("StartTransaction") == [] and offers and max(offers) == 10000
    st.settle("A", first_ms=2000)
    start, stop = env.named("StartTransaction"), env.named("StopTransaction")
    assert len(start) == 1 and len(stop) == 1 and stop[0][1]["transaction_id"] == 4711
    assert start[0][1]["meter_start"] == 0  # no reading at all: 0, as without a meter
    assert not st.rig.live("s") and env.errors_sent() == []


def test_meter_values_unanswered_go_again(env):
    """A MeterValues of the transaction that ran out (no answer within the
    call timeout) goes again, the same sample, before anything newer
    (docs/ocpp.md: transaction messages go in order and again after a
    timeout or a lost connection)."""
    from fakes import Clock

    clock = Clock(1796205600)
    st = env.station = Station(env, clock=clock, meter_interval_s=10)
    _plug_and_charge(st)
    env.hold = {"MeterValues"}
    st.pump(lambda: env.named("MeterValues"), ev="C")
    first = env.named("MeterValues")[0][1]
    for _ in range(O.CALL_TIMEOUT_MS // 100 + 10):  # it runs out; the meter counts on
        st.rig.meter.energy_wh += 1
        st.step(100, "C")
    env.hold = set()
    st.pump(lambda: len(env.named("MeterValues")) >= 2, ev="C")
    assert env.named("MeterValues")[1][1] == first
    assert st.cp.timeouts >= 1


def _drive(rig, link, ms, ev, until=None, each=None):
    """The Rig's control loop and hw/ocpp_link.py's step in turn, 100 ms of
    the Rig at a time, for `ms` and then until `until()`; `each()` before
    every link step."""
    end = time.monotonic() + LOOP_S
    t = rig.t + ms
    while rig.t < t or (until is not None and not until()):
        assert time.monotonic() < end, "not reached"
        rig.run(100, ev)
        if each is not None:
            each()
        link.step()
        time.sleep(0.002)


def test_link_session_with_an_outage_and_basic_auth():
    """hw/ocpp_link.py drives it all: HTTP Basic (security profile 1), the
    central system drops the connection mid-transaction, the link connects
    again (its back-off on the Rig's clock) and the StopTransaction goes
    with the transactionId the central system gave."""
    from fakes import Clock
    from hw.ocpp_link import OcppLink, auth_header

    env = Env(user="CP1", password="s3cret-pass")
    link = None
    try:
        rig = Rig(clock=Clock(1796205600))
        cp = O.ChargePoint("OpenEVSE-MPY", "evse-mpy", "SN0001", "0.5.0", lambda n: 7 % n,
                           clock=Clock(1796205600), meter_interval_s=0)
        ws = WebSocket(mpsocket, os.urandom, timeout_s=5)
        link = OcppLink(rig.app, cp, ws, env.server.url("/ocpp/CP1"),
                        auth_header("CP1", "s3cret-pass"), clock=lambda: rig.now)

        class St:  # what the central system's handlers read
            pass

        env.station = St()
        env.station.rig = rig

        def run(ms, ev, until=None):
            _drive(rig, link, ms, ev, until)

        run(2400, "A", lambda: cp._shown is not None)
        run(1000, "B")
        run(4000, "C", lambda: cp._tx is not None and cp._tx[1] == 4711)
        assert rig.app.out.contactor
        env.server.run(env.server.conn(0).close())  # the outage
        run(500, "C", lambda: not link.up)
        assert link.lost == 1
        rig.meter.energy_wh += 500
        run(1000, "A")  # unplugged while the link is down: the record waits in the journal
        assert rig.live("s")
        run(0, "A", lambda: env.named("StopTransaction"))
        assert link.connects == 2
        stop = env.named("StopTransaction")
        assert len(stop) == 1 and stop[0][1]["transaction_id"] == 4711
        assert stop[0][1]["meter_stop"] == 5500 and stop[0][1]["reason"] == "EVDisconnected"
        assert len(env.named("BootNotification")) == 1
        run(500, "A")
        assert not rig.live("s")
        assert env.errors_sent() == []
    finally:
        if link is not None:
            link.close()
        env.server.stop()


class _SilentWs:
    """hw/wsock.py's WebSocket as the OCPP link uses it, to a central system
    that says nothing: `refuse` fails the connect, `drop` the next poll."""
    refuse = False
    drop = False

    def connect(self, url, protocol, auth):
        if self.refuse:
            raise OSError(113)
        self.drop = False

    def poll(self):
        if self.drop:
            raise OSError(104)
        return 0

    def send_text(self, data):
        pass

    def close(self):
        pass


def test_the_clock_is_set_again_at_a_connection_after_a_week_up():
    """The RTC is set by NTP at a connection, at most every 6 h. A
    connection that stayed up for more than half the ticks' period (a week;
    ticks_ms wraps every 2**30 ms on a board) must not make the next
    connection's check read the last setting as days ahead: it sets the
    clock again."""
    from evse import TICKS_PERIOD, ticks_add
    from hw.ocpp_link import OcppLink

    rig = Rig()
    now = [5000]
    synced = []
    ws = _SilentWs()
    cp = O.ChargePoint("V", "M", "", "0", lambda n: 0)
    link = OcppLink(rig.app, cp, ws, "ws://csms/ocpp/CP1", clock=lambda: now[0],
                    sync_time=lambda: synced.append(now[0]))
    link.step()
    assert link.up and len(synced) == 1
    for _ in range(2):  # a week up (ticks_add takes less than half the period at a time)
        now[0] = ticks_add(now[0], TICKS_PERIOD // 4 + 30000)
        link.step()
    ws.drop = True
    link.step()
    assert not link.up and link.lost == 1
    now[0] = link.next_try
    link.step()
    assert link.up and link.connects == 2
    assert synced == [5000, now[0]]
    now[0] = ticks_add(now[0], 60000)  # and not at once again: 6 h apart
    ws.drop = True
    link.step()
    now[0] = link.next_try
    link.step()
    assert link.connects == 3 and len(synced) == 2


def test_the_link_connects_at_once_when_the_wifi_comes_back_after_a_week():
    """While the Wi-Fi is down the link waits without trying; when it comes
    back after more than half the ticks' period (a week; ticks_ms wraps
    every 2**30 ms on a board), the try due since then goes at once, not
    once the ticks come round days later."""
    from evse import TICKS_PERIOD, ticks_add
    from hw.ocpp_link import OcppLink

    rig = Rig()
    now = [5000]
    wifi = [True]
    ws = _SilentWs()
    ws.refuse = True
    cp = O.ChargePoint("V", "M", "", "0", lambda n: 0)
    link = OcppLink(rig.app, cp, ws, "ws://csms/ocpp/CP1", clock=lambda: now[0],
                    net_ready=lambda: wifi[0])
    link.step()
    assert not link.up and link.failures == 1  # the central system away: a try 2 s on
    wifi[0] = False  # and the Wi-Fi gone for a week
    ws.refuse = False
    for _ in range(2):  # (ticks_add takes less than half the period at a time)
        now[0] = ticks_add(now[0], TICKS_PERIOD // 4 + 30000)
        link.step()
    assert not link.up
    wifi[0] = True
    link.step()
    assert link.up and link.connects == 1


def test_link_refused_without_the_password():
    from hw.ocpp_link import OcppLink, auth_header

    env = Env(user="CP1", password="s3cret-pass")
    try:
        rig = Rig()
        cp = O.ChargePoint("V", "M", "", "0", lambda n: 7 % n)
        link = OcppLink(rig.app, cp, WebSocket(mpsocket, os.urandom, timeout_s=5),
                        env.server.url("/ocpp/CP1"), auth_header("CP1", "wrong-pass"),
                        clock=lambda: rig.now)
        for _ in range(30):
            rig.run(1000, "A")
            link.step()
        assert not link.up and link.connects == 0
        assert 2 <= link.failures <= 6  # backed off: 2 s, 4 s, 8 s, 16 s within 30 s
    finally:
        env.server.stop()


def test_stop_reasons():
    assert O.stop_reason("unplugged") == "EVDisconnected"
    assert O.stop_reason("stop", "Remote") == "Remote"
    assert O.stop_reason("stop", "DeAuthorized") == "DeAuthorized"
    assert O.stop_reason("stop") == "Local"
    assert O.stop_reason("power_loss") == "PowerLoss"
    assert O.stop_reason("reboot") == "Reboot"
    assert O.stop_reason("who knows", "Remote") == "Other"


def test_parse_time():
    for t in (0, 951782400, 1796205600, 4102444799, 1709164800 + 86399):
        assert O.parse_time(O.iso8601(t)) == t
    assert O.parse_time("2026-12-02T10:00:00.123Z") == 1796205600
    assert O.parse_time("yesterday") is None


# ------------------------------------------------------------------ pure
def test_decode():
    assert O.decode('[2, "a", "Heartbeat", {}]') == (O.CALL, "a", "Heartbeat", {})
    assert O.decode(b'[3, "a", {"x": 1}]') == (O.CALLRESULT, "a", {"x": 1}, None)
    assert O.decode('[4, "a", "GenericError", "t", {}]') == (O.CALLERROR, "a", "GenericError", "t")
    assert O.decode('[2, "%s", "Heartbeat", {}]' % ("x" * 37))[:2] == (0, None)
    assert O.decode(b"\xff\xfe")[:2] == (0, None)


def test_iso8601():
    import datetime

    for t in (0, 951782400, 1796205600, 4102444799, 1709164800 + 86399):
        want = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        assert O.iso8601(t) == want


def test_every_fault_has_an_ocpp_error_code():
    from evse.charger import FAULTS
    from ocpp.v16.enums import ChargePointErrorCode

    for _, name in FAULTS:
        assert O.error_code(name) in {e.value for e in ChargePointErrorCode}, name
        assert O.error_code(name) != "OtherError" or name in ("pe", "vent"), name


# ------------------------------------------------------------- simulator
def test_simulator_runs_the_ocpp_link_against_a_central_system(tmp_path):
    """tools/sim.py --realtime --ocpp URL: the scenario's charger talks to
    the `ocpp` package's central system through the proxy. A session with
    its StartTransaction; the scenario cuts the central system off
    mid-session (`broker` down), the vehicle leaves meanwhile; once it is
    back the StopTransaction goes with the transactionId it gave, the
    meter's reading as meterStop, and nothing is sent twice."""
    import subprocess

    from mqtt_env import finish, write_scenario
    from test_sim import SIM, check_iec_timing, check_rules

    env = Env(user="sim-1", password="sim-pass")
    env.station = type("T", (), {})()
    env.station.rig = type("R", (), {"t": 0})()
    try:
        events = [{"t": 0, "ev": "A"}, {"t": 0.3, "ev": "B"}, {"t": 0.8, "ev": "C"},
                  {"t": 4.0, "cmd": {"cmd": "set_current", "amps": 10, "id": "c-1"}},
                  {"t": 5.5, "broker": "down"},
                  {"t": 6.0, "ev": "B"}, {"t": 6.5, "ev": "A"},
                  {"t": 7.0, "broker": "up"}]
        scen = write_scenario(tmp_path, "ocpp-rt", 13, events,
                              {"mqtt_device_id": "sim-1", "meter": "sdm630"})
        trace = tmp_path / "t.jsonl"
        out_path = tmp_path / "out"
        p = subprocess.Popen([sys.executable, SIM, "--scenario", scen, "--trace", str(trace),
                              "--realtime", "--no-live", "--ocpp", env.server.url("/ocpp/")],
                             stdin=subprocess.DEVNULL, stdout=open(out_path, "w"),
                             stderr=subprocess.STDOUT,
                             env=dict(os.environ, EVSE_OCPP_PASSWORD="sim-pass"))
        p.out_path = str(out_path)
        out = finish(p, 60)
    finally:
        env.server.stop()
    assert p.returncode == 0 and "Traceback" not in out, out
    assert "OCPP link: 1 boot(s), 2 connection(s), 1 lost" in out, out
    assert env.server.auth and env.server.auth[0].startswith("Basic ")
    assert [c[1]["charge_point_serial_number"] for c in env.named("BootNotification")] == ["sim-1"]
    start = env.named("StartTransaction")
    stop = env.named("StopTransaction")
    assert len(start) == 1 and len(stop) == 1, (start, stop)
    assert stop[0][1]["transaction_id"] == 4711 and stop[0][1]["reason"] == "EVDisconnected"
    assert stop[0][1]["meter_stop"] > start[0][1]["meter_start"]  # the meter counted the charge
    assert env.errors_sent() == []
    rows = [json.loads(s) for s in trace.read_text().splitlines()]
    replies = [r for row in rows for r in row.get("replies", ())]
    assert replies == [{"id": "c-1", "ok": True}], replies  # a local command, in-process
    assert any(row["offer_a"] == 10.0 for row in rows if row["t"] >= 4.5)
    notes = [n for row in rows for n in row.get("notes", ())]
    assert len([n for n in notes if n == "ocpp: connected"]) == 2, notes
    scen_n = {"duration_ms": 13000}
    check_rules(rows, scen_n)
    check_iec_timing(rows, scen_n)


def test_simulator_refuses_ocpp_without_realtime_or_with_a_broker(tmp_path):
    import subprocess

    from mqtt_env import write_scenario
    from test_sim import SIM

    scen = write_scenario(tmp_path, "x", 1, [{"t": 0, "ev": "A"}])
    for extra, needle in (([], "--ocpp needs --realtime"),
                          (["--realtime", "--broker", "127.0.0.1:1883"], "two backends"),
                          (["--realtime", "--micropython"], "runs in CPython")):
        r = subprocess.run([sys.executable, SIM, "--scenario", scen, "--trace",
                            str(tmp_path / "t.jsonl"), "--ocpp", "ws://127.0.0.1:9/ocpp/"]
                           + extra, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_authorize_decides_with_backend_authorization(env):
    """authorization "backend": the plug-in sends Authorize for the charge
    point's idTag, once per plug-in; Invalid leaves the vehicle waiting,
    Accepted starts the session (StartTransaction with that idTag)."""
    env.auth_status = "Invalid"
    st = env.station = Station(env, cfg={"authorization": "backend"})
    st.settle("A")
    st.rig.run(2400)
    st.settle("B", first_ms=1000)
    auth = env.named("Authorize")
    assert len(auth) == 1 and auth[0][1]["id_tag"] == "evse-mpy"
    st.settle("B", first_ms=3000)
    assert st.rig.app.out.session is None and len(env.named("Authorize")) == 1
    assert env.named("StartTransaction") == []
    st.settle("A", first_ms=500)
    env.auth_status = "Accepted"
    st.settle("B", first_ms=1000)
    assert len(env.named("Authorize")) == 2
    assert st.rig.app.out.session is not None
    start = env.named("StartTransaction")
    assert len(start) == 1 and start[0][1]["id_tag"] == "evse-mpy"
    assert env.errors_sent() == []


def test_no_authorize_with_free_authorization(env):
    st = env.station = Station(env)
    st.settle("A")
    st.rig.run(2400)
    st.settle("B", first_ms=1000)
    assert env.named("Authorize") == [] and st.rig.app.out.session is not None


# --------------------------------------------------------- smart charging
def _offer_settles(st, ma, ms=6000):
    """The offer the charger settles on (a raise waits its 5 s, IEC 61851-1 and docs/charger.md)."""
    st.settle("C", first_ms=ms)
    return st.rig.app.out.offer_ma == ma


def test_charging_profiles_lower_and_raise_the_offer(env):
    """SetChargingProfile's composite limit feeds the charger's limit chain:
    TxDefaultProfile 10 A lowers the 32 A offer; ChargePointMaxProfile 8 A
    caps it; a TxProfile of this transaction (16 A, higher stack level)
    overrides the default once the cap is cleared; a period of 0 A stops
    the offer at its time; clearing every profile gives the installation's
    maximum back. Every limit goes as a set_current with a ttl_s, renewed,
    so that a dead link falls back as with any backend."""
    from fakes import Clock

    clock = Clock(1796205600)  # NOW
    st = env.station = Station(env, clock=clock)
    _plug_and_charge(st)
    st.settle("C")
    assert st.cp._tx[1] == 4711 and st.rig.app.out.offer_ma == 32000
    r = env.csms_call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=_cs(
        1, "TxDefaultProfile", 10)))
    assert r.status == "Accepted"
    assert _offer_settles(st, 10000, 1500)  # lower: at once
    lim, left, paused = st.rig.app.charger.backend_state()
    assert lim == 10000 and 0 < left <= 180000 and not paused
    r = env.csms_call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=_cs(
        2, "ChargePointMaxProfile", 8)))
    assert r.status == "Accepted" and _offer_settles(st, 8000, 1500)
    r = env.csms_call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=_cs(
        3, "TxProfile", 16, stack=1, transactionId=4711)))
    assert r.status == "Accepted" and _offer_settles(st, 8000, 1500)  # the cap holds
    r = env.csms_call(call.GetCompositeSchedule(connector_id=1, duration=3600))
    assert r.status == "Accepted"
    assert [(p["start_period"], p["limit"]) for p in
            r.charging_schedule["charging_schedule_period"]] == [(0, 8.0)]
    r = env.csms_call(call.ClearChargingProfile(charging_profile_purpose="ChargePointMaxProfile"))
    assert r.status == "Accepted" and _offer_settles(st, 16000)  # the TxProfile, not the default
    r = env.csms_call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=_cs(
        4, "TxProfile", None, stack=2, transactionId=4711,
        periods=[{"startPeriod": 0, "limit": 16}, {"startPeriod": 600, "limit": 0}])))
    assert r.status == "Accepted"
    r = env.csms_call(call.GetCompositeSchedule(connector_id=1, duration=1200,
                                                charging_rate_unit="W"))
    assert [(p["start_period"], p["limit"]) for p in
            r.charging_schedule["charging_schedule_period"]] == [(0, 16 * 690.0), (600, 0.0)]
    clock.t += 600  # the 0 A period
    assert _offer_settles(st, 0, 1500)
    assert st.rig.app.charger.backend_state()[0] == 0
    r = env.csms_call(call.ClearChargingProfile())
    assert r.status == "Accepted"
    assert _offer_settles(st, 32000, 9000)  # X1 3 s, then the PWM again
    assert st.rig.app.charger.backend_state()[:2] == (32000, None)  # no ttl: no limit
    assert env.errors_sent() == []


def test_clearing_the_last_profile_with_a_fractional_maximum_keeps_the_loop_running(env):
    """max_current_a may be any number from 6 to 80 (16.5 A here): once the
    last profile is cleared, the installation's maximum goes back as a
    whole number of mA; before, 16500.0 reached the charger's int snapshot
    and the control step raised (on a board: safe state, watchdog reset)."""
    from fakes import Clock

    st = env.station = Station(env, clock=Clock(1796205600), cfg={"max_current_a": 16.5})
    _plug_and_charge(st)
    st.settle("C")
    assert st.rig.app.out.offer_ma == 16500
    r = env.csms_call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=_cs(
        1, "TxDefaultProfile", 10)))
    assert r.status == "Accepted" and _offer_settles(st, 10000, 1500)
    r = env.csms_call(call.ClearChargingProfile())
    assert r.status == "Accepted" and _offer_settles(st, 16500)
    assert st.rig.app.out.contactor and st.rig.app.charger.backend_state()[:2] == (16500, None)


def test_a_limit_command_of_the_firmware_is_checked_like_a_backend_one():
    """evse/commands.py: a Command the firmware makes (the profiles' limit)
    with amps or a ttl that is not an int is refused, so it never reaches
    the charger's int snapshot."""
    from evse.commands import Command, CommandError, parse

    assert parse(Command("set_current", "x", 16000, None)).amps_ma == 16000
    for ma, ttl in ((16500.0, None), (16000, 1.5), ("16000", None)):
        with pytest.raises(CommandError):
            parse(Command("set_current", "x", ma, ttl))


def test_a_profile_that_expires_gives_the_offer_back(env):
    from fakes import Clock

    clock = Clock(1796205600)
    st = env.station = Station(env, clock=clock)
    _plug_and_charge(st)
    st.settle("C")
    r = env.csms_call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=_cs(
        7, "TxDefaultProfile", 12, kind="Relative", start=None,
        chargingSchedule={"chargingRateUnit": "A", "duration": 300,
                          "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 12}]})))
    assert r.status == "Accepted" and _offer_settles(st, 12000, 1500)
    clock.t += 400  # the schedule's 300 s from the transaction's start are over
    assert _offer_settles(st, 32000)
    assert env.errors_sent() == []


def test_a_relative_default_profile_limits_before_the_start_transaction_is_answered(env):
    """A Relative TxDefaultProfile runs from the transaction's start: a
    transaction charges before its StartTransaction is answered (the answer
    may take the call timeout, or a reconnection), and the profile limits it
    from its start all the same."""
    from fakes import Clock

    clock = Clock(1796205600)
    st = env.station = Station(env, clock=clock)
    st.settle("A")
    r = env.csms_call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=_cs(
        7, "TxDefaultProfile", 10, kind="Relative", start=None)))
    assert r.status == "Accepted"
    env.hold = {"StartTransaction"}
    st.rig.run(2400)
    st.pump(lambda: env.named("StartTransaction"), ev="B")
    offers = []
    for _ in range(100):  # 10 s of charging, its StartTransaction unanswered
        st.step(100, "C")
        offers.append(st.rig.app.out.offer_ma)
    assert st.cp._tx[1] is None and st.rig.app.out.contactor
    assert 0 < max(offers) <= 10000, max(offers)
    env.hold = set()
    st.settle("C")
    assert st.cp._tx[1] == 4711 and st.rig.app.out.offer_ma == 10000


def test_charging_profiles_refused(env):
    st = env.station = Station(env)
    st.settle("A")
    for connector, cs in (
            (1, _cs(1, "TxProfile", 10)),  # no transaction
            (1, _cs(1, "ChargePointMaxProfile", 10)),  # for connector 0 only
            (1, _cs(1, "TxDefaultProfile", None, periods=[{"startPeriod": 10, "limit": 6}])),
            (1, _cs(1, "TxDefaultProfile", None, periods=[{"startPeriod": 0, "limit": 6},
                                                          {"startPeriod": 0, "limit": 7}])),
            (1, _cs(1, "TxDefaultProfile", 10, start=None)),  # Absolute needs its start
            (1, _cs(1, "TxDefaultProfile", 10, kind="Recurring")),  # no recurrencyKind
            (2, _cs(1, "TxDefaultProfile", 10))):  # no such connector
        r = env.csms_call(call.SetChargingProfile(connector_id=connector,
                                                  cs_charging_profiles=cs))
        assert r.status == "Rejected", cs
    assert env.csms_call(call.ClearChargingProfile(id=99)).status == "Unknown"
    r = env.csms_call(call.GetConfiguration(key=["SupportedFeatureProfiles",
                                                 "ChargingScheduleMaxPeriods"]))
    got = {k["key"]: k["value"] for k in r.configuration_key}
    assert got == {"SupportedFeatureProfiles": "Core,SmartCharging",
                   "ChargingScheduleMaxPeriods": "24"}
    sched = '{"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": %s}]}'
    prof = ('{"chargingProfileId": %s, "stackLevel": 0, "chargingProfilePurpose": '
            '"TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": %s}')
    raw = [
        ('[2, "c1", "SetChargingProfile", {"connectorId": 1}]', "OccurenceConstraintViolation"),
        ('[2, "c2", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": %s}]'
         % (prof % ('"x"', sched % 6)), "TypeConstraintViolation"),
        ('[2, "c3", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": %s}]'
         % (prof % (1, sched % -1)), "PropertyConstraintViolation"),
        ('[2, "c4", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": []}]',
         "TypeConstraintViolation"),
        ('[2, "c5", "GetCompositeSchedule", {"connectorId": 1}]', "OccurenceConstraintViolation"),
        ('[2, "c6", "ClearChargingProfile", {"id": "all"}]', "TypeConstraintViolation"),
    ]
    for text, code in raw:
        n = len(st.replies)
        env.server.run(env.server.conn(0).send(text))
        st.pump(lambda: len(st.replies) > n)
        assert st.replies[-1][0] == 4 and st.replies[-1][2] == code, (text, st.replies[-1])
    assert st.cp.sc is None or st.cp.sc.profiles == []
    assert env.errors_sent() == []


def test_composite_limits_pure():
    from evse.ocpp_sc import Profiles

    t0 = 1796205600 - O.UNIX_2020  # 2026-12-02T10:00:00Z, a Wednesday, as s since 2020
    sc = Profiles()
    day = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
           "chargingProfileKind": "Recurring", "recurrencyKind": "Daily",
           "chargingSchedule": {"chargingRateUnit": "W", "startSchedule": "2026-12-01T00:00:00Z",
                                "chargingSchedulePeriod": [
                                    {"startPeriod": 0, "limit": 11040},  # 16 A x 3 x 230 V
                                    {"startPeriod": 17 * 3600, "limit": 4140, "numberPhases": 1},
                                    {"startPeriod": 22 * 3600, "limit": 22080}]}}
    assert sc.set(1, day, None) == "Accepted"
    assert sc.limit_a(t0, None, None, 3) == 16  # 10:00
    # 18:00, numberPhases 1: the charger supplies three phases all the same, so
    # 4140 W are 6 A on each (not 18 A, 12.4 kW on three)
    assert sc.limit_a(t0 + 8 * 3600, None, None, 3) == 6
    assert sc.limit_a(t0 + 13 * 3600, None, None, 3) == 32  # 23:00
    assert sc.limit_a(t0 + 24 * 3600, None, None, 3) == 16  # the next day, 10:00
    assert sc.limit_a(t0, None, None, 1) == 48  # one phase wired: W over 230 V
    cap = {"chargingProfileId": 2, "stackLevel": 0, "chargingProfilePurpose":
           "ChargePointMaxProfile", "chargingProfileKind": "Absolute",
           "validTo": "2026-12-02T12:00:00Z",
           "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": "2026-12-02T09:00:00Z",
                                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}
    assert sc.set(0, cap, None) == "Accepted"
    assert sc.limit_a(t0, None, None, 3) == 10
    assert sc.limit_a(t0 + 2 * 3600, None, None, 3) == 16  # the cap's validTo passed
    # 10:00 the cap, 12:00 its end, 17:00 the evening period; 22:00 is the window's end
    assert sc.schedule(t0, 12 * 3600, None, None, 3, 32) == [(0, 10), (2 * 3600, 16),
                                                               (7 * 3600, 6)]
    assert sc.schedule(t0, 13 * 3600, None, None, 3, 32)[-1] == (12 * 3600, 32)
    # the same stack level and purpose replaces; the highest stack level wins
    low = dict(cap, chargingProfileId=3, stackLevel=0)
    low["chargingSchedule"] = dict(cap["chargingSchedule"], chargingSchedulePeriod=[
        {"startPeriod": 0, "limit": 20}])
    assert sc.set(0, low, None) == "Accepted" and len(sc.profiles) == 2
    assert sc.limit_a(t0, None, None, 3) == 16  # the cap is 20 now, the default 16
    assert sc.clear(pid=1) and sc.limit_a(t0, None, None, 3) == 20
    assert not sc.clear(pid=1)


def test_smart_charging_keys_say_the_limits_evse_ocpp_sc_keeps():
    """evse/ocpp.py writes the limits as text (so that GetConfiguration does
    not load evse/ocpp_sc.py); they must be the ones the profiles keep."""
    from evse import ocpp_sc as SC

    cp = O.ChargePoint("V", "M", "", "0", lambda n: 0)
    assert cp._config_value("ChargeProfileMaxStackLevel") == str(SC.MAX_STACK)
    assert cp._config_value("ChargingScheduleMaxPeriods") == str(SC.MAX_PERIODS)
    assert cp._config_value("MaxChargingProfilesInstalled") == str(SC._MAX_PROFILES)


# ------------------------------------------- Firmware Management (issue 15/16)
def test_update_firmware_downloads_stages_and_reports_each_step(tmp_path):
    """UpdateFirmware from the central system: the link hands `location` to
    the board's update (evse/ota.py Runner, the bundle over HTTP from a real
    server, host_tests/http_env.py) once retrieveDate has come, and reports
    FirmwareStatusNotification Downloading, Downloaded, then Installing when
    the switch begins (no vehicle); a location that is not there gives
    DownloadFailed. OCPP 1.6 sections 4.5 and 5.16; the `ocpp` package
    checks every message against the schemas."""
    from fakes import Clock
    from hw import fetch as F
    from hw.ocpp_link import OcppLink
    from evse import ota
    from http_env import FileServer
    from test_ota import bundle, flash, main_py_boot

    root = flash(tmp_path / "flash")
    www = tmp_path / "www"
    www.mkdir()
    (www / "u.evu").write_bytes(bundle())
    srv = FileServer(www)
    env = Env()
    link = None
    try:
        clock = Clock(1796205600)  # 2026-12-02T10:00:00Z, NOW
        rig = Rig(clock=clock)
        cp = O.ChargePoint("OpenEVSE-MPY", "evse-mpy", "SN0001", "0.5.0", lambda n: 7 % n,
                           clock=clock, meter_interval_s=0)
        ws = WebSocket(mpsocket, os.urandom, timeout_s=5)
        link = OcppLink(rig.app, cp, ws, env.server.url("/ocpp/CP1"), clock=lambda: rig.now)

        def start(url, force):
            st = ota.Stager(root, ota.load_key(root), "0.5.0", "linux", 6, force)
            return F.Fetch(mpsocket, url, st, pause_ms=0, timeout_s=5)

        asked = []
        r = ota.Runner(root, rig.app.bus.snap, link, lambda: asked.append(rig.t),
                       lambda: rig.now, lambda a, b: a - b, start)
        link.ota = r

        class St:
            pass

        env.station = St()
        env.station.rig = rig

        def each():
            clock.t = 1796205600 + rig.t // 1000  # the RTC runs with the Rig
            link.ota.step()  # hw/system.run_all's hook

        def run(ms, ev, until=None):
            _drive(rig, link, ms, ev, until, each)

        def csms(payload, ev):
            fut = asyncio.run_coroutine_threadsafe(env.csms.call(payload), env.server.loop)
            run(0, ev, fut.done)
            return fut.result(0)

        def fw():
            return [c[1]["status"] for c in env.named("FirmwareStatusNotification")]

        run(2400, "A", lambda: cp._shown is not None)
        run(4000, "C", lambda: rig.app.out.contactor)
        later = "2026-12-02T10:01:00Z"  # a minute on: nothing before it
        assert csms(call.UpdateFirmware(location=srv.url("/files/u.evu"), retrieve_date=later),
                    "C") is not None
        run(30000, "C")
        assert fw() == [] and srv.paths == []
        run(0, "C", lambda: len(fw()) >= 2)
        assert fw() == ["Downloading", "Downloaded"] and rig.app.out.contactor
        run(3000, "C")
        assert asked == []  # charging: no switch
        run(0, "A", lambda: asked)
        run(0, "A", lambda: len(fw()) >= 3)
        assert fw() == ["Downloading", "Downloaded", "Installing"]
        assert main_py_boot(root) == (1, 1)  # the reset boots it on trial

        # a location that is not there: DownloadFailed
        r2 = ota.Runner(flash(tmp_path / "flash2"), rig.app.bus.snap, link, lambda: None,
                        lambda: rig.now, lambda a, b: a - b, start)
        link.ota = r2
        link._fw_phase = link._fw_result = -1  # a new Runner: a first look again
        csms(call.UpdateFirmware(location=srv.url("/files/none.evu"), retrieve_date=NOW), "A")
        run(0, "A", lambda: len(fw()) >= 5)
        assert fw()[3:] == ["Downloading", "DownloadFailed"]
        assert env.errors_sent() == []
    finally:
        if link is not None:
            link.close()
        env.server.stop()
        srv.stop()


def test_intervals_and_profiles_set_by_the_csms_outlive_a_reboot(env, tmp_path):
    """MeterValueSampleInterval from ChangeConfiguration and the
    ChargePointMaxProfile and TxDefaultProfile profiles are kept in
    ocpp.json (hw/ocpp_link.py, written atomically when they change) and
    are in force again after a reboot, before the central system sends
    anything: the charger caps its offer at once. A TxProfile is not kept
    (it ends with its transaction, and a reboot ends that); a cleared
    profile is gone from the file; a file that cannot be read gives the
    defaults and never stops the link."""
    from fakes import Clock
    from hw.ocpp_link import KEPT, OcppLink

    path = str(tmp_path / KEPT)
    clock = Clock(1796205600)  # NOW
    st = env.station = Station(env, clock=clock)
    link = OcppLink(st.rig.app, st.cp, st.ws, "ws://x/ocpp/CP1", kept=path)
    _plug_and_charge(st)
    st.settle("C")
    r = env.csms_call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="30"))
    assert r.status == "Accepted"
    cap = _cs(1, "ChargePointMaxProfile", 8)
    dflt = _cs(2, "TxDefaultProfile", 10, stack=1)
    for c, cs in ((0, cap), (1, dflt), (1, _cs(3, "TxProfile", 16, stack=2, transactionId=4711)),
                  (1, _cs(4, "TxDefaultProfile", 12, stack=3))):
        assert env.csms_call(call.SetChargingProfile(connector_id=c,
                                                     cs_charging_profiles=cs)).status == "Accepted"
    assert env.csms_call(call.ClearChargingProfile(id=4)).status == "Accepted"
    assert st.cp.dirty
    link._keep(st.cp)  # what the link's pass does when the ChargePoint is dirty
    assert not st.cp.dirty
    with open(path) as f:
        kept = json.load(f)
    assert kept == {"HeartbeatInterval": 60, "MeterValueSampleInterval": 30,
                    "profiles": [[0, cap], [1, dflt]], "refs": {}}
    st.ws.close()

    # the reboot: a new App on the same flash (the session was cut), a new ChargePoint
    st2 = env.station = Station(env, clock=clock, flash=st.rig.flash, meter_interval_s=60)
    link2 = OcppLink(st2.rig.app, st2.cp, st2.ws, "ws://x/ocpp/CP1", kept=path)
    link2.restore()
    assert st2.cp.meter_ms == 30000 and not st2.cp.dirty
    assert sorted(q[0] for q in st2.cp.sc.profiles) == [1, 2]
    _plug_and_charge(st2)
    assert _offer_settles(st2, 8000, 1500)  # the cap, without the central system resending it
    assert env.errors_sent() == []
    st2.ws.close()

    with open(path, "w") as f:
        f.write('{"MeterValueSampleInterval": "soon", "profiles": [[1, {"x": 1}], 7]')
    lines = []
    st3 = env.station = Station(env, clock=clock)
    link3 = OcppLink(st3.rig.app, st3.cp, st3.ws, "ws://x/ocpp/CP1", kept=path, log=lines.append)
    link3.restore()
    assert st3.cp.meter_ms == 60000 and st3.cp.sc is None
    assert len(lines) == 1 and "not read" in lines[0]
    with open(path, "w") as f:  # JSON, but nothing in it this version can take
        f.write('{"MeterValueSampleInterval": "soon", "HeartbeatInterval": 0, '
                '"profiles": [[1, {"x": 1}], 7, [0, ' + json.dumps(cap) + ']]}')
    link3.restore()
    assert (st3.cp.meter_ms, st3.cp.heartbeat_ms) == (60000, 60000 * 5)
    assert [q[0] for q in st3.cp.sc.profiles] == [1]  # the one good profile
    st3.ws.close()
