"""OTA on the board's runtime (issue 15, docs/ota.md): the network thread's
steps (evse/ota.py Runner, run by hw/system.run_all at every pass of the
link) decide a trial's verdict and switch to a staged update, only with no
vehicle (state A) and the contactor open as the status snapshot
(evse/bus.py) says, through the watchdog's reset path (hw/watchdog.py:
feeding stops only with the contactor open).

Runner on a Snapshot with a virtual clock; then run_all on the fake
machine (host_tests/fakes/fakemachine.py, real threads)."""
import os

from evse import bus as B
from evse import ota
from hw import watchdog

from test_ota import bundle, flash, main_py_boot, stage
from test_watchdog_runtime import Net, make_ctx


class Clock:
    def __init__(self):
        self.t = 0

    def ms(self):
        return self.t

    @staticmethod
    def diff(a, b):
        return a - b


class Link:
    connects = 0


def snap(state="A", contactor=0, uptime_s=0):
    s = B.Snapshot()
    s.v[B.S_STATE] = B.STATES.index(state)
    s.v[B.S_CONTACTOR] = contactor
    s.v[B.S_UPTIME] = uptime_s
    return s


def runner(root, s, link=None):
    c = Clock()
    asked = []
    r = ota.Runner(root, s, link or Link(), lambda: asked.append(c.t), c.ms, c.diff)
    return r, c, asked


def steps(r, c, n=1):
    for _ in range(n):
        c.t += 1000
        r.step()


def test_a_staged_update_waits_for_no_vehicle_and_an_open_contactor(tmp_path):
    root = flash(tmp_path)
    stage(root, bundle())
    s = snap("C2", 1, 5)
    r, c, asked = runner(root, s)
    assert r.staged == "0.6.0" and not r.trial and r.result == ota.R_STAGED
    steps(r, c, 5)
    assert asked == [] and ota.read_state(root) == (0, 1, 0, ota.R_STAGED)
    s.v[B.S_CONTACTOR] = 0
    s.v[B.S_STATE] = B.STATES.index("B1")  # contactor open, vehicle still plugged in
    steps(r, c, 5)
    assert asked == [] and main_py_boot(root) == (0, 0)
    s.v[B.S_STATE] = B.STATES.index("A")  # unplugged
    steps(r, c, 3)
    assert len(asked) == 1 and r.done
    assert ota.read_state(root) == (0, 1, 1, ota.R_STAGED)  # armed: the reset boots it on trial
    assert main_py_boot(root) == (1, 1)


def test_an_update_staged_a_week_after_the_last_look_is_switched_to_at_once(tmp_path):
    """The Runner looks at the snapshot once a second, and stops looking
    while there is nothing to do. A bundle staged more than half the ticks'
    period later (a week; ticks_ms wraps every 2**30 ms on a board) is
    switched to at its next look, not once the ticks come round days later."""
    from evse import TICKS_PERIOD, ticks_add, ticks_diff

    root = flash(tmp_path)
    s = snap("A", 0, 5)
    t = [1000]
    asked = []
    r = ota.Runner(root, s, Link(), lambda: asked.append(t[0]), lambda: t[0], ticks_diff)
    for _ in range(3):
        t[0] = ticks_add(t[0], 1000)
        r.step()
    assert r.done and asked == []
    for _ in range(2):  # a week (ticks_add takes less than half the period at a time)
        t[0] = ticks_add(t[0], TICKS_PERIOD // 4 + 30000)
        r.step()
    stage(root, bundle())
    r.staged_now()
    for _ in range(2):
        t[0] = ticks_add(t[0], 1000)
        r.step()
    assert len(asked) == 1 and ota.read_state(root) == (0, 1, 1, ota.R_STAGED)


def _trial(tmp_path):
    root = flash(tmp_path)
    stage(root, bundle())
    ota.arm(root)
    assert main_py_boot(root) == (1, 1)
    return root


def test_a_trial_commits_after_its_control_loop_time_and_the_broker(tmp_path):
    root = _trial(tmp_path)
    s = snap("C2", 1, 0)
    link = Link()
    r, c, asked = runner(root, s, link)
    assert r.trial and r.running == "0.6.0"
    s.v[B.S_UPTIME] = 179
    link.connects = 1
    steps(r, c)
    assert ota.read_state(root)[2] == 1 and not r.done  # not yet: 3 minutes
    s.v[B.S_UPTIME] = 600
    link.connects = 0
    steps(r, c)
    assert ota.read_state(root)[2] == 1 and not r.done  # the broker not reached yet
    link.connects = 1
    steps(r, c)  # commits during a charge: no reset needed
    assert ota.read_state(root) == (1, -1, 0, ota.R_COMMITTED) and asked == []
    assert r.result == ota.R_COMMITTED and r.done
    assert r.news == [("update", (("result", "committed"), ("version", "0.6.0")))]
    assert main_py_boot(root) == (1, 0)


def test_a_trial_without_the_broker_is_rolled_back_with_its_reason(tmp_path):
    root = _trial(tmp_path)
    s = snap("C2", 1, 900)  # 15 minutes and never connected
    r, c, asked = runner(root, s)
    steps(r, c, 3)
    assert asked == []  # charging: the reset waits
    s.v[B.S_STATE], s.v[B.S_CONTACTOR] = 0, 0
    steps(r, c)
    assert len(asked) == 1
    assert main_py_boot(root) == (0, 0)  # the reset: the committed slot again
    r2, _, _ = runner(root, snap())
    assert r2.result == ota.R_ROLLED_BACK and r2.why == "no broker within the trial"
    assert ota.read_state(root) == (0, -1, 0, ota.R_ROLLED_BACK) and not r2.trial
    assert not os.path.exists(root + ota.FAIL) and not os.path.exists(root + ota.TRY)


def test_a_trial_that_crashed_is_reported_as_not_committed(tmp_path):
    root = _trial(tmp_path)
    assert main_py_boot(root) == (0, 0)  # it crashed or hung: the watchdog reset it
    r, _, _ = runner(root, snap())
    assert r.result == ota.R_ROLLED_BACK and r.why == "no commit" and r.running is None


def test_run_all_switches_to_a_staged_update_through_the_watchdog(tmp_path):
    root = flash(tmp_path)
    stage(root, bundle())
    w, raw, ctx = make_ctx(tmp_path, {"mqtt_host": "127.0.0.1"})  # the link's bus
    lines = []
    from hw import system

    net = Net()
    n = system.run_all(ctx, net, max_ticks=200, out=lines.append, root=root)
    sup = ctx.supervisor
    assert net.ota is not None and sup.reason == watchdog.OTA, lines  # the link reports it
    assert "watchdog: update: reboot; contactor open: the board resets" in lines
    assert w.feeds < n and ctx.app.out.contactor is False
    assert ota.read_state(root) == (0, 1, 1, ota.R_STAGED)
    assert main_py_boot(root) == (1, 1)


def test_an_update_rolled_back_at_boot_is_journaled_for_the_backend(tmp_path):
    """The boot after a trial that never committed (it crashed: the watchdog
    reset it, main.py booted the committed slot): the Runner's news goes
    through the Bus to the App, which journals an `update` event, so the
    backend learns of the rollback from a record that waits for its
    acknowledgement, not only from a status; the reference backend stores it."""
    import json
    import sys

    root = _trial(tmp_path)
    assert main_py_boot(root) == (0, 0)  # the trial crashed: rolled back
    w, raw, ctx = make_ctx(tmp_path, {"mqtt_host": "127.0.0.1"})
    from hw import system

    system.run_all(ctx, Net(), max_ticks=60, out=[].append, root=root)
    events = [json.loads(d) for _, k, d in ctx.app.journal.live if k == "e"]
    ups = [e for e in events if e["type"] == "update"]
    assert len(ups) == 1 and ups[0]["result"] == "rolled_back", events
    assert ups[0]["error"] == "no commit" and ups[0]["rid"], ups
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "tools"))
    import backend

    assert backend.check_event(ups[0])["type"] == "update"


def test_run_all_without_an_ota_state_runs_no_ota_steps(tmp_path):
    w, raw, ctx = make_ctx(tmp_path, {"mqtt_host": "127.0.0.1"})
    from hw import system

    net = Net()
    n = system.run_all(ctx, net, max_ticks=30, out=[].append, root=str(tmp_path) + "/")
    assert getattr(net, "ota", None) is None and ctx.supervisor.reason == watchdog.OK and w.feeds == n


def _status(r):
    import json

    from evse import payloads as PL
    from evse.charger import FAULTS

    s = B.fields(B.N_FIELDS)
    return json.loads(PL.status(s, FAULTS, "0.6.0", None, r.report()))


def test_the_status_says_what_is_staged_and_the_last_result(tmp_path):
    import json

    from evse import payloads as PL
    from evse.charger import FAULTS

    root = flash(tmp_path)
    stage(root, bundle())
    r, c, _ = runner(root, snap("C2", 1))
    assert _status(r)["ota"] == {"staged": "0.6.0", "trial": False, "result": "staged",
                                 "reason": None, "phase": "staged"}
    ota.arm(root)
    main_py_boot(root)
    r, c, _ = runner(root, snap("C2", 1, 0))
    assert _status(r)["ota"] == {"staged": None, "trial": True, "result": "staged",
                                 "reason": None, "phase": "idle"}
    main_py_boot(root)  # it did not commit: rolled back
    r, c, _ = runner(root, snap())
    assert _status(r)["ota"] == {"staged": None, "trial": False, "result": "rolled_back",
                                 "reason": "no commit", "phase": "idle"}
    # no update ever: no ota object at all
    assert "ota" not in json.loads(PL.status(B.fields(B.N_FIELDS), FAULTS, "0.5.0"))


def test_a_committed_trial_reports_committed(tmp_path):
    root = _trial(tmp_path)
    link = Link()
    link.connects = 1
    r, c, _ = runner(root, snap("A", 0, 200), link)
    steps(r, c)
    assert _status(r)["ota"]["result"] == "committed" and not _status(r)["ota"]["trial"]


# ------------------------------------------------ delivery (issue 15 part 2)
def _delivery(tmp_path, data=None):
    """A board (0.5.0, its key), a file server holding a 0.6.0 bundle, and a
    Runner whose start() downloads with hw/fetch.py over loopback."""
    import sys

    from hw import fetch as F

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tools", "host"))
    import mpsocket
    from http_env import FileServer

    root = flash(tmp_path / "flash")
    www = tmp_path / "www"
    www.mkdir()
    (www / "u.evu").write_bytes(bundle() if data is None else data)
    srv = FileServer(www)
    made = []

    def start(url, force):
        st = ota.Stager(root, ota.load_key(root), "0.5.0", "linux", 6, force)
        made.append(F.Fetch(mpsocket, url, st, pause_ms=0, timeout_s=5))
        return made[-1]

    s = snap("C2", 1, 5)
    c = Clock()
    asked = []
    r = ota.Runner(root, s, Link(), lambda: asked.append(c.t), c.ms, c.diff, start)
    return root, srv, s, r, c, asked, made


def _until(r, c, phase, n=5000):
    for _ in range(n):
        c.t += 50
        r.step()
        if r.phase == phase:
            return
    raise AssertionError("phase %d not reached (%d)" % (phase, r.phase))


def test_an_offered_update_downloads_during_a_charge_and_switches_in_state_a(tmp_path):
    root, srv, s, r, c, asked, made = _delivery(tmp_path)
    try:
        assert r.phase == ota.PH_IDLE and not r.done
        r.changed = False
        assert r.offer({"cmd": "update", "id": 1, "url": srv.url("/files/u.evu")}) is None
        assert r.phase == ota.PH_DOWNLOADING and r.changed
        assert r.offer({"cmd": "update", "url": srv.url("/files/u.evu")}) == \
            "busy: an update is downloading"
        _until(r, c, ota.PH_STAGED)
        rep = dict(r.report())
        assert rep["staged"] == "0.6.0" and rep["result"] == "staged"
        assert rep["got"] == rep["size"] == len(bundle())
        assert r.news == [("update", (("result", "staged"), ("version", "0.6.0")))]
        steps(r, c, 5)
        assert asked == []  # charging (C2, contactor closed): the switch waits
        s.v[B.S_STATE], s.v[B.S_CONTACTOR] = 0, 0
        steps(r, c, 2)
        assert len(asked) == 1 and r.phase == ota.PH_SWITCHING
        assert main_py_boot(root) == (1, 1)  # the reset boots 0.6.0 on trial
    finally:
        srv.stop()


def test_a_failed_download_is_reported_and_the_board_keeps_its_version(tmp_path):
    root, srv, s, r, c, asked, made = _delivery(tmp_path, data=bundle()[:-7])
    try:
        s.v[B.S_STATE], s.v[B.S_CONTACTOR] = 0, 0  # no vehicle: nothing holds a switch back
        assert r.offer({"cmd": "update", "url": srv.url("/files/u.evu")}) is None
        _until(r, c, ota.PH_FAILED)
        rep = dict(r.report())
        assert rep["phase"] == "failed" and "bytes" in rep["error"] and rep["staged"] is None
        assert r.news == [("update", (("result", "failed"), ("error", rep["error"][:64])))]
        steps(r, c, 3)
        assert asked == [] and main_py_boot(root) == (0, 0)
        # a new offer may follow (here: the file is still short, and 404 for another)
        assert r.offer({"cmd": "update", "url": srv.url("/files/none.evu")}) is None
        _until(r, c, ota.PH_FAILED)
        assert dict(r.report())["error"] == "HTTP 404"
    finally:
        srv.stop()


def test_update_offers_are_checked(tmp_path):
    root, srv, s, r, c, asked, made = _delivery(tmp_path)
    srv.stop()
    assert r.offer({"cmd": "update", "url": "ftp://x/y"}) == "url: not a http:// or https:// URL"
    assert r.offer({"cmd": "update"}) == "url: a string of at most 256 characters"
    assert r.offer({"cmd": "update", "url": "http://h/x", "force": 1}) == \
        "force: must be true or false"
    assert r.offer({"cmd": "update", "url": "http://h/x", "urgent": True}) == \
        "urgent: unknown field for update"
    assert r.phase == ota.PH_IDLE and made == []
    os.remove(root + ota.KEY_FILE)
    assert "ota_key.bin" in r.offer({"cmd": "update", "url": "http://h/x"})
    r.start = None
    assert r.offer({"cmd": "update", "url": "http://h/x"}) == \
        "updates are not delivered on this board"


def test_no_update_is_taken_during_a_trial(tmp_path):
    root = _trial(tmp_path)
    r, c, _ = ota.Runner(root, snap(), Link(), lambda: None, Clock().ms, Clock.diff,
                         lambda u, f: 1 / 0), None, None
    assert r.offer({"cmd": "update", "url": "http://h/x"}) == "busy: this version is on trial"


def test_the_link_answers_update_itself_and_never_queues_it_for_the_app(tmp_path):
    from evse.link import Link as MqttLink

    w, raw, ctx = make_ctx(tmp_path, {"mqtt_host": "127.0.0.1", "mqtt_device_id": "d1"})
    link = MqttLink(ctx.app, ctx.app.cfg, "d1")
    msg = b'{"cmd": "update", "id": "u", "url": "http://127.0.0.1:9/x.evu"}'
    link._on_msg(link._cmd_topic, msg)  # no Runner: the board has no ota_key.bin
    assert link._own == [{"id": "u", "ok": False,
                          "error": "updates: no ota_key.bin on this board"}]
    assert ctx.app.bus.cmds.get() is None  # the control thread never sees it
    offers = []

    class Runner:
        changed = False

        def offer(self, m):
            offers.append(m)
            return None if len(offers) == 1 else "busy: an update is downloading"

    link.ota = Runner()
    link._own.clear()
    link._on_msg(link._cmd_topic, msg)
    link._on_msg(link._cmd_topic, msg)
    assert len(offers) == 2 and link._own == [
        {"id": "u", "ok": True}, {"id": "u", "ok": False, "error": "busy: an update is downloading"}]
    assert ctx.app.bus.cmds.get() is None


def test_a_download_given_up_closes_its_connection_and_takes_a_new_offer(tmp_path):
    """Runner.fail (a bug in the update's steps, hw/system.py's hook): the
    download's socket closed, the phase failed with the reason, and the next
    offer is not refused as busy."""
    from hw import fetch as F

    root, srv, s, r, c, asked, made = _delivery(tmp_path)
    try:
        assert r.offer({"cmd": "update", "url": srv.url("/files/u.evu")}) is None
        c.t += 50
        r.step()  # connected, the head read
        r.fail("RuntimeError('bug')")
        assert made[0].state == F.FAILED and made[0].sock is None
        assert r.phase == ota.PH_FAILED and dict(r.report())["error"] == "RuntimeError('bug')"
        assert r.offer({"cmd": "update", "url": srv.url("/files/u.evu")}) is None
        _until(r, c, ota.PH_STAGED)
    finally:
        srv.stop()
