"""OTA for an ESP32 whose firmware is frozen into the image (docs/ota.md,
"ESP32 with a frozen firmware image"): the new app image goes into the
next OTA partition through esp32.Partition, never into the running one;
the bootloader's app rollback (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, as in
MicroPython's OTA board variants) boots the previous image again when a
new one resets before it marked itself valid.

    w = ImageWriter(esp32.Partition, size, sha256)  # size, hash: the signed manifest's
    w.write(chunk) ...                 # as it arrives: one 4 KB block in RAM
    label = w.finish()                 # hashed as it came and read back from flash
    w.arm()                            # set_boot: the next reset boots it, on trial
    commit(esp32.Partition)            # on that boot, once the trial proved itself

`partition` is the esp32.Partition class (passed in, so that the host tests
give theirs: host_tests/core_cases/esp32fake.py). Refusals raise evse.ota.OtaError
with its codes. Runs in the network thread, as the rest of the update.

`Image(partition)` is what evse.ota's Stager, arm, commit, settle and Runner
take on such a board (`for_board()` makes it when the board is one): the
slot numbers of ota.state are the OTA partitions, ota_0 and ota_1.
"""
import hashlib

from micropython import const

from evse.ota import E_FORMAT, E_HASH, E_SPACE, E_TRUNCATED, OtaError

_LABELS = const(("ota_0", "ota_1"))  # slot 0 and 1 of ota.state

_IOCTL_BLOCKS = const(4)  # the block protocol's ioctl: block count ...
_IOCTL_BLOCK_SIZE = const(5)  # ... and block size (4096 on the ESP32)
_APP_MAGIC = const(0xE9)  # an ESP32 app image's first byte (esp_image_header_t)
_ERASED = const(0xFF)


class ImageWriter:
    def __init__(self, partition, size, sha256):
        self.part = partition(partition.RUNNING).get_next_update()
        bs = self.part.ioctl(_IOCTL_BLOCK_SIZE, 0)
        room = self.part.ioctl(_IOCTL_BLOCKS, 0) * bs
        if size > room:  # refused before a byte is written
            raise OtaError(E_SPACE, "image of %d bytes, partition %s holds %d"
                           % (size, self.label(), room))
        if size <= 0:
            raise OtaError(E_FORMAT, "empty image")
        self.size = size
        self.want = sha256
        self.buf = bytearray(bs)
        self.n = 0  # bytes in buf
        self.blk = 0  # the next block to write
        self.got = 0
        self._h = hashlib.sha256()

    def label(self):
        return self.part.info()[4]

    def write(self, data):
        mv = memoryview(data)
        bs = len(self.buf)
        while len(mv):
            k = min(len(mv), bs - self.n, self.size - self.got)
            if k <= 0:
                raise OtaError(E_FORMAT, "bytes after the image")
            if self.got == 0 and mv[0] != _APP_MAGIC:
                raise OtaError(E_FORMAT, "not an ESP32 app image")
            self.buf[self.n:self.n + k] = mv[:k]
            self._h.update(mv[:k])
            self.n += k
            self.got += k
            mv = mv[k:]
            if self.n == bs:
                self._flush()

    def _flush(self):
        # the simple block protocol: writeblocks without an offset erases the
        # block first (esp_partition_erase_range, then esp_partition_write)
        self.part.writeblocks(self.blk, self.buf)
        self.blk += 1
        self.n = 0

    def finish(self):
        """All of it written and read back equal to the manifest's SHA-256:
        the partition's label. Nothing points at it until arm()."""
        if self.got < self.size:
            raise OtaError(E_TRUNCATED, "%d of %d bytes" % (self.got, self.size))
        if self._h.digest() != self.want:
            raise OtaError(E_HASH, "image: SHA-256 does not match the manifest")
        if self.n:
            for i in range(self.n, len(self.buf)):
                self.buf[i] = _ERASED
            self._flush()
        h = hashlib.sha256()
        bs = len(self.buf)
        left = self.size
        for b in range(self.blk):
            self.part.readblocks(b, self.buf)
            k = bs if left > bs else left
            h.update(memoryview(self.buf)[:k])
            left -= k
        if h.digest() != self.want:
            raise OtaError(E_HASH, "partition %s reads back other bytes" % self.label())
        return self.label()

    def arm(self):
        """The next boot runs the new image (otadata); it is on trial until
        commit(), and the bootloader goes back if it resets before."""
        self.part.set_boot()


def commit(partition):
    """This boot's image proved itself: no rollback at the next reset."""
    partition.mark_app_valid_cancel_rollback()


def running(partition):
    """The running app partition's label (ota_0, ota_1, factory)."""
    return partition(partition.RUNNING).info()[4]


class Image:
    """A frozen image's board, for evse.ota (slot, writer, arm, commit)."""

    def __init__(self, partition):
        self.p = partition

    def slot(self):
        """The running partition's slot (0 or 1; -1: not an OTA partition)."""
        lb = running(self.p)
        return _LABELS.index(lb) if lb in _LABELS else -1

    def writer(self, size, sha256):
        w = ImageWriter(self.p, size, sha256)
        if w.label() not in _LABELS or w.label() == running(self.p):
            raise OtaError(E_SPACE, "no OTA partition to write (%s)" % w.label())
        return w

    def arm(self):
        self.p(self.p.RUNNING).get_next_update().set_boot()

    def commit(self):
        commit(self.p)


def for_board(frozen):
    """An Image when this board runs a frozen firmware from an OTA
    partition (`frozen`: the firmware's modules are in the image, not .mpy
    files), else None (no esp32 module, a partition table without OTA
    partitions, or .mpy files on the filesystem: the slot folders)."""
    if not frozen:
        return None
    try:
        import esp32
    except ImportError:
        return None
    img = Image(esp32.Partition)
    try:
        if img.slot() < 0:
            return None
        img.p(img.p.RUNNING).get_next_update()
    except Exception:  # OSError, ValueError: no OTA partition table
        return None
    return img
