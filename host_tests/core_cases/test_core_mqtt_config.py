"""The backend link's configuration keys (evse/config.py, MQTT_SCHEMA)."""
from evse import config


def _err(d):
    try:
        config.validate(d)
    except config.ConfigError as e:
        return str(e)
    raise AssertionError("accepted: %r" % (d,))


def test_link_defaults_leave_the_link_off():
    d = config.defaults()
    assert d["mqtt_host"] is None and d["mqtt_port"] is None
    assert d["mqtt_prefix"] == "evse" and d["mqtt_device_id"] is None
    assert d["mqtt_tls"] is False and d["mqtt_ca"] is None
    assert d["mqtt_ha_discovery"] is False and d["mqtt_remote_config"] is False
    assert d["mqtt_status_s"] == 60 and d["journal_kb"] == 8


def test_link_keys_accept_good_values():
    cfg = config.validate({
        "mqtt_host": "broker.example.net", "mqtt_port": 8883, "mqtt_user": "charger-7",
        "mqtt_password": "p@ss word!", "mqtt_tls": True, "mqtt_ca": "certs/ca.pem",
        "mqtt_prefix": "fleet/de/evse", "mqtt_device_id": "a0b1c2d3e4f5",
        "mqtt_keepalive_s": 60, "mqtt_status_s": 30, "mqtt_telemetry_s": 10,
        "mqtt_ha_discovery": True, "mqtt_ha_prefix": "homeassistant",
        "mqtt_remote_config": True, "journal_kb": 16})
    assert cfg["mqtt_prefix"] == "fleet/de/evse"
    assert config.validate({"mqtt_host": "10.0.0.2"})["mqtt_host"] == "10.0.0.2"


def test_link_keys_refuse_bad_values_naming_the_key():
    for d, needle in (
            ({"mqtt_host": ""}, "mqtt_host"),
            ({"mqtt_host": "a b"}, "mqtt_host"),
            ({"mqtt_port": 0}, "mqtt_port"),
            ({"mqtt_port": "1883"}, "mqtt_port"),
            ({"mqtt_port": True}, "mqtt_port"),
            ({"mqtt_prefix": "evse/#"}, "mqtt_prefix"),
            ({"mqtt_prefix": "evse/+"}, "mqtt_prefix"),
            ({"mqtt_prefix": "/evse"}, "mqtt_prefix"),
            ({"mqtt_prefix": "evse//x"}, "mqtt_prefix"),
            ({"mqtt_prefix": None}, "mqtt_prefix"),
            ({"mqtt_device_id": "a/b"}, "mqtt_device_id"),
            ({"mqtt_device_id": "x" * 33}, "mqtt_device_id"),
            ({"mqtt_user": "a\nb"}, "mqtt_user"),
            ({"mqtt_status_s": 61}, "mqtt_status_s"),
            ({"mqtt_keepalive_s": 5}, "mqtt_keepalive_s"),
            ({"journal_kb": 1}, "journal_kb"),
            ({"mqtt_tls": True}, "mqtt_ca"),
            ({"mqtt_password": "x"}, "mqtt_user")):
        msg = _err(d)
        assert msg.startswith(needle + ":"), (d, msg)


def test_password_is_never_echoed():
    secret = "s3cr3t\x01value"
    msg = _err({"mqtt_user": "u", "mqtt_password": secret})
    assert "mqtt_password" in msg and "s3cr3t" not in msg, msg
    msg = _err({"mqtt_user": "u", "mqtt_password": 12345})
    assert "12345" not in msg, msg
    # other keys do show what was given (cut short)
    msg = _err({"mqtt_host": "y" * 300})
    assert "yyy" in msg and len(msg) < 200, msg
