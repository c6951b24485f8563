"""evse.ota and main.py's slot choice (issue 15, parts 1 and 3; docs/ota.md).

A board's flash is a folder: slot 0 as tools/deploy.py leaves it (evse/,
hw/, config.json), slot 1 under ota_b/. Bundles are made with
tools/release.py's signing code and a test key. What is checked: a good
bundle is staged into the slot that is not running and the state names it
only once every file has its hash; every refusal (signature, hash,
truncation, port, ABI, full flash, downgrade, paths outside the firmware's
folders) leaves the state pointing at a verified slot; the switch waits for
state A with the contactor open; a trial commits, or is rolled back by the
next boot; and a power cut at every write step of staging, arming,
committing and recording a rollback leaves a charger that boots a verified
version (host_tests/fakes/powercut.py, the journal's power-cut fake).
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evse import ota
from evse import pilot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "host_tests", "fakes"))

import powercut  # noqa: E402
import release as R  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

MAIN = os.path.join(ROOT, "firmware", "main.py")
KEY = ec.generate_private_key(ec.SECP256R1())
PUB = R.public_raw(KEY)
MPY = 6  # the .mpy version byte; arch 0 (bytecode) in the test manifests
OLD = {"evse/__init__.mpy": b"M\x06old-init", "evse/app.mpy": b"M\x06old-app",
       "hw/boot.mpy": b"M\x06old-boot"}
NEW = {"evse/__init__.mpy": b"M\x06new-init" * 3, "evse/app.mpy": b"M\x06new-app" * 20,
       "evse/meter_maps/sdm630.mpy": b"M\x06map", "evse/empty.mpy": b"",
       "hw/boot.mpy": b"M\x06new-boot" * 7}


def manifest(files, version="0.6.0", **kw):
    m = {"fmt": 1, "version": version, "min": "0", "port": "linux", "mpy": MPY, "arch": 0,
         "files": [[p, len(d), hashlib.sha256(d).hexdigest()] for p, d in files.items()]}
    m.update(kw)
    return json.dumps(m, sort_keys=True, separators=(",", ":")).encode()


def bundle(files=NEW, key=KEY, man=None, **kw):
    man = man if man is not None else manifest(files, **kw)
    return (R.MAGIC + len(man).to_bytes(2, "big") + R.sign(key, man) + man
            + b"".join(files.values()))


def flash(tmp_path):
    """A board as tools/deploy.py leaves it (version 0.5.0 in slot 0)."""
    for p, d in OLD.items():
        f = tmp_path / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(d)
    (tmp_path / "config.json").write_text('{"max_current_a": 16}')
    (tmp_path / "ota_key.bin").write_bytes(PUB)
    return str(tmp_path) + "/"


def stager(root, version="0.5.0", free=1 << 30, **kw):
    return ota.Stager(root, ota.load_key(root), version, "linux", MPY, free=lambda r: free, **kw)


def stage(root, data, chunk=97, **kw):
    s = stager(root, **kw)
    for i in range(0, len(data), chunk):
        s.feed(data[i:i + chunk])
    return s.finish()


def slot_files(root, slot):
    d = ota.slot_dir(root, slot)
    got = {}
    for pkg in ("evse", "hw"):
        for dp, _, names in os.walk(d + pkg):
            for n in names:
                full = os.path.join(dp, n)
                got[os.path.relpath(full, d)] = open(full, "rb").read()
    return got


_PICK = open(MAIN).read().split("_s, _trial = _slot()")[0]


def main_py_boot(root):
    """What main.py does at boot in this flash: its own _slot(), run in the
    folder (it works on paths relative to the current one, as on the board)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        g = {"__name__": "main_test"}
        exec(_PICK, g)
        return g["_slot"]()
    finally:
        os.chdir(cwd)


def booted_version(root):
    """The files of the slot the next boot runs, and whether they are a
    verified set: the deployed OLD in slot 0, or NEW complete."""
    slot, _ = main_py_boot(root)
    files = slot_files(root, slot)
    return slot, files


def assert_boots_verified(root):
    slot, files = booted_version(root)
    assert files in (OLD, NEW), (slot, sorted(files))
    if files == NEW:
        assert ota.slot_manifest(root, slot) is not None
    return slot, files


# ------------------------------------------------------------- staging
def test_a_good_bundle_goes_into_the_other_slot_and_the_state_names_it(tmp_path):
    root = flash(tmp_path)
    assert stage(root, bundle()) == 1
    assert ota.read_state(root) == (0, 1, 0, ota.R_STAGED)
    assert slot_files(root, 1) == NEW and slot_files(root, 0) == OLD
    assert (tmp_path / "config.json").read_text() == '{"max_current_a": 16}'
    assert main_py_boot(root) == (0, 0)  # staged, not armed: the next boot is still slot 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=40))
def test_any_split_into_chunks_stages_the_same(tmp_path_factory, cuts):
    root = flash(tmp_path_factory.mktemp("c"))
    data = bundle()
    s = stager(root)
    at = 0
    for n in cuts:
        s.feed(data[at:at + n])
        at += n
    s.feed(data[at:])
    assert s.finish() == 1 and slot_files(root, 1) == NEW and s.got == s.total == len(data)


def refused(root, data, code, **kw):
    before = ota.read_state(root)
    with pytest.raises(ota.OtaError) as e:
        stage(root, data, **kw)
    assert e.value.args[0] == code, e.value.args
    st = ota.read_state(root)
    # untouched (refused before any write), or naming no trial
    assert st == before or (st[1] == -1 and not st[2]), (before, st)
    assert_boots_verified(root)
    assert slot_files(root, 0) == OLD


def test_refusals_leave_the_running_version_and_a_state_without_a_trial(tmp_path):
    root = flash(tmp_path)
    good = bundle()
    other = ec.generate_private_key(ec.SECP256R1())
    refused(root, bundle(key=other), ota.E_SIGNATURE)
    bad = bytearray(good)
    bad[-5] ^= 1  # in the last file
    refused(root, bytes(bad), ota.E_HASH)
    bad = bytearray(good)
    bad[R.HEAD + 30] ^= 1  # in the manifest: its signature
    refused(root, bytes(bad), ota.E_SIGNATURE)
    refused(root, good[:-1], ota.E_TRUNCATED)
    refused(root, good[:R.HEAD + 10], ota.E_TRUNCATED)
    refused(root, good + b"x", ota.E_FORMAT)
    refused(root, b"EVU2" + good[4:], ota.E_FORMAT)
    refused(root, bundle(port="esp32"), ota.E_PORT)
    refused(root, bundle(mpy=5), ota.E_ABI)
    refused(root, bundle(arch=10), ota.E_ABI)  # xtensawin code on this board
    refused(root, bundle(version="0.5.0"), ota.E_VERSION)  # not newer
    refused(root, bundle(version="0.4.9"), ota.E_VERSION)
    for path in ("config.json", "../evil.mpy", "evse/../../x.mpy", "/evse/a.mpy", "lib/a.mpy",
                 "evse//a.mpy", "evse/a.py"):
        refused(root, bundle({path: b"M"}), ota.E_FORMAT)
    assert (tmp_path / "config.json").read_text() == '{"max_current_a": 16}'
    big = {"evse/a.mpy": b"x" * (R.MAX_MANIFEST + 1)}
    refused(root, bundle(big, man=b"{" + b" " * ota._MAX_MANIFEST_B + b"}"), ota.E_FORMAT)


def test_a_bundle_that_does_not_fit_is_refused_before_any_file_is_written(tmp_path):
    root = flash(tmp_path)
    assert stage(root, bundle()) == 1  # slot 1 holds NEW, staged
    need = ota.need_bytes([(p, len(d), None) for p, d in NEW.items()])
    slot1 = ota._slot_tree(ota.slot_dir(root, 1), False)
    # what slot 1 holds now counts as free: it is what the update replaces
    refused(root, bundle(version="0.7.0"), ota.E_SPACE, free=need - slot1 - 1)
    assert ota.read_state(root) == (0, 1, 0, ota.R_STAGED) and slot_files(root, 1) == NEW
    assert stage(root, bundle(version="0.7.0"), free=need - slot1) == 1


def test_downgrades_only_forced_and_never_below_the_running_versions_minimum(tmp_path):
    root = flash(tmp_path)
    assert stage(root, bundle(version="0.4.0"), force=True) == 1
    root = flash(tmp_path / "b")
    stage(root, bundle(min="0.6.0"))
    ota.arm(root)
    main_py_boot(root)
    assert ota.commit(root)  # running 0.6.0 from slot 1, minimum 0.6.0
    refused(root, bundle(version="0.5.9"), ota.E_VERSION, version="0.6.0", force=True)
    assert stage(root, bundle(OLD, version="0.6.0"), version="0.6.0", force=True) == 0


def test_no_key_on_the_board_no_update(tmp_path):
    root = flash(tmp_path)
    os.remove(root + ota.KEY_FILE)
    with pytest.raises(ota.OtaError) as e:
        ota.load_key(root)
    assert e.value.args[0] == ota.E_KEY


# ----------------------------------------------------- switch and trial
def test_the_switch_waits_for_no_vehicle_and_an_open_contactor():
    assert ota._CP_A == pilot.CP_A
    assert ota.may_switch(pilot.CP_A, False)
    for s in (pilot.CP_B, pilot.CP_C, pilot.CP_D, pilot.CP_E, pilot.CP_UNKNOWN):
        assert not ota.may_switch(s, False)  # an update offered during a charge waits
    assert not ota.may_switch(pilot.CP_A, True)


def test_trial_verdict():
    v = ota.trial_verdict
    assert v(ota._TRIAL_MIN_MS - 1, True, True) == ota.V_WAIT
    assert v(ota._TRIAL_MIN_MS, True, True) == ota.V_COMMIT
    assert v(ota._TRIAL_MIN_MS, False, False) == ota.V_COMMIT  # no broker configured
    assert v(ota._TRIAL_MIN_MS, True, False) == ota.V_WAIT
    assert v(ota._TRIAL_WINDOW_MS - 1, True, False) == ota.V_WAIT
    assert v(ota._TRIAL_WINDOW_MS, True, False) == ota.V_FAIL


def test_a_trial_that_commits_stays_and_the_next_update_goes_into_slot_0(tmp_path):
    root = flash(tmp_path)
    stage(root, bundle())
    assert ota.arm(root) == 1 and ota.read_state(root)[2] == 1
    assert main_py_boot(root) == (1, 1)  # trial boot, ota.try made
    assert ota.running_slot(root) == 1 and ota.settle(root) == ota.R_STAGED
    with pytest.raises(ota.OtaError) as e:  # no update while a trial runs
        stage(root, bundle(version="0.7.0"), version="0.6.0")
    assert e.value.args[0] == ota.E_BUSY
    assert ota.commit(root)
    assert ota.read_state(root) == (1, -1, 0, ota.R_COMMITTED)
    assert not os.path.exists(root + ota.TRY)
    assert main_py_boot(root) == (1, 0) and main_py_boot(root) == (1, 0)
    again = dict(NEW, **{"evse/app.mpy": b"M\x06v7"})
    assert stage(root, bundle(again, version="0.7.0"), version="0.6.0") == 0
    assert slot_files(root, 0) == again and slot_files(root, 1) == NEW
    assert (tmp_path / "config.json").read_text() == '{"max_current_a": 16}'


def test_a_trial_that_does_not_commit_is_rolled_back_at_the_next_boot(tmp_path):
    root = flash(tmp_path)
    stage(root, bundle())
    ota.arm(root)
    assert main_py_boot(root) == (1, 1)
    # it crashed, the watchdog reset it, or the trial window ran out: reboot
    assert main_py_boot(root) == (0, 0)
    assert ota.running_slot(root) == 0 and not ota.commit(root)
    assert ota.settle(root) == ota.R_ROLLED_BACK
    assert ota.read_state(root) == (0, -1, 0, ota.R_ROLLED_BACK)
    assert not os.path.exists(root + ota.FAIL) and not os.path.exists(root + ota.TRY)
    assert main_py_boot(root) == (0, 0)
    assert ota.arm(root) == -1  # nothing staged any more


def _states():
    for c in (0, 1):
        for t in (-1, 0, 1):
            for a in (0, 1):
                for tried in (False, True):
                    for failed in (False, True):
                        yield c, t, a, tried, failed


def test_main_py_chooses_as_evse_ota_boot_slot(tmp_path):
    root = str(tmp_path) + "/"
    for c, t, a, tried, failed in _states():
        for name in (ota.STATE, ota.STATE + ".tmp", ota.TRY, ota.FAIL):
            if os.path.exists(root + name):
                os.remove(root + name)
        ota.write_state(root, c, t, a, 1)
        if tried:
            open(root + ota.TRY, "w").close()
        if failed:
            open(root + ota.FAIL, "w").close()
        slot, action = ota.boot_slot((c, t, a), tried, failed)
        assert main_py_boot(root)[0] == slot, (c, t, a, tried, failed)
        assert os.path.exists(root + ota.TRY) == (tried and action != 2 or action == 1)
        assert os.path.exists(root + ota.FAIL) == (failed or action == 2)
        assert ota.running_slot(root) == slot
    os.rename(root + ota.STATE, root + ota.STATE + ".tmp")  # FAT's rename cut in between
    assert main_py_boot(root)[0] == ota.read_state(root)[0] == 1
    os.remove(root + ota.STATE + ".tmp")
    assert main_py_boot(root) == (0, 0) and ota.read_state(root) == (0, -1, 0, 0)


def _fake_slot(d, text):
    (d / "hw").mkdir(parents=True)
    (d / "hw" / "__init__.py").write_text("")
    (d / "hw" / "boot.py").write_text(text)


@pytest.mark.parametrize("exe", ["cpython", "micropython"])
def test_a_new_version_that_crashes_at_boot_is_rolled_back(tmp_path, exe):
    """main.py itself, in a folder: slot 1's hw.boot does not import, so
    main.py resets (machine.reset of a stand-in that exits 17); the next
    boot runs slot 0 again."""
    root = str(tmp_path) + "/"
    _fake_slot(tmp_path, "def main():\n    print('slot 0 runs')\n")
    _fake_slot(tmp_path / "ota_b", "raise ImportError('broken release')\n")
    (tmp_path / "shim").mkdir()
    (tmp_path / "shim" / "machine.py").write_text(
        "import sys\ndef reset():\n    print('reset')\n    sys.exit(17)\n")
    (tmp_path / "main.py").write_text(open(MAIN).read())
    ota.write_state(root, 0, 1, 1, ota.R_STAGED)
    env = dict(os.environ)
    if exe == "cpython":
        argv = [sys.executable, "main.py"]
        env["PYTHONPATH"] = str(tmp_path / "shim")
    else:
        from test_micropython_core import UNIX_PORT
        argv = [UNIX_PORT, "main.py"]
        env["MICROPYPATH"] = ":" + str(tmp_path / "shim")  # "" first: the board's folder
    outs = []
    for _ in range(3):
        p = subprocess.run(argv, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        outs.append((p.returncode, p.stdout.strip()))
    assert outs[0] == (17, "reset")
    assert outs[1] == (0, "slot 0 runs") and outs[2] == (0, "slot 0 runs")
    assert ota.settle(root) == ota.R_ROLLED_BACK


# ------------------------------------------------------- power-cut sweep
def _flow(root, data, steps):
    """Staging, arming, the trial's boot and its commit; `steps` says how far."""
    stage(root, data, chunk=64)
    if "arm" in steps:
        assert ota.arm(root) == 1
        main_py_boot(root)  # main.py's step (one create: there or not)
        if "commit" in steps:
            assert ota.commit(root)


def _resume(root, data, steps):
    """What the charger does after the boot that follows the cut: carry on
    from where the state is (or stage again)."""
    c, t, a, r = ota.read_state(root)
    if c == 1:
        return  # committed before the cut
    if t == 1 and a and ota.running_slot(root) == 1:
        assert ota.commit(root)  # the trial had booted: it commits
    elif t == 1 and a:
        main_py_boot(root)  # armed, the reboot cut: this boot is the trial
        assert ota.commit(root)
    elif t == 1:
        assert ota.arm(root) == 1  # staged, not armed yet
        main_py_boot(root)
        assert ota.commit(root)
    else:
        _flow(root, data, steps)


def _sweep(tmp_path, monkeypatch, steps, before=None):
    data = bundle()
    n = 0
    while True:
        d = tmp_path / ("k%d" % n)
        d.mkdir()
        root = flash(d)
        if before:
            before(root)
        budget = powercut.arm(monkeypatch, ota, n, cut_os=True)
        try:
            _flow(root, data, steps)
            cut = False
        except powercut.PowerCut:
            cut = True
        monkeypatch.undo()
        slot, files = assert_boots_verified(root)  # the boot after the cut
        if not cut:
            assert budget.left >= 0
            return n, root
        # and the charger gets there after it, from the beginning
        assert ota.settle(root) in (ota.R_NONE, ota.R_STAGED, ota.R_ROLLED_BACK, ota.R_COMMITTED)
        _resume(root, data, steps)
        assert_boots_verified(root)
        if "commit" in steps:
            assert main_py_boot(root)[0] == 1 and booted_version(root)[1] == NEW
        n += 1


def test_power_cut_at_every_write_step_of_staging_arming_and_commit(tmp_path, monkeypatch):
    n, root = _sweep(tmp_path, monkeypatch, ("arm", "commit"))
    assert n > sum(len(d) for d in NEW.values())  # every byte of every file was a cut point
    assert ota.read_state(root) == (1, -1, 0, ota.R_COMMITTED)


def test_power_cut_at_every_write_step_of_a_second_update_over_a_committed_one(
        tmp_path, monkeypatch):
    def committed_then_back(root):
        stage(root, bundle(OLD, version="0.5.1"), version="0.5.0")
        ota.arm(root)
        main_py_boot(root)
        ota.commit(root)  # slot 1 holds OLD committed; the next update goes to slot 0
        assert main_py_boot(root)[0] == 1

    def flow(root, data, steps):
        stage(root, data, chunk=64, version="0.5.1")
        assert ota.arm(root) == 0
        main_py_boot(root)
        assert ota.commit(root)
    data = bundle()
    n = 0
    while True:
        d = tmp_path / ("s%d" % n)
        d.mkdir()
        root = flash(d)
        committed_then_back(root)
        powercut.arm(monkeypatch, ota, n, cut_os=True)
        try:
            flow(root, data, None)
            cut = False
        except powercut.PowerCut:
            cut = True
        monkeypatch.undo()
        assert_boots_verified(root)
        if not cut:
            break
        n += 1
    assert main_py_boot(root)[0] == 0 and slot_files(root, 0) == NEW
    assert slot_files(root, 1) == OLD


def test_power_cut_at_every_write_step_of_recording_a_rollback(tmp_path, monkeypatch):
    n = 0
    while True:
        d = tmp_path / ("r%d" % n)
        d.mkdir()
        root = flash(d)
        _flow(root, bundle(), ("arm",))
        assert main_py_boot(root) == (0, 0)  # the trial did not commit
        powercut.arm(monkeypatch, ota, n, cut_os=True)
        try:
            r = ota.settle(root)
            cut = False
        except powercut.PowerCut:
            cut = True
        monkeypatch.undo()
        assert main_py_boot(root) == (0, 0) and slot_files(root, 0) == OLD
        if not cut:
            assert r == ota.R_ROLLED_BACK
            break
        assert ota.settle(root) == ota.R_ROLLED_BACK
        n += 1
    assert n >= 3
