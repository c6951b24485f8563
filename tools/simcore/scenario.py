"""Scenario files (shared/scenarios/FORMAT.md): strict validation and the
integer form the runner takes.

`load(text)` parses and validates a scenario and returns it normalized:
times in ms, voltages in mV, currents in mA, temperatures in 0.1 degC, each
event as {"t": ms, "k": key, "v": value, "raw": JSON text of the event}.
Anything that breaks the format raises ScenarioError with one line that
names the key or event. Unknown top-level keys are ignored (tools attach
their own, e.g. expectations).

This runs on the CPython side (tools/sim.py) before either run, so the
runner under CPython and under MicroPython gets the very same integers and
never parses a float itself.
"""
import json

from evse import config as _config

EVENT_KEYS = ("ev", "ev_diode", "cp_short", "pp_ohm", "ev_draw", "fault", "cmd",
              "broker", "noise_v", "site", "grid_meter")
FAULT_KEYS = ("rcd", "temp_c", "weld", "no_close", "pe", "meter", "power")
DRAW_KEYS = ("max_a", "obey_pwm", "response_s", "phases")
MAX_NOISE_V = 12


class ScenarioError(ValueError):
    pass


def _is_num(v):
    if isinstance(v, bool) or not (isinstance(v, int) or isinstance(v, float)):
        return False
    return v == v and v not in (float("inf"), float("-inf"))


def _j(v):
    """JSON text of a value, for messages."""
    return json.dumps(v, sort_keys=True)


def _num(where, v, lo=None, hi=None, what="a number"):
    if not _is_num(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        if lo is not None and hi is not None:
            what = "%s in %s..%s" % (what, lo, hi)
        elif lo is not None:
            what = "%s >= %s" % (what, lo)
        raise ScenarioError("%s must be %s, got %s" % (where, what, _j(v)))
    return v


def _bool(where, v):
    if not isinstance(v, bool):
        raise ScenarioError("%s must be true or false, got %s" % (where, _j(v)))
    return v


def _choice(where, v, allowed):
    if not isinstance(v, str) or v not in allowed:
        raise ScenarioError("%s must be one of %s, got %s"
                            % (where, ", ".join([_j(a) for a in allowed]), _j(v)))
    return v


def _ms(s):
    return int(round(s * 1000))


def _ev_draw(where, v):
    if not isinstance(v, dict):
        raise ScenarioError("%s must be an object with keys among %s, got %s"
                            % (where, ", ".join(DRAW_KEYS), _j(v)))
    out = {}
    for k in v:
        if k not in DRAW_KEYS:
            raise ScenarioError('%s: unknown key "%s" (allowed: %s)'
                                % (where, k, ", ".join(DRAW_KEYS)))
    if "max_a" in v:
        out["max_ma"] = int(round(_num(where + ".max_a", v["max_a"], 0, 80) * 1000))
    if "obey_pwm" in v:
        out["obey"] = _bool(where + ".obey_pwm", v["obey_pwm"])
    if "response_s" in v:
        out["response_ms"] = _ms(_num(where + ".response_s", v["response_s"], 0, 60))
    if "phases" in v:
        p = v["phases"]
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 3:
            raise ScenarioError("%s.phases must be 1, 2 or 3, got %s" % (where, _j(p)))
        out["phases"] = p
    return out


def _site(where, v):
    """{"house_a": [L1, L2, L3]} or {"house_a": [L1]}: mA per phase (3)."""
    if not isinstance(v, dict) or list(v) != ["house_a"]:
        raise ScenarioError('%s must be an object with the one key "house_a", got %s'
                            % (where, _j(v)))
    a = v["house_a"]
    w = where + ".house_a"
    if not isinstance(a, list) or len(a) not in (1, 3):
        raise ScenarioError("%s must be a list of 1 or 3 numbers (A per phase), got %s"
                            % (w, _j(a)))
    out = [0, 0, 0]
    for i in range(len(a)):
        out[i] = int(round(_num("%s[%d]" % (w, i), a[i], -1000, 1000) * 1000))
    return out


def _fault(where, v):
    if not isinstance(v, dict) or len(v) != 1:
        raise ScenarioError("%s must be an object with exactly one of %s, got %s"
                            % (where, ", ".join(FAULT_KEYS), _j(v)))
    k = list(v)[0]
    x = v[k]
    w = "%s.%s" % (where, k)
    if k not in FAULT_KEYS:
        raise ScenarioError('%s: unknown fault "%s" (one of %s)'
                            % (where, k, ", ".join(FAULT_KEYS)))
    if k == "temp_c":
        return [k, int(round(_num(w, x, -40, 200) * 10))]
    if k == "meter":
        return [k, _choice(w, x, ("offline", "online"))]
    if k == "power":
        return [k, _choice(w, x, ("off", "on"))]
    return [k, _bool(w, x)]


def _event_value(where, k, v):
    w = "%s.%s" % (where, k)
    if k == "ev":
        return _choice(w, v, ("A", "B", "C", "D"))
    if k == "ev_diode" or k == "cp_short":
        return _bool(w, v)
    if k == "pp_ohm":
        if v is None:
            return None
        return int(round(_num(w, v, 0, 1000000, "null or a number")))
    if k == "ev_draw":
        return _ev_draw(w, v)
    if k == "fault":
        return _fault(w, v)
    if k == "cmd":
        if not isinstance(v, dict):
            raise ScenarioError("%s must be a command object, got %s" % (w, _j(v)))
        return v
    if k == "broker":
        return _choice(w, v, ("down", "up"))
    if k == "grid_meter":
        return _choice(w, v, ("offline", "online"))
    if k == "site":
        return _site(w, v)
    # noise_v
    return int(round(_num(w, v, 0, MAX_NOISE_V) * 1000))


def normalize(d):
    """The validated scenario `d` (a decoded JSON value) in integer units."""
    if not isinstance(d, dict):
        raise ScenarioError("the scenario must be a JSON object")
    for k in ("name", "duration_s", "config", "events"):
        if k not in d:
            raise ScenarioError('missing key "%s"' % k)
    if not isinstance(d["name"], str):
        raise ScenarioError('"name" must be a string, got %s' % _j(d["name"]))
    if "description" in d and not isinstance(d["description"], str):
        raise ScenarioError('"description" must be a string, got %s' % _j(d["description"]))
    dur = d["duration_s"]
    if not _is_num(dur) or dur <= 0:
        raise ScenarioError('"duration_s" must be a number above 0, got %s' % _j(dur))
    seed = d.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ScenarioError('"seed" must be an integer, got %s' % _j(seed))
    try:
        cfg = _config.validate(d["config"])
    except _config.ConfigError as e:
        raise ScenarioError("config: %s" % e)
    events = d["events"]
    if not isinstance(events, list):
        raise ScenarioError('"events" must be a list, got %s' % _j(events))
    out = []
    prev = None
    for i in range(len(events)):
        e = events[i]
        where = "events[%d]" % i
        if not isinstance(e, dict):
            raise ScenarioError("%s: must be an object, got %s" % (where, _j(e)))
        if "t" not in e:
            raise ScenarioError('%s: missing "t"' % where)
        t = e["t"]
        if not _is_num(t) or t < 0:
            raise ScenarioError("%s: t must be a number >= 0, got %s" % (where, _j(t)))
        if prev is not None and t < prev:
            raise ScenarioError("%s: t %s is before the previous event's t %s "
                                "(events must be in time order)" % (where, _j(t), _j(prev)))
        if t > dur:
            raise ScenarioError("%s: t %s is after duration_s %s" % (where, _j(t), _j(dur)))
        prev = t
        keys = [k for k in e if k != "t"]
        for k in keys:
            if k not in EVENT_KEYS:
                raise ScenarioError('%s: unknown event key "%s"' % (where, k))
        if not keys:
            raise ScenarioError("%s: no event key (one of %s)" % (where, ", ".join(EVENT_KEYS)))
        if len(keys) > 1:
            raise ScenarioError("%s: more than one event key: %s (one per event)"
                                % (where, ", ".join(['"%s"' % k for k in keys])))
        k = keys[0]
        v = _event_value(where, k, e[k])
        raw = json.dumps({k: e[k]})  # the file's key order, for people
        out.append({"t": _ms(t), "k": k, "v": v, "raw": raw})
    return {
        "name": d["name"],
        "duration_ms": _ms(dur),
        "seed": seed,
        "config": d["config"],
        "phases": cfg["phases"],
        "events": out,
    }


def load(text):
    """Parse and validate a scenario file's text; see normalize()."""
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ScenarioError("not valid JSON: %s" % e)
    return normalize(d)
