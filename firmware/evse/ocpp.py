"""OCPP 1.6J, the charge point's side, pure: the OCPP-J RPC framing (OCPP-J
1.6 section 4) and the Core profile's messages that the charger's status
snapshot gives (BootNotification, Heartbeat, StatusNotification); answers
to the central system's calls. No socket here (hw/wsock.py moves the text),
no clock of its own (`now`: ticks_ms). Imported only when the OCPP backend
is configured (docs/ocpp.md).

    cp = ChargePoint(vendor, model, serial, fw, rand, clock)
    cp.connected(now)                     # a new WebSocket connection
    text = cp.poll(snap_fields, now)      # the next CALL to send, or None
    reply = cp.receive(text, now)         # a CALLRESULT/CALLERROR to send, or None

One CALL of ours is outstanding at a time (4.1.1); it ends with its
CALLRESULT or CALLERROR, or after `call_timeout_ms`. A CALL from the central
system is answered with a CALLRESULT, or a CALLERROR: NotImplemented for an
action OCPP 1.6 does not have, NotSupported for one it has that is not
implemented here, FormationViolation or ProtocolError for a call that is not
well formed, a constraint violation for a payload that is wrong, and
InternalError if answering failed. A message without a readable unique id
cannot be answered: it is counted in `bad` and dropped, as is a CALLRESULT
or CALLERROR that answers no CALL of ours. Nothing here raises.
"""
import json

from micropython import const

from evse import bus as B
from evse import ticks_add, ticks_diff
from evse.charger import FAULTS, IMMEDIATE

CALL = const(2)
CALLRESULT = const(3)
CALLERROR = const(4)
_ID_MAX = const(36)  # characters of a unique id (OCPP-J 1.6 section 4.1.3)
CALL_TIMEOUT_MS = 30000  # a CALL of ours with no answer within this is given up
RETRY_MS = 60000  # the wait after a BootNotification that failed, or an interval of 0
_HEARTBEAT_MS = const(300000)  # until the central system gives its interval
_INTERVAL_MAX_S = const(86400)  # longer intervals are taken as a day
_HOLD_MS = const(10000)  # after a StatusNotification refused, before it goes again

# Registration (BootNotification.conf status), None before any answer.
ACCEPTED = const("Accepted")
PENDING = const("Pending")
REJECTED = const("Rejected")

# The central system's calls that OCPP 1.6 defines (all profiles): those not
# handled yet are answered NotSupported, any other action NotImplemented.
_KNOWN = const(("CancelReservation", "ChangeAvailability", "ChangeConfiguration",
                "ClearCache", "ClearChargingProfile", "DataTransfer",
                "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics",
                "GetLocalListVersion", "RemoteStartTransaction", "RemoteStopTransaction",
                "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile",
                "TriggerMessage", "UnlockConnector", "UpdateFirmware"))

# The charger's faults (evse/charger.py FAULTS, by name) as ChargePointErrorCode.
_ERRORS = const((("cp_short", "EVCommunicationError"), ("rcd", "GroundFailure"),
                 ("pe", "OtherError"), ("weld", "PowerSwitchFailure"),
                 ("no_close", "PowerSwitchFailure"), ("diode", "EVCommunicationError"),
                 ("vent", "OtherError"), ("overtemp", "HighTemperature"),
                 ("overcurrent", "OverCurrentFailure"), ("meter", "PowerMeterFailure"),
                 ("grid_meter", "PowerMeterFailure")))


def error_code(fault):
    """The ChargePointErrorCode of one of the charger's fault names."""
    for name, code in _ERRORS:
        if name == fault:
            return code
    return "OtherError"


def status_of(v, ended):
    """(ChargePointStatus, ChargePointErrorCode, the fault's name or None) of
    the connector from snapshot fields `v` (evse/bus.py); `ended`: a session
    ended since the vehicle was connected (docs/ocpp.md has the table)."""
    state = B.STATES[v[B.S_STATE]]
    err = v[B.S_ERROR]
    fault = None
    code = "NoError"
    if err:
        bit, fault = FAULTS[err - 1]
        code = error_code(fault)
        if bit & IMMEDIATE:  # the contactor is kept open: out of service
            return "Faulted", code, fault
    if state == "A":
        return "Available", code, fault
    if state == "E" or state == "F":
        return "Unavailable", code, fault
    if v[B.S_SESSION] == B.NONE:
        return ("Finishing" if ended else "Preparing"), code, fault
    if v[B.S_FLAGS] & B.F_PAUSED or state[1] == "1":  # no PWM: the EVSE holds back
        return "SuspendedEVSE", code, fault
    if state == "B2":  # offered, the vehicle does not ask
        return "SuspendedEV", code, fault
    return "Charging", code, fault


def iso8601(t):
    """Unix time `t` (s) as 2026-01-02T03:04:05Z (days to civil date: the
    proleptic Gregorian calendar, in integers)."""
    days, s = divmod(t, 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, s // 3600, s // 60 % 60, s % 60)


def call_error(uid, code, text):
    return json.dumps([CALLERROR, uid, code, text, {}])


def decode(text):
    """A message's text (str or bytes) as (CALL, id, action, payload),
    (CALLRESULT, id, payload, None) or (CALLERROR, id, code, description);
    (0, id, error code, description) when it is not a well-formed OCPP-J
    message (id None when even that cannot be read)."""
    try:
        if not isinstance(text, str):
            text = bytes(text).decode()
        m = json.loads(text)
    except Exception:  # ValueError; MemoryError for a deep nesting
        return 0, None, "FormationViolation", "not JSON"
    if not isinstance(m, list) or len(m) < 3 or not isinstance(m[1], str) \
            or not 0 < len(m[1]) <= _ID_MAX:
        return 0, None, "ProtocolError", "no unique id"
    kind = m[0]
    uid = m[1]
    if kind == CALL:
        if len(m) != 4 or not isinstance(m[2], str):
            return 0, uid, "ProtocolError", "a CALL is [2, id, action, payload]"
        if not isinstance(m[3], dict):
            return 0, uid, "FormationViolation", "the payload is not an object"
        return CALL, uid, m[2], m[3]
    if kind == CALLRESULT:
        if len(m) != 3 or not isinstance(m[2], dict):
            return 0, uid, "ProtocolError", "a CALLRESULT is [3, id, payload]"
        return CALLRESULT, uid, m[2], None
    if kind == CALLERROR:
        if len(m) != 5 or not isinstance(m[2], str) or not isinstance(m[3], str):
            return 0, uid, "ProtocolError", "a CALLERROR is [4, id, code, text, details]"
        return CALLERROR, uid, m[2], m[3]
    return 0, uid, "ProtocolError", "unknown MessageTypeId"


class ChargePoint:
    """The charge point's OCPP state over one or more connections."""

    def __init__(self, vendor, model, serial, fw, rand, clock=None,
                 call_timeout_ms=CALL_TIMEOUT_MS, connector=1):
        self.boot = {"chargePointVendor": vendor[:20], "chargePointModel": model[:20],
                     "firmwareVersion": fw[:50]}
        if serial:
            self.boot["chargePointSerialNumber"] = serial[:25]
        self.rand = rand
        self.clock = clock  # () -> Unix time or None (the timestamps are then left out)
        self.call_timeout_ms = call_timeout_ms
        self.connector = connector
        self._prefix = "%08x-" % rand(0x40000000)  # this boot's ids: prefix + counter
        self._n = 0
        self.registration = None  # ACCEPTED, PENDING, REJECTED; None: no answer yet
        self.heartbeat_ms = _HEARTBEAT_MS
        self._boot_at = 0  # when a BootNotification may go (ticks)
        self._call = None  # [id, action, what it reports] of the outstanding CALL
        self._deadline = 0
        self._sent_at = 0  # when our last CALL went
        self._shown = None  # (status, error, fault) the central system has confirmed
        self._hold = None  # no StatusNotification before this (after a refused one)
        self._cp0 = False  # the charge point's own status (connector 0) confirmed
        self._plugged_session = False  # a session has been under way since the plug-in
        self.bad = 0  # messages dropped unread, answers to no call of ours
        self.refused = 0  # our CALLs answered with a CALLERROR
        self.timeouts = 0  # our CALLs given up
        self.errors = 0  # CALLERRORs we answered the central system's calls with
        self.time = None  # the central system's currentTime, as last given

    # ------------------------------------------------------- connection
    def connected(self, now):
        """A new connection: no CALL outstanding; what was not confirmed goes again."""
        self._call = None
        self._hold = None
        if self.registration != ACCEPTED:
            self._boot_at = now
        else:
            self._sent_at = ticks_add(now, -self.heartbeat_ms)  # a heartbeat at once

    def lost(self):
        self._call = None

    def busy(self, now):
        """A CALL of ours is outstanding (one that ran out is given up here)."""
        c = self._call
        if c is None:
            return False
        if ticks_diff(now, self._deadline) < 0:
            return True
        self._call = None
        self.timeouts += 1
        if c[1] == "BootNotification":
            self._boot_at = ticks_add(now, RETRY_MS)
        return False

    def _send(self, action, payload, what, now):
        self._n += 1
        uid = self._prefix + str(self._n)
        self._call = [uid, action, what]
        self._deadline = ticks_add(now, self.call_timeout_ms)
        self._sent_at = now
        return json.dumps([CALL, uid, action, payload])

    def _stamp(self, p):
        t = self.clock() if self.clock is not None else None
        if t is not None:
            p["timestamp"] = iso8601(t)
        return p

    # ------------------------------------------------------------ ours
    def poll(self, v, now):
        """The next CALL's text, or None: a BootNotification until accepted
        (again after the interval a Pending or Rejected gives), then the
        status whenever it differs from what the central system confirmed,
        and a Heartbeat when nothing went for the heartbeat interval.
        `v`: the snapshot's fields as last read."""
        if self.busy(now):
            return None
        st = v[B.S_STATE]
        if B.STATES[st] == "A":
            self._plugged_session = False
        elif v[B.S_SESSION] != B.NONE:
            self._plugged_session = True
        if self.registration != ACCEPTED:
            if ticks_diff(now, self._boot_at) < 0:
                return None
            return self._send("BootNotification", self.boot, None, now)
        if self._hold is not None:
            if ticks_diff(now, self._hold) < 0:
                return self._heartbeat(now)
            self._hold = None
        if not self._cp0:
            return self._send("StatusNotification", self._stamp(
                {"connectorId": 0, "errorCode": "NoError", "status": "Available"}), 0, now)
        s = status_of(v, self._plugged_session)
        if s != self._shown:
            p = {"connectorId": self.connector, "errorCode": s[1], "status": s[0],
                 "info": "IEC " + B.STATES[st]}
            if s[2] is not None:
                p["vendorErrorCode"] = s[2]
            return self._send("StatusNotification", self._stamp(p), s, now)
        return self._heartbeat(now)

    def _heartbeat(self, now):
        if ticks_diff(now, self._sent_at) >= self.heartbeat_ms:
            return self._send("Heartbeat", {}, None, now)
        return None

    def _result(self, c, p, now):
        action = c[1]
        if action == "BootNotification":
            status = p.get("status")
            iv = p.get("interval")
            if status not in (ACCEPTED, PENDING, REJECTED) or not isinstance(iv, int) \
                    or isinstance(iv, bool):
                self.bad += 1
                self._boot_at = ticks_add(now, RETRY_MS)
                return
            iv = iv if iv < _INTERVAL_MAX_S else _INTERVAL_MAX_S
            self.registration = status
            self._time(p)
            if status == ACCEPTED:
                if iv > 0:
                    self.heartbeat_ms = iv * 1000
                self._shown = None  # report the status (again) after every accepted boot
                self._cp0 = False
            else:
                self._boot_at = ticks_add(now, iv * 1000 if iv > 0 else RETRY_MS)
        elif action == "StatusNotification":
            if c[2] == 0:
                self._cp0 = True
            else:
                self._shown = c[2]
        elif action == "Heartbeat":
            self._time(p)

    def _time(self, p):
        t = p.get("currentTime")
        if isinstance(t, str):
            self.time = t[:40]

    # ---------------------------------------------------------- theirs
    def receive(self, text, now):
        """Handle one message from the central system; the text to answer
        with (CALLRESULT or CALLERROR) or None."""
        kind, uid, a, b = decode(text)
        if kind == CALL:
            try:
                return self._answer(uid, a, b)
            except Exception:  # a bug answering: the central system is told, we go on
                self.errors += 1
                return call_error(uid, "InternalError", "")
        if kind == 0:
            if uid is None:
                self.bad += 1
                return None
            self.errors += 1
            return call_error(uid, a, b)
        c = self._call
        if c is None or c[0] != uid:
            self.bad += 1  # not the answer to our CALL: ignored (4.1.1)
            return None
        self._call = None
        if kind == CALLRESULT:
            self._result(c, a, now)
        else:
            self.refused += 1
            if c[1] == "BootNotification":
                self._boot_at = ticks_add(now, RETRY_MS)
            elif c[1] == "StatusNotification":
                self._hold = ticks_add(now, _HOLD_MS)
        return None

    def _answer(self, uid, action, p):
        if action == "DataTransfer":
            vid = p.get("vendorId")
            if vid is None:
                return self._error(uid, "OccurenceConstraintViolation", "vendorId missing")
            if not isinstance(vid, str):
                return self._error(uid, "TypeConstraintViolation", "vendorId is not a string")
            return json.dumps([CALLRESULT, uid, {"status": "UnknownVendorId"}])
        if action in _KNOWN:
            return self._error(uid, "NotSupported", action + " is not supported yet")
        return self._error(uid, "NotImplemented", "unknown action")

    def _error(self, uid, code, text):
        self.errors += 1
        return call_error(uid, code, text)
