"""The `ocpp` package (requirements.txt) as a central system on a real
WebSocket server on loopback (ws_env.py), for the tests and the benchmarks
that run the charge point's OCPP side against it: it validates every
message both ways against the official OCPP 1.6 JSON schemas.

    env = Env(user="CP1", password="pw")   # ws_env.Server's keywords
    env.server.url("/ocpp/CP1")             # where the charge point connects
    env.station = ...                       # what the handlers read: .rig.t, .pump(done)
    env.csms_call(call.Reset(type="Soft"))  # the central system calls, the station pumps
    env.named("StatusNotification")         # the calls it accepted, in order
    env.server.stop()

The central system records each call it accepted (after the schema check)
in `calls` and every message it sent in `sent`; boot_answers, next_tx,
tag_status, auth_status, hold and refuse set what it answers.
"""
import asyncio
import json
import time

from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as CentralSystemSide
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, RegistrationStatus

from ws_env import Server

LOOP_S = 20  # bound of a wait loop in real time (never asserted on)
NOW = "2026-12-02T10:00:00Z"


class Csms(CentralSystemSide):
    def __init__(self, ident, conn, env):
        super().__init__(ident, conn, response_timeout=10)
        self.env = env

    async def _send(self, message):
        self.env.sent.append(json.loads(message))
        await super()._send(message)

    @on(Action.boot_notification)
    def on_boot(self, **kw):
        self.env.calls.append(("BootNotification", kw, self.env.station.rig.t))
        status, interval = (self.env.boot_answers.pop(0) if self.env.boot_answers
                            else (RegistrationStatus.accepted, 60))
        return call_result.BootNotification(current_time=NOW, interval=interval, status=status)

    @on(Action.authorize)
    def on_authorize(self, **kw):
        self.env.calls.append(("Authorize", kw, self.env.station.rig.t))
        return call_result.Authorize(id_tag_info={"status": self.env.auth_status})

    @on(Action.heartbeat)
    def on_heartbeat(self, **kw):
        self.env.calls.append(("Heartbeat", kw, self.env.station.rig.t))
        return call_result.Heartbeat(current_time=NOW)

    @on(Action.status_notification)
    def on_status(self, **kw):
        self.env.calls.append(("StatusNotification", kw, self.env.station.rig.t))
        return call_result.StatusNotification()

    @on(Action.start_transaction)
    async def on_start(self, **kw):
        self.env.calls.append(("StartTransaction", kw, self.env.station.rig.t))
        await self.env.held("StartTransaction")
        self.env.refused("StartTransaction")
        s = self.env.tag_status  # a list: one answer per StartTransaction, the last repeated
        if isinstance(s, list):
            s = s.pop(0) if len(s) > 1 else s[0]
        return call_result.StartTransaction(transaction_id=self.env.next_tx,
                                            id_tag_info={"status": s})

    @on(Action.stop_transaction)
    async def on_stop(self, **kw):
        self.env.calls.append(("StopTransaction", kw, self.env.station.rig.t))
        await self.env.held("StopTransaction")
        self.env.refused("StopTransaction")
        return call_result.StopTransaction()

    @on(Action.meter_values)
    async def on_meter(self, **kw):
        self.env.calls.append(("MeterValues", kw, self.env.station.rig.t))
        await self.env.held("MeterValues")
        self.env.refused("MeterValues")
        return call_result.MeterValues()

    @on(Action.firmware_status_notification)
    def on_firmware(self, **kw):
        self.env.calls.append(("FirmwareStatusNotification", kw, self.env.station.rig.t))
        return call_result.FirmwareStatusNotification()


class Env:
    def __init__(self, **server):
        self.calls = []
        self.sent = []
        self.boot_answers = []
        self.next_tx = 4711
        self.tag_status = "Accepted"
        self.auth_status = "Accepted"
        self.csms = None
        self.station = None
        self.hold = set()  # actions answered only once a test removes them from here
        self.refuse = {}  # action -> how many of its next calls get a CALLERROR InternalError

        async def handler(ws):
            self.csms = Csms(ws.request.path.rsplit("/", 1)[-1], ws, self)
            try:
                await self.csms.start()
            except Exception:
                pass

        self.server = Server(handler, **server)

    def csms_call(self, payload, suppress=False):
        """The central system calls the charge point (which the station pumps meanwhile)."""
        fut = asyncio.run_coroutine_threadsafe(self.csms.call(payload, suppress=suppress),
                                               self.server.loop)
        self.station.pump(lambda: fut.done())
        return fut.result(0)

    async def held(self, action):
        end = time.monotonic() + LOOP_S
        while action in self.hold and time.monotonic() < end:
            await asyncio.sleep(0.01)

    def refused(self, action):
        n = self.refuse.get(action, 0)
        if n > 0:
            self.refuse[action] = n - 1
            raise InternalError("refused by the test")

    def named(self, action):
        return [c for c in self.calls if c[0] == action]

    def errors_sent(self):
        return [m for m in self.sent if m[0] == 4]


def charging_profile(pid, purpose, limit, stack=0, kind="Absolute", start=NOW, periods=None, unit="A",
        **extra):
    sch = {"chargingRateUnit": unit,
           "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": limit}]}
    if start is not None:
        sch["startSchedule"] = start
    cs = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
          "chargingProfileKind": kind, "chargingSchedule": sch}
    cs.update(extra)
    return cs
