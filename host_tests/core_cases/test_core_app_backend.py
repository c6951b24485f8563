"""The App's side of the backend (evse/app.py with backend=True): session
records and events go into the journal, a session cut by a power loss or a
reboot gets its record at the next boot, commands come through the Bus,
set_config only when enabled."""
import json

from evse import bus as B
from evse import config

from fakes import Clock, Rig, read, write


def _payloads(rig, kind):
    """The journal's records of `kind`, each without its rid once that is
    checked: first, "<the boot's nonce in 8 hex digits>-<n>"."""
    out = []
    for r in rig.live(kind):
        d = json.loads(r[2])
        assert r[2].startswith('{"rid": "'), r[2]
        nonce, n = d.pop("rid").split("-")
        assert len(nonce) == 8 and int(nonce, 16) >= 0 and int(n) >= 1, r[2]
        out.append(d)
    return out


def test_boot_event_and_session_record():
    rig = Rig(clock=Clock(1700000000))
    ev = _payloads(rig, "e")
    assert ev == [{"type": "boot", "reason": "power_on", "fw": ev[0]["fw"], "boot": 1, "n": 1,
                   "at": 1700000000, "time": "epoch"}], ev
    rig.charge(2000)
    assert rig.app.out.state == "C2" and rig.app.out.contactor
    rig.meter.a_ma = 16000
    rig.meter.energy_wh = 5400
    rig.run(100)
    rig.clock.t = 1700000100
    rig.run(100, "A")
    s = _payloads(rig, "s")
    assert s == [{"id": 1, "boot": 1, "start": 1700000000, "stop": 1700000100, "time": "epoch",
                  "meter_start_wh": 5000, "meter_stop_wh": 5400, "energy_wh": 400,
                  "energy_status": "measured", "estimate_wh": None,
                  "peak_a": 16.0, "reason": "unplugged", "errors": []}], s
    st = json.loads(read(rig.flash + "/state.json"))
    assert st == {"session_seq": 1, "boots": 1, "seed": st["seed"]}, st  # no session under way


def test_uptime_times_without_a_clock_and_faults_as_events():
    rig = Rig()
    rig.run(2000)
    rig.charge(1000)
    rig.board.rcd = True
    rig.run(50)
    rig.board.rcd = False
    rig.run(20)
    assert rig.app.command({"cmd": "reset_error", "id": 1}, rig.now)["ok"]
    rig.run(5000, "A")
    ev = _payloads(rig, "e")
    assert [(e["type"], e.get("code")) for e in ev] == [
        ("boot", None), ("fault", "rcd"), ("clear", "rcd")], ev
    assert [e["n"] for e in ev] == [1, 2, 3] and ev[1]["time"] == "uptime"
    s = _payloads(rig, "s")[0]
    assert s["time"] == "uptime" and s["start"] == 2 and s["stop"] == 4, s
    assert s["errors"] == ["rcd"] and s["reason"] == "unplugged"


def test_power_loss_gets_a_stop_record_at_the_next_boot():
    rig = Rig()
    rig.charge(1000)
    rig.meter.energy_wh = 5300
    rig.run(100)
    assert rig.app.out.session == 1
    st = json.loads(read(rig.flash + "/state.json"))
    assert st["open"]["id"] == 1 and st["open"]["wh"] == 5000, st
    # the power goes: no stop; the meter (upstream) keeps its register
    rig2 = Rig(flash=rig.flash)
    rig2.meter.energy_wh = 5300
    assert rig2.app.boot == 2
    assert _payloads(rig2, "s") == []  # waits for the meter's first answer
    rig2.run(20)
    s = _payloads(rig2, "s")
    assert s == [{"id": 1, "boot": 1, "start": 2, "stop": None, "time": "uptime",
                  "meter_start_wh": 5000, "meter_stop_wh": 5300, "energy_wh": 300,
                  "energy_status": "measured", "estimate_wh": None,
                  "peak_a": None, "reason": "power_loss", "errors": None}], s
    assert "open" not in json.loads(read(rig.flash + "/state.json"))
    rig2.charge(1000)
    assert rig2.app.out.session == 2  # the counter persisted
    # the record was in the journal already: not written a second time
    rig3 = Rig(flash=rig.flash)
    rig3.run(20)
    assert [p["id"] for p in _payloads(rig3, "s")] == [1, 2]
    assert [p["reason"] for p in _payloads(rig3, "s")] == ["power_loss", "power_loss"]


def test_reboot_command_is_an_event_and_its_session_ends_with_reboot():
    rig = Rig()
    rig.charge(1000)
    r = rig.app.command({"cmd": "reboot", "id": "r"}, rig.now)
    assert r == {"id": "r", "ok": True} and rig.app.reboot_requested
    assert [e["type"] for e in _payloads(rig, "e")] == ["boot", "reboot"]
    rig2 = Rig(flash=rig.flash, meter=False)
    boot = [e for e in _payloads(rig2, "e") if e["boot"] == 2]
    assert boot[0]["type"] == "boot" and boot[0]["reason"] == "reboot", boot
    rig2.run(20)  # no meter: the record does not wait
    s = _payloads(rig2, "s")
    assert s[0]["reason"] == "reboot" and s[0]["meter_stop_wh"] is None, s


def test_commands_through_the_bus_and_acks():
    rig = Rig()
    bus = rig.app.bus
    bus.cmds.put({"cmd": "set_current", "amps": 10, "id": 1})
    bus.cmds.put({"cmd": "set_current", "amps": 100, "id": 2})
    rig.run(10)
    assert bus.replies.get() == {"id": 1, "ok": True}
    r = bus.replies.get()
    assert r["id"] == 2 and r["ok"] is False and "amps" in r["error"]
    assert bus.replies.get() is None
    seq = rig.live()[0][0]
    bus.acks.put(seq)
    rig.run(10)
    assert rig.live() == []


def test_set_config_only_when_enabled():
    rig = Rig()
    r = rig.app.command({"cmd": "set_config", "key": "max_current_a", "value": 16, "id": 1},
                        rig.now)
    assert r["ok"] is False and "mqtt_remote_config" in r["error"]
    rig = Rig(cfg={"mqtt_remote_config": True})
    cmd = rig.app.command
    assert cmd({"cmd": "set_config", "key": "max_current_a", "value": 16, "id": 1},
               rig.now) == {"id": 1, "ok": True}
    assert rig.app.charger.max_ma == 16000
    assert config.load(rig.flash + "/config.json")["max_current_a"] == 16
    for msg, needle in (
            ({"cmd": "set_config", "key": "max_current_a", "value": 99}, "max_current_a: must"),
            ({"cmd": "set_config", "key": "mqtt_host", "value": "x"}, "cannot be changed"),
            ({"cmd": "set_config", "key": "mqtt_password", "value": "x"}, "cannot be changed"),
            ({"cmd": "set_config", "key": "colour", "value": 1}, "colour: unknown key"),
            ({"cmd": "set_config", "key": 5, "value": 1}, "key:"),
            ({"cmd": "set_config", "key": "phases"}, "value: missing"),
            ({"cmd": "set_config", "key": "phases", "value": 1, "x": 1}, "x: unknown field"),
            ({"cmd": "set_config", "key": "phases", "value": 1, "id": [1]}, "id:"),
            ({"cmd": "set_config", "key": "temp_stop_c", "value": 50}, "temp_stop_c")):
        r = cmd(msg, rig.now)
        assert r["ok"] is False and needle in r["error"], (msg, r)
    assert rig.app.cfg["max_current_a"] == 16 and rig.app.charger.max_ma == 16000
    assert config.load(rig.flash + "/config.json")["max_current_a"] == 16


def test_set_config_switches_between_smart_and_solar_only():
    """Remotely, site energy goes from one mode to the other, both of which
    keep the main fuse protected; never on or off."""
    rig = Rig(cfg={"mqtt_remote_config": True, "mode": "smart", "grid_meter": "sdm630"})
    cmd = rig.app.command
    assert rig.app.site is not None and not rig.app.site.solar
    assert cmd({"cmd": "set_config", "key": "mode", "value": "solar", "id": 1},
               rig.now) == {"id": 1, "ok": True}
    assert rig.app.site.solar and config.load(rig.flash + "/config.json")["mode"] == "solar"
    r = cmd({"cmd": "set_config", "key": "mode", "value": "normal", "id": 2}, rig.now)
    assert r["ok"] is False and "installer" in r["error"], r
    assert rig.app.cfg["mode"] == "solar"
    rig = Rig(cfg={"mqtt_remote_config": True, "grid_meter": "sdm630"})
    r = rig.app.command({"cmd": "set_config", "key": "mode", "value": "smart", "id": 3}, rig.now)
    assert r["ok"] is False and "installer" in r["error"], r
    assert rig.app.site is None


def test_set_config_never_weakens_a_safety_function_nor_raises_the_limit():
    """Whoever can publish on the command topic cannot turn off the RCD
    self-test, move the temperature limits, claim a bigger cable or raise
    the installer's current limit: those are changed on the device."""
    rig = Rig(cfg={"mqtt_remote_config": True, "max_current_a": 20})
    cmd = rig.app.command
    before = dict(rig.app.cfg)
    for key, value in (("rcd_selftest", False), ("rcd_retry_max", 10), ("rcd_retry_s", 10),
                       ("temp_stop_c", 110), ("temp_derate_c", 100), ("temp_hyst_c", 1),
                       ("ventilation", False), ("cable_a", 80), ("socket", True),
                       ("phases", 1), ("meter_fail_polls", 20), ("meter_poll_s", 60),
                       ("journal_kb", 64), ("mqtt_remote_config", False),
                       ("max_current_a", 32), ("max_current_a", 20.5)):
        r = cmd({"cmd": "set_config", "key": key, "value": value, "id": key}, rig.now)
        assert r["ok"] is False, (key, value, r)
        assert "on the device" in r["error"], r
    assert rig.app.cfg == before and rig.app.charger.max_ma == 20000
    assert config.load(rig.flash + "/config.json") is None or (
        config.load(rig.flash + "/config.json")["rcd_selftest"] is True)
    # lowering the limit, the fallback, the meter's settings: the backend's to change
    for key, value in (("max_current_a", 10), ("max_current_a", 10), ("fallback_current_a", 8),
                       ("authorization", "backend"), ("meter_loss", "stop")):
        r = cmd({"cmd": "set_config", "key": key, "value": value, "id": 1}, rig.now)
        assert r == {"id": 1, "ok": True}, (key, r)
    assert rig.app.charger.max_ma == 10000 and rig.app.cfg["meter_loss"] == "stop"
    r = cmd({"cmd": "set_config", "key": "max_current_a", "value": 16, "id": 2}, rig.now)
    assert r["ok"] is False and "not above 10 A" in r["error"], r
    # the meter watches the current (overcurrent, meter loss): never removed,
    # its loss never answered more weakly than the installer (or a backend) set
    for key, value in (("meter", None), ("meter_loss", "fallback"),
                       ("fallback_current_a", 16)):
        r = cmd({"cmd": "set_config", "key": key, "value": value, "id": 3}, rig.now)
        assert r["ok"] is False, (key, value, r)
    assert rig.app.cfg["meter"] == before["meter"] and rig.app.cfg["meter_loss"] == "stop"
    assert rig.app.cfg["fallback_current_a"] == 8
    assert cmd({"cmd": "set_config", "key": "fallback_current_a", "value": 10, "id": 4},
               rig.now) == {"id": 4, "ok": True}


def test_boot_nonces_never_repeat_on_one_flash_and_are_random_across_flashes():
    """The rid's nonce (docs/mqtt.md): a seed drawn at a flash's first boot
    (state.json) plus the boot number times an odd number, so no two boots
    of one flash share it (a backend would take a record of the later one
    for one already stored); a wiped flash draws a new seed."""
    from evse.app import App
    from fakes import Board, tmpdir

    cfg = config.validate({"mqtt_host": "broker"})

    def nonces(d, boots):
        out = []
        for _ in range(boots):
            app = App(Board(), cfg, 0, None, d, backend=True)
            out.append(app._nonce)
        return out

    d = tmpdir("nonce")
    a = nonces(d, 40)
    assert len(set(a)) == 40 and all(len(x) == 8 and int(x, 16) >= 0 for x in a), a
    seed = json.loads(read(d + "/state.json"))["seed"]
    assert a == ["%08x" % ((seed + k * 0x9E3779B1) & 0xFFFFFFFF) for k in range(1, 41)]
    firsts = set()
    for i in range(8):  # eight wiped flashes: eight seeds
        firsts.add(nonces(tmpdir("nonce%d" % i), 1)[0])
    assert len(firsts) == 8, firsts


def test_a_journal_that_cannot_be_read_at_boot_is_reported_and_kept():
    """The journal's file cannot be read at boot (here: out of memory while
    reading it): the App still boots and charges, the file is set aside
    under journal.log.unread (never deleted), and a journal_unreadable event
    naming it goes to the backend in the new journal."""
    from evse import journal as J

    rig = Rig()
    rig.charge(1000)
    rig.run(100, "A")  # a session record, not yet confirmed
    flash = rig.flash
    image = read(flash + "/journal.log")
    assert image

    def fail(*a, **k):
        raise MemoryError()

    saved = J.stream
    J.stream = fail
    try:
        rig = Rig(flash=flash)
    finally:
        J.stream = saved
    ev = [e for e in _payloads(rig, "e") if e["type"] == "journal_unreadable"]
    assert len(ev) == 1 and ev[0]["file"] == flash + "/journal.log.unread", ev
    assert read(flash + "/journal.log.unread") == image
    rig.charge(1000)
    assert rig.app.out.contactor  # charging goes on


def test_without_backend_nothing_is_journaled():
    from evse.app import App
    from fakes import Board, tmpdir
    d = tmpdir("nb")
    app = App(Board(), config.validate({}), 0, None, d)
    assert app.journal is None and app.bus is None
    app.tick(10)
    assert read(d + "/journal.log") is None


def test_a_meter_that_answers_late_still_gives_the_lost_session_its_start():
    rig = Rig()
    rig.meter.energy_wh = None  # no reading yet
    rig.meter.answering = False
    rig.charge(1000)
    assert json.loads(read(rig.flash + "/state.json"))["open"]["wh"] is None
    rig.meter.answering = True
    rig.meter.energy_wh = 7000
    rig.run(20)
    assert json.loads(read(rig.flash + "/state.json"))["open"]["wh"] == 7000


# --- Issue 10: what the backend set survives a reboot; records say what they know

def _offer_after_boot(flash):
    rig = Rig(flash=flash)
    rig.charge(1000)
    return rig, rig.app.out.offer_ma


def test_backend_limit_and_pause_survive_a_power_cut():
    """A site's load management set 10 A: after a power cut the charger must
    not come back at 32 A."""
    rig = Rig()
    rig.charge(1000)
    assert rig.app.command({"cmd": "set_current", "amps": 10}, rig.now)["ok"]
    rig.run(100)
    assert rig.app.out.offer_ma == 10000
    rig2, offer = _offer_after_boot(rig.flash)
    assert offer == 10000
    assert rig2.app.command({"cmd": "pause"}, rig2.now)["ok"]
    rig3 = Rig(flash=rig.flash)
    rig3.charge(1000)
    assert rig3.app.out.offer_ma == 0 and not rig3.app.out.contactor
    assert rig3.app.command({"cmd": "resume"}, rig3.now)["ok"]
    rig3.run(4000)
    assert rig3.app.out.offer_ma == 10000


def test_limit_with_ttl_after_a_reboot_never_exceeds_the_fallback():
    """20 A with ttl_s 60 and fallback 6 A: the charger cannot know how long
    it was off, so after the boot it offers what it would have fallen back
    to (6 A), for the rest of the ttl and after it."""
    rig = Rig(cfg={"fallback_current_a": 6})
    rig.charge(1000)
    rig.app.command({"cmd": "set_current", "amps": 20, "ttl_s": 60}, rig.now)
    rig.run(100)
    assert rig.app.out.offer_ma == 20000
    rig2 = Rig(flash=rig.flash, cfg={"fallback_current_a": 6})
    rig2.charge(1000)
    assert rig2.app.out.offer_ma == 6000
    v = rig2.app.bus.snap.v  # the status snapshot the network thread reads
    assert v[B.S_BACKEND] == 6000 and 50000 <= v[B.S_LEFT] <= 60000, list(v)
    rig2.run(62000)
    assert rig2.app.out.offer_ma == 6000 and v[B.S_LEFT] == B.NONE


def test_a_malformed_backend_state_is_ignored():
    rig = Rig()
    rig.charge(100)
    st = json.loads(read(rig.flash + "/state.json"))
    for bad in ({"limit_ma": "10"}, {"limit_ma": 10 ** 9}, {"limit_ma": True}, [1], "x"):
        st["backend"] = bad
        write(rig.flash + "/state.json", json.dumps(st).encode())
        rig2, offer = _offer_after_boot(rig.flash)
        assert offer == 32000, bad


def test_session_whose_meter_went_silent_has_no_energy():
    """The meter stops answering during the session: the record has no
    stop reading, energy_wh null, and the status says why, with the least
    energy known."""
    rig = Rig()
    rig.charge(1000)
    rig.meter.energy_wh = 5200
    rig.run(100)
    rig.meter.answering = False
    rig.meter.ok = False
    rig.run(100)
    rig.run(12000, "A")
    s = _payloads(rig, "s")[0]
    assert s["meter_stop_wh"] is None and s["energy_wh"] is None, s
    assert s["energy_status"] == "no_stop_reading" and s["estimate_wh"] == 200, s


def test_session_whose_meter_answered_late_is_marked_late():
    """The meter first answers after the contactor has closed: energy flowed
    before the start reading, so the difference is not the session's."""
    rig = Rig()
    rig.meter.answering = False
    rig.charge(1000)
    assert rig.app.out.contactor
    rig.meter.answering = True
    rig.run(100)
    rig.meter.energy_wh = 5400
    rig.run(100)
    rig.run(2000, "A")
    s = _payloads(rig, "s")[0]
    assert s["energy_wh"] is None and s["energy_status"] == "late_start", s
    assert s["meter_start_wh"] == 5000 and s["estimate_wh"] == 400, s
