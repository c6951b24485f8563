"""Home Assistant as a user sees the charger (`make test-ha`).

Real peers only: Home Assistant 2024.3 with its own MQTT integration
(host_tests/ha_env.py makes its configuration folder from nothing), a real
mosquitto (host_tests/mqtt_env.py), and the firmware in
`tools/sim.py --realtime --broker` with `mqtt_ha_discovery` on. The tests
read what Home Assistant shows, from its REST API (/api/states: the state
and the friendly name a dashboard shows, the attributes that decide how
Home Assistant treats the entity), and act as a user does (the switch and
the number through /api/services). The expectations come from Home
Assistant's documented entity semantics: a switch is "on" or "off"; a
sensor of the Energy dashboard has device_class energy and state_class
total_increasing; a measurement that the device cannot give is
"unavailable" or "unknown", never the last number it had; an idle charger
draws 0 A and 0 W.

One Home Assistant and one mosquitto serve the whole module. Without
EVSE_HA_PYTHON (which `make test-ha` sets to its build/ha-venv) the module
is skipped: `make test` does not install Home Assistant.
"""
import os
import time

import pytest

from mqtt_env import Mosquitto, finish, start_sim, write_scenario

from evse.app import VERSION as FW

pytestmark = pytest.mark.skipif(
    not os.environ.get("EVSE_HA_PYTHON"),
    reason="needs Home Assistant: `make test-ha` installs it into build/ha-venv and runs this")

VOLTS = 230  # the simulated supply, per phase (docs/simulator.md)
PHASES = 3  # the default configuration's


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    from ha_env import HomeAssistant  # only when the module runs

    root = tmp_path_factory.mktemp("ha")
    broker = Mosquitto(root / "mosquitto")
    hass = None
    try:
        hass = HomeAssistant(root / "config", broker.port)
        print("Home Assistant up in %.1f s" % hass.started_s)
        yield broker, hass
    finally:
        if hass is not None:
            hass.stop()
        broker.stop()


class Screen:
    """What Home Assistant shows for one charger (device "EV charger ID")."""

    def __init__(self, hass, device_id):
        self.hass = hass
        self.device = "EV charger " + device_id
        self.seen = {}  # friendly name -> the states seen, in order, without repeats
        self.t0 = time.monotonic()  # about the simulator's t = 0

    def all(self):
        mine = {}
        for name, st in self.hass.states().items():
            if name.startswith(self.device + " "):
                short = name[len(self.device) + 1:]
                mine[short] = st
                seen = self.seen.setdefault(short, [])
                if not seen or seen[-1] != st["state"]:
                    seen.append(st["state"])
        return mine

    def wait(self, want, timeout, what):
        """Polls /api/states until want(entities) is true; the entities then.
        On time-out: what each entity went through."""
        deadline = time.monotonic() + timeout
        while True:
            ents = self.all()
            try:
                if want(ents):
                    print("t = %4.1f s: %s" % (time.monotonic() - self.t0, what))
                    return ents
            except (KeyError, ValueError, TypeError):
                pass  # not there yet, or not a number yet
            if time.monotonic() > deadline:
                raise AssertionError("Home Assistant did not show %s within %.0f s; seen:\n%s" % (
                    what, timeout, "\n".join("  %s: %s" % (k, " -> ".join(v[-12:]))
                                             for k, v in sorted(self.seen.items()))))
            time.sleep(0.25)

    def entity_id(self, name):
        return self.all()[name]["entity_id"]


def num(ents, name):
    return float(ents[name]["state"])


def scenario(folder, name, duration_s, events, config=None):
    cfg = {"mqtt_ha_discovery": True}
    cfg.update(config or {})
    return write_scenario(folder, name, duration_s, events, cfg)


def charging_at(ents, amps):
    return (ents["State"]["state"] == "C2" and abs(num(ents, "Current") - amps) < 0.5
            and abs(num(ents, "Power") - PHASES * VOLTS * amps) < 0.03 * PHASES * VOLTS * amps)


def idle(ents):
    return (ents["State"]["state"] == "A" and num(ents, "Current") == 0
            and num(ents, "Power") == 0)


def test_discovery_switch_number_and_an_unplugged_charger_at_zero(peers, tmp_path):
    """Every entity is there with what Home Assistant needs to treat it
    right; the Pause switch shows on/off and follows the user's pause and
    resume; the Current limit sends set_current and shows it; after the
    vehicle leaves, Current and Power are 0 (not the last 16 A / 11 kW)."""
    broker, hass = peers
    # the steps below take about 23 s here; the vehicle leaves at 40 s, and
    # the charger stays online 12 s more (the end of a run is a power cut)
    scen = scenario(tmp_path, "ha-session", 52, [
        {"t": 0.0, "ev": "A"}, {"t": 2.0, "ev": "B"}, {"t": 2.0, "ev_draw": {"max_a": 16}},
        {"t": 4.0, "ev": "C"}, {"t": 40.0, "ev": "A"}])
    sim = start_sim(scen, broker.port, tmp_path)
    scr = Screen(hass, "sim-ha-session")
    try:
        ents = scr.wait(lambda e: charging_at(e, 16), 25, "charging at 16 A")
        assert sorted(ents) == ["Current", "Current limit", "Energy", "Error", "Firmware",
                                "Pause", "Power", "Session energy", "State"], sorted(ents)
        assert [ents[k]["entity_id"].split(".")[0] for k in sorted(ents)] == [
            "sensor", "number", "sensor", "sensor", "update", "switch", "sensor", "sensor",
            "sensor"]
        # the update entity: the version running, nothing staged (up to date)
        a = ents["Firmware"]["attributes"]
        assert a.get("installed_version") == a.get("latest_version") == FW, a
        assert ents["Firmware"]["state"] == "off", ents["Firmware"]
        for name in ("Energy", "Session energy"):  # what the Energy dashboard accepts
            a = ents[name]["attributes"]
            assert (a.get("device_class"), a.get("state_class"), a.get("unit_of_measurement")) == (
                "energy", "total_increasing", "Wh"), (name, a)
        assert num(ents, "Energy") >= 1000000  # the meter's import register
        assert num(ents, "Session energy") >= 0
        a = ents["Current"]["attributes"]
        assert (a.get("device_class"), a.get("state_class"), a.get("unit_of_measurement")) == (
            "current", "measurement", "A"), a
        a = ents["Power"]["attributes"]
        assert (a.get("device_class"), a.get("state_class"), a.get("unit_of_measurement")) == (
            "power", "measurement", "W"), a
        assert ents["Error"]["state"] == "none"
        a = ents["Current limit"]["attributes"]
        assert (a.get("min"), a.get("max"), a.get("unit_of_measurement")) == (6, 32, "A"), a
        assert num(ents, "Current limit") == 32  # no backend limit: the installation's
        assert ents["Pause"]["state"] == "off", scr.seen

        pause = scr.entity_id("Pause")
        hass.call("switch", "turn_on", entity_id=pause)
        scr.wait(lambda e: e["Pause"]["state"] == "on" and e["State"]["state"] == "C1", 5,
                 "the switch on and the PWM off (C1) after turning Pause on")
        # the vehicle stays in C: the contactor is forced open 6 s later
        scr.wait(lambda e: e["Pause"]["state"] == "on" and num(e, "Current") == 0
                 and num(e, "Power") == 0, 20, "no current while paused")
        hass.call("switch", "turn_off", entity_id=pause)
        scr.wait(lambda e: e["Pause"]["state"] == "off", 5, "the switch off after resume")
        scr.wait(lambda e: e["Pause"]["state"] == "off" and charging_at(e, 16), 25,
                 "charging again after resume")

        hass.call("number", "set_value", entity_id=scr.entity_id("Current limit"), value=10)
        scr.wait(lambda e: num(e, "Current limit") == 10, 5, "the Current limit at 10 A")
        scr.wait(lambda e: charging_at(e, 10), 25, "charging at the 10 A limit")

        ents = scr.wait(idle, 45, "0 A and 0 W after the vehicle left")
        assert ents["Pause"]["state"] == "off" and ents["Error"]["state"] == "none"
        assert num(ents, "Session energy") > 0
        # and it stays so: no stale message comes after it (6 s: past the
        # telemetry interval, 5 s)
        end = time.monotonic() + 6
        while time.monotonic() < end:
            assert idle(scr.all()), scr.seen
            time.sleep(0.5)
    finally:
        out = finish(sim, 90)
    assert sim.returncode == 0, out
    assert not hass.mqtt_complaints(), "\n".join(hass.mqtt_complaints())


def test_a_silent_meter_shows_no_numbers(peers, tmp_path):
    """While the meter does not answer, Current, Power and Energy are
    unavailable or unknown (never the last reading); the Error sensor says
    `meter`; when it answers again the numbers come back; unplugged: 0."""
    broker, hass = peers
    scen = scenario(tmp_path, "ha-meter", 50, [
        {"t": 0.0, "ev": "A"}, {"t": 2.0, "ev": "B"}, {"t": 2.0, "ev_draw": {"max_a": 16}},
        {"t": 4.0, "ev": "C"}, {"t": 16.0, "fault": {"meter": "offline"}},
        {"t": 32.0, "fault": {"meter": "online"}}, {"t": 44.0, "ev": "A"}])
    sim = start_sim(scen, broker.port, tmp_path)
    scr = Screen(hass, "sim-ha-meter")
    meter = ("Current", "Power", "Energy")

    def no_numbers(e):
        return all(e[k]["state"] in ("unavailable", "unknown") for k in meter)

    try:
        ents = scr.wait(lambda e: charging_at(e, 16), 25, "charging at 16 A")
        before = num(ents, "Energy")
        ents = scr.wait(lambda e: e["Error"]["state"] == "meter" and no_numbers(e), 20,
                        "the meter error and no meter numbers")
        assert ents["State"]["state"] == "C2"  # meter_loss fallback: charging goes on
        print("the meter silent: %s" % ", ".join("%s %s" % (k, ents[k]["state"]) for k in meter))
        # as long as the error lasts (about 14 s more), no number shows up
        end = time.monotonic() + 30
        while True:
            ents = scr.all()
            if ents["Error"]["state"] != "meter":
                break
            assert time.monotonic() < end, "the meter error did not clear: %s" % scr.seen
            assert no_numbers(ents), scr.seen
            time.sleep(0.25)
        ents = scr.wait(lambda e: e["Error"]["state"] == "none" and charging_at(e, 16), 25,
                        "the numbers back after the meter answered")
        assert num(ents, "Energy") > before
        scr.wait(idle, 25, "0 A and 0 W after the vehicle left")
    finally:
        out = finish(sim, 90)
    assert sim.returncode == 0, out
    assert not hass.mqtt_complaints(), "\n".join(hass.mqtt_complaints())


def test_site_energy_shows_the_grid_and_the_mode_select_switches_it(peers, tmp_path):
    """Issue 14 part 6: with `smart` and a grid meter, Home Assistant shows
    the grid's phase currents, the site's limit and the phases in use, and
    the Mode select sends set_config: the status's mode follows."""
    broker, hass = peers
    scen = scenario(tmp_path, "ha-site", 45, [
        {"t": 0.0, "site": {"house_a": [5, 5, 5]}}, {"t": 0.0, "ev": "A"},
        {"t": 2.0, "ev": "B"}, {"t": 2.0, "ev_draw": {"max_a": 16}}, {"t": 4.0, "ev": "C"}],
        {"mode": "smart", "mains_max_a": 25, "grid_meter": "sdm630",
         "mqtt_remote_config": True})
    sim = start_sim(scen, broker.port, tmp_path)
    scr = Screen(hass, "sim-ha-site")
    try:
        # 5 A of house and the vehicle's 16 A on each phase
        ents = scr.wait(lambda e: charging_at(e, 16) and num(e, "Grid L1") == 21, 25,
                        "charging at 16 A, the grid meter at 21 A")
        for k in ("Grid L1", "Grid L2", "Grid L3", "Site limit", "Phases in use", "Mode"):
            assert k in ents, sorted(ents)
        assert ents["Mode"]["entity_id"].startswith("select.")
        assert ents["Mode"]["state"] == "smart"
        assert ents["Mode"]["attributes"]["options"] == ["smart", "solar"]
        assert ents["Phases in use"]["state"] == "3"
        a = ents["Grid L1"]["attributes"]
        assert (a.get("device_class"), a.get("unit_of_measurement")) == ("current", "A"), a
        hass.call("select", "select_option", entity_id=scr.entity_id("Mode"), option="solar")
        scr.wait(lambda e: e["Mode"]["state"] == "solar", 10, "the mode solar")
    finally:
        out = finish(sim, 90)
    assert sim.returncode == 0, out
    assert not hass.mqtt_complaints(), "\n".join(hass.mqtt_complaints())
