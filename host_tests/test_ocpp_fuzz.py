"""The central system's calls, made up by hypothesis from the official OCPP
1.6 JSON schemas (the ones the `ocpp` package validates with), and the same
calls garbled (fields of the wrong type, missing, nested nonsense), into
evse/ocpp.py's ChargePoint, which is what the link hands every message to.

What must hold, from OCPP-J 1.6 (sections 4.1 to 4.3) and the schemas:

- every CALL gets one answer: a CALLRESULT whose payload is valid under the
  action's response schema, or a CALLERROR [4, id, code, text, {}] with one
  of the spec's codes; never InternalError (the catch-all of a bug), and
  never an exception out of the ChargePoint;
- a call valid under its schema is never answered as malformed
  (FormationViolation, ProtocolError, TypeConstraintViolation,
  OccurenceConstraintViolation);
- whatever came in, what the charge point sends next (its own CALLs) is
  valid under those schemas, and what it keeps over a reboot is JSON that a
  new ChargePoint reads back.
"""
import asyncio
import json
import os
from datetime import datetime, timezone

import ocpp
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, validate_payload

from evse import TICKS_PERIOD, ticks_add
from evse import bus as B
from evse import ocpp as O
from evse.app import REMOTE_KEYS
from evse.commands import Command as O_Command
from evse.config import defaults

SCHEMAS = os.path.join(os.path.dirname(ocpp.__file__), "v16", "schemas")
CSMS_CALLS = sorted(O._KNOWN)  # what a central system may call that the firmware knows of
ERROR_CODES = {"NotImplemented", "NotSupported", "InternalError", "ProtocolError",
               "SecurityError", "FormationViolation", "PropertyConstraintViolation",
               "OccurenceConstraintViolation", "TypeConstraintViolation", "GenericError"}
MALFORMED = {"FormationViolation", "ProtocolError", "TypeConstraintViolation",
             "OccurenceConstraintViolation"}
T0 = 1796205600  # 2026-12-02T10:00:00Z


def schema(name):
    with open(os.path.join(SCHEMAS, name + ".json")) as f:
        return json.load(f)


def check(message):
    """The `ocpp` package's own validation (its schemas, and its reading of
    multipleOf 0.1 in decimals); raises its OCPPError when invalid."""
    asyncio.run(validate_payload(message, "1.6"))


def is_valid(action, payload):
    try:
        check(Call("x", action, payload))
    except OCPPError:
        return False
    return True


# ------------------------------------------------- payloads from a schema
_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                      timezones=st.just(timezone.utc)).map(
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S") + _frac(t))


def _frac(t):
    return ".%03dZ" % (t.microsecond // 1000) if t.microsecond else "Z"


def from_schema(s, root=None):
    """A strategy for instances of the JSON schema s (the keywords the
    OCPP 1.6 schemas use)."""
    root = root or s
    if "$ref" in s:
        return from_schema(root["definitions"][s["$ref"].split("/")[-1]], root)
    if "enum" in s:
        return st.sampled_from(s["enum"])
    t = s.get("type")
    if t == "object":
        props = s.get("properties", {})
        req = set(s.get("required", ()))
        fields = {k: from_schema(v, root) for k, v in props.items()}
        opt = sorted(k for k in props if k not in req)
        return st.fixed_dictionaries({k: fields[k] for k in sorted(req)},
                                     optional={k: fields[k] for k in opt})
    if t == "array":
        return st.lists(from_schema(s["items"], root), min_size=s.get("minItems", 0),
                        max_size=6)
    if t == "string":
        if s.get("format") == "date-time":
            return _times
        return st.text(max_size=s.get("maxLength", 60))
    if t == "integer":
        return st.one_of(st.integers(-5, 100), st.integers(-2 ** 31, 2 ** 31 - 1),
                         st.integers(-10 ** 20, 10 ** 20))
    if t == "number":
        if "multipleOf" in s:  # 0.1 in OCPP 1.6
            return st.integers(-10 ** 5, 10 ** 6).map(lambda n: n / 10)
        return st.floats(-1e9, 1e9, allow_nan=False)
    if t == "boolean":
        return st.booleans()
    raise ValueError("schema keyword not handled: %r" % s)


def valid_calls():
    return st.sampled_from(CSMS_CALLS).flatmap(
        lambda a: st.tuples(st.just(a), from_schema(schema(a))))


# ------------------------------------------------- payloads made garbled
def _names(s, out):
    if isinstance(s, dict):
        out.update(s.get("properties", {}))
        for v in s.values():
            _names(v, out)
    elif isinstance(s, list):
        for v in s:
            _names(v, out)
    return out


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                     _times, st.sampled_from(["Accepted", "Hard", "Inoperative", "A", "W",
                                              "TxProfile", "Absolute", "", "0", "-1"]))


def garbled_calls():
    """A call whose payload has the action's field names (at any depth) with
    values of any kind: valid pieces, wrong types, lists for objects."""
    def one(a):
        keys = sorted(_names(schema(a), {})) or ["x"]
        values = st.recursive(_scalars, lambda kids: st.one_of(
            st.lists(kids, max_size=4),
            st.dictionaries(st.sampled_from(keys), kids, max_size=5)), max_leaves=12)
        payload = st.one_of(
            st.dictionaries(st.sampled_from(keys), values, max_size=6),
            from_schema(schema(a)).flatmap(lambda p: st.dictionaries(
                st.sampled_from(keys), values, max_size=3).map(lambda g: dict(p, **g))),
            values)
        return st.tuples(st.just(a), payload)
    return st.sampled_from(CSMS_CALLS + ["DataTransfer"]).flatmap(one)


# ------------------------------------------------- the charge point
def tally(what):
    """What the answers were (pytest --hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(what)


class Rig:
    """A ChargePoint accepted by its central system, the App's snapshot
    (no vehicle, or one charging in a transaction the central system
    numbered 41), and the fake clock."""

    def __init__(self, charging=False, now=0):
        self.t = T0
        self.cp = O.ChargePoint("V", "M", "SN1", "1.0", lambda n: 7, clock=lambda: self.t,
                                cfg=defaults(), remote_keys=REMOTE_KEYS)
        self.v = B.fields(B.N_FIELDS)
        self.v[B.S_STATE] = B.STATES.index("A")
        self.v[B.S_SESSION] = B.NONE
        self.v[B.S_METER_WH] = 12345
        if charging:
            v = self.v
            v[B.S_STATE] = B.STATES.index("C2")
            v[B.S_SESSION] = 1
            v[B.S_CONTACTOR] = 1
            v[B.S_OFFER] = v[B.S_EV] = 16000
            v[B.S_POWER] = 11000
        self.now = now
        self.cp.connected(self.now)
        self.drain()
        assert self.cp.registration == O.ACCEPTED
        assert (self.cp._tx is not None and self.cp._tx[1] == 41) == charging

    def step(self, ms=1000):
        self.now = ticks_add(self.now, ms)
        self.t += ms // 1000

    def drain(self, most=20):
        """Every CALL the charge point has to send now, each checked against
        its schema and answered with a valid CALLRESULT."""
        for _ in range(most):
            self.step()
            text = self.cp.poll(self.v, self.now)
            if text is None:
                return
            m = json.loads(text)
            assert m[0] == O.CALL and len(m) == 4, text
            check(Call(m[1], m[2], m[3]))
            self.cp.receive(json.dumps([O.CALLRESULT, m[1], self.answer(m[2])]), self.now)

    def answer(self, action):
        tag = {"status": "Accepted"}
        now = datetime.fromtimestamp(self.t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"BootNotification": {"status": "Accepted", "currentTime": now, "interval": 300},
                "Heartbeat": {"currentTime": now}, "Authorize": {"idTagInfo": tag},
                "StartTransaction": {"idTagInfo": tag, "transactionId": 41},
                "StopTransaction": {}}.get(action, {})

    def call(self, action, payload, uid="c1"):
        """The CALL in, its answer out: checked, and returned as a list (or
        None: answered later by the App's reply)."""
        text = self.cp.receive(json.dumps([O.CALL, uid, action, payload]), self.now)
        del self.cp.cmds[:]  # the link moves them to the Bus
        if text is None:
            tally("%s: answered later" % action)
            return None
        m = json.loads(text)
        assert m[1] == uid, text
        tally("%s: %s" % (action, m[2] if m[0] == O.CALLERROR else "CALLRESULT"))
        if m[0] == O.CALLRESULT:
            assert len(m) == 3, text
            check(CallResult(uid, m[2], action=action))
        else:
            assert m[0] == O.CALLERROR and len(m) == 5, text
            assert m[2] in ERROR_CODES and m[2] != "InternalError", text
            assert isinstance(m[3], str) and m[4] == {}, text
        return m

    def kept_reads_back(self):
        d = json.loads(json.dumps(self.cp.kept()))
        fresh = O.ChargePoint("V", "M", "SN1", "1.0", lambda n: 7, clock=lambda: self.t,
                              cfg=defaults(), remote_keys=REMOTE_KEYS)
        fresh.restore(d)
        return fresh


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(valid_calls(), min_size=1, max_size=4), st.booleans(),
       st.integers(0, 120000))
def test_calls_valid_under_their_schema_are_answered_by_the_schema(calls, charging, ms):
    for a, p in calls:
        assume(is_valid(a, p))
    r = Rig(charging)
    for i, (a, p) in enumerate(calls):
        m = r.call(a, p, uid="v%d" % i)
        if m is None:  # ChangeConfiguration of one of the App's keys: its reply answers
            assert a == "ChangeConfiguration" and p["key"] in REMOTE_KEYS
            continue
        if m[0] == O.CALLERROR:
            assert m[2] not in MALFORMED, (a, p, m)
        r.step(ms)
        r.drain()
    r.kept_reads_back().poll(r.v, r.now)


@FUZZ
@given(st.lists(garbled_calls(), min_size=1, max_size=4), st.booleans())
def test_garbled_calls_are_answered_and_the_charge_point_goes_on(calls, charging):
    r = Rig(charging)
    for i, (a, p) in enumerate(calls):
        m = r.call(a, p, uid="g%d" % i)
        if m is not None and m[0] == O.CALLERROR and not isinstance(p, dict):
            assert m[2] == "FormationViolation", (a, p, m)  # 4.2.3: the payload is an object
        r.drain()
    assert r.cp.bad == 0  # every one was a CALL, answered
    r.kept_reads_back().poll(r.v, r.now)


def test_the_generators_make_what_the_schemas_allow():
    """The strategies above, checked against the schemas themselves: else
    a `valid` call could be one the charge point rightly refuses."""
    @settings(max_examples=60, deadline=None)
    @given(valid_calls())
    def one(c):
        assert is_valid(*c), c
    one()
    assert not is_valid("Reset", {"type": "Warm"})


def test_the_wrap_of_the_ticks_changes_nothing():
    """ticks_ms wraps every 2**30 ms (12.4 days up, on a board), and two
    ticks compare (ticks_diff) only within half of that: two hours of a
    transaction under a 30-minute TxDefaultProfile of 10 A, from ticks 0,
    across the wrap, and from half a period on (a week up), send the same
    CALLs at the same times and give the App the same limits. From the
    protocol: MeterValues every MeterValueSampleInterval (60 s), the
    profile's 10 A from the moment it is accepted while it runs, and no
    limit of its own after its duration. (The first profile's evaluation
    once waited for ticks 0 to come round: up to six days.)"""
    runs = []
    for now in (0, TICKS_PERIOD - 30000, TICKS_PERIOD // 2 + 5000):
        r = Rig(charging=True, now=now)
        start = datetime.fromtimestamp(r.t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        m = r.call("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": 5, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {
                "duration": 1800, "startSchedule": start, "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}})
        assert m == [O.CALLRESULT, "c1", {"status": "Accepted"}]
        sent, limits = [], []
        for i in range(7200):
            r.step(1000)
            text = r.cp.poll(r.v, r.now)
            for c in r.cp.cmds:
                limits.append((i, c.amps_ma, c.ttl_ms) if isinstance(c, O_Command) else (i, c))
            del r.cp.cmds[:]
            if text is not None:
                msg = json.loads(text)
                check(Call(msg[1], msg[2], msg[3]))
                sent.append((i, msg[2]))
                r.cp.receive(json.dumps([O.CALLRESULT, msg[1], r.answer(msg[2])]), r.now)
        runs.append((sent, limits))
    assert runs[0] == runs[1] == runs[2]
    sent, limits = runs[0]
    meter = [i for i, a in sent if a == "MeterValues"]
    assert 119 <= len(meter) <= 121 and all(59 <= b - a <= 61 for a, b in zip(meter, meter[1:]))
    during = [x for x in limits if x[0] < 1800 - 2]
    after = [x for x in limits if x[0] > 1800 + 2]
    assert during and during[0][0] == 0 and all(x[1] == 10000 for x in during), limits
    assert after and all(x[1] != 10000 for x in after), limits


def test_limits_and_meter_values_resume_at_once_after_an_outage_of_a_week():
    """A transaction under a TxDefaultProfile of 10 A; the central system
    unreachable for more than half the ticks' period (a week: no poll, no
    message). Back, the profile's limit goes to the App again at once (the
    App fell back when it was not renewed) and MeterValues resume within
    MeterValueSampleInterval, not once the ticks come round days later."""
    r = Rig(charging=True)
    m = r.call("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 5, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative", "chargingSchedule": {
            "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}})
    assert m == [O.CALLRESULT, "c1", {"status": "Accepted"}]

    def run(s):
        sent, limits = [], []
        for i in range(s):
            r.step(1000)
            text = r.cp.poll(r.v, r.now)
            limits += [(i, c.amps_ma) for c in r.cp.cmds]
            del r.cp.cmds[:]
            if text is not None:
                msg = json.loads(text)
                sent.append((i, msg[2]))
                r.cp.receive(json.dumps([O.CALLRESULT, msg[1], r.answer(msg[2])]), r.now)
        return sent, limits

    sent, limits = run(120)
    assert limits[0] == (0, 10000) and [a for i, a in sent].count("MeterValues") == 2, sent
    r.cp.lost()
    for _ in range(2):  # a week (ticks_add takes less than half the period at a time)
        r.now = ticks_add(r.now, TICKS_PERIOD // 4 + 30000)
        r.t += (TICKS_PERIOD // 4 + 30000) // 1000
    r.cp.connected(r.now)
    sent, limits = run(120)
    assert limits and limits[0][0] <= 1 and limits[0][1] == 10000, limits
    meter = [i for i, a in sent if a == "MeterValues"]
    assert meter and meter[0] <= 61 and len(meter) >= 2, sent
