"""hw.system.build puts the configured Modbus meter on the profile's RS-485
pins (machine.UART with the meter's line settings), or none for meter: null."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakes"))
import fakemachine as fm  # noqa: E402
import hwrig  # noqa: E402

from evse.charger import F_METER  # noqa: E402
from hw.profile import cp_transfer  # noqa: E402
from hw import system  # noqa: E402


def _build(tmp_path, board, cfg):
    raw = hwrig.load(board)
    w = fm.reset_world(raw["port"])
    # a healthy board with no vehicle, as boot_driver.py sets it up
    w.cp_zero_uv, w.cp_uv_per_v = cp_transfer(raw["cp"])
    w.cp_adc_pin = raw["cp"]["adc_pin"]
    w.adc_uv[raw["temp"]["adc_pin"]] = 900000 if raw["temp"]["type"] == "linear" else 1650000
    if raw.get("pe"):
        w.mains = (raw["pe"]["pin"],)
    if raw.get("mirror"):  # contacts open
        w.inputs[raw["mirror"]["pin"]] = 1 if raw["mirror"]["active"] == "low" else 0
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict({"rcd_selftest": False}, **cfg)))
    return system.build(fm, fm.Clock(), raw, str(path), str(tmp_path)), raw


@pytest.mark.parametrize("board", ["esp32-devkitc", "pico-w", "smartevse-v3"])
def test_meter_on_the_profiles_rs485_pins(tmp_path, board):
    ctx, raw = _build(tmp_path, board, {"meter": "sdm120", "meter_baud": 19200,
                                        "meter_unit": 7})
    rs = raw["rs485"]
    uarts = [e for e in fm.WORLD.log if e[0] == "UART"]
    assert uarts == [("UART", rs["uart"], 19200, rs["tx"], rs["rx"])]
    m = ctx.app.meter
    assert m is not None and m.unit == 7


def test_grid_meter_shares_the_meters_bus_and_its_master(tmp_path):
    ctx, raw = _build(tmp_path, "esp32-devkitc", {"mode": "smart", "grid_meter": "sdm630",
                                                  "grid_meter_unit": 9})
    uarts = [e for e in fm.WORLD.log if e[0] == "UART"]
    assert len(uarts) == 1  # one RS-485 line, two units on it
    m, g = ctx.app.meter, ctx.app.site.grid
    assert g is not None and g.unit == 9 and g.master is m.master
    assert ctx.app.site is not None


def test_phase_switch_needs_the_boards_output(tmp_path):
    with pytest.raises(system.SetupError, match="phase_switch"):
        _build(tmp_path, "esp32-devkitc", {"phase_switch": True})


def test_no_meter_configured_no_uart(tmp_path):
    ctx, _ = _build(tmp_path, "pico-w", {"meter": None})
    assert ctx.app.meter is None
    assert not [e for e in fm.WORLD.log if e[0] == "UART"]


def test_meter_without_rs485_pins_is_a_setup_error(tmp_path):
    raw = hwrig.load("pico-w")
    raw.pop("rs485")
    fm.reset_world(raw["port"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"rcd_selftest": False}))
    with pytest.raises(system.SetupError, match="rs485"):
        system.build(fm, fm.Clock(), raw, str(path), str(tmp_path))


def test_silent_meter_raises_meter_fault_on_the_board(tmp_path):
    """Nothing answers on the fake bus: after meter_fail_polls the charger
    shows `meter` (the board's run loop, not just the simulator)."""
    ctx, _ = _build(tmp_path, "esp32-devkitc", {"meter_fail_polls": 2, "meter_poll_s": 1})
    lines = []
    system.run(ctx, max_ticks=600, out=lines.append)
    assert ctx.app.out.faults == F_METER, lines
    assert ctx.app.out.error == "meter" and ctx.app.out.state == "A"


def test_broker_configured_builds_the_backend_and_the_link(tmp_path):
    """With mqtt_host the App keeps the journal, and start_network makes the
    MQTT link (Wi-Fi only from secrets.json, whose password reaches the link
    but not the configuration file)."""
    ctx, _ = _build(tmp_path, "pico-w", {"meter": None, "mqtt_host": "broker.example",
                                         "mqtt_device_id": "bench-1", "mqtt_user": "evse"})
    assert ctx.app.journal is not None
    (tmp_path / "secrets.json").write_text(json.dumps({"mqtt_password": "s3cret"}))
    lines = []
    link = system.start_network(ctx, str(tmp_path) + "/", out=lines.append)
    assert link is not None and link.password == "s3cret"
    assert link.cfg is ctx.cfg  # not a copy of every key
    assert ctx.cfg["mqtt_password"] is None
    assert "s3cret" not in (tmp_path / "config.json").read_text()
    assert not any("s3cret" in line for line in lines)


def test_no_broker_no_link_and_run_all_is_the_plain_loop(tmp_path):
    ctx, _ = _build(tmp_path, "pico-w", {"meter": None})
    assert ctx.app.journal is None
    assert system.start_network(ctx, str(tmp_path) + "/") is None
    assert system.run_all(ctx, None, max_ticks=50, out=lambda s: None) == 50


def test_ocpp_backend_builds_the_ocpp_link(tmp_path):
    """backend "ocpp": the App keeps the journal and start_network makes the
    OCPP link (hw/ocpp_link.py), not the MQTT one: the identity appended to
    a URL ending in "/", HTTP Basic from secrets.json's ocpp_password with
    the identity as user (OCPP 1.6 security profile 1), the password in no
    line and no file but secrets.json."""
    import base64
    from hw.ocpp_link import OcppLink

    ctx, _ = _build(tmp_path, "pico-w", {"meter": None, "backend": "ocpp",
                                         "ocpp_url": "ws://csms.example:9000/ocpp/",
                                         "mqtt_device_id": "cp-7"})
    assert ctx.app.journal is not None
    (tmp_path / "secrets.json").write_text(json.dumps({"ocpp_password": "s3cret-pass",
                                                       "mqtt_password": "other"}))
    lines = []
    link = system.start_network(ctx, str(tmp_path) + "/", out=lines.append)
    assert isinstance(link, OcppLink)
    assert link.url == "ws://csms.example:9000/ocpp/cp-7"
    assert link.auth == b"Basic " + base64.b64encode(b"cp-7:s3cret-pass")
    assert link.cp.boot["chargePointSerialNumber"] == "cp-7"
    assert link.cp.boot["chargePointModel"] == "pico-w"
    assert not link.defer_tls  # ws://: no TLS handshake to put off
    assert "s3cret" not in (tmp_path / "config.json").read_text()
    assert not any("s3cret" in line for line in lines)


def test_ocpp_url_names_the_identity_and_wss_needs_the_ca(tmp_path):
    from hw.ocpp_link import url_and_identity

    assert url_and_identity("wss://c.example/steve/websocket/CentralSystemService/", "ab12") == (
        "wss://c.example/steve/websocket/CentralSystemService/ab12", "ab12")
    assert url_and_identity("ws://10.0.0.2:8180/ocpp/CP1", "ab12") == (
        "ws://10.0.0.2:8180/ocpp/CP1", "CP1")
    ctx, _ = _build(tmp_path, "esp32-devkitc", {"meter": None, "backend": "ocpp",
                                                "ocpp_url": "wss://csms.example/ocpp/CP1",
                                                "mqtt_ca": "missing-ca.pem"})
    lines = []
    assert system.start_network(ctx, str(tmp_path) + "/", out=lines.append) is None
    assert any("charging goes on without it" in line for line in lines), lines


@pytest.mark.parametrize("cfg,key", [
    ({"backend": "ocpp"}, "ocpp_url"),
    ({"backend": "ocpp", "ocpp_url": "http://csms/ocpp/"}, "ocpp_url"),
    ({"backend": "ocpp", "ocpp_url": "ws:///ocpp/"}, "ocpp_url"),
    ({"backend": "ocpp", "ocpp_url": "wss://csms/ocpp/"}, "mqtt_ca"),
    ({"backend": "ocpp", "ocpp_url": "ws://csms/ocpp/", "mqtt_host": "b"}, "mqtt_host"),
    ({"ocpp_url": "ws://csms/ocpp/"}, "ocpp_url"),
    ({"backend": "soap"}, "backend"),
])
def test_ocpp_configuration_errors_name_the_key(tmp_path, cfg, key):
    with pytest.raises(system.SetupError, match="configuration: " + key):
        _build(tmp_path, "pico-w", dict({"meter": None}, **cfg))
