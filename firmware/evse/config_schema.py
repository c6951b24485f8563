"""The configuration's schema and its validation: run at boot (evse.config
imports this module to validate config.json and drops it again) and for a
`set_config` command, never kept in RAM while the charger runs.

Use it through evse.config (validate, defaults, check, load, save); tools on
the host may import it directly (METER_BAUDS, SCHEMA).
"""
from micropython import const

from evse.config import ConfigError
from evse.meter_maps import NAMES as METER_PROFILES  # the meter catalogue's profiles

METER_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

# key: (default, kind, allowed) -- kinds:
#   "amps": number in [lo, hi];  "amps0": 0 or a number in [lo, hi]
#   "num": number in [lo, hi];   "int": integer in [lo, hi]
#   "bool";  "choice": one of the tuple;  "meter": None or a profile name
#   "amps_or_none": None or a number in [lo, hi]
#   "grid": None, "mqtt" or a profile name
SCHEMA = {
    "max_current_a": (32, "amps", (6, 80)),
    "phases": (3, "choice", (1, 3)),
    "authorization": ("free", "choice", ("free", "backend")),
    "ventilation": (False, "bool", None),
    "meter": ("sdm630", "meter", METER_PROFILES),
    "socket": (False, "bool", None),
    "cable_a": (None, "amps_or_none", (6, 80)),
    "fallback_current_a": (6, "amps0", (6, 80)),
    "meter_loss": ("fallback", "choice", ("fallback", "stop")),
    "meter_unit": (1, "int", (1, 247)),
    "meter_baud": (9600, "choice", METER_BAUDS),
    "meter_parity": ("N", "choice", ("N", "E", "O")),
    "meter_fail_polls": (3, "int", (1, 20)),
    "meter_poll_s": (1, "num", (0.5, 60)),
    "rcd_selftest": (True, "bool", None),
    "rcd_retry_max": (0, "int", (0, 10)),
    "rcd_retry_s": (300, "num", (10, 3600)),
    "temp_derate_c": (60, "num", (30, 100)),
    "temp_stop_c": (70, "num", (35, 110)),
    "temp_hyst_c": (10, "num", (1, 30)),
    # --- Site energy (docs/site.md): the grid connection's limits.
    "mode": ("normal", "choice", ("normal", "smart", "solar")),
    "mains_max_a": (25, "amps", (6, 630)),
    "solar_import_a": (0, "num", (0, 16)),
    # the grid connection's meter: a profile on the charger meter's bus, or
    # "mqtt" for currents the backend publishes (docs/site.md)
    "grid_meter": (None, "grid", METER_PROFILES),
    "grid_meter_unit": (2, "int", (1, 247)),
    "solar_start_s": (60, "int", (0, 3600)),
    "solar_stop_s": (300, "int", (0, 3600)),
    "solar_min_run_s": (600, "int", (0, 7200)),
    "solar_min_pause_s": (300, "int", (0, 7200)),
    # 1p/3p: the board's L2/L3 contactor (board profile `phase_switch`)
    "phase_switch": (False, "bool", None),
    "phase_switch_s": (600, "int", (60, 7200)),
}

# --- Backend link over MQTT (issue #5, docs/mqtt.md). Extra kinds:
#   "text": a string of at most allowed[0] characters from allowed[1] (None:
#           any printable), or None when the default is None;
#   "topic": topic levels of [A-Za-z0-9_.-] joined by "/", at most `allowed`
#           characters; "port": None or an integer in [lo, hi].
_ID_CHARS = const("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_HOST_CHARS = _ID_CHARS + ".:"
_PATH_CHARS = _ID_CHARS + "./"
MQTT_SCHEMA = {
    "mqtt_host": (None, "text", (253, _HOST_CHARS)),  # None: no backend link
    "mqtt_port": (None, "port", (1, 65535)),  # None: 1883, 8883 with TLS
    "mqtt_user": (None, "text", (64, None)),
    "mqtt_password": (None, "text", (128, None)),
    "mqtt_tls": (False, "bool", None),
    "mqtt_ca": (None, "text", (96, _PATH_CHARS)),  # CA file on flash (PEM or DER)
    "mqtt_prefix": ("evse", "topic", 32),
    "mqtt_device_id": (None, "text", (32, _ID_CHARS)),  # None: machine.unique_id() hex
    "mqtt_keepalive_s": (30, "int", (10, 600)),
    "mqtt_status_s": (60, "int", (5, 60)),
    "mqtt_telemetry_s": (5, "int", (1, 300)),
    "mqtt_ha_discovery": (False, "bool", None),
    "mqtt_ha_prefix": ("homeassistant", "topic", 32),
    "mqtt_remote_config": (False, "bool", None),  # set_config over MQTT
    # who confirms a journal record before the charger deletes it: "backend"
    # (its ack topic, after the commit: end to end) or "broker" (PUBACK)
    "mqtt_ack": ("backend", "choice", ("backend", "broker")),
    "journal_kb": (8, "int", (2, 64)),
}
for _k in MQTT_SCHEMA:
    SCHEMA[_k] = MQTT_SCHEMA[_k]
# --- The backend: this MQTT protocol, or OCPP 1.6J to a central system
# (docs/ocpp.md). ocpp_url is ws:// or wss://; ending in "/", the charge
# point's identity (mqtt_device_id, else the chip's id) is appended. Its
# password (HTTP Basic) is secrets.json's ocpp_password, never a key here.
_URL_CHARS = _PATH_CHARS + ":%~"
SCHEMA["backend"] = ("mqtt", "choice", ("mqtt", "ocpp"))
SCHEMA["ocpp_url"] = (None, "text", (200, _URL_CHARS))
# Never echoed in an error message, a reply or a log line.
SECRET_KEYS = ("mqtt_password",)


def defaults():
    d = {}
    for k in SCHEMA:
        d[k] = SCHEMA[k][0]
    return d


def _is_num(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)


def _rng(allowed):
    return "%s..%s" % (allowed[0], allowed[1])


# Values are looked at as their UTF-8 bytes, never a character at a time:
# in MicroPython iterating a str interns every character as a qstr for good
# (evse/jsonw.py _string), and these values come from a remote set_config.
def _text_ok(v, allowed):
    if not isinstance(v, str) or not 0 < len(v) <= allowed[0]:
        return False
    chars = allowed[1]
    b = v.encode("utf-8", "surrogatepass")
    if chars is None:  # any text but control characters
        for x in b:
            if x < 0x20 or x == 0x7F:
                return False
        return True
    chars = chars.encode()  # ASCII: a byte of a longer character is never in it
    for x in b:
        if x not in chars:
            return False
    return True


def _topic_ok(v, maxlen):
    if not _text_ok(v, (maxlen, _PATH_CHARS)):
        return False
    for level in v.split("/"):
        if not level:
            return False
    return True


def check(key, v):
    """Raise ConfigError unless `v` is allowed for `key`."""
    if key not in SCHEMA:
        raise ConfigError("%s: unknown key" % key)
    kind, allowed = SCHEMA[key][1], SCHEMA[key][2]
    if kind == "text" or kind == "topic" or kind == "port":
        _check_link(key, v, kind, allowed)
    elif kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError("%s: must be true or false, got %r" % (key, v))
    elif kind == "choice":
        if isinstance(v, bool) or v not in allowed:
            raise ConfigError("%s: must be one of %s, got %r"
                              % (key, ", ".join([repr(a) for a in allowed]), v))
    elif kind == "meter" or kind == "grid":
        if kind == "grid" and v == "mqtt":
            return
        if v is not None and v not in allowed:
            raise ConfigError("%s: must be null or one of %s%s, got %r"
                              % (key, '"mqtt", ' if kind == "grid" else "", ", ".join(allowed), v))
    elif kind == "int":
        if not isinstance(v, int) or isinstance(v, bool) or not allowed[0] <= v <= allowed[1]:
            raise ConfigError("%s: must be an integer in %s, got %r" % (key, _rng(allowed), v))
    else:
        if kind == "amps_or_none" and v is None:
            return
        if kind == "amps0" and _is_num(v) and v == 0:
            return
        if not _is_num(v) or not allowed[0] <= v <= allowed[1]:
            extra = "0 or " if kind == "amps0" else ("null or " if kind == "amps_or_none" else "")
            raise ConfigError("%s: must be %sa number in %s, got %r" % (key, extra, _rng(allowed), v))


def _check_link(key, v, kind, allowed):
    shown = "(value not shown)" if key in SECRET_KEYS else "got %s" % repr(v)[:40]
    if kind == "port":
        if v is None or (isinstance(v, int) and not isinstance(v, bool)
                         and allowed[0] <= v <= allowed[1]):
            return
        raise ConfigError("%s: must be null or an integer in %s, %s" % (key, _rng(allowed), shown))
    if kind == "topic":
        if not _topic_ok(v, allowed):
            raise ConfigError("%s: must be topic levels of letters, digits, _ . - joined by /, "
                              "at most %d characters, %s" % (key, allowed, shown))
        return
    if v is None and SCHEMA[key][0] is None:
        return
    if not _text_ok(v, allowed):
        raise ConfigError("%s: must be %sa string of 1..%d %s, %s"
                          % (key, "null or " if SCHEMA[key][0] is None else "", allowed[0],
                             _CHARS_TEXT.get(allowed[1], "printable characters"), shown))


_CHARS_TEXT = {
    _ID_CHARS: "letters, digits, _ or -",
    _HOST_CHARS: "letters, digits, _ - . or :",
    _PATH_CHARS: "letters, digits, _ - . or /",
}


def validate(d):
    """A complete, checked configuration from a (partial) dict `d`."""
    if not isinstance(d, dict):
        raise ConfigError("config: must be a JSON object")
    cfg = defaults()
    for k in d:
        check(k, d[k])
        cfg[k] = d[k]
    if cfg["temp_stop_c"] <= cfg["temp_derate_c"]:
        raise ConfigError("temp_stop_c: must be above temp_derate_c (%s), got %r"
                          % (cfg["temp_derate_c"], cfg["temp_stop_c"]))
    if cfg["mqtt_tls"] and cfg["mqtt_ca"] is None:
        raise ConfigError("mqtt_ca: required when mqtt_tls is true (the broker's CA file)")
    if cfg["mode"] != "normal":
        if cfg["grid_meter"] is None:
            raise ConfigError("grid_meter: required when mode is %r (a meter at the grid "
                              "connection, or \"mqtt\")" % cfg["mode"])
        if cfg["meter"] is None:
            raise ConfigError("meter: required when mode is %r (the charger's own current, "
                              "to tell it from the house's)" % cfg["mode"])
    if cfg["phase_switch"] and cfg["phases"] != 3:
        raise ConfigError("phase_switch: needs phases 3 (it switches L2 and L3 off for one)")
    g = cfg["grid_meter"]
    if g is not None and g != "mqtt" and cfg["meter"] is not None \
            and cfg["grid_meter_unit"] == cfg["meter_unit"]:
        raise ConfigError("grid_meter_unit: must differ from meter_unit (%d): both meters "
                          "are on one bus" % cfg["meter_unit"])
    if cfg["mqtt_password"] is not None and cfg["mqtt_user"] is None:
        raise ConfigError("mqtt_user: required when mqtt_password is set")
    u = cfg["ocpp_url"]
    if cfg["backend"] == "ocpp":
        parts = u.split("/") if u is not None else ()
        if not (u is not None and (u.startswith("ws://") or u.startswith("wss://"))
                and len(parts) >= 4 and parts[2]):
            raise ConfigError("ocpp_url: required when backend is \"ocpp\": ws://host[:port]/path"
                              "/ or wss://..., got %r" % u)
        if u.startswith("wss://") and cfg["mqtt_ca"] is None:
            raise ConfigError("mqtt_ca: required for wss:// (the central system's CA file)")
        if cfg["mqtt_host"] is not None:
            raise ConfigError("mqtt_host: must be null when backend is \"ocpp\" (one backend)")
    elif u is not None:
        raise ConfigError("ocpp_url: only when backend is \"ocpp\"")
    return cfg
