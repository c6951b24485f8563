# The board runs this file at boot. It is deployed as source, which the board
# compiles at every boot, so it only picks the firmware's slot and calls the
# boot sequence compiled with the rest of the firmware (hw/boot.py: safe
# state first, then the charger).
#
# Slots (docs/ota.md): ota.state, written atomically by evse/ota.py, is
# "<committed> <trial> <armed> <result>"; slot 1 is under ota_b/, slot 0
# where tools/deploy.py puts it. An armed trial boots once: ota.try marks
# that it did. A boot that finds the mark (the trial did not commit: it
# crashed, hung or lost power) renames it to ota.fail and boots the
# committed slot. No state file: slot 0. evse.ota.boot_slot is the same
# choice (host_tests/test_ota.py holds them equal).
import os
import sys


def _slot():
    for p in ("ota.state", "ota.state.tmp"):  # .tmp only when FAT's rename was cut
        try:
            f = open(p)
            s = f.read().split()
            f.close()
            c, t, a = int(s[0]), int(s[1]), s[2] == "1"
            break
        except Exception:
            pass
    else:
        return 0, 0
    if a and t in (0, 1) and t != c:
        try:
            os.stat("ota.fail")
            return c, 0
        except OSError:
            pass
        try:
            os.rename("ota.try", "ota.fail")
            return c, 0
        except OSError:
            pass
        try:
            open("ota.try", "w").close()
            return t, 1
        except OSError:
            pass
    return c, 0


_s, _trial = _slot()
if _s == 1:
    sys.path.insert(0, "ota_b")
del _slot, _s
try:
    from hw.boot import main
except Exception:
    if not _trial:
        raise
    import machine  # a trial that does not even import: reset, the next boot rolls back

    machine.reset()
del _trial

if __name__ == "__main__":
    main()
