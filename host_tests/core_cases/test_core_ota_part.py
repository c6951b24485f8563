"""hw/ota_part.py, the update of a frozen firmware image on the ESP32
(issue 15 part 4, docs/ota.md), on esp32fake.py: the esp32.Partition API
over a NOR flash in RAM with the otadata and the bootloader's app
rollback. What can be shown off the board: the image lands only in the
next OTA partition, block by block (the running one is never written), is
hashed on the way and read back before anything points at it, is refused
before a byte is written when it does not fit, and its trial boot commits
or is rolled back by the bootloader."""
import hashlib
import os

from evse import ota
from hw import ota_part

from esp32fake import ABORTED, BLOCK, PENDING, VALID, Flash
from fakes import tmpdir


def image(n, seed=1):
    """An app image of n bytes: the ESP32 image magic, then bytes."""
    body = hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1)
    return bytes([0xE9]) + body[:n - 1]


def write(flash, img, chunk=700, want=None):
    w = ota_part.ImageWriter(flash.Partition, len(img), want or hashlib.sha256(img).digest())
    for i in range(0, len(img), chunk):
        w.write(img[i:i + chunk])
    return w


def refused(fn):
    """The OtaError code fn raised (and its text), or a failure."""
    try:
        fn()
    except ota.OtaError as e:
        return e.args[0], e.args[1]
    raise AssertionError("not refused")


def test_an_image_goes_to_the_next_partition_boots_on_trial_and_commits():
    for n in (1, BLOCK - 1, BLOCK, 3 * BLOCK + 17):
        flash = Flash(blocks=5)
        old = bytes(flash.data["ota_0"])
        img = image(n)
        w = write(flash, img)
        assert w.finish() == "ota_1"
        assert bytes(flash.data["ota_1"][:n]) == img
        for lb, _ in flash.writes:
            assert lb == "ota_1"
        assert bytes(flash.data["ota_0"]) == old  # the running image untouched
        assert flash.reset() == "ota_0"  # not armed: a reset boots the old one
        w.arm()
        assert flash.reset() == "ota_1" and flash.state["ota_1"] == PENDING  # on trial
        assert ota_part.running(flash.Partition) == "ota_1"
        ota_part.commit(flash.Partition)
        assert flash.reset() == "ota_1" and flash.state["ota_1"] == VALID  # kept


def test_a_trial_that_resets_before_its_commit_is_rolled_back_by_the_bootloader():
    flash = Flash(blocks=4)
    w = write(flash, image(5000))
    w.finish()
    w.arm()
    assert flash.reset() == "ota_1"  # it crashes, hangs, or never reaches the backend
    assert flash.reset() == "ota_0" and flash.state["ota_1"] == ABORTED
    assert ota_part.running(flash.Partition) == "ota_0"
    w = write(flash, image(6000, seed=2))  # the next update: ota_1 again, not the running one
    assert w.finish() == "ota_1"


def test_an_image_that_does_not_fit_is_refused_before_a_byte_is_written():
    flash = Flash(blocks=4)
    code, text = refused(lambda: ota_part.ImageWriter(flash.Partition, 4 * BLOCK + 1,
                                                      b"\0" * 32))
    assert code == ota.E_SPACE and "ota_1" in text, text
    assert flash.writes == []


def test_bad_images_are_refused_and_never_armed():
    flash = Flash(blocks=4)
    img = image(3 * BLOCK)
    assert refused(lambda: write(flash, b"\x7fELF" + img[4:]))[0] == ota.E_FORMAT
    w = write(flash, img, want=hashlib.sha256(b"another").digest())
    assert refused(w.finish)[0] == ota.E_HASH  # not the manifest's image
    w = write(flash, img[:-100])
    w.size = len(img)  # the manifest said more: the download was cut
    assert refused(w.finish)[0] == ota.E_TRUNCATED
    w = write(flash, img)
    assert refused(lambda: w.write(b"more"))[0] == ota.E_FORMAT
    assert flash.boot == "ota_0" and flash.reset() == "ota_0"  # nothing points at ota_1


def test_a_flash_that_reads_back_other_bytes_is_caught_before_the_switch():
    flash = Flash(blocks=4)
    img = image(2 * BLOCK + 5)
    flash.stuck = ("ota_1", BLOCK + 10)  # bit 0 there never clears ...
    img = img[:BLOCK + 10] + bytes([img[BLOCK + 10] & 0xFE]) + img[BLOCK + 11:]  # ... it must
    w = write(flash, img)
    code, text = refused(w.finish)
    assert code == ota.E_HASH and "reads back" in text, text


def test_a_power_cut_mid_write_leaves_the_running_image_booting():
    flash = Flash(blocks=6)
    img = image(5 * BLOCK)
    w = ota_part.ImageWriter(flash.Partition, len(img), hashlib.sha256(img).digest())
    w.write(img[:2 * BLOCK + 300])  # the power goes: nothing armed
    assert flash.reset() == "ota_0" and flash.state["ota_0"] == VALID
    w = write(flash, img)  # the next boot's update writes ota_1 again, whole
    assert w.finish() == "ota_1"


def _staged(root, flash, img, n, seed):
    """An image written to the partition that is not running and its
    manifest beside the state, as evse.ota's Stager leaves them."""
    data = image(n, seed)
    w = img.writer(len(data), hashlib.sha256(data).digest())
    w.write(data)
    w.finish()
    slot = 1 - img.slot()
    d = ota.slot_dir(root, slot)
    if d:
        try:
            os.mkdir(d[:-1])
        except OSError:
            pass
    f = open(d + ota.MANIFEST, "w")
    f.write('{"version": "0.%d.0"}' % seed)
    f.close()
    ota.write_state(root, img.slot(), slot, 0, ota.R_STAGED)
    return slot


def _main_py_mark(root):
    # what main.py does at a trial's first boot (host_tests/test_ota.py runs main.py itself)
    open(root + ota.TRY, "w").close()


def test_the_state_file_follows_the_partitions_through_a_commit_and_a_rollback():
    """ota.state numbers the OTA partitions (ota_0 slot 0, ota_1 slot 1):
    arm() sets the staged one to boot, the trial is what runs, commit()
    marks it valid, and a reset before that is the bootloader's rollback,
    which settle() reads from the running partition."""
    root = tmpdir("otaimg") + "/"
    flash = Flash(blocks=4)
    img = ota_part.Image(flash.Partition)
    assert img.slot() == 0
    assert _staged(root, flash, img, 5000, 6) == 1
    assert ota.arm(root, img) == 1 and flash.boot == "ota_1"
    assert flash.reset() == "ota_1"
    _main_py_mark(root)
    assert ota.settle(root, img) == ota.R_STAGED  # on trial
    assert ota.running_slot(root, None, img) == 1 and ota.slot_version(root, 1) == "0.6.0"
    assert ota.commit(root, img) and flash.state["ota_1"] == VALID
    assert ota.read_state(root) == (1, -1, 0, ota.R_COMMITTED)
    # the next update goes back into ota_0, and its trial resets before its commit
    assert _staged(root, flash, img, 7000, 7) == 0
    assert ota.arm(root, img) == 0 and flash.reset() == "ota_0"
    _main_py_mark(root)
    assert flash.reset() == "ota_1"  # the bootloader went back
    assert ota.settle(root, img) == ota.R_ROLLED_BACK
    assert ota.read_state(root) == (1, -1, 0, ota.R_ROLLED_BACK)
