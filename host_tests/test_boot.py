"""Boot order and crash safety of firmware/main.py, on the fake machine.

Each case runs main.main() in a fresh interpreter (host_tests/fakes/
boot_driver.py) so that "before importing the firmware" can be checked: the
fake Pin() records which firmware modules were already imported.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "host_tests", "fakes", "boot_driver.py")


def boot(tmp_path, board="esp32-devkitc", config=None, files=None, ticks=30, fail=None,
         raw=None):
    root = str(tmp_path) + "/"
    if raw is not None:
        (tmp_path / "board.json").write_text(raw)
    elif board:
        shutil.copy(os.path.join(ROOT, "boards", board + ".json"), root + "board.json")
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "firmware"),
                                         os.path.join(ROOT, "tools", "host"),
                                         os.path.join(ROOT, "host_tests", "fakes")])
    args = [sys.executable, DRIVER, root, str(ticks)]
    if fail:
        args += [str(fail[0]), fail[1]]
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["log"] = [tuple(tuple(x) if isinstance(x, list) else x for x in e) for e in r["log"]]
    return r


def pins(r):
    return [e for e in r["log"] if e[0] == "Pin" and e[2] == 3]  # Pin.OUT


def crash(tmp_path):
    p = tmp_path / "crash.json"
    return json.loads(p.read_text()) if p.exists() else None


def test_safe_state_is_set_before_any_firmware_import(tmp_path):
    r = boot(tmp_path)
    assert r["result"] == "stopped"
    log = r["log"]
    first = log[:3]
    # contactor GPIO27 off, RCD test GPIO33 off, CP GPIO26 high (+12 V) ...
    assert first == [("Pin", 27, 3, -1, 0, ()), ("Pin", 33, 3, -1, 0, ()),
                     ("Pin", 26, 3, -1, 1, ())]
    # ... with none of the firmware imported yet (the last field)
    imported_later = [e for e in log if e[0] == "Pin" and e[5]]
    assert imported_later and log.index(imported_later[0]) > 2
    kinds = [e[0] for e in log]
    assert kinds.index("PWM") < kinds.index("WDT")
    assert ("WDT", 2000) in log
    assert r["feeds"] >= 29  # fed after every on-time step
    assert any(l.startswith("evse: board esp32-devkitc") for l in r["lines"])
    assert any(l.startswith("status state=A") for l in r["lines"])
    assert crash(tmp_path) is None


def test_maintenance_flag_is_one_shot_and_starts_no_watchdog(tmp_path):
    r = boot(tmp_path, files={"maint": ""})
    assert r["result"] == "maint"
    assert not (tmp_path / "maint").exists()
    kinds = [e[0] for e in r["log"]]
    assert "WDT" not in kinds and "PWM" not in kinds
    cp = [e for e in pins(r) if e[1] == 26]
    assert [e[4] for e in cp] == [1, 0]  # +12 V first, then -12 V (unavailable)


def test_invalid_profile_stays_unavailable_naming_the_key(tmp_path):
    raw = json.loads(open(os.path.join(ROOT, "boards", "esp32-devkitc.json")).read())
    raw["rcd"]["test"]["pin"] = 36  # input only
    r = boot(tmp_path, raw=json.dumps(raw))
    assert r["result"] == "unavailable"
    assert any("rcd.test.pin: GPIO36 is input only" in l for l in r["lines"]), r["lines"]
    assert "WDT" not in [e[0] for e in r["log"]] and r["resets"] == 0
    cp = [e for e in pins(r) if e[1] == 26]
    assert cp[0][4] == 1 and cp[-1][4] == 0  # ends at -12 V
    c = crash(tmp_path)
    assert c["fatal"] is True and c["where"] == "setup"


def test_invalid_config_stays_unavailable(tmp_path):
    r = boot(tmp_path, config={"max_current_a": 100})
    assert r["result"] == "unavailable"
    assert any("max_current_a" in l for l in r["lines"])


def test_board_without_rcd_test_needs_rcd_selftest_off(tmp_path):
    r = boot(tmp_path, board="smartevse-v3")
    assert r["result"] == "unavailable"
    assert any("rcd_selftest" in l for l in r["lines"])
    r = boot(tmp_path, board="smartevse-v3", config={"rcd_selftest": False})
    assert r["result"] == "stopped"


def test_missing_board_file(tmp_path):
    r = boot(tmp_path, board=None)
    assert r["result"] == "unavailable"
    assert any("board.json missing" in l for l in r["lines"])
    assert r["log"] == []  # no pins known: the board's pull resistors hold it safe


def test_crash_in_the_loop_goes_safe_records_and_resets(tmp_path):
    r = boot(tmp_path, ticks=1000, fail=(400, "OSError"))
    assert r["result"] == "reset" and r["resets"] == 1
    log = r["log"]
    i_reset = log.index(("reset",))
    # before the reset: the PWM back at steady +12 V, contactor and RCD test off
    before = log[:i_reset]
    last_duty = [e for e in before if e[0] in ("duty_u16", "PWM")][-1]
    assert last_duty[-1] == 65536
    c = crash(tmp_path)
    assert c["n"] == 1 and c["where"] == "run" and c["type"] == "OSError"
    assert "adc gone" in c["msg"] and c["tb"]
    assert any(l.startswith("evse: crash 1 in run") for l in r["lines"])


def test_crash_loop_stops_resetting(tmp_path):
    files = {"crash.json": json.dumps({"n": 4, "type": "OSError", "msg": "x"})}
    r = boot(tmp_path, ticks=1000, fail=(400, "OSError"), files=files)
    assert r["result"] == "crashed" and r["resets"] == 0
    assert crash(tmp_path)["n"] == 5
    r = boot(tmp_path)  # the next boot does not even try
    assert r["result"] == "crashed"
    assert "PWM" not in [e[0] for e in r["log"]]


def test_interrupt_resets_into_maintenance(tmp_path):
    r = boot(tmp_path, ticks=1000, fail=(300, "KeyboardInterrupt"))
    assert r["result"] == "reset"
    assert (tmp_path / "maint").exists()
    assert any("maintenance" in l for l in r["lines"])
    r = boot(tmp_path)
    assert r["result"] == "maint"


def test_healthy_minute_clears_the_crash_count(tmp_path):
    files = {"crash.json": json.dumps({"n": 3, "type": "OSError", "msg": "x"})}
    r = boot(tmp_path, files=files, ticks=6100)
    assert r["result"] == "stopped" and r["t_ms"] >= 60000
    assert crash(tmp_path)["n"] == 0


def test_an_unreadable_mqtt_ca_never_takes_charging_away(tmp_path):
    """A backend setting that cannot work (TLS with a CA file that is not on
    the board) leaves the backend link off, says so, and journals it; the
    charger boots and runs its control loop with the watchdog, no crash."""
    cfg = {"mqtt_host": "broker.example", "mqtt_tls": True, "mqtt_ca": "no-such-ca.pem",
           "mqtt_device_id": "ca-1", "rcd_selftest": True}
    r = boot(tmp_path, config=cfg, ticks=50)
    assert r["result"] == "stopped", r["lines"]
    assert any("backend link off: mqtt_ca no-such-ca.pem unreadable" in l
               for l in r["lines"]), r["lines"]
    assert r["feeds"] == 50 and not (tmp_path / "crash.json").exists()
    from evse.journal import Journal

    events = [json.loads(d) for _, k, d in Journal(str(tmp_path / "journal.log")).load()
              if k == "e"]
    event = [e for e in events if e["type"] == "link_error"][0]
    assert (event["type"], event["reason"], event["detail"]) == (
        "link_error", "ca_unreadable", "mqtt_ca no-such-ca.pem unreadable"), journal
    # the reference backend stores it (a word for the reason, the detail as text)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import backend

    assert backend.check_event(event)["type"] == "link_error"
