"""The journal: session records and events kept on flash until the broker has them.

A record is written here before it is published, and removed only after the
broker's PUBACK, so nothing the charger reports is lost to a broker outage, a
reboot or a power cut. One file, append-only between compactions; each line
is one record with its own length and CRC-32:

    @LLLLCCCCCCCC BODY\\n      LLLL: length of BODY in bytes (4 hex digits)
                              CCCCCCCC: CRC-32 of BODY (8 hex digits)
    BODY = KIND " " SEQ " " DATA
      KIND "s": a session record, "e": an event; DATA is its JSON payload
      KIND "a": removal of the records whose SEQs are listed in DATA
                (space-separated; SEQ is 0): acknowledged, or dropped

The reader (`stream`) accepts a line only when its header, length, CRC and the
closing newline all check out; anything else is skipped byte by byte up to
the next "@". A power cut in the middle of an append leaves a torn last line,
which is skipped; a corrupted byte costs only the record it is in. The JSON
payloads never contain a raw newline, so no record can hide inside another.

Bounded: the live records take at most `max_bytes` (as written) and
`max_records`. When a new record does not fit, the oldest events go first,
then the oldest sessions; what was dropped is reported by an event record
(built by the `report` function the owner gives), merged into one while it
is not yet published. The file is compacted (rewritten with the live records
to FILE.tmp, then renamed over FILE) whenever an append or a removal takes
it past 1.5 x max_bytes, so it stays bounded however long nothing is
acknowledged, and removed when no record is live. As with config.json, a
FILE.tmp is read only when FILE is missing (FAT removes the target before
the rename).

`load` reads the file in chunks (a board has no RAM for a large file) and
keeps the live records within the same bounds as it goes. A file it cannot
read to the end (an error, MemoryError) is never deleted: it is renamed to
FILE.unread (`unread` says so; the App reports it) and the journal starts
empty beside it. Records that could not be written (flash full) stay in RAM
and are published; the next append or removal rewrites the whole journal,
so they reach the flash once there is room again.

Threads: one thread (the control thread) calls load/add/ack and does all the
file I/O; `live` is a tuple that is replaced, never changed in place, so the
network thread may read it at any time.
"""
import os
from binascii import crc32

from micropython import const

_HEADER = const(14)  # "@" + 4 + 8 hex digits + " "
_MAX_BODY = const(0xFFFF)
_REPORT_RESERVE = const(256)  # bytes kept free for the drop report
_CHUNK = const(512)  # bytes read at a time by load()


def encode(kind, seq, data):
    """One record line (bytes)."""
    body = ("%s %d %s" % (kind, seq, data)).encode()
    return ("@%04x%08x " % (len(body), crc32(body) & 0xFFFFFFFF)).encode() + body + b"\n"


def _hex(buf, i, n):
    """int of the n hex digits at buf[i:], or -1."""
    v = 0
    for k in range(i, i + n):
        c = buf[k]
        if 0x30 <= c <= 0x39:
            c -= 0x30
        elif 0x61 <= c <= 0x66:
            c -= 0x57
        elif 0x41 <= c <= 0x46:
            c -= 0x37
        else:
            return -1
        v = v * 16 + c
    return v


def _parse_at(buf, i, n=None, more=False):
    """((kind, seq, data), next index) for a valid record at buf[i], or None;
    with `more` (more bytes may follow buf[:n]), 0 when the record may be
    valid but is not complete in buf[:n]."""
    if n is None:
        n = len(buf)
    if i + _HEADER > n:
        return 0 if more else None
    if buf[i + _HEADER - 1] != 0x20:
        return None
    length = _hex(buf, i + 1, 4)
    crc = _hex(buf, i + 5, 8)
    if length < 0 or crc < 0:
        return None
    end = i + _HEADER + length
    if end >= n:
        return 0 if more else None
    if buf[end] != 0x0A:
        return None
    body = buf[i + _HEADER:end]
    if crc32(body) & 0xFFFFFFFF != crc:
        return None
    try:
        text = body.decode()
        kind = text[0]
        sp = text.index(" ", 2)
        seq = int(text[2:sp])
        data = text[sp + 1:]
    except (ValueError, IndexError):  # UnicodeError is a ValueError
        return None
    if text[1] != " " or kind not in "sea":
        return None
    return (kind, seq, data), end + 1


def stream(f, stats, limit=_MAX_BODY):
    """The valid records of file `f`, read _CHUNK bytes at a time: yields
    (kind, seq, data), the same as a reading of the whole file would find
    (host_tests/core_cases/journal_ref.py); stats[0] counts the bytes skipped. A record claiming a body over `limit` bytes is garbage.
    At most limit + _HEADER + _CHUNK bytes are held at once."""
    buf = b""
    eof = False
    while True:
        if not eof and len(buf) < limit + _HEADER + 1:
            part = f.read(_CHUNK)
            if part:
                buf += part
            else:
                eof = True
        n = len(buf)
        i = 0
        while i < n:
            if buf[i] != 0x40:  # "@"
                j = buf.find(b"@", i)
                if j < 0:
                    stats[0] += n - i
                    i = n
                    break
                stats[0] += j - i
                i = j
            if i + 5 <= n and _hex(buf, i + 1, 4) > limit:
                stats[0] += 1
                i += 1
                continue
            r = _parse_at(buf, i, n, not eof)
            if r == 0:
                break  # incomplete: wait for the next chunk
            if r is None:
                stats[0] += 1
                i += 1
            else:
                yield r[0]
                i = r[1]
        buf = buf[i:]
        if eof and not buf:
            return
        if eof and i == 0:  # nothing more will come and nothing parsed: garbage
            stats[0] += len(buf)
            return


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Journal:
    def __init__(self, path, max_bytes=8192, max_records=64, report=None):
        """`report(dropped_events, dropped_sessions)` returns the JSON payload
        of the event that reports dropped records (None: not reported)."""
        self.path = path  # and path + ".tmp" while it is compacted (made when needed)
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.report = report
        self.live = ()  # ((seq, kind, data), ...), oldest first
        self.live_bytes = 0
        self.file_bytes = 0
        self.next_seq = 1
        self.skipped = 0  # garbage bytes found by load()
        self.unread = None  # where an unreadable journal was set aside
        self._stuck = False  # that file could not be moved: leave it alone
        self.dirty = False  # the file is not the live records (a write failed, or load
        # found it untidy): it is rewritten whole at the next compaction
        self.errors = 0  # failed flash writes
        self.dropped_events = 0  # since boot
        self.dropped_sessions = 0
        self._report_seq = None
        self._report_counts = (0, 0)

    # ------------------------------------------------------------ read
    def load(self):
        """Read the journal back (at boot). Returns the live records."""
        f = None
        tmp = self.path + ".tmp"
        from_tmp = False
        for p in (self.path, tmp):
            try:
                f = open(p, "rb")
            except OSError:
                continue
            from_tmp = p == tmp
            break
        if f is None:
            return self.live
        stats = [0]
        self.live_bytes = 0
        try:
            try:
                live, order, size = self._replay(stream(f, stats, self.max_bytes))
            finally:
                f.close()
        except Exception:  # MemoryError, OSError: keep the file, start empty
            # Rename it to PATH.unread (PATH.unreadN if taken), never delete it.
            self.live = ()
            self.live_bytes = 0
            bad = tmp if from_tmp else self.path
            name = self.path + ".unread"
            k = 1
            while _exists(name):
                k += 1
                name = "%s.unread%d" % (self.path, k)
            try:
                os.rename(bad, name)
                self.unread = name
            except OSError:
                self.errors += 1
                self.unread = bad
                self._stuck = True  # the file is still in the way: never remove it
            return self.live
        self.skipped = stats[0]
        self.live = tuple([live[s] for s in order if s in live])
        self.file_bytes = size
        if from_tmp or self.skipped or self.dropped_events or self.dropped_sessions or (
                self.file_bytes > self.max_bytes + self.max_bytes // 2) or _exists(tmp):
            self.dirty = True  # wanted: a clean, bounded file, and no stale .tmp
            self._compact()
        return self.live

    def _replay(self, records):
        """The live records of a stream, within the journal's bounds (the
        oldest events dropped first, as add() does), and the file's size."""
        live = {}
        order = []
        size = 0
        room = self.max_bytes - _REPORT_RESERVE
        top = 0
        for kind, seq, data in records:
            line = len(encode(kind, seq, data))
            size += line
            if seq > top:
                top = seq
            if kind == "a":
                for x in data.split():
                    try:
                        r = live.pop(int(x), None)
                    except ValueError:
                        r = None
                    if r is not None:
                        self.live_bytes -= len(encode(r[1], r[0], r[2]))
                continue
            old = live.get(seq)
            if old is not None:
                self.live_bytes -= len(encode(old[1], old[0], old[2]))
            else:
                order.append(seq)
            live[seq] = (seq, kind, data)
            self.live_bytes += line
            while self.live_bytes > room or len(live) > self.max_records - 2:
                v = self._victim([live[x] for x in order if x in live])
                if v < 0:
                    break
                r = [live[x] for x in order if x in live][v]
                del live[r[0]]
                self.live_bytes -= len(encode(r[1], r[0], r[2]))
                if r[1] == "e":
                    self.dropped_events += 1
                else:
                    self.dropped_sessions += 1
            if len(order) > 4 * self.max_records:
                order = [x for x in order if x in live]
        self.next_seq = top + 1
        return live, order, size

    # ----------------------------------------------------------- write
    def _write(self, lines):
        try:
            f = open(self.path, "ab")
            try:
                for line in lines:
                    f.write(line)
                f.flush()
                if hasattr(os, "fsync"):  # CPython; littlefs commits on close
                    os.fsync(f.fileno())
            finally:
                f.close()
        except OSError:
            self.errors += 1  # the record stays in RAM and is still published
            self.dirty = True  # rewritten whole at the next write that works
            return False
        for line in lines:
            self.file_bytes += len(line)
        return True

    def _compact(self):
        """Rewrite the file with the live records when that is due: it is
        dirty or outgrew its bound; and remove it when no record is live."""
        if self.live and not (self.dirty or
                              self.file_bytes > self.max_bytes + self.max_bytes // 2):
            return
        if self._stuck:
            return  # an unreadable journal is still at our path: append only
        tmp = self.path + ".tmp"
        try:
            if not self.live:
                for p in (self.path, tmp):
                    if _exists(p):
                        os.remove(p)
                self.file_bytes = 0
                self.dirty = False
                return
            f = open(tmp, "wb")
            size = 0
            try:
                for seq, kind, data in self.live:
                    line = encode(kind, seq, data)
                    f.write(line)
                    size += len(line)
                f.flush()
                if hasattr(os, "fsync"):
                    os.fsync(f.fileno())
            finally:
                f.close()
            os.rename(tmp, self.path)
            self.file_bytes = size
            self.dirty = False
        except OSError:
            self.errors += 1

    def _victim(self, live):
        """The index in `live` of the record to drop: the oldest event that
        is not the drop report, else the oldest session; -1 when none."""
        first_s = -1
        for i in range(len(live)):
            r = live[i]
            if r[1] == "e" and r[0] != self._report_seq:
                return i
            if r[1] == "s" and first_s < 0:
                first_s = i
        return first_s

    def add(self, kind, data):
        """Append a record ("s" session or "e" event, `data` its JSON text);
        returns its seq, or None when it is larger than the whole journal."""
        seq = self.next_seq
        line = encode(kind, seq, data)
        room = self.max_bytes - _REPORT_RESERVE
        if len(line) > room or len(line) > _MAX_BODY:
            self._dropped(1 if kind == "e" else 0, 1 if kind == "s" else 0)
            return None
        self.next_seq = seq + 1
        live = list(self.live)
        gone = []
        de = ds = 0
        while live and (self.live_bytes + len(line) > room
                        or len(live) + 2 > self.max_records):
            i = self._victim(live)
            if i < 0:
                break
            r = live.pop(i)
            gone.append(r[0])
            self.live_bytes -= len(encode(r[1], r[0], r[2]))
            if r[1] == "e":
                de += 1
            else:
                ds += 1
        lines = []
        if gone:
            lines.append(encode("a", 0, " ".join([str(s) for s in gone])))
        lines.append(line)
        wrote = self._write(lines)
        live.append((seq, kind, data))
        self.live = tuple(live)
        self.live_bytes += len(line)
        if de or ds:
            self._dropped(de, ds)
        if wrote:
            self._compact()
        return seq

    def _dropped(self, de, ds):
        """Count dropped records and (re)write the report event."""
        self.dropped_events += de
        self.dropped_sessions += ds
        if self.report is None:
            return
        old = self._report_seq
        if old is not None and old in [r[0] for r in self.live]:
            ce, cs = self._report_counts
            de += ce
            ds += cs
            self._remove((old,))
        self._report_seq = None
        data = self.report(de, ds)
        seq = self.next_seq
        self.next_seq = seq + 1
        line = encode("e", seq, data)
        self._write((line,))
        self.live = self.live + ((seq, "e", data),)
        self.live_bytes += len(line)
        self._report_seq = seq
        self._report_counts = (de, ds)

    def _remove(self, seqs):
        """None when no live record has one of these seqs; else they are
        removed, and whether the removal reached the flash."""
        keep = []
        for r in self.live:
            if r[0] in seqs:
                self.live_bytes -= len(encode(r[1], r[0], r[2]))
            else:
                keep.append(r)
        if len(keep) == len(self.live):
            return None
        wrote = self._write((encode("a", 0, " ".join([str(s) for s in seqs])),))
        self.live = tuple(keep)
        return wrote

    def ack(self, seqs):
        """The backend (or the broker) has these records: remove them."""
        wrote = self._remove(seqs)
        if wrote is None:
            return
        if wrote or not self.live:
            self._compact()
