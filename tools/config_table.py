#!/usr/bin/env python3
"""The configuration table of docs/configuration.md, made from the
firmware's own schema (firmware/evse/config_schema.py: key, default, what
is allowed) and the meaning of each key written here.

    .venv/bin/python tools/config_table.py            # prints the table
    .venv/bin/python tools/config_table.py --write    # rewrites it in docs/configuration.md

host_tests/test_readme.py fails when the document's table is not what this
prints, or when a key has no meaning here.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "host")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from evse import config_schema as CS  # noqa: E402

DOC = os.path.join(ROOT, "docs", "configuration.md")
BEGIN = "<!-- config table: begin (tools/config_table.py --write) -->"
END = "<!-- config table: end -->"

MEANING = {
    "max_current_a": "the most current the installation may take (the installer's limit; "
                     "over MQTT it can only be lowered)",
    "phases": "phases wired to the charger",
    "authorization": "`free`: a plugged-in vehicle charges; `backend`: it waits for `authorize`",
    "ventilation": "the site allows charging in state D (ventilation)",
    "meter": "the energy meter's profile (docs/meters.md), null for none",
    "socket": "true: a Type 2 socket, the cable's rating read from PP; false: a tethered cable",
    "cable_a": "the tethered cable's rating (null: `max_current_a`)",
    "fallback_current_a": "the offer once a backend limit with `ttl_s` was not renewed, "
                          "and while the meter is lost with `meter_loss` `fallback`; 0: pause",
    "meter_loss": "a meter that stops answering: `fallback` offers `fallback_current_a`, "
                  "`stop` stops charging",
    "meter_unit": "the meter's Modbus address",
    "meter_baud": "the RS-485 line's speed",
    "meter_parity": "the RS-485 line's parity: none, even, odd (8 data bits)",
    "meter_fail_polls": "polls in a row without an answer before the meter counts as lost",
    "meter_poll_s": "seconds between two meter polls",
    "rcd_selftest": "test the RCD through its test winding before each close (needs the "
                    "board's `rcd.test` output)",
    "rcd_retry_max": "RCD trips that clear themselves after `rcd_retry_s` before the fault "
                     "latches (0: the first one latches)",
    "rcd_retry_s": "seconds before a tripped RCD may be retried",
    "temp_derate_c": "enclosure temperature from which the offer is halved",
    "temp_stop_c": "enclosure temperature that stops charging (`overtemp`), above "
                   "`temp_derate_c`",
    "temp_hyst_c": "how far the temperature must fall before derating or `overtemp` ends",
    "mode": "site energy (docs/site.md): `normal` offers the limits above; `smart` keeps "
            "every phase at the grid connection within `mains_max_a`; `solar` charges from "
            "what the site exports (plus `solar_import_a`)",
    "mains_max_a": "the site's main fuse, per phase, for `smart` and `solar`",
    "solar_import_a": "what `solar` may take from the grid on top of the export, in A summed "
                      "over the phases",
    "grid_meter": "the meter at the grid connection: a profile on the charger meter's bus "
                  "(same line settings, address `grid_meter_unit`), `mqtt` for currents the "
                  "backend publishes (docs/site.md), or null; needs phase currents",
    "grid_meter_unit": "the grid meter's Modbus address, not `meter_unit`",
    "solar_start_s": "`solar`: the surplus must allow 6 A this long before charging starts",
    "solar_stop_s": "`solar`: charging stops once the surplus has not allowed 6 A this long "
                    "(meanwhile the charger takes 6 A)",
    "solar_min_run_s": "`solar`: a start runs at least this long before a stop for lack of sun",
    "solar_min_pause_s": "`solar`: after a stop, at least this long before the next start",
    "phase_switch": "the board's second contactor switches L2 and L3 (board profile "
                    "`phase_switch`): `solar` charges on one phase when the surplus covers 6 A on "
                    "one but not on three (docs/site.md)",
    "phase_switch_s": "`phase_switch`: at least this long between two switches during a run",
    "mqtt_host": "the broker; null: no backend link (and no journal)",
    "mqtt_port": "null: 1883, or 8883 with TLS",
    "mqtt_user": "user name at the broker (the shipped broker's ACL wants the device id)",
    "mqtt_password": "its password, better in `secrets.json`; never shown in an error, a "
                     "reply, a log line or a message",
    "mqtt_tls": "TLS to the broker; needs `mqtt_ca`",
    "mqtt_ca": "the CA certificate file (PEM or DER) the broker's certificate must be signed by",
    "mqtt_prefix": "the topics' first level(s)",
    "mqtt_device_id": "the device id in the topics (null: `machine.unique_id()` in hex)",
    "mqtt_keepalive_s": "MQTT keepalive",
    "mqtt_status_s": "the status is published at least this often",
    "mqtt_telemetry_s": "telemetry interval while a vehicle is connected",
    "mqtt_ha_discovery": "publish Home Assistant discovery configurations",
    "mqtt_ha_prefix": "Home Assistant's discovery prefix",
    "mqtt_remote_config": "accept `set_config` commands (only the keys that cannot weaken a "
                          "safety function: docs/mqtt.md, \"Commands\")",
    "mqtt_ack": "who confirms a journal record before it is deleted: `backend` (end to "
                "end, the reference backend) or `broker` (its PUBACK: no reference backend)",
    "journal_kb": "the journal's live records on flash (and in RAM), KiB",
    "backend": "the backend protocol: `mqtt` (docs/mqtt.md, with `mqtt_host`) or `ocpp` "
               "(OCPP 1.6J to a central system, with `ocpp_url`: docs/ocpp.md)",
    "ocpp_url": "the central system's `ws://` or `wss://` URL (wss: `mqtt_ca` is its CA); "
                "ending in `/`, the identity (`mqtt_device_id`, else the chip's id) is "
                "appended. The password is secrets.json's `ocpp_password`",
}


def _j(v):
    return "`%s`" % json.dumps(v)


def allowed(key):
    default, kind, a = CS.SCHEMA[key]
    if kind in ("amps", "num", "int"):
        return "%s..%s" % (a[0], a[1])
    if kind == "amps0":
        return "0 or %s..%s" % (a[0], a[1])
    if kind == "amps_or_none":
        return "null or %s..%s" % (a[0], a[1])
    if kind == "bool":
        return "true, false"
    if kind == "choice":
        return ", ".join(_j(x) for x in a)
    if kind == "meter":
        return "null or a meter profile (%s)" % ", ".join("`%s`" % x for x in a)
    if kind == "grid":
        return "null, `\"mqtt\"` or a meter profile"
    if kind == "port":
        return "null or %s..%s" % (a[0], a[1])
    if kind == "topic":
        return "topic levels of letters, digits, `_` `.` `-`, up to %d characters" % a
    if kind == "text":
        chars = CS._CHARS_TEXT.get(a[1], "printable characters")
        return "%s1..%d %s" % ("null or " if default is None else "", a[0], chars)
    raise ValueError("%s: unknown kind %s" % (key, kind))


def table():
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key in CS.SCHEMA:
        lines.append("| `%s` | %s | %s | %s |" % (key, _j(CS.SCHEMA[key][0]), allowed(key),
                                                 MEANING[key]))
    return "\n".join(lines)


def main(argv):
    if "--write" not in argv:
        print(table())
        return 0
    with open(DOC) as f:
        text = f.read()
    i, j = text.index(BEGIN), text.index(END) + len(END)
    with open(DOC, "w") as f:
        f.write(text[:i] + BEGIN + "\n" + table() + "\n" + END + text[j:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
