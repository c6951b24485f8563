"""Home Assistant MQTT discovery: the retained config messages that make the
charger appear in Home Assistant (config key `mqtt_ha_discovery`).

Entities: state, current, power, meter energy, session energy, error
(sensors), the current limit (a number that sends set_current), pause
(a switch that sends pause / resume) and the firmware (an update: the
version running, and a staged one as the latest); with site energy (docs/site.md) also
the grid's phase currents, the site's limit and the phases in use
(sensors), and the mode (a select that sends set_config, when
mqtt_remote_config allows it; a sensor otherwise). All read the charger's own status and
telemetry topics; availability follows the online topic, and for the
meter's sensors (current, power, meter energy) also the meter: they are
unavailable while the status lists the `meter` fault (the meter does not
answer), rather than showing its last reading. Pure.
"""
from micropython import const

from evse.jsonw import obj


def _sensor(name, key, topic, tpl, unit=None, dclass=None, sclass=None):
    return ("sensor", key, [("name", name), ("state_topic", topic), ("value_template", tpl)]
            + ([("unit_of_measurement", unit)] if unit else [])
            + ([("device_class", dclass)] if dclass else [])
            + ([("state_class", sclass)] if sclass else []))


# The meter's sensors are available while the charger is online and the
# meter answers (availability_mode "all": every topic must say available).
_METER_OK = const("{{ 'offline' if 'meter' in value_json.faults else 'online' }}")
_METER = const(("current", "power", "energy"))
_LATEST = const("{{ value_json.ota.staged if value_json.ota is defined and "
                "value_json.ota.staged else value_json.fw }}")


def discovery(ha_prefix, topics, device_id, version, max_a, site=False, remote=False):
    """[(topic, payload), ...] to publish retained. `site`: site energy is
    on; `remote`: set_config is accepted (mqtt_remote_config)."""
    node = "evse_" + device_id
    device = obj((("identifiers", [node]), ("name", "EV charger " + device_id),
                  ("manufacturer", "micropython-evse"), ("model", "IEC 61851-1 AC charger"),
                  ("sw_version", version)))
    st = topics.status
    te = topics.telemetry
    ents = [
        _sensor("State", "state", st, "{{ value_json.state }}"),
        _sensor("Current", "current", te, "{{ value_json.ev_a }}", "A", "current", "measurement"),
        _sensor("Power", "power", te, "{{ value_json.power_w }}", "W", "power", "measurement"),
        _sensor("Energy", "energy", te, "{{ value_json.meter_wh }}", "Wh", "energy",
                "total_increasing"),
        _sensor("Session energy", "session_energy", st, "{{ value_json.energy_wh }}", "Wh",
                "energy", "total_increasing"),
        _sensor("Error", "error", st, "{{ value_json.error or 'none' }}"),
        ("number", "current_limit", [
            ("name", "Current limit"), ("command_topic", topics.cmd),
            ("command_template", '{"cmd": "set_current", "amps": {{ value }}}'),
            ("state_topic", st),
            ("value_template", "{{ value_json.limits.backend_a or value_json.limits.max_a }}"),
            ("min", 6), ("max", max_a), ("step", 1), ("unit_of_measurement", "A")]),
        ("switch", "pause", [
            ("name", "Pause"), ("command_topic", topics.cmd),
            ("payload_on", '{"cmd": "pause"}'), ("payload_off", '{"cmd": "resume"}'),
            ("state_topic", st), ("state_on", "ON"), ("state_off", "OFF"),
            ("value_template", "{{ 'ON' if value_json.limits.paused else 'OFF' }}")]),
        ("update", "firmware", [  # installed: fw; latest: a staged update (docs/ota.md)
            ("name", "Firmware"), ("state_topic", st), ("value_template", "{{ value_json.fw }}"),
            ("latest_version_topic", st), ("latest_version_template", _LATEST)]),
    ]
    if site:
        for i in range(3):
            ents.append(_sensor("Grid L%d" % (i + 1), "grid_l%d" % (i + 1), te,
                                "{{ value_json.grid_a[%d] }}" % i, "A", "current",
                                "measurement"))
        ents.append(_sensor("Site limit", "site_limit", st, "{{ value_json.site.limit_a }}",
                            "A", "current", "measurement"))
        ents.append(_sensor("Phases in use", "phases", st, "{{ value_json.site.phases }}"))
        if remote:  # smart and solar only: site energy on or off is the installer's
            ents.append(("select", "mode", [
                ("name", "Mode"), ("command_topic", topics.cmd),
                ("command_template",
                 '{"cmd": "set_config", "key": "mode", "value": "{{ value }}"}'),
                ("state_topic", st), ("value_template", "{{ value_json.site.mode }}"),
                ("options", ["smart", "solar"])]))
        else:
            ents.append(_sensor("Mode", "mode", st, "{{ value_json.site.mode }}"))
    out = []
    online = obj((("topic", topics.online), ("payload_available", "online"),
                  ("payload_not_available", "offline")))
    meter = obj((("topic", st), ("value_template", _METER_OK)))
    for comp, key, pairs in ents:
        if key in _METER:
            avail = [("availability", [online, meter]), ("availability_mode", "all")]
        else:
            avail = [("availability_topic", topics.online),
                     ("payload_available", "online"), ("payload_not_available", "offline")]
        pairs = pairs + [("unique_id", node + "_" + key)] + avail + [("device", device)]
        out.append(("%s/%s/%s/%s/config" % (ha_prefix, comp, node, key), obj(pairs).text))
    return out
