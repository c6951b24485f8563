"""Charger configuration: loading, validation, atomic JSON persistence.

`validate(d)` returns a complete configuration (defaults filled in) or raises
ConfigError naming the key and what it allows. `save()` writes a new file and
renames it over the old one, so a power cut leaves either the old or the new
file, never half of one.

The schema and the checks are in evse/config_schema.py, which runs only at
boot and for a `set_config` command: every function here that needs it
imports it and drops it again (`forget`), so that only the validated
configuration (a dict) stays in RAM while the charger runs. KEYS names every
key.
"""
import json
import os
import sys

KEYS = (
    "max_current_a", "phases", "authorization", "ventilation", "meter", "socket", "cable_a",
    "fallback_current_a", "meter_loss", "meter_unit", "meter_baud", "meter_parity",
    "meter_fail_polls", "meter_poll_s", "rcd_selftest", "rcd_retry_max", "rcd_retry_s",
    "temp_derate_c", "temp_stop_c", "temp_hyst_c",
    "mode", "mains_max_a", "solar_import_a", "grid_meter", "grid_meter_unit",
    "solar_start_s", "solar_stop_s", "solar_min_run_s", "solar_min_pause_s",
    "phase_switch", "phase_switch_s",
    "mqtt_host", "mqtt_port", "mqtt_user", "mqtt_password", "mqtt_tls", "mqtt_ca",
    "mqtt_prefix", "mqtt_device_id", "mqtt_keepalive_s", "mqtt_status_s", "mqtt_telemetry_s",
    "mqtt_ha_discovery", "mqtt_ha_prefix", "mqtt_remote_config", "mqtt_ack", "journal_kb",
    "backend", "ocpp_url",
)


class ConfigError(ValueError):
    pass


def forget(package, name):
    """Drop the module `package`.`name` from sys.modules and from its package,
    so that the collector frees it once nothing else refers to it (a boot-only
    module: its code, constants and dict; interned names stay)."""
    sys.modules.pop(package + "." + name, None)
    try:
        delattr(sys.modules[package], name)
    except (AttributeError, KeyError):
        pass


def _schema(fn, *args):
    # Run evse.config_schema.<fn>(*args) and drop the module again.
    __import__("evse.config_schema")
    try:
        return getattr(sys.modules["evse.config_schema"], fn)(*args)
    finally:
        forget("evse", "config_schema")


def defaults():
    """A configuration of every key's default."""
    return _schema("defaults")


def check(key, v):
    """Raise ConfigError unless `v` is allowed for `key`."""
    _schema("check", key, v)


def validate(d):
    """A complete, checked configuration from a (partial) dict `d`."""
    return _schema("validate", d)


def read_json(path):
    """The JSON value in `path`, or None when neither it nor path.tmp exists.

    Raises ValueError for a file that is not valid JSON. The .tmp file is
    read only when `path` is missing: on FAT the rename of write_json_atomic
    removes the target first, and a power cut between the two steps leaves
    only the (complete) .tmp file.
    """
    for p in (path, path + ".tmp"):
        try:
            f = open(p)
        except OSError:
            continue
        try:
            text = f.read()
        finally:
            f.close()
        return json.loads(text)
    return None


def load(path):
    """Configuration from `path`; defaults when the file does not exist."""
    try:
        d = read_json(path)
    except ValueError:
        raise ConfigError("config: %s is not valid JSON" % path)
    if d is None:
        return defaults()
    return validate(d)


def write_json_atomic(path, obj):
    """Write `obj` as JSON to path.tmp, then rename it over `path`.

    A power cut leaves either the old or the new file (the rename is atomic
    on littlefs; MicroPython's FAT driver removes the target first).
    """
    tmp = path + ".tmp"
    f = open(tmp, "w")
    try:
        f.write(json.dumps(obj))
        f.flush()
    finally:
        f.close()
    os.rename(tmp, path)


def save(path, cfg):
    """Validate and write `cfg` atomically."""
    cfg = validate(cfg)
    write_json_atomic(path, cfg)
    return cfg
