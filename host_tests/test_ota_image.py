"""The update of a frozen firmware image (issue 15 part 4, docs/ota.md "ESP32
with a frozen firmware image"), end to end through the same pieces as the
.mpy slots: a bundle from tools/release.py --image, evse/ota.py's Stager,
state file and Runner given hw/ota_part.py's Image, main.py's marks, and
the bootloader of host_tests/core_cases/esp32fake.py (two OTA partitions
on a NOR flash in RAM, otadata, the app rollback). The expectations are
ESP-IDF's: an image boots once on trial ("pending verify") and is given up
at the next reset unless it marked itself valid first; the running
partition is never written."""
import hashlib
import json
import os
import sys

import pytest

from evse import bus as B
from evse import ota
from hw import ota_part, watchdog

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_cases"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakes"))
from esp32fake import ABORTED, BLOCK, PENDING, VALID, Flash  # noqa: E402
import powercut  # noqa: E402

from test_ota import KEY, PUB, R, bundle, main_py_boot  # noqa: E402
from test_ota import flash as file_board  # noqa: E402
from test_ota import stager as file_stager  # noqa: E402
from test_ota_wiring import Clock, Link, snap, steps  # noqa: E402

MPY_WORD = 6 | (10 << 10)  # what sys.implementation._mpy is on an ESP32 (xtensawin)


def image(n, seed=1):
    """An ESP32 app image of n bytes (its magic, then bytes)."""
    body = hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1)
    return bytes([0xE9]) + body[:n - 1]


OLD_IMG = image(2 * BLOCK + 5, seed=0)
NEW_IMG = image(3 * BLOCK + 100, seed=2)


def image_bundle(img=NEW_IMG, version="0.6.0", key=KEY, sha=None, **kw):
    m = {"fmt": 1, "kind": "image", "version": version, "min": "0", "port": "esp32",
         "mpy": 0, "arch": 0,
         "files": [["firmware.bin", len(img), sha or hashlib.sha256(img).hexdigest()]]}
    m.update(kw)
    man = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
    return R.MAGIC + len(man).to_bytes(2, "big") + R.sign(key, man) + man + img


def board(tmp_path, blocks=8):
    """A frozen board: its filesystem (config, the public key) and its
    flash, ota_0 running the factory image."""
    root = tmp_path / "fs"
    root.mkdir()
    (root / "config.json").write_text('{"max_current_a": 16}')
    (root / "ota_key.bin").write_bytes(PUB)
    flash = Flash(blocks=blocks)
    flash.data["ota_0"][:len(OLD_IMG)] = OLD_IMG
    return str(root) + "/", flash, ota_part.Image(flash.Partition)


def stager(root, img, version="0.5.0", force=False):
    return ota.Stager(root, ota.load_key(root), version, "esp32", MPY_WORD, force, image=img)


def stage(root, img, data, chunk=500, **kw):
    s = stager(root, img, **kw)
    for i in range(0, len(data), chunk):
        s.feed(data[i:i + chunk])
    return s.finish()


def reset(root, flash):
    """A reset: the bootloader picks the image, its main.py does its marks."""
    lb = flash.reset()
    main_py_boot(root)
    return lb


def runner(root, img, s, link=None):
    c = Clock()
    asked = []
    r = ota.Runner(root, s, link or Link(), lambda: asked.append(c.t), c.ms, c.diff, None, img)
    return r, c, asked


def refused(fn):
    try:
        fn()
    except ota.OtaError as e:
        return e.args[0]
    raise AssertionError("not refused")


def test_an_image_is_staged_in_the_next_partition_switched_to_in_state_a_and_committed(
        tmp_path):
    root, flash, img = board(tmp_path)
    assert stage(root, img, image_bundle()) == 1
    assert bytes(flash.data["ota_1"][:len(NEW_IMG)]) == NEW_IMG
    assert bytes(flash.data["ota_0"][:len(OLD_IMG)]) == OLD_IMG
    assert {lb for lb, _ in flash.writes} == {"ota_1"}  # never the running partition
    assert ota.read_state(root) == (0, 1, 0, ota.R_STAGED)
    s = snap("C2", 1, 5)
    r, c, asked = runner(root, img, s)
    assert r.staged == "0.6.0" and not r.trial
    steps(r, c, 5)
    assert asked == [] and flash.boot == "ota_0"  # charging: nothing switched
    s.v[B.S_STATE], s.v[B.S_CONTACTOR] = B.STATES.index("A"), 0
    steps(r, c, 2)
    assert len(asked) == 1 and r.phase == ota.PH_SWITCHING
    assert flash.boot == "ota_1" and ota.read_state(root) == (0, 1, 1, ota.R_STAGED)
    # the watchdog's reset: the new image on trial
    assert reset(root, flash) == "ota_1" and flash.state["ota_1"] == PENDING
    link = Link()
    s = snap("C2", 1, 0)
    r, c, asked = runner(root, img, s, link)
    assert r.trial and r.running == "0.6.0"
    s.v[B.S_UPTIME], link.connects = 180, 1
    steps(r, c)
    assert flash.state["ota_1"] == VALID and ota.read_state(root) == (1, -1, 0, ota.R_COMMITTED)
    assert r.news == [("update", (("result", "committed"), ("version", "0.6.0")))]
    assert asked == []  # committed during the charge: no reset
    assert reset(root, flash) == "ota_1"  # and kept at the next reset
    r, _, _ = runner(root, img, snap())
    assert not r.trial and r.running == "0.6.0" and r.result == ota.R_COMMITTED


def _armed(tmp_path):
    root, flash, img = board(tmp_path)
    stage(root, img, image_bundle())
    assert ota.arm(root, img) == 1
    return root, flash, img


def test_a_new_image_that_resets_before_its_commit_is_rolled_back_by_the_bootloader(tmp_path):
    root, flash, img = _armed(tmp_path)
    assert reset(root, flash) == "ota_1"  # on trial; it crashes, or hangs: the watchdog
    assert reset(root, flash) == "ota_0" and flash.state["ota_1"] == ABORTED
    r, _, _ = runner(root, img, snap())
    assert r.result == ota.R_ROLLED_BACK and r.why == "no commit" and not r.trial
    assert r.news == [("update", (("result", "rolled_back"), ("error", "no commit")))]
    assert ota.read_state(root) == (0, -1, 0, ota.R_ROLLED_BACK)
    assert not os.path.exists(root + ota.TRY) and not os.path.exists(root + ota.FAIL)
    assert reset(root, flash) == "ota_0"  # and stays there


def test_a_new_image_that_never_reaches_python_is_rolled_back_too(tmp_path):
    """Its main.py never ran (no ota.try): the old image's main.py then sees
    an armed trial and makes the mark as if it were the trial; what runs
    (ota_0) says otherwise."""
    root, flash, img = _armed(tmp_path)
    assert flash.reset() == "ota_1"  # it dies in C before Python starts
    assert reset(root, flash) == "ota_0"
    r, _, _ = runner(root, img, snap())
    assert r.result == ota.R_ROLLED_BACK and not r.trial and r.running is None
    assert ota.read_state(root) == (0, -1, 0, ota.R_ROLLED_BACK)


def test_a_trial_without_the_broker_resets_in_state_a_and_is_rolled_back_with_its_reason(
        tmp_path):
    root, flash, img = _armed(tmp_path)
    reset(root, flash)
    s = snap("C2", 1, 900)  # 15 minutes, never connected
    r, c, asked = runner(root, img, s)
    steps(r, c, 2)
    assert asked == []  # the reset waits for the contactor and the vehicle
    s.v[B.S_STATE], s.v[B.S_CONTACTOR] = 0, 0
    steps(r, c)
    assert len(asked) == 1 and flash.state["ota_1"] == PENDING  # never marked valid
    assert reset(root, flash) == "ota_0"
    r, _, _ = runner(root, img, snap())
    assert r.result == ota.R_ROLLED_BACK and r.why == "no broker within the trial"


def test_a_commit_cut_after_the_bootloader_was_told_is_mended_at_the_next_boot(tmp_path):
    """mark_app_valid_cancel_rollback done, the power gone before ota.state
    said committed: the next boot runs ota_1 again (the bootloader kept it),
    main.py sees the trial's mark and makes ota.fail; settle() knows from
    the running partition that it was marked valid."""
    root, flash, img = _armed(tmp_path)
    reset(root, flash)
    img.commit()  # the state write that follows is cut
    assert reset(root, flash) == "ota_1"
    r, _, _ = runner(root, img, snap())
    assert r.result == ota.R_COMMITTED and not r.trial and r.news == []
    assert ota.read_state(root) == (1, -1, 0, ota.R_COMMITTED)


def test_image_bundles_are_refused_before_anything_is_switched(tmp_path):
    root, flash, img = board(tmp_path, blocks=4)

    def st(data, **kw):
        return refused(lambda: stage(root, img, data, **kw))

    assert st(bundle()) == ota.E_PORT  # .mpy files on a frozen board
    assert st(image_bundle(port="rp2")) == ota.E_PORT
    assert st(image_bundle(image(4 * BLOCK + 1))) == ota.E_SPACE  # larger than the partition
    assert flash.writes == []  # refused before a byte was written
    assert st(image_bundle(key=_other_key())) == ota.E_SIGNATURE
    assert st(image_bundle(version="0.5.0")) == ota.E_VERSION  # not newer
    assert st(image_bundle(b"\x00" + NEW_IMG[1:5000])) == ota.E_FORMAT  # not an app image
    assert st(image_bundle(sha="00" * 32)) == ota.E_HASH
    assert st(image_bundle()[:-1]) == ota.E_TRUNCATED
    assert st(image_bundle() + b"x") == ota.E_FORMAT  # bytes after the image
    two = image_bundle(files=[["firmware.bin", 1, "00" * 32], ["x.bin", 1, "00" * 32]])
    assert st(two) == ota.E_FORMAT
    assert ota.read_state(root)[1:3] == (-1, 0)  # nothing staged, nothing armed
    assert ota.Runner(root, snap(), Link(), lambda: None, Clock().ms, Clock.diff,
                      None, img).staged is None
    # and an image on a board of .mpy files
    froot = file_board(tmp_path / "files")
    assert refused(lambda: _feed(file_stager(froot), image_bundle(port="linux"))) == ota.E_PORT
    # during a trial
    stage(root, img, image_bundle(image(3 * BLOCK)))
    ota.arm(root, img)
    reset(root, flash)
    assert st(image_bundle(image(BLOCK), version="0.7.0"), version="0.6.0") == ota.E_BUSY


def _other_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _feed(s, data):
    s.feed(data)
    return s.finish()


def test_an_image_the_partition_table_refuses_at_arm_is_reported_not_switched(tmp_path):
    """ESP-IDF checks the image again in set_boot (esp_ota_set_boot_partition):
    a refusal leaves the board on its image, the update failed."""
    root, flash, img = board(tmp_path)
    stage(root, img, image_bundle())
    flash.data["ota_1"][0] = 0x00  # the flash lost the magic after the read-back
    s = snap()
    r, c, asked = runner(root, img, s)
    steps(r, c, 2)
    assert asked == [] and flash.boot == "ota_0" and r.phase == ota.PH_FAILED
    assert "refused" in r.error and ota.read_state(root) == (0, -1, 0, ota.R_NONE)
    assert reset(root, flash) == "ota_0"


class CutFlash:
    """The partition's writes on the power-cut budget: a block's erase and
    its write are one unit each, set_boot and mark valid one."""

    def __init__(self, monkeypatch, flash, budget):
        P = flash.Partition
        wb, sb, mv = P.writeblocks, P.set_boot, P.mark_app_valid_cancel_rollback.__func__

        def writeblocks(self, block, buf, offset=None):
            budget.spend()
            if offset is None:
                flash.erase(self.lb, block)
            budget.spend()
            wb(self, block, buf, offset)

        def set_boot(self):
            budget.spend()
            sb(self)

        def mark(cls):
            budget.spend()
            mv(cls)

        monkeypatch.setattr(P, "writeblocks", writeblocks)
        monkeypatch.setattr(P, "set_boot", set_boot)
        monkeypatch.setattr(P, "mark_app_valid_cancel_rollback", classmethod(mark))


def _flow(root, flash, img, data):
    """From wherever the board is to the new image committed."""
    run, st = img.slot(), ota.read_state(root)
    if st[2] and st[1] == run and st[1] != st[0]:
        assert ota.commit(root, img)  # the trial's boot
        return
    if run == 1 and st[0] == 1:
        return  # done
    stage(root, img, data, chunk=1000)
    assert ota.arm(root, img) == 1
    reset(root, flash)
    assert ota.settle(root, img) == ota.R_STAGED  # the trial
    assert ota.commit(root, img)


def test_power_cut_at_every_write_step_of_staging_arming_and_commit(tmp_path, monkeypatch):
    """Every unit of every write (files, renames, the partition's blocks,
    set_boot, mark valid): the boot after the cut runs a whole image, the
    old one or the new one, and from there the charger gets to the new
    image committed."""
    data = image_bundle()
    n = 0
    while True:
        d = tmp_path / ("k%d" % n)
        d.mkdir()
        root, flash, img = board(d)
        budget = powercut.Budget(n)  # one budget: the files and the partitions
        CutFlash(monkeypatch, flash, budget)
        monkeypatch.setattr(ota, "open", powercut.opener(budget), raising=False)
        monkeypatch.setattr(ota, "os", powercut.CutOs(budget))
        try:
            _flow(root, flash, img, data)
            cut = False
        except powercut.PowerCut:
            cut = True
        monkeypatch.undo()
        lb = reset(root, flash)  # the boot after the cut
        ota.settle(root, img)
        whole = bytes(flash.data[lb][:len(NEW_IMG if lb == "ota_1" else OLD_IMG)])
        assert whole == (NEW_IMG if lb == "ota_1" else OLD_IMG), (n, lb)
        if lb == "ota_1":
            assert flash.state["ota_1"] in (PENDING, VALID), n
        if not cut:
            break
        _flow(root, flash, img, data)
        assert reset(root, flash) == "ota_1" and flash.state["ota_1"] == VALID, n
        assert ota.settle(root, img) == ota.R_COMMITTED, n
        n += 1
    assert n > 2 * (len(NEW_IMG) // BLOCK)  # every block's erase and write was a cut point
    assert ota.read_state(root) == (1, -1, 0, ota.R_COMMITTED)


def test_run_all_on_a_frozen_esp32_takes_the_image_flow(tmp_path, monkeypatch):
    """hw/system.py gives the Runner an Image when the esp32 module has OTA
    partitions and the firmware is not .mpy files: a staged image is
    switched to in state A through set_boot and the watchdog's reset."""
    import types

    from hw import system
    from test_watchdog_runtime import Net, make_ctx

    root, flash, img = board(tmp_path)
    stage(root, img, image_bundle())
    monkeypatch.setitem(sys.modules, "esp32", types.SimpleNamespace(Partition=flash.Partition))
    w, raw, ctx = make_ctx(tmp_path, {"mqtt_host": "127.0.0.1"})
    net = Net()
    system.run_all(ctx, net, max_ticks=200, out=[].append, root=root)
    # the module hw/system.py imported: a run without esp32 partitions before
    # this one has dropped hw.ota_part (config.forget), so it may be a new copy
    assert isinstance(net.ota.image, sys.modules["hw.ota_part"].Image)
    assert ctx.supervisor.reason == watchdog.OTA and flash.boot == "ota_1"
    assert ota.read_state(root) == (0, 1, 1, ota.R_STAGED)


@pytest.mark.parametrize("labels,frozen,expect", [
    (("ota_0", "ota_1"), True, True),
    (("ota_0", "ota_1"), False, False),  # .mpy files: the slot folders
    (("factory", "ota_0"), True, False),  # running the factory app: no slot number
])
def test_for_board_finds_an_image_board(monkeypatch, labels, frozen, expect):
    import types

    flash = Flash(blocks=2, labels=labels)
    monkeypatch.setitem(sys.modules, "esp32", types.SimpleNamespace(Partition=flash.Partition))
    assert (ota_part.for_board(frozen) is not None) == expect
    monkeypatch.delitem(sys.modules, "esp32")
    assert ota_part.for_board(True) is None  # no esp32 module (the host, an RP2040)


def test_release_builds_an_image_bundle_the_board_takes(tmp_path):
    key, pub = str(tmp_path / "k.pem"), str(tmp_path / "ota_key.bin")
    assert R.main(["keygen", "--key", key, "--pub", pub], out=lambda s: None) == 0
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(NEW_IMG)
    out = str(tmp_path / "u.evu")
    lines = []
    assert R.main(["build", "--port", "esp32", "--image", str(fw), "--key", key, "--out", out,
                   "--version", "0.6.0"], out=lines.append) == 0, lines
    assert "an image" in lines[0]
    assert R.main(["check", out, "--pub", pub], out=lines.append) == 0
    root, flash, img = board(tmp_path)
    (tmp_path / "fs" / "ota_key.bin").write_bytes(open(pub, "rb").read())
    assert stage(root, img, open(out, "rb").read()) == 1
    assert bytes(flash.data["ota_1"][:len(NEW_IMG)]) == NEW_IMG
    # refused by the tool: another port, or a file that is not an app image
    assert R.main(["build", "--port", "rp2", "--image", str(fw), "--key", key,
                   "--out", out], out=lines.append) == R.EXIT_USAGE
    fw.write_bytes(b"\x00" + NEW_IMG[1:])
    assert R.main(["build", "--port", "esp32", "--image", str(fw), "--key", key,
                   "--out", out], out=lines.append) == R.EXIT_BAD
