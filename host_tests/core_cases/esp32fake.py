"""esp32.Partition as the ESP32 port has it (ports/esp32/esp32_partition.c
and the ESP-IDF OTA calls under it), on a flash in RAM, for the tests of
hw/ota_part.py (test_core_ota_part.py, under CPython and MicroPython): two OTA app partitions of 4 KB blocks, NOR flash (a write
only clears bits, so writing a block that was not erased corrupts it), the
otadata's boot choice, and the bootloader's app rollback: a new image
boots once on trial (pending verify) and, when it resets before
mark_app_valid_cancel_rollback(), the previous one boots again.

    flash = Flash(blocks=16)             # ota_0 running a valid image
    P = flash.Partition                  # what `esp32.Partition` is
    flash.reset()                        # what the bootloader does at a reset
"""
BLOCK = 4096
APP_MAGIC = 0xE9
ESP_ERR_OTA_VALIDATE_FAILED = 0x1503
NEW, PENDING, VALID, ABORTED = "new", "pending_verify", "valid", "aborted"


class Flash:
    def __init__(self, blocks=16, labels=("ota_0", "ota_1")):
        self.labels = labels
        self.blocks = blocks
        self.data = {}
        for lb in labels:
            self.data[lb] = bytearray(b"\xff" * (blocks * BLOCK))
        self.data[labels[0]][0] = APP_MAGIC  # the image flashed at the factory
        self.state = {labels[0]: VALID, labels[1]: None}
        self.boot = labels[0]
        self.running = labels[0]
        self.writes = []  # (label, block) of every writeblocks
        self.stuck = None  # (label, byte offset): a bit that never clears there
        flash = self

        class Partition:  # noqa: the port's class, its names
            BOOT = 0
            RUNNING = 1
            TYPE_APP = 0

            def __init__(self, which):
                if which == Partition.RUNNING:
                    self.lb = flash.running
                elif which == Partition.BOOT:
                    self.lb = flash.boot
                elif which in flash.labels:
                    self.lb = which
                else:
                    raise ValueError("partition not found")

            def info(self):
                i = flash.labels.index(self.lb)
                return (0, 0x10 + i, 0x10000 + i * flash.blocks * BLOCK,
                        flash.blocks * BLOCK, self.lb, False)

            def get_next_update(self):
                i = flash.labels.index(flash.running)
                return Partition(flash.labels[(i + 1) % len(flash.labels)])

            def ioctl(self, cmd, arg):
                if cmd == 4:
                    return flash.blocks
                if cmd == 5:
                    return BLOCK
                if cmd == 6:
                    flash.erase(self.lb, arg)
                    return 0
                return None if cmd > 6 else 0

            def readblocks(self, block, buf, offset=0):
                start = block * BLOCK + offset
                d = flash.data[self.lb]
                for i in range(len(buf)):
                    buf[i] = d[start + i]

            def writeblocks(self, block, buf, offset=None):
                if self.lb == flash.running:
                    raise AssertionError("the running partition is written")
                start = block * BLOCK + (offset or 0)
                if offset is None:
                    for b in range(block, block + (len(buf) + BLOCK - 1) // BLOCK):
                        flash.erase(self.lb, b)
                flash.writes.append((self.lb, block))
                d = flash.data[self.lb]
                for i in range(len(buf)):
                    d[start + i] &= buf[i]  # NOR: bits only clear
                st = flash.stuck
                if st is not None and st[0] == self.lb and start <= st[1] < start + len(buf):
                    d[st[1]] |= 0x01

            def set_boot(self):
                if flash.data[self.lb][0] != APP_MAGIC:
                    raise OSError(ESP_ERR_OTA_VALIDATE_FAILED)
                flash.boot = self.lb
                flash.state[self.lb] = NEW

            @classmethod
            def mark_app_valid_cancel_rollback(cls):
                flash.state[flash.running] = VALID

        self.Partition = Partition

    def erase(self, label, block):
        d = self.data[label]
        for i in range(block * BLOCK, (block + 1) * BLOCK):
            d[i] = 0xFF

    def reset(self):
        """The bootloader: a new image boots on trial; one that was on
        trial and did not mark itself valid is given up for the last valid."""
        b = self.boot
        if self.state[b] == NEW:
            self.state[b] = PENDING
        elif self.state[b] == PENDING:
            self.state[b] = ABORTED
            for lb in self.labels:
                if self.state[lb] == VALID:
                    b = self.boot = lb
        self.running = b
        return b
