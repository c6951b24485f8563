"""OCPP 1.6J, the charge point's side, pure: the OCPP-J RPC framing (OCPP-J
1.6 section 4) and the Core profile's messages that the charger's status
snapshot gives (BootNotification, Heartbeat, StatusNotification), the
transaction messages (StartTransaction when the snapshot shows a session,
MeterValues during it, StopTransaction when the App journals its record),
and answers to the central system's calls (RemoteStart/StopTransaction,
Reset, ChangeAvailability through the same commands as MQTT's, in `cmds`;
Get/ChangeConfiguration; DataTransfer refused). No socket here (hw/wsock.py moves the text),
no clock of its own (`now`: ticks_ms). Imported only when the OCPP backend
is configured (docs/ocpp.md).

    cp = ChargePoint(vendor, model, serial, fw, rand, clock)
    cp.connected(now)                     # a new WebSocket connection
    text = cp.poll(snap_fields, now)      # the next CALL to send, or None
    reply = cp.receive(text, now)         # a CALLRESULT/CALLERROR to send, or None
    cp.journal(app.journal.live)          # session records -> StopTransaction
    cp.cmds, cp.acks                      # commands for the App, journal seqs done

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
_QUEUE_MAX = const(8)  # transaction messages waiting; more: the oldest MeterValues go
# OCPP 1.6 4.7: a transaction message the central system failed to process
# (a CALLERROR) goes again, up to TransactionMessageAttempts tries in all,
# TransactionMessageRetryInterval x the failures so far apart, then is given up.
_TX_ATTEMPTS = const(3)
_TX_RETRY_S = const(60)
_AUTH_WAIT_MS = const(60000)  # ConnectionTimeOut: a RemoteStart waits this long for a vehicle
_START_WAIT_S = const(30)  # a StartTransaction waits this long for the meter's start reading
_LIMIT_EVERY_MS = const(1000)  # the charging profiles' composite limit evaluated
_LIMIT_RENEW_MS = const(60000)  # the limit sent again (its ttl_s renewed) at least this often
_LIMIT_TTL_S = const(180)  # a limit not renewed (the link dead): the fallback current
_REBASE_MS = const(600000)  # secs() reads the clock again after this
_REFS_MAX = const(8)  # transactionIds kept for sessions whose StopTransaction is not confirmed
_CMDS_MAX = const(8)  # commands for the App not yet on the Bus; more: the CALL is refused
_PENDING_MAX = const(8)  # commands whose reply answers a CALL; more: the oldest is forgotten
# Unix time of 2020-01-01. The charging profiles' times count from it (secs()):
# Unix time is past the small-int range of 32-bit ports (2**30), where every
# sum of it would allocate; seconds since 2020 stay below it until 2054.
UNIX_2020 = 1577836800

# The App's session end reasons (evse/charger.py, evse/app.py) as StopTransaction's Reason.
_REASONS = const((("unplugged", "EVDisconnected"), ("power_loss", "PowerLoss"),
                  ("reboot", "Reboot"), ("emergency", "EmergencyStop")))
# The OCPP keys of GetConfiguration/ChangeConfiguration (writable), besides REMOTE_KEYS.
_OCPP_KEYS = const(("HeartbeatInterval", "MeterValueSampleInterval"))
_MEASURANDS = const("Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage")
_READ_ONLY = const(("NumberOfConnectors", "MeterValuesSampledData", "SupportedFeatureProfiles",
                    "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit",
                    "ChargingScheduleMaxPeriods", "MaxChargingProfilesInstalled",
                    "GetConfigurationMaxKeys", "TransactionMessageAttempts",
                    "TransactionMessageRetryInterval", "ConnectionTimeOut"))
_READ_ONLY_VALUES = const(("1", _MEASURANDS, "Core,SmartCharging", "8", "Current,Power", "24",
                           "8", "16", "3", "60", "60"))  # evse/ocpp_sc.py MAX_STACK,
# MAX_PERIODS, _MAX_PROFILES; _TX_ATTEMPTS, _TX_RETRY_S; _AUTH_WAIT_MS (evse/charger.py
# T_AUTH_WAIT)
_MAX_KEYS = const(16)  # GetConfigurationMaxKeys: keys one GetConfiguration may ask for
MAX_TEXT = const(2048)  # bytes of a message either way (hw/wsock.py refuses longer ones)

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


_STATUSES = const(("Available", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV",
                   "Finishing", "Unavailable", "Faulted"))  # ChargePointStatus, by _ST_*
_ST_AVAILABLE = const(0)
_ST_PREPARING = const(1)
_ST_CHARGING = const(2)
_ST_SUSPENDED_EVSE = const(3)
_ST_SUSPENDED_EV = const(4)
_ST_FINISHING = const(5)
_ST_UNAVAILABLE = const(6)
_ST_FAULTED = const(7)


def status_of(v, ended):
    """The connector's status from snapshot fields `v` (evse/bus.py) as one
    small int, status << 6 | error (no allocation: it is worked out at every
    pass): the ChargePointStatus (status_name) and the snapshot's error
    (0: none, else evse.charger FAULTS' index + 1; error_of). `ended`: a
    session ended since the vehicle was connected (docs/ocpp.md has the
    table)."""
    state = v[B.S_STATE]
    err = v[B.S_ERROR]
    if err and FAULTS[err - 1][0] & IMMEDIATE:  # the contactor is kept open: out of service
        return _ST_FAULTED << 6 | err
    name = B.STATES[state]
    if state == 0:  # A
        st = _ST_AVAILABLE
    elif name == "E" or name == "F":
        st = _ST_UNAVAILABLE
    elif v[B.S_SESSION] == B.NONE:
        st = _ST_FINISHING if ended else _ST_PREPARING
    elif v[B.S_FLAGS] & B.F_PAUSED or name.endswith("1"):  # no PWM: the EVSE holds back
        st = _ST_SUSPENDED_EVSE
    elif name == "B2":  # offered, the vehicle does not ask
        st = _ST_SUSPENDED_EV
    else:
        st = _ST_CHARGING
    return st << 6 | err


def status_name(k):
    """The ChargePointStatus of a status_of() value."""
    return _STATUSES[k >> 6]


def error_of(k):
    """(ChargePointErrorCode, the fault's name or None) of a status_of() value."""
    err = k & 63
    if not err:
        return "NoError", None
    fault = FAULTS[err - 1][1]
    return error_code(fault), fault


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


def stop_reason(reason, asked=None):
    """StopTransaction's Reason for the App's session end `reason`; a `stop`
    command is `asked` when the central system caused it ("Remote": a
    RemoteStopTransaction; "DeAuthorized": the StartTransaction's idTagInfo),
    else Local."""
    if reason == "stop":
        return asked or "Local"
    for name, r in _REASONS:
        if name == reason:
            return r
    return "Other"


def parse_time(t):
    """An OCPP dateTime (2026-01-02T03:04:05[.fff][Z]) as Unix time (s), or None."""
    try:
        y, m, d = int(t[0:4]), int(t[5:7]), int(t[8:10])
        hh, mm, ss = int(t[11:13]), int(t[14:16]), int(t[17:19])
    except Exception:
        return None
    # slices, not t[4]: indexing a str interns the character (evse/jsonw.py _string)
    if t[4:5] != "-" or t[10:11] not in ("T", "t") or not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 + ss


def _amps(x):
    """mA (or mV) as a decimal string of A (V)."""
    sign = "-" if x < 0 else ""
    x = -x if x < 0 else x
    return "%s%d.%03d" % (sign, x // 1000, x % 1000)


def _due(now, at, ms):
    """`ms` have gone since the ticks `at`; also when the difference reads
    below 0: `at` is more than half the ticks' period old (a link down for
    a week), since the ticks only go forward."""
    d = ticks_diff(now, at)
    return d >= ms or d < 0


def call_error(uid, code, text):
    return json.dumps([CALLERROR, uid, code, text, {}])


def decode(text):
    """A message's text (str, or its UTF-8 in bytes, a bytearray or a
    memoryview) as (CALL, id, action, payload),
    (CALLRESULT, id, payload, None) or (CALLERROR, id, code, description);
    (0, id, error code, description) when it is not a well-formed OCPP-J
    message (id None when even that cannot be read)."""
    try:
        if not isinstance(text, str):
            text = str(text, "utf-8")  # one copy, checked as UTF-8
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
                 call_timeout_ms=CALL_TIMEOUT_MS, connector=1, cfg=None, id_tag="evse-mpy",
                 meter_interval_s=60, remote_keys=(), rebase_ms=_REBASE_MS,
                 max_text=MAX_TEXT):
        self.boot = {"chargePointVendor": vendor[:20], "chargePointModel": model[:20],
                     "firmwareVersion": fw[:50]}
        if serial:
            self.boot["chargePointSerialNumber"] = serial[:25]
        self.rand = rand
        self.max_text = max_text  # an answer longer than this goes as a CALLERROR
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
        self._shown = None  # the status_of() value the central system has confirmed
        self._hold = None  # no StatusNotification before this (after a refused one)
        self._cp0 = False  # the charge point's own status (connector 0) confirmed
        self._plugged_session = False  # a session has been under way since the plug-in
        self.bad = 0  # messages dropped unread, answers to no call of ours
        self.refused = 0  # our CALLs answered with a CALLERROR
        self.timeouts = 0  # our CALLs given up
        self.given_up = 0  # transaction messages dropped after _TX_ATTEMPTS CALLERRORs
        self._tries = 0  # CALLERRORs in a row for the transaction message at the queue's head
        self._retry_at = 0  # ... the ticks of the last one
        self._held = False  # the queue waits for that message's retry interval
        self.errors = 0  # CALLERRORs we answered the central system's calls with
        self.time = None  # the central system's currentTime, as last given
        self._t0 = None  # (Unix time, ticks) of the central system's time, without a clock
        self._tb = None  # [secs() at ticks, ticks]: secs() counts on from there
        self.rebase_ms = rebase_ms  # ... for this long, then reads the clock again
        self.cfg = cfg  # the configuration GetConfiguration shows (REMOTE_KEYS)
        self.remote_keys = remote_keys
        self.id_tag = id_tag[:20]  # StartTransaction's idTag (a remote start's replaces it)
        self._next_tag = None
        self._tag_at = 0  # when the RemoteStartTransaction of _next_tag came
        self._next_cs = None  # its chargingProfile (a TxProfile), or None
        self._tx_cs = None  # that profile, for _tx, until its StartTransaction is answered
        self._unsent = None  # the idTag of _tx's StartTransaction while it is not queued yet
        self.meter_ms = meter_interval_s * 1000  # MeterValueSampleInterval; 0: none
        self._queue = []  # transaction CALLs waiting: [action, payload, what]
        self._sid = None  # the App's session that has (had) a StartTransaction
        self._tx = None  # [session id, transactionId or None, meterStart]
        self._meter_at = 0
        self._stop_asked = None  # the session a RemoteStopTransaction asked to stop
        self._deauth = None  # the session its StartTransaction's idTagInfo stopped
        self._seen = []  # journal seqs already taken
        self.cmds = []  # commands for the App (evse/commands.py), as MQTT's
        self.acks = []  # journal seqs done with (for bus.acks)
        self._pending = {}  # command number N (id "ocpp-N") -> the CALL its reply answers
        self._cmd_n = 0
        self.inoperative = False
        self._auth_asked = False  # an Authorize went for this plug-in
        self.sc = None  # evse/ocpp_sc.py Profiles, from the first SetChargingProfile on
        self._lim = None  # mA of the set_current last sent for the profiles (None: none)
        self._lim_at = 0  # when it went
        self._lim_eval = 0  # when the composite was last evaluated
        self._rx_at = 0  # when the central system's last message came
        self.update = None  # UpdateFirmware asked: [location, retrieveDate (secs()) or None]
        self._raw = {}  # profile id -> [connectorId, csChargingProfiles as received]
        self.dirty = False  # kept() has changed: the link writes it to flash
        self._fw = []  # FirmwareStatusNotification statuses to send, oldest first
        self._refs = {}  # record's rid -> transactionId, until its StopTransaction is confirmed
        self._gone = []  # (rid, seq) of those confirmed, until the record has left the journal

    # ------------------------------------------------------- connection
    def connected(self, now):
        """A new connection: no CALL outstanding; what was not confirmed goes again."""
        self._call = None
        self._hold = None
        self._tb = None  # the clock may have been set (NTP at a connection)
        if self.registration != ACCEPTED:
            self._boot_at = now
        else:
            self._sent_at = ticks_add(now, -self.heartbeat_ms)  # a heartbeat at once

    def lost(self):
        c = self._call
        self._call = None
        if c is not None and c[1] == "Authorize":
            self._auth_asked = False  # asked again on the next connection
        if c is not None and isinstance(c[2], list):
            self._again(c[2])

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
        elif c[1] == "Authorize":
            self._auth_asked = False
        elif isinstance(c[2], list):
            self._again(c[2])  # a transaction message: delivered, in order
        return False

    def _again(self, q):
        """A transaction message back at the queue's head (to go again first);
        a MeterValues only while there is room (the oldest go first anyway)."""
        if q[0] != "MeterValues" or len(self._queue) < _QUEUE_MAX:
            self._queue.insert(0, q)

    def _send(self, action, payload, what, now):
        self._n += 1
        uid = self._prefix + str(self._n)
        self._call = [uid, action, what]
        self._deadline = ticks_add(now, self.call_timeout_ms)
        self._sent_at = now
        return json.dumps([CALL, uid, action, payload])

    def unix(self, now):
        """Unix time (s): the clock's, else the central system's last
        currentTime advanced by the ticks since; None when neither is known."""
        t = self.clock() if self.clock is not None else None
        if t is None and self._t0 is not None:
            t = self._t0[0] + ticks_diff(now, self._t0[1]) // 1000
        return t

    def secs(self, now):
        """unix(now) - UNIX_2020, or None: a small int, counted on from the
        clock's reading with the ticks, so that it allocates nothing on a
        32-bit port (the profiles' limit is evaluated every second). The
        clock is read again after `rebase_ms` (10 min), at a connection
        and when the central system gives its time; 0: at every call."""
        b = self._tb
        if b is None or ticks_diff(now, b[1]) >= self.rebase_ms:
            t = self.unix(now)
            if t is None:
                return None
            self._tb = b = [t - UNIX_2020, now]
        return b[0] + ticks_diff(now, b[1]) // 1000

    def _stamp(self, p, now=None, key="timestamp"):
        t = self.unix(now if now is not None else self._sent_at)
        if t is not None:
            p[key] = iso8601(t)
        return p

    # ------------------------------------------------------------ ours
    def poll(self, v, now):
        """The next CALL's text, or None: a BootNotification until accepted
        (again after the interval a Pending or Rejected gives), then the
        status whenever it differs from what the central system confirmed,
        and a Heartbeat when nothing went for the heartbeat interval.
        `v`: the snapshot's fields as last read."""
        if self.sc is not None and _due(now, self._lim_eval, _LIMIT_EVERY_MS):
            self._lim_eval = now
            self._apply_limit(now)
        if self.busy(now):
            return None
        st = v[B.S_STATE]
        if B.STATES[st] == "A":
            self._plugged_session = False
            self._auth_asked = False
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
        self._track(v, now)
        if self._fw:
            return self._send("FirmwareStatusNotification", {"status": self._fw[0]}, None, now)
        if self._held and _due(now, self._retry_at, _TX_RETRY_S * 1000 * self._tries):
            self._held = False
        while self._queue and not self._held:
            out = self._send_queued(self._queue.pop(0), now)
            if out is not None:
                return out
        a = self._authorize(v, now)
        if a is not None:
            return a
        if not self._cp0:
            return self._send("StatusNotification", self._stamp(
                {"connectorId": 0, "errorCode": "NoError", "status": "Available"}), -1, now)
        k = status_of(v, self._plugged_session)
        if self.inoperative and k >> 6 != _ST_FAULTED:  # ChangeAvailability Inoperative
            k = _ST_UNAVAILABLE << 6 | (k & 63)
        if k != self._shown:
            code, fault = error_of(k)
            p = {"connectorId": self.connector, "errorCode": code, "status": status_name(k),
                 "info": "IEC " + B.STATES[st]}
            if fault is not None:
                p["vendorErrorCode"] = fault
            return self._send("StatusNotification", self._stamp(p), k, now)
        return self._heartbeat(now)

    def _authorize(self, v, now):
        """With `authorization` "backend", a vehicle plugged in without a
        session: Authorize the charge point's idTag once per plug-in (no
        local reader: the central system decides); Accepted authorizes the
        session. A RemoteStartTransaction authorizes without it."""
        if self._next_tag is not None and v[B.S_SESSION] == B.NONE \
                and _due(now, self._tag_at, _AUTH_WAIT_MS):
            self._next_tag = self._next_cs = None  # no vehicle came (the App's wait ran out too)
        if (self._auth_asked or self.cfg is None or self.cfg.get("authorization") != "backend"
                or v[B.S_SESSION] != B.NONE or self._plugged_session or self.inoperative
                or self._next_tag is not None or B.STATES[v[B.S_STATE]][0] not in "BCD"):
            return None
        self._auth_asked = True
        return self._send("Authorize", {"idTag": self.id_tag}, None, now)

    def _track(self, v, now):
        """A new session in the snapshot is this link's transaction at once
        (its profiles count from its start); its StartTransaction is queued
        once there is a place and the meter's start reading (or 30 s without
        one); then, during the transaction, MeterValues every meter_ms."""
        sid = v[B.S_SESSION]
        if sid == B.NONE:
            return
        # how long ago it started: it may have begun before the connection
        age = v[B.S_UPTIME] - v[B.S_START] if v[B.S_START] != B.NONE else 0
        if sid != self._sid:
            self._sid = sid
            tag = self._next_tag or self.id_tag
            cs = self._next_cs if self._next_tag is not None else None
            self._next_tag = self._next_cs = None
            t = self.secs(now)
            # [session, transactionId, meterStart, its start (secs()), its record's rid]
            self._tx = [sid, None, 0, None if t is None else t - age, None]
            self._tx_cs = cs  # the RemoteStart's TxProfile, for this _tx
            self._unsent = tag  # its StartTransaction's idTag, until it is queued
            self._meter_at = now
            self._lim_eval = ticks_add(now, -_LIMIT_EVERY_MS)  # its profiles, at the next poll
        tx = self._tx
        if tx is None or tx[0] != sid:
            return
        if self._unsent is not None:
            wh = v[B.S_START_WH]
            if self._room() < 1 or (wh == B.NONE and age < _START_WAIT_S
                                    and (self.cfg or {}).get("meter") is not None):
                return  # it waits for a place, or for the meter's reading
            tx[2] = 0 if wh == B.NONE else wh
            p = {"connectorId": self.connector, "idTag": self._unsent, "meterStart": tx[2]}
            t = self.unix(now)
            if t is not None:
                p["timestamp"] = iso8601(t - age)
            if self._unsent != self.id_tag:  # a remote start's: the App keeps it with
                self.acks.append((sid, self._unsent))  # the session, for a power cut
            self._unsent = None
            self._push(["StartTransaction", p, tx])
        if self.meter_ms > 0 and _due(now, self._meter_at, self.meter_ms):
            self._meter_at = now
            self._push(["MeterValues", self._sample(v, now), tx])

    def _sample(self, v, now):
        sv = []
        x = v[B.S_METER_WH]
        if x != B.NONE:
            sv.append({"value": str(x), "measurand": "Energy.Active.Import.Register",
                       "unit": "Wh", "context": "Sample.Periodic"})
        x = v[B.S_POWER]
        if x != B.NONE:
            sv.append({"value": str(x), "measurand": "Power.Active.Import", "unit": "W",
                       "context": "Sample.Periodic"})
        for i in range(3):
            for f, m, u in ((B.S_A1, "Current.Import", "A"), (B.S_V1, "Voltage", "V")):
                x = v[f + i]
                if x != B.NONE:
                    sv.append({"value": _amps(x), "measurand": m, "unit": u,
                               "phase": "L%d" % (i + 1), "context": "Sample.Periodic"})
        return {"connectorId": self.connector, "meterValue": [self._stamp(
            {"sampledValue": sv}, now)]}

    def _room(self):
        """Places left in the queue for messages that are never dropped."""
        n = _QUEUE_MAX
        for q in self._queue:
            if q[0] != "MeterValues":
                n -= 1
        return n

    def _push(self, q):
        if len(self._queue) >= _QUEUE_MAX:
            for i in range(len(self._queue)):
                if self._queue[i][0] == "MeterValues":
                    self._queue.pop(i)
                    break
            else:
                self.bad += 1
                return
        self._queue.append(q)

    def _send_queued(self, q, now):
        """A queued transaction CALL's text, None to drop it (its
        StartTransaction never got a transactionId, or no time is known)."""
        action, p, tx = q[0], q[1], q[2]  # tx: [session id, transactionId, meterStart]
        if action != "StartTransaction":
            if tx[1] is None:
                if len(q) > 3:
                    self.acks.append(q[3])
                return None
            p["transactionId"] = tx[1]
        t = p["meterValue"][0] if action == "MeterValues" else p
        if "timestamp" not in t:
            self._stamp(t, now)
            if "timestamp" not in t:
                self.bad += 1
                return None
        return self._send(action, p, q, now)

    def journal(self, live):
        """Take the App's journal records (its `live` tuple): a session
        record queues its StopTransaction (acknowledged once the central
        system confirms it), events have no OCPP message and are acknowledged.
        A session this link did not start (one of an earlier boot, cut by a
        power loss or a reboot, or over before the link saw it) gets its
        StopTransaction with the transactionId its record keeps (`ref`), or
        without one its StartTransaction first. A record waits while the
        queue has no room for two more transaction messages."""
        g = self._gone
        for i in range(len(g) - 1, -1, -1):
            seq = g[i][1]
            for r in live:
                if r[0] == seq:
                    break
            else:  # the record is out of the journal: its transactionId is done with
                rid = g.pop(i)[0]
                if rid in self._refs:
                    del self._refs[rid]
                    self.dirty = True
        seen = self._seen
        for seq, kind, data in live:
            if seq in seen:
                continue
            if kind != "s":
                seen.append(seq)
                self.acks.append(seq)
                continue
            if self._room() < 2:
                break  # taken on a later pass, in order
            seen.append(seq)
            try:
                r = json.loads(data)
                sid = r["id"]
            except Exception:
                self.bad += 1
                self.acks.append(seq)
                continue
            epoch = r.get("time") == "epoch"
            rid = r.get("rid")
            rid = rid if isinstance(rid, str) else str(sid)
            tx = self._tx
            if tx is not None and tx[0] == sid and self.sc is not None:
                self.sc.end_transaction()
            tag = r.get("tag")
            tag = tag if isinstance(tag, str) and 0 < len(tag) <= 20 else self.id_tag
            if tx is not None and tx[0] == sid and self._unsent is not None:
                tag = self._unsent  # it ended before its StartTransaction went:
                self._unsent = None  # from its record, as one of an earlier boot
                self._tx = tx = None
            if tx is None or tx[0] != sid:
                ref = r.get("ref")
                if not isinstance(ref, int) or isinstance(ref, bool):
                    ref = self._refs.get(rid)  # its StartTransaction answered after it ended
                ms = r.get("meter_start_wh")
                ms = ms if isinstance(ms, int) and not isinstance(ms, bool) else 0
                tx = [sid, ref, ms, None, rid]
                if tx[1] is None:
                    p = {"connectorId": self.connector, "idTag": tag, "meterStart": ms}
                    if epoch and isinstance(r.get("start"), int):
                        p["timestamp"] = iso8601(r["start"])
                    self._push(["StartTransaction", p, tx])
            wh = r.get("meter_stop_wh")
            if not isinstance(wh, int):
                e = r.get("estimate_wh")
                wh = tx[2] + (e if isinstance(e, int) else 0)
            why = ("DeAuthorized" if self._deauth == sid
                   else "Remote" if self._stop_asked == sid else None)
            p = {"meterStop": wh, "reason": stop_reason(r.get("reason"), why)}
            if epoch and isinstance(r.get("stop"), int):
                p["timestamp"] = iso8601(r["stop"])
            tx[4] = rid  # a transactionId that comes from now on is kept (_result)
            if tx[1] is not None and r.get("ref") != tx[1] and rid not in self._refs:
                self._ref(rid, tx[1])  # answered after the session ended
            self._push(["StopTransaction", p, tx, seq])
        if len(seen) > 32:  # forget the seqs no longer live (loops: a comprehension that
            keep = []  # read a local would make it a cell, allocated at every call)
            for s in seen:
                for r in live:
                    if r[0] == s:
                        keep.append(s)
                        break
            self._seen = keep

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
            if c[2] == -1:  # connector 0's
                self._cp0 = True
            else:
                self._shown = c[2]
        elif action == "Heartbeat":
            self._time(p)
        elif action == "FirmwareStatusNotification":
            self._fw.pop(0)
        elif action == "Authorize":
            info = p.get("idTagInfo")
            if isinstance(info, dict) and info.get("status") == "Accepted":
                self._next_tag = self.id_tag
                self._command("authorize", None)
        elif action == "StartTransaction":
            tx = c[2][2]
            tid = p.get("transactionId")
            if isinstance(tid, int) and not isinstance(tid, bool):
                tx[1] = tid
                if tx[4] is not None:  # its record is taken: the session has ended
                    self._ref(tx[4], tid)
                elif tx is self._tx:  # the App keeps it with the open session (state.json)
                    self.acks.append((tx[0], tid))
                    cs = self._tx_cs
                    if cs is not None:  # the RemoteStart's TxProfile, now that the
                        self._tx_cs = None  # transaction has its id
                        try:
                            self._profiles().set(self.connector, cs, tid)
                        except Exception:  # checked when it came: not expected
                            self.bad += 1
                        self._lim_eval = ticks_add(now, -_LIMIT_EVERY_MS)
            info = p.get("idTagInfo")
            if isinstance(info, dict) and info.get("status") != "Accepted" \
                    and tx is self._tx and tx[4] is None:
                # not authorized: the session ends, if it is the one under way
                # (not one of an earlier boot sent from its record)
                self._deauth = tx[0]
                self._command("stop", None)
        elif action == "StopTransaction":
            self._stopped(c[2][2], c[2][3])

    def _stopped(self, tx, seq):
        """A StopTransaction confirmed (or given up): the record is done with."""
        self.acks.append(seq)
        if self._tx is tx:
            self._tx = None
        if tx[4] in self._refs:
            # forgotten once the App has the record out of the journal (journal()):
            # ocpp.json written before that, a power cut between the two writes
            # would leave the record without its transactionId
            self._gone.append((tx[4], seq))

    def _ref(self, rid, tid):
        """The transactionId of an ended session whose record does not have
        it: ocpp.json keeps it until the StopTransaction is confirmed, so
        that a power cut before then does not start the session again."""
        if len(self._refs) >= _REFS_MAX:
            for k in self._refs:
                del self._refs[k]
                break
        self._refs[rid] = tid
        self.dirty = True

    def _time(self, p):
        t = p.get("currentTime")
        if isinstance(t, str):
            self.time = t[:40]
            u = parse_time(t)
            if u is not None:
                self._t0 = (u, self._sent_at)
                self._tb = None

    # ---------------------------------------------------------- theirs
    def receive(self, text, now):
        """Handle one message from the central system; the text to answer
        with (CALLRESULT or CALLERROR) or None."""
        kind, uid, a, b = decode(text)
        self._rx_at = now
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
            if isinstance(c[2], list):
                self._tries = 0  # a transaction message went through
            self._result(c, a, now)
        else:
            self.refused += 1
            if c[1] == "BootNotification":
                self._boot_at = ticks_add(now, RETRY_MS)
            elif c[1] == "StatusNotification":
                self._hold = ticks_add(now, _HOLD_MS)
            elif c[1] == "FirmwareStatusNotification" and self._fw:
                self._fw.pop(0)
            elif isinstance(c[2], list):
                self._refused_tx(c[2], now)
        return None

    def _refused_tx(self, q, now):
        """A transaction message answered with a CALLERROR: at the head again,
        after the retry interval, until its last attempt (OCPP 1.6 4.7)."""
        self._tries += 1
        if self._tries < _TX_ATTEMPTS:
            self._retry_at = now
            self._held = True
            self._again(q)
            return
        self._tries = 0
        self.given_up += 1
        if q[0] == "StopTransaction":
            self._stopped(q[2], q[3])  # given up: its record leaves the journal

    def _answer(self, uid, action, p):
        if action == "DataTransfer":
            vid = p.get("vendorId")
            if vid is None:
                return self._error(uid, "OccurenceConstraintViolation", "vendorId missing")
            if not isinstance(vid, str):
                return self._error(uid, "TypeConstraintViolation", "vendorId is not a string")
            return json.dumps([CALLRESULT, uid, {"status": "UnknownVendorId"}])
        f = _HANDLERS.get(action)
        if f is not None:
            if len(self.cmds) >= _CMDS_MAX:
                # the App is not taking commands (the Bus full): refused, not
                # queued without end; the central system may call again
                return self._error(uid, "GenericError", "busy: %d commands waiting" % _CMDS_MAX)
            r = f(self, uid, p)
            if r is None or isinstance(r, str):
                return r  # a CALLERROR's text, or None: answered later (reply())
            t = json.dumps([CALLRESULT, uid, r])
            if len(t) > self.max_text // 4 and len(t.encode()) > self.max_text:
                # more than the WebSocket can send in one message: the
                # central system is told, rather than the link dropped
                return self._error(uid, "GenericError", "the answer is longer than %d bytes"
                                   % self.max_text)
            return t
        if action in _KNOWN:
            return self._error(uid, "NotSupported", action + " is not supported yet")
        return self._error(uid, "NotImplemented", "unknown action")

    def _error(self, uid, code, text):
        self.errors += 1
        return call_error(uid, code, text)

    # ----------------------------------------------- the central system's calls
    def _command(self, name, uid, **kw):
        """A command for the App (evse/commands.py); its reply answers the
        CALL `uid` (reply()) when uid is given."""
        self._cmd_n += 1
        n = self._cmd_n
        cid = "ocpp-%d" % n
        m = {"cmd": name, "id": cid}
        m.update(kw)
        self.cmds.append(m)
        if uid is not None:
            pend = self._pending
            if len(pend) >= _PENDING_MAX:  # a reply lost on the way: its CALL ran out long ago
                pend.pop(min(pend))
            pend[n] = uid
        return cid

    def reply(self, r):
        """The App's reply to one of our commands: the CALLRESULT it answers
        (ChangeConfiguration of a REMOTE_KEY), or None."""
        rid = r.get("id") if isinstance(r, dict) else None
        k = rid[5:] if isinstance(rid, str) and rid.startswith("ocpp-") else ""
        if not k.isdigit():
            return None  # not one of ours
        uid = self._pending.pop(int(k), None)
        if uid is None:
            return None
        return json.dumps([CALLRESULT, uid, {"status": "Accepted" if r.get("ok") is True
                                             else "Rejected"}])

    def _bad(self, uid, p, key, kind):
        """A CALLERROR's text when p[key] is missing or not of `kind`, else None."""
        if key not in p:
            return self._error(uid, "OccurenceConstraintViolation", key + " missing")
        x = p[key]
        if not isinstance(x, kind) or isinstance(x, bool):
            return self._error(uid, "TypeConstraintViolation", key + " has the wrong type")
        return None

    def _remote_start(self, uid, p):
        e = self._bad(uid, p, "idTag", str)
        if e is not None:
            return e
        if len(p["idTag"]) > 20:
            return self._error(uid, "PropertyConstraintViolation", "idTag longer than 20")
        c = p.get("connectorId", self.connector)
        if c != self.connector or self._tx is not None or self.inoperative:
            return {"status": "Rejected"}
        cs = p.get("chargingProfile")
        if cs is not None:  # OCPP 1.6 5.11: a TxProfile, for the transaction it starts
            if not isinstance(cs, dict):
                return self._error(uid, "TypeConstraintViolation", "chargingProfile")
            if cs.get("chargingProfilePurpose") != "TxProfile" or "transactionId" in cs:
                return {"status": "Rejected"}
            from evse.ocpp_sc import Invalid, parse

            try:
                if parse(cs) is None:
                    return {"status": "Rejected"}
            except Invalid as x:
                return self._error(uid, "PropertyConstraintViolation", str(x)[:40])
            except TypeError as x:
                return self._error(uid, "TypeConstraintViolation", str(x)[:40])
        self._next_cs = cs
        self._next_tag = p["idTag"]
        self._tag_at = self._rx_at
        self._command("authorize", None)
        return {"status": "Accepted"}

    def _remote_stop(self, uid, p):
        e = self._bad(uid, p, "transactionId", int)
        if e is not None:
            return e
        tx = self._tx
        if tx is None or tx[1] != p["transactionId"]:
            return {"status": "Rejected"}
        self._stop_asked = tx[0]
        self._command("stop", None)
        return {"status": "Accepted"}

    def _reset(self, uid, p):
        e = self._bad(uid, p, "type", str)
        if e is not None:
            return e
        if p["type"] not in ("Hard", "Soft"):
            return self._error(uid, "PropertyConstraintViolation", "type is Hard or Soft")
        self._command("reboot", None)
        return {"status": "Accepted"}

    def _update_firmware(self, uid, p):
        """UpdateFirmware (OCPP 1.6 section 5.16): kept for the link, which
        hands `location` to the board's update (evse/ota.py Runner.offer)
        from retrieveDate on; its progress comes back through firmware()."""
        e = self._bad(uid, p, "location", str) or self._bad(uid, p, "retrieveDate", str)
        if e is not None:
            return e
        t = parse_time(p["retrieveDate"])
        if t is None:
            return self._error(uid, "PropertyConstraintViolation", "retrieveDate")
        self.update = [p["location"], t - UNIX_2020]  # as secs()
        return {}

    def firmware(self, status):
        """A FirmwareStatusNotification to send (Downloading, Downloaded,
        DownloadFailed, Installing, Installed, InstallationFailed, Idle)."""
        if len(self._fw) < 4:
            self._fw.append(status)

    def _availability(self, uid, p):
        e = self._bad(uid, p, "connectorId", int) or self._bad(uid, p, "type", str)
        if e is not None:
            return e
        t = p["type"]
        if t not in ("Inoperative", "Operative"):
            return self._error(uid, "PropertyConstraintViolation", "type")
        if p["connectorId"] not in (0, self.connector):
            return {"status": "Rejected"}
        self.inoperative = t == "Inoperative"
        self._command("pause" if self.inoperative else "resume", None)
        return {"status": "Accepted"}

    # ---------------------------------------------------- smart charging
    def _apply_limit(self, now):
        """The profiles' composite limit as the App's set_current (the same
        limit chain as a backend's): sent when it changes and renewed with
        its ttl_s, so that a dead link falls back like any backend limit;
        once no profile is left, the installation's maximum without a ttl."""
        cfg = self.cfg or {}
        top = cfg.get("max_current_a", 32)
        t = self.secs(now)
        tx = self._tx
        lim = None
        if t is not None and self.sc.profiles:
            lim = self.sc.limit_a(t, tx[3] if tx is not None else None,
                                  tx[1] if tx is not None else None, cfg.get("phases", 3))
        if not self.sc.profiles:
            if self._lim is not None:
                self._lim = None
                self._limit_cmd(int(top * 1000), None)  # max_current_a may be 16.5
            return
        if lim is None or lim > top:
            lim = top
        ma = int(lim * 1000) if lim >= 6 else 0  # below 6 A: no offer (IEC 61851-1)
        if ma != self._lim or _due(now, self._lim_at, _LIMIT_RENEW_MS):
            self._lim = ma
            self._lim_at = now
            self._limit_cmd(ma, _LIMIT_TTL_S * 1000)

    def _limit_cmd(self, ma, ttl_ms):
        # A Command made here, not a JSON object: a profile's limit may be
        # below 6 A (no offer), which set_current from a backend cannot be.
        from evse.commands import Command

        self._cmd_n += 1
        self.cmds.append(Command("set_current", "ocpp-%d" % self._cmd_n, ma, ttl_ms))

    def _profiles(self):
        if self.sc is None:
            from evse.ocpp_sc import Profiles

            self.sc = Profiles()
        return self.sc

    def _set_profile(self, uid, p):
        e = self._bad(uid, p, "connectorId", int)
        if e is not None:
            return e
        if "csChargingProfiles" not in p:
            return self._error(uid, "OccurenceConstraintViolation", "csChargingProfiles missing")
        c = p["connectorId"]
        if c not in (0, self.connector):
            return {"status": "Rejected"}
        from evse.ocpp_sc import Invalid

        tx = self._tx
        try:
            st = self._profiles().set(c, p["csChargingProfiles"],
                                      tx[1] if tx is not None else None)
        except Invalid as x:
            return self._error(uid, "PropertyConstraintViolation", str(x)[:40])
        except TypeError as x:
            return self._error(uid, "TypeConstraintViolation", str(x)[:40])
        # at the next poll: counted from this message's time, not from the
        # last evaluation (none before the first profile: 0 may be days
        # ahead of the ticks once they have wrapped)
        self._lim_eval = ticks_add(self._rx_at, -_LIMIT_EVERY_MS)
        if st == "Accepted":
            cs = p["csChargingProfiles"]
            self._raw[cs["chargingProfileId"]] = [c, cs]
            self._prune()
        return {"status": st}

    def _prune(self):
        # the profiles as received, only of those still in force (replaced, cleared: gone)
        have = [q[0] for q in self.sc.profiles]  # evse.ocpp_sc: q[0] is the profile's id
        for k in list(self._raw):
            if k not in have:
                del self._raw[k]
        self.dirty = True

    def kept(self):
        """What outlives a reboot (ocpp.json, hw/ocpp_link.py): the two
        intervals ChangeConfiguration set, the ChargePointMaxProfile and
        TxDefaultProfile profiles as the central system sent them (a
        TxProfile ends with its transaction, which a reboot ends), and the
        transactionIds of ended sessions whose records do not have them."""
        live = []
        sc = self.sc
        if sc is not None:
            for q in sc.profiles:
                r = self._raw.get(q[0])
                if r is not None and r[1].get("chargingProfilePurpose") != "TxProfile":
                    live.append(r)
        return {"HeartbeatInterval": self.heartbeat_ms // 1000,
                "MeterValueSampleInterval": self.meter_ms // 1000, "profiles": live,
                "refs": self._refs}

    def restore(self, d):
        """kept()'s dict, read back at boot; anything malformed is skipped."""
        if not isinstance(d, dict):
            return
        for k in _OCPP_KEYS:
            n = d.get(k)
            if isinstance(n, int) and not isinstance(n, bool):
                self._interval(k, n)
        for r in d.get("profiles") or ():
            try:
                c, cs = r
                if self._profiles().set(c, cs, None) == "Accepted":
                    self._raw[cs["chargingProfileId"]] = [c, cs]
            except Exception:  # a profile this version cannot read: dropped
                pass
        refs = d.get("refs")
        if isinstance(refs, dict):
            for k in refs:
                t = refs[k]
                if isinstance(t, int) and not isinstance(t, bool) and len(self._refs) < _REFS_MAX:
                    self._refs[k] = t

    def _clear_profile(self, uid, p):
        for k in ("id", "connectorId", "stackLevel"):
            if k in p:
                e = self._bad(uid, p, k, int)
                if e is not None:
                    return e
        pur = p.get("chargingProfilePurpose")
        if pur is not None and not isinstance(pur, str):
            return self._error(uid, "TypeConstraintViolation", "chargingProfilePurpose")
        if p.get("connectorId", 0) not in (0, self.connector) or self.sc is None:
            return {"status": "Unknown"}
        gone = self.sc.clear(p.get("id"), pur, p.get("stackLevel"))
        self._lim_eval = ticks_add(self._rx_at, -_LIMIT_EVERY_MS)  # as _set_profile
        if gone:
            self._prune()
        return {"status": "Accepted" if gone else "Unknown"}

    def _composite(self, uid, p):
        e = self._bad(uid, p, "connectorId", int) or self._bad(uid, p, "duration", int)
        if e is not None:
            return e
        unit = p.get("chargingRateUnit", "A")
        if unit not in ("A", "W"):
            return self._error(uid, "PropertyConstraintViolation", "chargingRateUnit")
        t = self.secs(self._rx_at)
        if p["connectorId"] not in (0, self.connector) or t is None:
            return {"status": "Rejected"}
        cfg = self.cfg or {}
        top = cfg.get("max_current_a", 32)
        phases = cfg.get("phases", 3)
        d = p["duration"] if p["duration"] < _INTERVAL_MAX_S else _INTERVAL_MAX_S
        tx = self._tx
        rows = [(0, top)]
        if self.sc is not None:
            rows = self.sc.schedule(t, d, tx[3] if tx is not None else None,
                                    tx[1] if tx is not None else None, phases, top)
        k = 1 if unit == "A" else 230 * phases
        return {"status": "Accepted", "connectorId": p["connectorId"],
                "scheduleStart": iso8601(t + UNIX_2020),
                "chargingSchedule": {"duration": d, "startSchedule": iso8601(t + UNIX_2020),
                                     "chargingRateUnit": unit, "chargingSchedulePeriod": [
                                         {"startPeriod": a, "limit": round(b * k, 1)}
                                         for a, b in rows]}}

    def _get_config(self, uid, p):
        keys = p.get("key")
        if keys is not None and not isinstance(keys, list):
            return self._error(uid, "TypeConstraintViolation", "key is a list")
        if keys is not None and len(keys) > _MAX_KEYS:
            return self._error(uid, "OccurenceConstraintViolation",
                               "at most %d keys (GetConfigurationMaxKeys)" % _MAX_KEYS)
        out = []
        unknown = []
        names = _OCPP_KEYS + _READ_ONLY + tuple(self.remote_keys)
        for k in (names if not keys else keys):
            if not isinstance(k, str):
                return self._error(uid, "TypeConstraintViolation", "key is a list of strings")
            v = self._config_value(k)
            if v is None:
                unknown.append(k[:50])
            else:
                out.append({"key": k, "readonly": k not in _OCPP_KEYS and
                            k not in self.remote_keys, "value": v[:500]})
        r = {"configurationKey": out}
        if unknown:
            r["unknownKey"] = unknown
        return r

    def _config_value(self, k):
        if k == "HeartbeatInterval":
            return str(self.heartbeat_ms // 1000)
        if k == "MeterValueSampleInterval":
            return str(self.meter_ms // 1000)
        if k in _READ_ONLY:
            return _READ_ONLY_VALUES[_READ_ONLY.index(k)]
        if k in self.remote_keys and self.cfg is not None and k in self.cfg:
            v = self.cfg[k]
            return v if isinstance(v, str) else json.dumps(v)
        return None

    def _interval(self, k, n):
        """One of _OCPP_KEYS set to n s when allowed (0..86400; 0: no
        MeterValues, never for the heartbeat); False when not."""
        if not 0 <= n <= _INTERVAL_MAX_S or k == "HeartbeatInterval" and n == 0:
            return False
        if k == "HeartbeatInterval":
            self.heartbeat_ms = n * 1000
        else:
            self.meter_ms = n * 1000
        return True

    def _change_config(self, uid, p):
        e = self._bad(uid, p, "key", str) or self._bad(uid, p, "value", str)
        if e is not None:
            return e
        k = p["key"]
        v = p["value"]
        if k in _OCPP_KEYS:
            try:
                n = int(v)
            except ValueError:
                return {"status": "Rejected"}
            if not self._interval(k, n):
                return {"status": "Rejected"}
            self.dirty = True
            return {"status": "Accepted"}
        if k in self.remote_keys:
            try:
                x = json.loads(v)
            except ValueError:
                x = v
            self._command("set_config", uid, key=k, value=x)
            return None  # the App's reply answers it
        if self._config_value(k) is not None:
            return {"status": "Rejected"}  # read-only
        return {"status": "NotSupported"}


_HANDLERS = {
    "RemoteStartTransaction": ChargePoint._remote_start,
    "RemoteStopTransaction": ChargePoint._remote_stop,
    "Reset": ChargePoint._reset,
    "ChangeAvailability": ChargePoint._availability,
    "GetConfiguration": ChargePoint._get_config,
    "ChangeConfiguration": ChargePoint._change_config,
    "SetChargingProfile": ChargePoint._set_profile,
    "ClearChargingProfile": ChargePoint._clear_profile,
    "GetCompositeSchedule": ChargePoint._composite,
    "UpdateFirmware": ChargePoint._update_firmware,
}
