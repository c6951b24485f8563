"""A central system's text through evse/ocpp.py leaves nothing behind:
unique ids, idTags, configuration keys and values, vendor ids, unknown
actions and timestamps made of characters the firmware has never seen.
MicroPython makes each character of a str that is iterated or indexed a
qstr, interned for good (docs/development.md); the charge point answers
and checks such text without doing either. Measured on the unix ports
(test_core_payloads.py says why not under CPython or WebAssembly); the
answers themselves are checked everywhere."""
import gc
import json
import sys

from evse import config
from evse import ocpp


def _text(first, n):
    # from JSON escapes, as a message brings them (chr() would intern them)
    return json.loads('"' + "".join(["\\u%04x" % (first + k) for k in range(n)]) + '"')


def _profile(uid, a, b):
    # a profile whose validFrom has `a` and `b` where "-" and "T" go
    return [2, uid, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "validFrom": "2026" + a + "01-02" + b + "03:04:05Z",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 10}]}}}]


def _burst(cp, first):
    """40 rounds of CALLs, each round with 20 new characters in every one
    of them (the timestamps: each character once); the CALLERROR and
    CALLRESULT codes of a round's answers (the same in every round)."""
    first_round = None
    for i in range(40):
        t = _text(first + 20 * i, 20)
        calls = (
            [2, t, "RemoteStartTransaction", {"idTag": t}],
            [2, t, "ChangeConfiguration", {"key": t, "value": t}],
            [2, t, "GetConfiguration", {"key": [t, t[:5], t[5:]]}],
            [2, t, t, {}],
            [2, t, "DataTransfer", {"vendorId": t}],
        ) + tuple([_profile(t, t[k:k + 1], t[k + 1:k + 2]) for k in range(0, 20, 2)])
        seen = []
        for c in calls:
            r = json.loads(cp.receive(json.dumps(c), 0))
            assert r[1] == t, r  # every one answered, to its own id
            seen.append(r[2] if r[0] == 4 else "result")
        del cp.cmds[:]  # what the App would have taken
        cp._pending.clear()
        if first_round is None:
            first_round = seen
        assert seen == first_round, (i, seen)  # every round answered alike
    return first_round


def test_a_central_systems_new_characters_never_grow_the_heap_for_good():
    cp = ocpp.ChargePoint("v", "m", "s", "1.0", lambda n: 1, cfg=config.defaults(),
                          remote_keys=("max_current_a",))
    seen = _burst(cp, 0x4E00)  # warm-up: every path once
    # a profile whose validFrom is not a dateTime is refused for it
    assert seen[:15] == ["result", "result", "result", "NotImplemented", "result"] + [
        "PropertyConstraintViolation"] * 10, seen[:15]
    measure = hasattr(gc, "mem_alloc") and sys.platform != "webassembly"
    if measure:
        gc.collect()
        before = gc.mem_alloc()
    assert _burst(cp, 0x7E00) == seen  # 800 characters the firmware has not seen
    if measure:
        gc.collect()
        grown = gc.mem_alloc() - before
        assert grown <= 64, "the heap grew by %d bytes for good" % grown
