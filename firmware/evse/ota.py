"""Over-the-air updates, the board's side: check, stage, switch, commit (docs/ota.md).

Imported only while an update is processed or a trial settles (never on the
default boot path); it runs in the network thread, as evse.p256 which it
imports when a manifest arrives.

Two slots on the filesystem: slot 0 is where tools/deploy.py puts the
firmware (evse/, hw/), slot 1 the same under ota_b/. main.py picks one at
boot from ota.state, one ASCII line "<committed> <trial> <armed> <result>"
written atomically here (FILE.tmp, then renamed over FILE, as config.json
and the journal; FILE.tmp is read only when FILE is missing, since FAT
removes the target before the rename). The running slot is never written:
an update goes into the other one, and the state names it only once all
of its files have their manifest's SHA-256.

Stager(...).feed(chunk) ... .finish(): the bundle as it arrives (header,
the signed manifest held in RAM, at most _MAX_MANIFEST_B; then each file
streamed to the slot and hashed on the way, so the memory is bounded by
the manifest, never by the bundle). Refusals raise OtaError(code, detail)
with the E_* codes below.

arm(root) once may_switch(): the next boot runs the staged slot on trial;
main.py marks that it did (ota.try). The trial commits itself (commit())
when trial_verdict() says it proved healthy; a boot that finds the mark of
a trial that did not commit renames it to ota.fail and boots the committed
slot again; settle() (the version running then) records that as
R_ROLLED_BACK.

A board whose firmware is frozen into its image (ESP32, OTA partitions)
takes image bundles instead: `image` (hw/ota_part.py Image) given to
Stager, arm, commit, settle and Runner. The same state file then numbers
the OTA partitions (ota_0 slot 0, ota_1 slot 1), the running one is read
from the partition table rather than from the marks, the image streams
into the partition that is not running, arm() also sets it to boot,
commit() marks it valid first, and the bootloader does the rollback.
"""
import hashlib
import os

from micropython import const

STATE = "ota.state"
TRY = "ota.try"  # main.py: the armed trial has booted once
FAIL = "ota.fail"  # main.py: it booted once and did not commit (rolled back)
MANIFEST = "ota.json"  # in a slot's folder: the verified manifest of what is there
KEY_FILE = "ota_key.bin"  # 64 bytes, X || Y of the P-256 key releases are signed with
_SLOT_DIRS = const(("", "ota_b/"))
_PACKAGES = const(("evse/", "hw/"))  # what a slot holds (main.py and the JSON files stay)
_MAGIC = const(b"EVU1")
_HEAD_B = const(70)  # magic, manifest length (2), signature r || s (64)
_MAX_MANIFEST_B = const(8192)
_FMT = const(1)
_KIND_IMAGE = const("image")  # a manifest's "kind" for a frozen firmware image
_IMAGE_FILE = const("firmware.bin")  # its one file
_BLOCK_B = const(4096)  # the space check rounds each file up to this (littlefs on ESP32)
_SPARE_B = const(16384)  # left free beyond the slot: journal, state, crash record
_CP_A = const(4)  # evse.pilot.CP_A: +12 V, no vehicle
_TRIAL_MIN_MS = const(180000)  # the control loop runs this long before a commit ...
_TRIAL_WINDOW_MS = const(900000)  # ... which must come within this, or the trial fails

# OtaError codes
E_FORMAT = const(1)  # not a bundle, a bad header or manifest, bytes past the end
E_SIGNATURE = const(2)
E_PORT = const(3)
E_ABI = const(4)
E_VERSION = const(5)  # a downgrade, or below the running version's minimum
E_SPACE = const(6)
E_HASH = const(7)
E_TRUNCATED = const(8)
E_KEY = const(9)  # no public key on the board
E_BUSY = const(10)  # a trial is running: it commits or rolls back first

# results (the state's fourth field)
R_NONE = const(0)
R_STAGED = const(1)
R_COMMITTED = const(2)
R_ROLLED_BACK = const(3)

# trial_verdict
V_WAIT = const(0)
V_COMMIT = const(1)
V_FAIL = const(2)


class OtaError(Exception):
    pass


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def slot_dir(root, slot):
    return root + _SLOT_DIRS[slot]


def read_state(root):
    """(committed, trial, armed, result); (0, -1, 0, R_NONE) without a file."""
    for p in (root + STATE, root + STATE + ".tmp"):
        try:
            f = open(p)
            try:
                s = f.read().split()
            finally:
                f.close()
            c, t, a, r = int(s[0]), int(s[1]), int(s[2]), int(s[3])
        except (OSError, ValueError, IndexError):
            continue
        if c in (0, 1) and t in (-1, 0, 1) and a in (0, 1):
            return c, t, a, r
    return 0, -1, 0, R_NONE


def write_state(root, c, t, a, r):
    p = root + STATE
    f = open(p + ".tmp", "w")
    try:
        f.write("%d %d %d %d\n" % (c, t, a, r))
    finally:
        f.close()
    os.rename(p + ".tmp", p)


def boot_slot(st, tried, failed):
    """The slot main.py boots and what it does to the marks, for a state and
    whether ota.try and ota.fail exist: (slot, action) with action 0 none,
    1 create ota.try (a trial's first boot), 2 rename ota.try to ota.fail
    (the trial booted once and did not commit). main.py does this (its own
    copy: it runs before a slot is on sys.path); a test holds them equal."""
    c, t, a = st[0], st[1], st[2]
    if a and t >= 0 and t != c:
        if failed:
            return c, 0
        if tried:
            return c, 2
        return t, 1
    return c, 0


def running_slot(root, st=None, image=None):
    """The slot this boot runs (after main.py's action on the marks; with
    an image, the running partition's)."""
    if image is not None:
        return image.slot()
    if st is None:
        st = read_state(root)
    c, t, a = st[0], st[1], st[2]
    if a and t >= 0 and t != c and _exists(root + TRY) and not _exists(root + FAIL):
        return t
    return c


def parse_version(v):
    """'1.2.10' -> (1, 2, 10); OtaError for anything but digits and dots."""
    try:
        t = tuple([int(x) for x in v.split(".")])
    except (ValueError, AttributeError):
        raise OtaError(E_FORMAT, "version %r" % (v,))
    for x in t:
        if x < 0:
            raise OtaError(E_FORMAT, "version %r" % (v,))
    return t


def _safe_path(p):
    if not isinstance(p, str) or not p.endswith(".mpy") or len(p) > 64:
        return False
    ok = False
    for pre in _PACKAGES:
        if p.startswith(pre):
            ok = True
    for part in p.split("/"):
        if part in ("", ".", ".."):
            return False
    return ok


def check_manifest(m, platform, mpy_word, running, floor, force=False, image=False):
    """The manifest's files as [(path, size, sha256 bytes)] when this board
    may install it, else OtaError: the port (sys.platform), the .mpy version
    (sys.implementation._mpy's low byte) and architecture (its bits 10 and
    up; 0 in the manifest: bytecode only, any), and the version: higher
    than the running one, or with `force` anything at or above `floor` (the
    running version's manifest "min"; never below it, even forced).
    `image`: the board runs a frozen image and takes only "kind": "image"
    bundles (one file, firmware.bin; no .mpy ABI to match), and a board of
    .mpy files only the others."""
    from binascii import unhexlify

    if not isinstance(m, dict) or m.get("fmt") != _FMT:
        raise OtaError(E_FORMAT, "manifest format")
    if m.get("port") != platform:
        raise OtaError(E_PORT, "bundle for %s, this board is %s" % (m.get("port"), platform))
    is_image = m.get("kind") == _KIND_IMAGE
    if is_image != image:
        raise OtaError(E_PORT, "a firmware image, this board runs .mpy files" if is_image else
                       ".mpy files, this board runs a frozen firmware image")
    arch = m.get("arch")
    bad = not isinstance(arch, int)
    if not image:  # an image brings its own interpreter: no .mpy ABI to match
        bad = bad or m.get("mpy") != (mpy_word & 0xFF) or (arch and arch != mpy_word >> 10)
    if bad:
        raise OtaError(E_ABI, "bundle .mpy v%s arch %s, this board v%d arch %d"
                       % (m.get("mpy"), arch, mpy_word & 0xFF, mpy_word >> 10))
    v = parse_version(m.get("version"))
    parse_version(m.get("min"))
    if v < parse_version(floor):
        raise OtaError(E_VERSION, "%s is below the minimum %s" % (m["version"], floor))
    if v <= parse_version(running) and not force:
        raise OtaError(E_VERSION, "%s is not newer than %s" % (m["version"], running))
    files = []
    try:
        for p, size, h in m["files"]:
            if image:
                ok = p == _IMAGE_FILE and len(m["files"]) == 1 and type(size) is int and size > 0
            else:
                ok = _safe_path(p) and type(size) is int and size >= 0
            if not ok or len(h) != 64:
                raise OtaError(E_FORMAT, "file entry %r" % (p,))
            files.append((p, size, unhexlify(h)))
    except (TypeError, ValueError, KeyError):
        raise OtaError(E_FORMAT, "file list")
    if not files:
        raise OtaError(E_FORMAT, "no files")
    return files


def need_bytes(files):
    """Flash the slot takes: each file (and the manifest) rounded up to
    whole blocks, plus the spare the rest of the charger needs."""
    n = 1  # the manifest copy
    for f in files:
        n += (f[1] + _BLOCK_B - 1) // _BLOCK_B or 1
    return n * _BLOCK_B + _SPARE_B


def _tree(path, rm):
    # bytes in blocks under path (a folder); with rm, remove it all
    n = 0
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    for name in names:
        p = path + "/" + name
        st = os.stat(p)
        if st[0] & 0x4000:  # S_IFDIR
            n += _tree(p, rm)
        else:
            n += ((st[6] + _BLOCK_B - 1) // _BLOCK_B or 1) * _BLOCK_B
            if rm:
                os.remove(p)
    if rm:
        os.rmdir(path)
    return n


def _slot_tree(d, rm):
    n = 0
    for pkg in _PACKAGES:
        n += _tree(d + pkg[:-1], rm)
    return n


def free_bytes(root):
    st = os.statvfs(root or ".")
    return st[0] * st[4]  # f_bsize x f_bavail


def load_key(root):
    try:
        f = open(root + KEY_FILE, "rb")
        try:
            k = f.read()
        finally:
            f.close()
    except OSError:
        k = b""
    if len(k) != 64:
        raise OtaError(E_KEY, "no %s (64 bytes) on the board" % KEY_FILE)
    return k


def slot_manifest(root, slot):
    """The manifest (dict) of what is in a slot, or None (slot 0 as
    tools/deploy.py left it has none)."""
    import json

    try:
        f = open(slot_dir(root, slot) + MANIFEST)
        try:
            return json.loads(f.read())
        finally:
            f.close()
    except (OSError, ValueError):
        return None


class Stager:
    """One update, fed as it arrives. `version`: the running firmware's
    (evse.app.VERSION); `free`: a function of the folder giving its free
    bytes (default: os.statvfs); `image`: a frozen image's board
    (hw/ota_part.py Image): the bundle's one file streams into the OTA
    partition that is not running, and the slot folder holds only its
    manifest."""

    def __init__(self, root, pub, version, platform, mpy_word, force=False, free=None,
                 image=None):
        self.root = root
        self.pub = pub
        self.version = version
        self.platform = platform
        self.mpy_word = mpy_word
        self.force = force
        self.free = free or free_bytes
        self.head = bytearray()
        self.files = None
        self.slot = -1  # the slot written
        self.total = 0  # bytes the bundle has in all
        self.got = 0  # bytes fed so far
        self._i = 0
        self._left = 0
        self._f = None
        self._h = None
        self.image = image
        self._w = None  # the image's ImageWriter

    def feed(self, data):
        mv = memoryview(data)
        try:
            while len(mv):
                if self.files is None:
                    mv = self._head(mv)
                else:
                    mv = self._file(mv)
        except BaseException:
            self._close()
            raise

    def _close(self):
        f = self._f
        self._f = None
        if f is not None and f is not self._w:
            f.close()

    def cancel(self):
        """Given up (a download that failed): the open file closed. The state
        names no slot since the manifest was checked, so nothing boots the
        half-written one; the next update writes it again."""
        self._close()

    def _head(self, mv):
        h = self.head
        want = 6  # the magic and the manifest's length first, then up to its end
        if len(h) >= 6:
            want = _HEAD_B + ((h[4] << 8) | h[5])
        k = min(len(mv), want - len(h))
        h.extend(mv[:k])
        self.got += k
        if len(h) == 6:
            if bytes(h[:4]) != _MAGIC:
                raise OtaError(E_FORMAT, "not an update bundle")
            if ((h[4] << 8) | h[5]) > _MAX_MANIFEST_B:
                raise OtaError(E_FORMAT, "manifest longer than %d bytes" % _MAX_MANIFEST_B)
        elif len(h) == want:
            self._begin()
        return mv[k:]

    def _begin(self):
        import json

        from evse import p256

        h = self.head
        man = bytes(h[_HEAD_B:])
        ok = p256.verify(self.pub, bytes(h[6:_HEAD_B]), hashlib.sha256(man).digest())
        from evse.config import forget

        forget("evse", "p256")  # its code freed again
        del p256
        if not ok:
            raise OtaError(E_SIGNATURE, "the manifest's signature does not verify")
        try:
            m = json.loads(man)
        except ValueError:
            raise OtaError(E_FORMAT, "manifest not JSON")
        root = self.root
        img = self.image
        st = read_state(root)
        run = running_slot(root, st, img)
        if st[2] and st[1] == run and st[1] != st[0]:
            raise OtaError(E_BUSY, "running a trial that has not committed yet")
        rm = slot_manifest(root, run)
        floor = rm.get("min", "0") if isinstance(rm, dict) else "0"
        files = check_manifest(m, self.platform, self.mpy_word, self.version, floor, self.force,
                               img is not None)
        self.slot = s = 1 - run
        d = slot_dir(root, s)
        if img is None:
            need = need_bytes(files)
            have = self.free(root) + _slot_tree(d, False)
            if need > have:
                raise OtaError(E_SPACE, "needs %d bytes of flash, %d free" % (need, have))
        # nothing may point at the slot while it is written (`run` is the
        # committed slot here: a trial that runs was refused above; with an
        # image, the partition table's, whatever the state said)
        if st[1] != -1 or st[2] or st[0] != run:
            write_state(root, run, -1, 0, R_NONE)
        _remove(root + TRY)
        _remove(root + FAIL)
        _remove(d + MANIFEST)
        if img is None:
            _slot_tree(d, True)
        else:  # refused here when it does not fit the partition (E_SPACE)
            self._w = img.writer(files[0][1], files[0][2])
        self.total = _HEAD_B + len(man)
        for f in files:
            self.total += f[1]
        self.man = man
        self.head = None
        self.files = files
        self._next()

    def _next(self):
        # open the next file (and finish empty ones); False after the last
        if self._w is not None:  # the image: one file, into the partition
            if self._i:
                return False
            self._left = self.files[0][1]
            self._f = self._w
            return True
        while self._i < len(self.files):
            p, size, _ = self.files[self._i]
            d = slot_dir(self.root, self.slot)
            if d and not _exists(d[:-1]):
                os.mkdir(d[:-1])
            i = p.find("/")
            while i > 0:
                if not _exists(d + p[:i]):
                    os.mkdir(d + p[:i])
                i = p.find("/", i + 1)
            self._f = open(d + p, "wb")
            self._h = hashlib.sha256()
            self._left = size
            if size:
                return True
            self._done()
        return False

    def _done(self):
        if self._w is not None:  # hashed and read back by finish()
            self._f = None
            self._i = 1
            return
        self._close()
        p, _, want = self.files[self._i]
        if self._h.digest() != want:
            raise OtaError(E_HASH, "%s: SHA-256 does not match the manifest" % p)
        self._h = None
        self._i += 1

    def _file(self, mv):
        if self._f is None and not self._next():
            raise OtaError(E_FORMAT, "bytes after the last file")
        k = min(len(mv), self._left)
        part = mv[:k]
        self._f.write(part)
        if self._w is None:
            self._h.update(part)
        self._left -= k
        self.got += k
        if self._left == 0:
            self._done()
        return mv[k:]

    def finish(self):
        """All fed: the slot's manifest written and the state says staged
        (R_STAGED, not armed). OtaError(E_TRUNCATED) when bytes are missing."""
        if self.files is not None and self._f is None and self._i < len(self.files):
            self._next()  # what is left may be empty files
        if self.files is None or self._f is not None or self._i < len(self.files):
            self._close()
            raise OtaError(E_TRUNCATED, "%d of %d bytes" % (self.got, self.total or self.got))
        d = slot_dir(self.root, self.slot)
        if self._w is not None:
            self._w.finish()  # its SHA-256 as it came, and as the flash reads it back
            if d and not _exists(d[:-1]):
                os.mkdir(d[:-1])
        f = open(d + MANIFEST + ".tmp", "wb")
        try:
            f.write(self.man)
        finally:
            f.close()
        os.rename(d + MANIFEST + ".tmp", d + MANIFEST)
        st = read_state(self.root)
        write_state(self.root, st[0], self.slot, 0, R_STAGED)
        return self.slot


def may_switch(pilot_state, contactor_closed):
    """Whether the charger may reboot into a staged version (or out of a
    failed trial) now: no vehicle (state A) and the contactor open."""
    return pilot_state == _CP_A and not contactor_closed


def arm(root, image=None):
    """Make the staged slot the next boot's (on trial). The caller reboots,
    once may_switch() says so. Returns the slot, or -1 when none is staged.
    With an image: the state first, then the partition set to boot (a power
    cut between boots the running image, which settle() then reports as
    rolled back); OtaError when the partition table refuses it."""
    c, t, a, r = read_state(root)
    if t < 0 or t == c or slot_manifest(root, t) is None:
        return -1
    _remove(root + TRY)  # stale marks would fail the trial before it runs
    _remove(root + FAIL)
    if not a:
        write_state(root, c, t, 1, r)
    if image is not None:
        try:
            image.arm()
        except OSError as e:  # ESP-IDF checks the image again here
            write_state(root, c, -1, 0, R_NONE)
            raise OtaError(E_FORMAT, "the partition table refused the image: %s" % e)
    return t


def trial_verdict(ran_ms, link_configured, link_reached):
    """A trial's health: V_COMMIT once the control loop has run
    _TRIAL_MIN_MS (no crash, no watchdog reset: either would have rebooted
    it) and, with a broker configured, the link has reached it; V_FAIL when
    that has not happened within _TRIAL_WINDOW_MS (the caller reboots, once
    may_switch(), and main.py rolls back); else V_WAIT."""
    if ran_ms >= _TRIAL_MIN_MS and (link_reached or not link_configured):
        return V_COMMIT
    if ran_ms >= _TRIAL_WINDOW_MS:
        return V_FAIL
    return V_WAIT


def commit(root, image=None):
    """The running trial proved healthy: it becomes the committed slot.
    Returns whether there was a trial to commit. With an image, the
    bootloader is told first (mark valid); a power cut before the state
    says so is mended by settle() at the next boot."""
    st = read_state(root)
    run = running_slot(root, st, image)
    if not (st[2] and st[1] == run and run != st[0]):
        return False
    if image is not None:
        image.commit()
    write_state(root, run, -1, 0, R_COMMITTED)
    _remove(root + TRY)
    return True


def settle(root, image=None):
    """After a boot: record a rollback main.py made (ota.fail) and drop
    stale marks. Returns the state's result (R_*). With an image, what
    runs says what happened: the armed partition on its first boot is the
    trial; on a later boot (main.py made ota.fail) it was marked valid,
    or the bootloader would have gone back, so it is committed; any other
    partition means the bootloader went back (or never switched)."""
    c, t, a, r = read_state(root)
    if image is not None:
        return _settle_image(root, c, t, a, r, image.slot())
    if a and t >= 0 and t != c:
        if not _exists(root + FAIL):
            return r  # a trial runs (ota.try), or is armed for the next boot
        write_state(root, c, -1, 0, R_ROLLED_BACK)
        r = R_ROLLED_BACK
    _remove(root + TRY)
    _remove(root + FAIL)
    return r


def _settle_image(root, c, t, a, r, run):
    if a and t >= 0 and t != c:
        if run == t:
            if not _exists(root + FAIL):
                return r  # the trial's first boot
            c, r = t, R_COMMITTED  # marked valid; the state's commit was cut short
        else:
            r = R_ROLLED_BACK
        write_state(root, c, -1, 0, r)
    elif run != c:  # flashed over USB, or a staged image running: its partition is it
        if r == R_STAGED:
            r = R_NONE
        write_state(root, run, -1, 0, r)
    _remove(root + TRY)
    _remove(root + FAIL)
    return r


def _read_text(path):
    try:
        f = open(path)
        try:
            return f.read(48).strip()
        finally:
            f.close()
    except OSError:
        return ""


_RESULTS = const(("none", "staged", "committed", "rolled_back"))  # R_* names
_PHASES = const(("idle", "downloading", "staged", "failed", "switching"))  # PH_* names
PH_IDLE = const(0)
PH_DOWNLOADING = const(1)
PH_STAGED = const(2)  # downloaded and verified: switched to once no vehicle is connected
PH_FAILED = const(3)  # the download failed (`error`)
PH_SWITCHING = const(4)  # armed: the board resets into it
_CHECK_MS = const(1000)  # the Runner looks at the snapshot this often
_S_STATE = const(0)  # evse.bus S_STATE (0: "A"), S_CONTACTOR, S_UPTIME
_S_CONTACTOR = const(3)
_S_UPTIME = const(15)


class Runner:
    """The OTA steps of the network thread (hw/system.run_all calls step()
    at every pass of Link.run; made only when ota.state exists).

    At construction: settle() (a rollback main.py made is recorded, with
    the reason the failed trial left in ota.try, or "no commit" when it
    left none: a crash, a hang, a watchdog reset or a power cut). Then:

    - a trial boot: trial_verdict() from the control loop's uptime (the
      snapshot's, which only the running control loop moves) and whether
      the link has ever connected; V_COMMIT: commit(); V_FAIL: the reason
      goes into ota.try and, once may_switch(), `request()` resets the
      board (main.py then boots the committed slot);
    - a staged update (R_STAGED) on a committed boot: once may_switch(),
      arm() and `request()`.

    may_switch reads the status snapshot (evse/bus.py), never the charger.
    `request` is the watchdog Supervisor's: feeding stops only with the
    contactor open. `done` once nothing is left to do on this boot.

    Delivery: offer() takes a backend's `update` command and `start(url,
    force)` (hw/system.py) makes the download (a hw/fetch.py Fetch into a
    Stager); step() moves it at every pass, and a bundle staged is
    switched to as above. `changed` is set when the report has news (the
    MQTT link publishes its status then; the OCPP link reads `phase`)."""

    def __init__(self, root, snap, link, request, ticks_ms, ticks_diff, start=None,
                 image=None):
        self.root = root
        self.image = image
        self.snap = snap
        self.link = link
        self.request = request
        self._ms = ticks_ms
        self._diff = ticks_diff
        self._v = None
        self._at = ticks_ms()
        why = _read_text(root + FAIL)
        armed = read_state(root)[2]
        self.result = settle(root, image)
        self.rolled = armed and self.result == R_ROLLED_BACK  # recorded at this boot
        self.why = (why or "no commit") if self.result == R_ROLLED_BACK else ""
        st = read_state(root)
        run = running_slot(root, st, image)
        self.running = slot_version(root, run)
        self.trial = bool(st[2]) and st[1] != st[0] and run == st[1]
        self.staged = None
        self._stage(st)
        self.verdict = V_WAIT
        self.done = False
        self.start = start
        self.fetch = None  # the download, while there is one
        self.error = None  # why the last download failed
        self.phase = PH_IDLE if self.staged is None else PH_STAGED
        self.changed = False
        self._tenth = 0  # the download's progress in tenths, as last reported
        # ("update", fields) events for the journal (hw/system.py hands them
        # to the App through the Bus): an update staged, failed, committed or
        # rolled back reaches the backend as a record, not only in a status
        self.news = []
        if self.rolled:
            self._news("rolled_back", "error", self.why)

    def _stage(self, st):
        """The staged slot's version, from the state (re-read after staging)."""
        t = st[1]
        if t >= 0 and t != st[0] and not st[2] and st[3] == R_STAGED:
            self.staged = slot_version(self.root, t)
        else:
            self.staged = None

    def report(self):
        """The status's `ota` object (docs/mqtt.md; the version running is
        the status's `fw`): the one staged, whether this boot is a trial,
        the last result and why a trial failed; the delivery's phase, its
        bytes while there is a download, why the last one failed."""
        r = (("staged", self.staged), ("trial", self.trial),
             ("result", _RESULTS[self.result] if 0 <= self.result < 4 else None),
             ("reason", self.why or None), ("phase", _PHASES[self.phase]))
        f = self.fetch
        if f is not None:  # bytes had, of the bundle's (0 until its manifest is read)
            r += (("got", f.sink.got), ("size", f.sink.total))
        if self.error:
            r += (("error", self.error),)
        return r

    def offer(self, m):
        """A backend's `update` command, {"url": ..., "force": false}
        (docs/mqtt.md): None once the download has begun, else why not.
        Refused while one downloads or this version is on trial."""
        for k in m:
            if k != "cmd" and k != "id" and k != "url" and k != "force":
                return "%s: unknown field for update" % str(k)[:32]
        force = m.get("force", False)
        if force is not True and force is not False:
            return "force: must be true or false"
        if self.start is None:
            return "updates are not delivered on this board"
        if self.phase == PH_DOWNLOADING:
            return "busy: an update is downloading"
        if self.trial:
            return "busy: this version is on trial"
        try:
            self.fetch = self.start(m.get("url"), force)
        except Exception as e:  # HttpError (the URL), OtaError (no key)
            a = e.args
            return str(a[-1] if a else e)
        self.error = None
        self.staged = None
        self._tenth = 0
        self._phase(PH_DOWNLOADING)
        self.done = False
        return None

    def _news(self, result, key, value):
        if len(self.news) < 4:
            self.news.append(("update", (("result", result), (key, value))))

    def _phase(self, p):
        self.phase = p
        self.changed = True

    def _download(self, f):
        s = f.step()
        if s == 0:  # hw.fetch RUNNING
            t = f.sink.total
            k = f.sink.got * 10 // t if t else 0
            if k != self._tenth:
                self._tenth = k
                self.changed = True
        elif s == 1:  # DONE: staged (R_STAGED), switched to in state A
            self.result = R_STAGED
            self.why = ""
            self.staged_now()
            self._phase(PH_STAGED)
            self._news("staged", "version", self.staged)
        else:
            self.fail(f.error)

    def fail(self, why):
        """The download ends here (it failed, or a bug stopped it: hw/system.py)."""
        f = self.fetch
        self.fetch = None
        if f is not None and f.state == 0:  # still running (hw.fetch RUNNING): its socket closed
            f.cancel(why)
        self.error = why
        self._phase(PH_FAILED)
        self._news("failed", "error", why[:64] if isinstance(why, str) else repr(why)[:64])

    def staged_now(self):
        """A bundle has just been staged (delivery): look at the state again."""
        self._stage(read_state(self.root))
        self.done = False

    def step(self):
        f = self.fetch
        if f is not None and self.phase == PH_DOWNLOADING:
            self._download(f)
        if self.done:
            return
        now = self._ms()
        d = self._diff(now, self._at)
        if 0 <= d < _CHECK_MS:  # (below 0: more than half the ticks' period ago)
            return
        self._at = now
        v = self._v
        if v is None:
            from evse.bus import fields

            v = self._v = fields(len(self.snap.v))
        if not self.snap.read(v):
            return
        free = may_switch(_CP_A if v[_S_STATE] == 0 else -1, v[_S_CONTACTOR])
        if self.trial:
            if self.verdict == V_WAIT:
                self.verdict = trial_verdict(v[_S_UPTIME] * 1000, True, self.link.connects > 0)
                if self.verdict == V_COMMIT:
                    commit(self.root, self.image)
                    self.trial = False
                    self.result = R_COMMITTED
                    self.done = True
                    self._news("committed", "version", self.running)
                elif self.verdict == V_FAIL:
                    f = open(self.root + TRY, "w")
                    try:
                        f.write("no broker within the trial")
                    finally:
                        f.close()
            if self.verdict == V_FAIL and free:
                self.request()
                self.done = True
        elif self.staged is not None and free and self.phase != PH_DOWNLOADING:
            self.done = True
            try:
                armed = arm(self.root, self.image) >= 0
            except OtaError as e:
                self.staged = None
                self.fail(e.args[1])
                return
            if armed:
                self._phase(PH_SWITCHING)
                self.request()
        elif self.staged is None and self.phase != PH_DOWNLOADING:
            self.done = True  # nothing to do until an offer


def slot_version(root, slot):
    """The version string of what a slot holds (its manifest), or None."""
    m = slot_manifest(root, slot)
    return m.get("version") if isinstance(m, dict) else None
