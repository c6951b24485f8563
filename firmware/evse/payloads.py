"""The backend link's topics and payloads (docs/mqtt.md), and the decoding of
command payloads. Pure: builds JSON text from plain values (evse.jsonw), so
the same values give the same bytes under CPython and MicroPython.
"""
import json

from micropython import const

from evse import bus as B
from evse.jsonw import dec, obj

_MAX_CMD_BYTES = const(512)  # larger command payloads are refused unread


_TOPICS = const(("online", "status", "telemetry", "session", "event", "cmd", "reply", "ack"))


class Topics:
    """The device's topics: `base` ("PREFIX/DEVICE/") and base + name for
    each name of _TOPICS (.status, .cmd, ...). Those are made when asked for
    (a publish encodes its topic anyway), so only the base stays in RAM."""

    def __init__(self, prefix, device_id):
        self.base = prefix + "/" + device_id + "/"

    def __getattr__(self, name):
        if name in _TOPICS:
            return self.base + name
        raise AttributeError(name)


def amps(ma):
    """mA as A with 2 decimals (rounded half up), None stays None."""
    if ma is None:
        return None
    if ma < 0:
        return dec(-((-ma + 5) // 10), 100)
    return dec((ma + 5) // 10, 100)


def codes(faults, table):
    """Fault codes of the bits set in `faults` ((bit, code) table order)."""
    return [name for bit, name in table if faults & bit]


# How a session record's energy was measured (its "energy_status").
_ENERGY_MEASURED = const("measured")  # both readings billing grade: energy_wh is the energy
_ENERGY_LATE_START = const("late_start")  # the meter first answered after energy flowed
_ENERGY_NO_START = const("no_start_reading")
_ENERGY_NO_STOP = const("no_stop_reading")
_ENERGY_METER_RESET = const("meter_reset")  # the stop reading is below the start
_ENERGY_NO_METER = const("no_meter")


def energy_status(start_wh, stop_wh, late_start=False, meter=True):
    """(energy_wh, status) of a session: energy_wh only when measured."""
    if not meter:
        return None, _ENERGY_NO_METER
    if start_wh is None:
        return None, _ENERGY_NO_START
    if stop_wh is None:
        return None, _ENERGY_NO_STOP
    if stop_wh < start_wh:
        return None, _ENERGY_METER_RESET
    if late_start:
        return None, _ENERGY_LATE_START
    return stop_wh - start_wh, _ENERGY_MEASURED


def _rid(rid):
    return (("rid", rid),) if rid is not None else ()


def session_record(sid, boot, start, stop, base, meter_start_wh, meter_stop_wh,
                   energy_wh, peak_ma, reason, errors, status=_ENERGY_MEASURED, estimate_wh=None,
                   rid=None, ref=None, tag=None):
    """One finished session (topic .../session). start/stop are seconds in
    `base` ("epoch": Unix time; "uptime": since boot number `boot`); stop is
    None when it is not known (a session cut by a power loss). `energy_wh`
    is set only when `status` is "measured"; otherwise it is null, the
    status says which reading is missing or wrong, and `estimate_wh` (null
    when nothing is known) is the least energy the session delivered.
    `rid`, the record's identity for the backend's acknowledgement
    (docs/mqtt.md), comes first; `ref`, the OCPP transactionId the central
    system gave the session (docs/ocpp.md), and `tag`, the idTag of the
    RemoteStartTransaction that started it, last and only when there are."""
    return obj(_rid(rid) + (
        ("id", sid), ("boot", boot), ("start", start), ("stop", stop), ("time", base),
        ("meter_start_wh", meter_start_wh), ("meter_stop_wh", meter_stop_wh),
        ("energy_wh", energy_wh), ("energy_status", status), ("estimate_wh", estimate_wh),
        ("peak_a", amps(peak_ma)), ("reason", reason), ("errors", errors),
    ) + ((("ref", ref),) if ref is not None else ())
      + ((("tag", tag),) if tag is not None else ())).text


def event(kind, fields, boot, n, at, base, rid=None):
    """One event (topic .../event): `kind` ("fault", "clear", "boot",
    "reboot", "journal_full", "journal_repaired"), its own (key, value)
    pairs, and (boot, n): n counts the events of a boot. `rid` as for a
    session record."""
    return obj(_rid(rid) + (("type", kind),) + tuple(fields) + (
        ("boot", boot), ("n", n), ("at", at), ("time", base))).text


def reply(r):
    """A command reply {"id", "ok"[, "error"]} as JSON text."""
    pairs = [("id", r.get("id")), ("ok", r.get("ok") is True)]
    if "error" in r:
        pairs.append(("error", str(r["error"])))
    return obj(pairs).text


def _v(x):
    """A snapshot field as a JSON value: NONE is null."""
    return None if x == B.NONE else x


def status(s, faults_table, version, link=None, ota=None):
    """The charger's status (topic .../status, retained) from the fields of
    a status snapshot `s` (evse.bus); `faults_table`: charger.FAULTS, for
    the fault codes; `link`: the link's (connections, records sent again,
    records waiting for the backend's confirmation, connections in a row
    the broker closed right after accepting them); `ota`: the update's
    (key, value) pairs (evse/ota.py Runner.report), only when there is one."""
    err = s[B.S_ERROR]
    flags = s[B.S_FLAGS]
    left = _v(s[B.S_LEFT])
    return obj((
        ("state", B.STATES[s[B.S_STATE]]), ("duty", dec(s[B.S_DUTY], 100)),
        ("offer_a", dec(s[B.S_OFFER], 1000)), ("contactor", s[B.S_CONTACTOR] == 1),
        ("error", faults_table[err - 1][1] if err else None),
        ("session", _v(s[B.S_SESSION])),
        ("energy_wh", s[B.S_ENERGY]), ("ev_a", amps(_v(s[B.S_EV]))),
        ("limits", obj((
            ("max_a", dec(s[B.S_MAX], 1000)), ("cable_a", dec(s[B.S_CABLE], 1000)),
            ("backend_a", dec(_v(s[B.S_BACKEND]), 1000)),
            ("backend_ttl_s", None if left is None else (left + 999) // 1000),
            ("fallback_a", dec(s[B.S_FALLBACK], 1000)),
            ("paused", bool(flags & B.F_PAUSED)), ("derate", bool(flags & B.F_DERATE)),
            ("meter_fallback", bool(flags & B.F_METER_FB)),
        ))),
        ("faults", codes(s[B.S_FAULTS], faults_table)), ("uptime_s", s[B.S_UPTIME]),
        ("boot", s[B.S_BOOT]), ("fw", version),
        ("journal", obj((("pending", s[B.S_PENDING]), ("dropped", s[B.S_DROPPED]),
                         ("errors", s[B.S_ERRORS])))),
    ) + ((("link", obj((("connects", link[0]), ("resent", link[1]),
                        ("unconfirmed", link[2]), ("short_lived", link[3])))),)
         if link is not None else ()) + (_site(s, False) if len(s) > B.N_FIELDS else ())
        + ((("ota", obj(ota)),) if ota else ())).text


def _site(s, grid):
    """From the snapshot's site fields (evse.site: a snapshot has them only
    with site energy): the status's `site` object, or with `grid` the
    telemetry's grid_a."""
    from evse import site as S

    if grid:
        return (("grid_a", [amps(_v(s[S.S_G1 + i])) for i in range(3)]),)
    return (("site", obj((
        ("mode", S.MODES[s[S.S_MODE]]), ("phases", s[S.S_PHASES]),
        ("limit_a", dec(_v(s[S.S_LIMIT]), 1000)),
    ))),)


def connected(s):
    """A vehicle is connected (B, C or D) or a session is under way."""
    return s[B.S_SESSION] != B.NONE or 1 <= s[B.S_STATE] <= 6


# Below these the meter reads no charging current (a meter's noise floor).
REST_MA = 100  # the largest phase current, mA
REST_W = 25  # the total power, W


def at_rest(s):
    """The meter has a reading and it shows no charging current: the
    telemetry of a charger whose vehicle has left can be its last."""
    if s[B.S_METER_WH] == B.NONE:
        return False
    a = s[B.S_EV]
    w = s[B.S_POWER]
    return (a == B.NONE or a < REST_MA) and (w == B.NONE or -REST_W < w < REST_W)


def _list3(s, i, scale):
    return [dec(_v(s[i + k]), scale) for k in range(3)]


_NULL3 = const((None, None, None))


def telemetry(s):
    """Measurements (topic .../telemetry) from a status snapshot `s`:
    per-phase V and A (null for a phase the meter does not have), power,
    the meter's energy register, the largest phase current, the enclosure
    temperature. The meter's values are null together while it has no
    reading (its register is NONE: it is silent, or has not answered
    since the boot), never its last reading."""
    m = s[B.S_METER_WH] != B.NONE
    return obj((
        ("session", _v(s[B.S_SESSION])), ("state", B.STATES[s[B.S_STATE]]),
        ("voltage_v", _list3(s, B.S_V1, 1000) if m else _NULL3),
        ("current_a", _list3(s, B.S_A1, 1000) if m else _NULL3),
        ("power_w", _v(s[B.S_POWER]) if m else None), ("meter_wh", _v(s[B.S_METER_WH])),
        ("ev_a", amps(_v(s[B.S_EV]))), ("temp_c", dec(_v(s[B.S_TEMP]), 10)),
        ("energy_wh", s[B.S_ENERGY]),
    ) + (_site(s, True) if len(s) > B.N_FIELDS else ())).text


_RID_HEAD = const('{"rid": "')


def rid_of(data):
    """The rid of a journal record's JSON text (its first field), or None."""
    if not data.startswith(_RID_HEAD):
        return None
    end = data.find('"', len(_RID_HEAD))
    return data[len(_RID_HEAD):end] if end > 0 else None


def decode_ack(payload):
    """The backend's confirmation {"rids": ["...", ...]} -> the rids (a
    list of strings); ValueError when it is not that."""
    if isinstance(payload, int):
        raise ValueError("ack too large")
    try:
        msg = json.loads(payload)
    except (ValueError, RuntimeError, TypeError):  # RuntimeError: nested too deep
        raise ValueError("ack: not JSON")
    rids = msg.get("rids") if isinstance(msg, dict) else None
    if not isinstance(rids, list):
        raise ValueError("ack: no rids")
    return [r for r in rids if isinstance(r, str)]


def decode_cmd(payload):
    """A command payload (bytes, or its size alone when the client did not
    keep a payload that large) -> (object, None), or (None, error text)."""
    n = payload if isinstance(payload, int) else len(payload)
    if n > _MAX_CMD_BYTES:
        return None, "payload too large: %d bytes, at most %d" % (n, _MAX_CMD_BYTES)
    try:
        text = payload.decode()
    except ValueError:  # UnicodeError
        return None, "payload is not UTF-8 text"
    try:
        msg = json.loads(text)
    except (ValueError, RuntimeError):  # RuntimeError: nested too deep
        return None, "malformed JSON"
    if not isinstance(msg, dict):
        return None, "command must be a JSON object"
    return msg, None
