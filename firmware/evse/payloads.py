"""The backend link's topics and payloads (docs/mqtt.md), and the decoding of
command payloads. Pure: builds JSON text from plain values (evse.jsonw), so
the same values give the same bytes under CPython and MicroPython.
"""
import json

from evse.jsonw import dec, obj

MAX_CMD_BYTES = 512  # larger command payloads are refused unread


class Topics:
    def __init__(self, prefix, device_id):
        base = prefix + "/" + device_id + "/"
        self.base = base
        self.online = base + "online"
        self.status = base + "status"
        self.telemetry = base + "telemetry"
        self.session = base + "session"
        self.event = base + "event"
        self.cmd = base + "cmd"
        self.reply = base + "reply"


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
ENERGY_MEASURED = "measured"  # both readings billing grade: energy_wh is the energy
ENERGY_LATE_START = "late_start"  # the meter first answered after energy flowed
ENERGY_NO_START = "no_start_reading"
ENERGY_NO_STOP = "no_stop_reading"
ENERGY_METER_RESET = "meter_reset"  # the stop reading is below the start
ENERGY_NO_METER = "no_meter"


def energy_status(start_wh, stop_wh, late_start=False, meter=True):
    """(energy_wh, status) of a session: energy_wh only when measured."""
    if not meter:
        return None, ENERGY_NO_METER
    if start_wh is None:
        return None, ENERGY_NO_START
    if stop_wh is None:
        return None, ENERGY_NO_STOP
    if stop_wh < start_wh:
        return None, ENERGY_METER_RESET
    if late_start:
        return None, ENERGY_LATE_START
    return stop_wh - start_wh, ENERGY_MEASURED


def session_record(sid, boot, start, stop, base, meter_start_wh, meter_stop_wh,
                   energy_wh, peak_ma, reason, errors, status=ENERGY_MEASURED, estimate_wh=None):
    """One finished session (topic .../session). start/stop are seconds in
    `base` ("epoch": Unix time; "uptime": since boot number `boot`); stop is
    None when it is not known (a session cut by a power loss). `energy_wh`
    is set only when `status` is "measured"; otherwise it is null, the
    status says which reading is missing or wrong, and `estimate_wh` (null
    when nothing is known) is the least energy the session delivered."""
    return obj((
        ("id", sid), ("boot", boot), ("start", start), ("stop", stop), ("time", base),
        ("meter_start_wh", meter_start_wh), ("meter_stop_wh", meter_stop_wh),
        ("energy_wh", energy_wh), ("energy_status", status), ("estimate_wh", estimate_wh),
        ("peak_a", amps(peak_ma)), ("reason", reason), ("errors", errors),
    )).text


def event(kind, fields, boot, n, at, base):
    """One event (topic .../event): `kind` ("fault", "clear", "boot",
    "reboot", "journal_full", "journal_repaired"), its own (key, value)
    pairs, and (boot, n) which identify it: n counts the events of a boot."""
    return obj((("type", kind),) + tuple(fields) + (
        ("boot", boot), ("n", n), ("at", at), ("time", base))).text


def reply(r):
    """A command reply {"id", "ok"[, "error"]} as JSON text."""
    pairs = [("id", r.get("id")), ("ok", r.get("ok") is True)]
    if "error" in r:
        pairs.append(("error", str(r["error"])))
    return obj(pairs).text


def status(out, ev_ma, energy_wh, limits, faults, uptime_s, boot, version, journal):
    """The charger's status (topic .../status, retained). `out`: the
    charger's Outputs; `limits`: Charger.limits(); `faults`: active codes;
    `journal`: (records waiting, dropped since boot, failed writes)."""
    mx, cable, backend, left, fallback, paused, derate, meter_fb = limits
    return obj((
        ("state", out.state), ("duty", dec(out.duty, 100)), ("offer_a", dec(out.offer_ma, 1000)),
        ("contactor", out.contactor), ("error", out.error), ("session", out.session),
        ("energy_wh", energy_wh), ("ev_a", amps(ev_ma)),
        ("limits", obj((
            ("max_a", dec(mx, 1000)), ("cable_a", dec(cable, 1000)),
            ("backend_a", dec(backend, 1000)),
            ("backend_ttl_s", None if left is None else (left + 999) // 1000),
            ("fallback_a", dec(fallback, 1000)), ("paused", paused), ("derate", derate),
            ("meter_fallback", meter_fb),
        ))),
        ("faults", faults), ("uptime_s", uptime_s), ("boot", boot), ("fw", version),
        ("journal", obj((("pending", journal[0]), ("dropped", journal[1]),
                         ("errors", journal[2])))),
    )).text


def _list3(vals, scale):
    if vals is None:
        return [None, None, None]
    return [dec(v, scale) if v is not None else None for v in vals]


def telemetry(session, state, phase_mv, phase_ma, power_w, meter_wh, ev_ma, temp_dc, energy_wh):
    """Measurements (topic .../telemetry): per-phase V and A (null for a
    phase the meter does not have), power, the meter's energy register,
    the largest phase current, the enclosure temperature."""
    return obj((
        ("session", session), ("state", state),
        ("voltage_v", _list3(phase_mv, 1000)), ("current_a", _list3(phase_ma, 1000)),
        ("power_w", power_w), ("meter_wh", meter_wh), ("ev_a", amps(ev_ma)),
        ("temp_c", dec(temp_dc, 10)), ("energy_wh", energy_wh),
    )).text


def decode_cmd(payload):
    """A command payload (bytes, or its size alone when the client did not
    keep a payload that large) -> (object, None), or (None, error text)."""
    n = payload if isinstance(payload, int) else len(payload)
    if n > MAX_CMD_BYTES:
        return None, "payload too large: %d bytes, at most %d" % (n, MAX_CMD_BYTES)
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
