"""The backend's payloads (evse/payloads.py, evse/jsonw.py, evse/hass.py):
exact JSON text, the same bytes on CPython and MicroPython."""
import json

from evse import bus as B
from evse import hass, jsonw
from evse import payloads as PL
from evse.charger import FAULTS


def test_jsonw_decimals_order_and_escapes():
    assert jsonw.dec(2666, 100).text == "26.66"
    assert jsonw.dec(16000, 1000).text == "16.0"
    assert jsonw.dec(-1500, 1000).text == "-1.5"
    assert jsonw.dec(5, 100).text == "0.05"
    assert jsonw.dec(None, 10) is None
    t = jsonw.obj((("z", 1), ("a", [True, None, "q\"\\\n\x01"]), ("m", jsonw.obj(())))).text
    assert t == '{"z": 1, "a": [true, null, "q\\"\\\\\\n\\u0001"], "m": {}}', t
    assert json.loads(t)["a"][2] == "q\"\\\n\x01"
    # a float from elsewhere does not break a payload
    assert jsonw.dumps([1.5, 0.1234, float("nan"), -2.0]) == "[1.5, 0.123, null, -2.0]"


def test_topics():
    t = PL.Topics("fleet/evse", "a0b1")
    assert (t.online, t.status, t.telemetry, t.session, t.event, t.cmd, t.reply) == (
        "fleet/evse/a0b1/online", "fleet/evse/a0b1/status", "fleet/evse/a0b1/telemetry",
        "fleet/evse/a0b1/session", "fleet/evse/a0b1/event", "fleet/evse/a0b1/cmd",
        "fleet/evse/a0b1/reply")


def test_session_record():
    t = PL.session_record(3, 2, 1700000000, 1700003600, "epoch", 1000000, 1011000, 11000,
                          15996, "unplugged", ["meter"])
    assert t == ('{"id": 3, "boot": 2, "start": 1700000000, "stop": 1700003600, '
                 '"time": "epoch", "meter_start_wh": 1000000, "meter_stop_wh": 1011000, '
                 '"energy_wh": 11000, "energy_status": "measured", "estimate_wh": null, '
                 '"peak_a": 16.0, "reason": "unplugged", "errors": ["meter"]}'), t
    t = PL.session_record(4, 2, 120, None, "uptime", None, None, None, None, "power_loss", None)
    assert json.loads(t)["stop"] is None and json.loads(t)["time"] == "uptime"
    return t


def test_energy_status_never_passes_a_missing_reading_as_energy():
    """Only two billing-grade readings give energy_wh; every other case
    says which reading is missing or wrong, with no energy."""
    assert PL.energy_status(1000, 1500) == (500, "measured")
    assert PL.energy_status(1000, 1000) == (0, "measured")
    assert PL.energy_status(None, 1500) == (None, "no_start_reading")
    assert PL.energy_status(1000, None) == (None, "no_stop_reading")
    assert PL.energy_status(1000, 900) == (None, "meter_reset")
    assert PL.energy_status(1000, 1500, late_start=True) == (None, "late_start")
    assert PL.energy_status(None, None, meter=False) == (None, "no_meter")


def test_event_and_reply():
    t = PL.event("fault", (("code", "rcd"),), 5, 17, 99, "uptime")
    assert t == ('{"type": "fault", "code": "rcd", "boot": 5, "n": 17, "at": 99, '
                 '"time": "uptime"}'), t
    assert PL.reply({"id": "c-1", "ok": True}) == '{"id": "c-1", "ok": true}'
    assert PL.reply({"id": None, "ok": False, "error": "malformed JSON"}) == (
        '{"id": null, "ok": false, "error": "malformed JSON"}')


def _snap(**kw):
    v = B.fields(B.N_FIELDS)
    for k in kw:
        v[getattr(B, "S_" + k.upper())] = kw[k]
    return v


def test_status_and_telemetry():
    s = _snap(state=B.STATES.index("C2"), duty=2666, offer=16000, contactor=1,
              error=10, faults=FAULTS[9][0], session=4, energy=1234, ev=15996,
              max=32000, cable=20000, backend=16000, left=4500, fallback=6000,
              flags=B.F_METER_FB, uptime=3600, boot=7, pending=2, dropped=0, errors=1)
    assert FAULTS[9][1] == "meter"
    t = PL.status(s, FAULTS, "0.5.0")
    d = json.loads(t)
    assert t.startswith('{"state": "C2", "duty": 26.66, "offer_a": 16.0, "contactor": true, '
                        '"error": "meter", "session": 4, "energy_wh": 1234, "ev_a": 16.0, '
                        '"limits": {"max_a": 32.0, "cable_a": 20.0, "backend_a": 16.0, '
                        '"backend_ttl_s": 5, '), t
    assert d["limits"]["paused"] is False and d["limits"]["meter_fallback"] is True
    assert d["faults"] == ["meter"] and d["uptime_s"] == 3600 and d["fw"] == "0.5.0"
    assert d["journal"] == {"pending": 2, "dropped": 0, "errors": 1}
    idle = PL.status(_snap(state=0, duty=10000, session=B.NONE, ev=B.NONE, backend=B.NONE,
                           left=B.NONE, flags=B.F_PAUSED), FAULTS, "0.5.0")
    d = json.loads(idle)
    assert (d["state"], d["error"], d["session"], d["ev_a"], d["faults"]) == (
        "A", None, None, None, []), d
    assert d["limits"]["backend_a"] is None and d["limits"]["backend_ttl_s"] is None
    assert d["limits"]["paused"] is True and d["contactor"] is False and d["duty"] == 100
    s[B.S_V1], s[B.S_V1 + 1], s[B.S_V1 + 2] = 230100, 229000, B.NONE
    s[B.S_A1], s[B.S_A1 + 1], s[B.S_A1 + 2] = 16000, 15990, B.NONE
    s[B.S_POWER], s[B.S_METER_WH], s[B.S_EV], s[B.S_TEMP] = 7360, 1001234, 16000, 251
    tel = PL.telemetry(s)
    assert tel == ('{"session": 4, "state": "C2", "voltage_v": [230.1, 229.0, null], '
                   '"current_a": [16.0, 15.99, null], "power_w": 7360, "meter_wh": 1001234, '
                   '"ev_a": 16.0, "temp_c": 25.1, "energy_wh": 1234}'), tel
    assert PL.connected(s)
    b1 = _snap(state=B.STATES.index("B1"), session=B.NONE, ev=B.NONE, power=B.NONE,
               meter_wh=B.NONE, temp=B.NONE, v1=B.NONE, a1=B.NONE)
    for i in range(3):
        b1[B.S_V1 + i] = b1[B.S_A1 + i] = B.NONE
    tel = json.loads(PL.telemetry(b1))
    assert tel["voltage_v"] == [None, None, None] and tel["temp_c"] is None
    assert PL.connected(b1)
    b1[B.S_STATE] = B.STATES.index("A")
    assert not PL.connected(b1)
    b1[B.S_STATE] = B.STATES.index("F")
    assert not PL.connected(b1)
    return t


def test_telemetry_without_a_meter_reading_and_at_rest():
    """While the meter has no reading (silent: its register is NONE) the
    snapshot still holds its last per-phase values and power; the telemetry
    carries none of them. at_rest: a reading that shows no current."""
    s = _snap(state=B.STATES.index("C2"), session=4, energy=1234, ev=B.NONE,
              power=7360, meter_wh=B.NONE, temp=251)
    for i in range(3):
        s[B.S_V1 + i], s[B.S_A1 + i] = 230000, 16000
    tel = PL.telemetry(s)
    assert tel == ('{"session": 4, "state": "C2", "voltage_v": [null, null, null], '
                   '"current_a": [null, null, null], "power_w": null, "meter_wh": null, '
                   '"ev_a": null, "temp_c": 25.1, "energy_wh": 1234}'), tel
    assert not PL.at_rest(s)  # no reading: nothing known
    s[B.S_METER_WH], s[B.S_EV] = 1001234, 16000
    assert json.loads(PL.telemetry(s))["power_w"] == 7360 and not PL.at_rest(s)
    s[B.S_EV], s[B.S_POWER] = PL.REST_MA - 1, PL.REST_W - 1
    assert PL.at_rest(s)
    s[B.S_POWER] = PL.REST_W
    assert not PL.at_rest(s)
    s[B.S_EV], s[B.S_POWER] = PL.REST_MA, B.NONE  # a meter without power
    assert not PL.at_rest(s)
    s[B.S_EV] = B.NONE  # nor phase currents (sdm72d): nothing says current flows
    assert PL.at_rest(s)
    s[B.S_EV], s[B.S_POWER] = 0, -PL.REST_W  # exporting
    assert not PL.at_rest(s)
    return tel


def test_decode_cmd():
    assert PL.decode_cmd(b'{"cmd": "pause", "id": 1}') == ({"cmd": "pause", "id": 1}, None)
    assert PL.decode_cmd(b"{cmd: pause") == (None, "malformed JSON")
    assert PL.decode_cmd(b"") == (None, "malformed JSON")
    assert PL.decode_cmd(b"\xff\xfe") == (None, "payload is not UTF-8 text")
    assert PL.decode_cmd(b"[1, 2]") == (None, "command must be a JSON object")
    assert PL.decode_cmd(b'"pause"') == (None, "command must be a JSON object")
    big = b'{"cmd": "pause", "pad": "' + b"x" * 600 + b'"}'
    assert PL.decode_cmd(big) == (None, "payload too large: %d bytes, at most 512" % len(big))
    assert PL.decode_cmd(b"[" * 256 + b"]" * 256)[1] in ("command must be a JSON object",
                                                         "malformed JSON")


def test_home_assistant_discovery():
    t = PL.Topics("evse", "a0b1")
    msgs = hass.discovery("homeassistant", t, "a0b1", "0.5.0", 32)
    topics = [m[0] for m in msgs]
    assert "homeassistant/sensor/evse_a0b1/state/config" in topics
    assert "homeassistant/number/evse_a0b1/current_limit/config" in topics
    assert "homeassistant/switch/evse_a0b1/pause/config" in topics
    assert len(msgs) == 9
    up = json.loads(msgs[topics.index("homeassistant/update/evse_a0b1/firmware/config")][1])
    assert up["state_topic"] == up["latest_version_topic"] == "evse/a0b1/status"
    meter = []
    for topic, payload in msgs:
        d = json.loads(payload)
        if "availability" in d:  # the meter's sensors: online and the meter answering
            meter.append(d["unique_id"])
            assert d["availability_mode"] == "all" and "availability_topic" not in d, d
            online, ok = d["availability"]
            assert online == {"topic": "evse/a0b1/online", "payload_available": "online",
                              "payload_not_available": "offline"}, online
            assert ok == {"topic": "evse/a0b1/status", "value_template":
                          "{{ 'offline' if 'meter' in value_json.faults else 'online' }}"}, ok
        else:
            assert d["availability_topic"] == "evse/a0b1/online"
        assert d["unique_id"].startswith("evse_a0b1_")
        assert d["device"]["identifiers"] == ["evse_a0b1"]
    assert meter == ["evse_a0b1_current", "evse_a0b1_power", "evse_a0b1_energy"], meter
    num = json.loads(msgs[topics.index("homeassistant/number/evse_a0b1/current_limit/config")][1])
    assert num["command_topic"] == "evse/a0b1/cmd" and num["max"] == 32 and num["min"] == 6
    assert json.loads(num["command_template"].replace("{{ value }}", "10")) == {
        "cmd": "set_current", "amps": 10}
    sw = json.loads(msgs[topics.index("homeassistant/switch/evse_a0b1/pause/config")][1])
    assert json.loads(sw["payload_on"]) == {"cmd": "pause"}
    # the state template's ON / OFF are the states (not payload_on / payload_off)
    assert (sw["state_on"], sw["state_off"]) == ("ON", "OFF"), sw
    assert sw["value_template"] == "{{ 'ON' if value_json.limits.paused else 'OFF' }}"
    return len("".join([m[1] for m in msgs]))


def test_home_assistant_discovery_with_site_energy():
    """Issue 14 part 6: the grid's currents, the site's limit, the phases in
    use, and the mode: a select that sends set_config (smart and solar only)
    when set_config is accepted, a sensor otherwise."""
    t = PL.Topics("evse", "a0b1")
    plain = [m[0] for m in hass.discovery("homeassistant", t, "a0b1", "0.5.0", 32)]
    msgs = hass.discovery("homeassistant", t, "a0b1", "0.5.0", 32, True, True)
    topics = [m[0] for m in msgs]
    added = [x for x in topics if x not in plain]
    assert added == ["homeassistant/sensor/evse_a0b1/%s/config" % k for k in
                     ("grid_l1", "grid_l2", "grid_l3", "site_limit", "phases")] + [
        "homeassistant/select/evse_a0b1/mode/config"], added
    sel = json.loads(msgs[topics.index("homeassistant/select/evse_a0b1/mode/config")][1])
    assert sel["options"] == ["smart", "solar"] and sel["command_topic"] == "evse/a0b1/cmd"
    assert json.loads(sel["command_template"].replace("{{ value }}", "solar")) == {
        "cmd": "set_config", "key": "mode", "value": "solar"}
    assert sel["value_template"] == "{{ value_json.site.mode }}"
    ro = [m[0] for m in hass.discovery("homeassistant", t, "a0b1", "0.5.0", 32, True, False)]
    assert "homeassistant/sensor/evse_a0b1/mode/config" in ro
    assert not [x for x in ro if "/select/" in x]


def test_a_reply_always_encodes_even_with_a_lone_surrogate():
    """A command whose id (or a field name) is "\\ud800": json.loads gives a
    lone surrogate, which has no UTF-8 form. The reply must still encode to
    valid UTF-8, or the link would drop it (CPython) or send invalid text
    (MicroPython): it carries U+FFFD instead."""
    cid = json.loads('"\\ud800x"')
    t = PL.reply({"id": cid, "ok": False, "error": json.loads('"bad \\udfff"')})
    b = t.encode()
    back = json.loads(b.decode())
    assert back["id"] == "\ufffdx" and back["error"] == "bad \ufffd", back
    assert PL.reply({"id": "caf\u00e9 \u20ac", "ok": True}).encode().decode() == (
        '{"id": "caf\u00e9 \u20ac", "ok": true}')


def _new_text(first, n):
    # n characters from U+<first> on, as a command brings them: from JSON
    # escapes (chr() would intern each one in MicroPython before the test)
    return json.loads('"' + "".join(["\\u%04x" % (first + k) for k in range(n)]) + '"')


def test_text_from_outside_never_grows_the_heap_for_good():
    """Command ids, set_config values and a central system's timestamps
    bring characters the firmware has never seen. MicroPython makes each
    character of a str that is iterated or indexed a qstr, interned for
    good: 100 ids of 20 new characters each, echoed in replies and checked
    as set_config values, grew the 32-bit port's heap by 7.9 KB that way,
    and a backend could keep going until the control loop's next
    allocation failed. Written and checked as bytes,
    they leave nothing behind. Measured on the unix ports: CPython has no
    gc.mem_alloc, and the WebAssembly port's gc.collect() frees nothing
    while a Python call runs (it cannot scan the wasm stack: 1,000
    bytearray(100) in a loop are all still counted after it)."""
    import gc
    import sys

    from evse import config_schema as CS
    from evse import http, ocpp

    def burst(first):
        for i in range(100):
            t = _new_text(first + 20 * i, 20)
            r = PL.reply({"id": t, "ok": False, "error": t + "\n\"\\"})
            assert json.loads(r)["id"] == t
            for key in ("mqtt_user", "mqtt_host", "mqtt_device_id"):
                try:
                    CS.check(key, t)
                except CS.ConfigError:
                    pass
            try:
                http.parse_url("http://h/" + t)
            except http.HttpError:
                pass
            assert ocpp.parse_time("2026" + t[:1] + "01-02" + t[1:2] + "03:04:05Z") is None

    burst(0x4E00)  # warm-up: code paths run once (names interned once, as any code)
    measure = hasattr(gc, "mem_alloc") and sys.platform != "webassembly"
    if measure:
        gc.collect()
        before = gc.mem_alloc()
    burst(0x5E00)  # 2,000 characters the firmware has not seen
    if measure:
        gc.collect()
        grown = gc.mem_alloc() - before
        assert grown <= 64, "the heap grew by %d bytes for good" % grown
