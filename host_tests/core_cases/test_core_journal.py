"""The journal (evse/journal.py): record format, recovery from torn and
corrupted files at every byte offset, bounds, drops and their report."""
import os

from evse import journal as J

from fakes import read, tmpdir, write
from journal_ref import replay, scan


def _records(n, extra=""):
    out = []
    for i in range(1, n + 1):
        kind = "s" if i % 3 == 0 else "e"
        out.append((kind, i, '{"id": %d, "text": "r@%d%s"}' % (i, i, extra)))
    return out


def _file(recs):
    lines = [J.encode(k, s, d) for k, s, d in recs]
    return b"".join(lines), lines


def test_encode_scan_roundtrip():
    recs = _records(5) + [("a", 0, "1 2")]
    buf, lines = _file(recs)
    got, skipped = scan(buf)
    assert got == recs and skipped == 0
    assert lines[0][:1] == b"@" and lines[0][-1:] == b"\n"
    assert [r[0] for r in replay(got)] == [3, 4, 5]
    # non-ASCII text survives (length in bytes)
    line = J.encode("e", 9, '{"error": "t\u00e9st"}')
    assert scan(line)[0] == [("e", 9, '{"error": "t\u00e9st"}')]


def test_truncated_at_every_offset_keeps_every_complete_record():
    recs = _records(4)
    buf, lines = _file(recs)
    ends = []
    pos = 0
    for line in lines:
        pos += len(line)
        ends.append(pos)
    for cut in range(len(buf) + 1):
        got, _ = scan(buf[:cut])
        want = [recs[i] for i in range(len(recs)) if ends[i] <= cut]
        assert got == want, (cut, got)
    return len(buf)


def test_corrupted_at_every_offset_loses_only_that_record():
    recs = _records(4)
    buf, lines = _file(recs)
    owner = []
    for i in range(len(lines)):
        owner += [i] * len(lines[i])
    n = 0
    for off in range(len(buf)):
        for bad in (buf[off] ^ 0xFF, 0x40, 0x0A, 0x20):
            if bad == buf[off]:
                continue
            b = bytearray(buf)
            b[off] = bad
            got, _ = scan(bytes(b))
            want = [recs[i] for i in range(len(recs)) if i != owner[off]]
            assert got == want, (off, bad, got)
            n += 1
    return n


def test_garbage_before_between_and_after_records():
    recs = _records(3)
    buf, lines = _file(recs)
    junk = b"@@\n\x00@0005" + lines[1][:7] + b"zz"
    got, skipped = scan(junk + lines[0] + junk + lines[1] + lines[2][:-1] + lines[2] + junk)
    assert got == recs and skipped > 0


def test_add_ack_reload_and_compaction():
    d = tmpdir("jr")
    path = d + "/journal.log"
    j = J.Journal(path, 4096)
    j.load()
    s1 = j.add("s", '{"id": 1}')
    s2 = j.add("e", '{"type": "fault"}')
    s3 = j.add("s", '{"id": 2}')
    assert (s1, s2, s3) == (1, 2, 3)
    j.ack([s2])
    assert [r[0] for r in j.live] == [1, 3]
    j2 = J.Journal(path, 4096)
    assert [r[0] for r in j2.load()] == [1, 3]
    assert j2.next_seq == 4 and j2.skipped == 0
    j2.ack([1, 3])
    assert j2.live == () and read(path) is None  # nothing live: no file
    assert j2.add("e", "{}") == 4  # numbering goes on within the boot
    assert J.Journal(path, 4096).load()[0][0] == 4


def test_torn_tail_is_repaired_at_load():
    d = tmpdir("jt")
    path = d + "/journal.log"
    j = J.Journal(path, 4096)
    j.add("s", '{"id": 1}')
    j.add("s", '{"id": 2}')
    data = read(path)
    write(path, data[:-5])  # power cut in the middle of the second append
    j2 = J.Journal(path, 4096)
    assert [r[0] for r in j2.load()] == [1]
    assert j2.skipped > 0
    assert scan(read(path)) == ([("s", 1, '{"id": 1}')], 0)  # rewritten clean
    j2.add("s", '{"id": 3}')
    assert [r[2] for r in J.Journal(path, 4096).load()] == ['{"id": 1}', '{"id": 3}']


def test_tmp_is_used_only_when_the_journal_is_missing():
    d = tmpdir("jx")
    path = d + "/journal.log"
    write(path + ".tmp", J.encode("s", 7, '{"id": 7}'))
    j = J.Journal(path, 4096)
    assert [r[0] for r in j.load()] == [7]  # FAT: rename removed the target first
    assert read(path + ".tmp") is None and read(path) is not None
    write(path + ".tmp", b"@half a compac")  # a compaction cut short
    j = J.Journal(path, 4096)
    assert [r[0] for r in j.load()] == [7]
    assert read(path + ".tmp") is None


def test_full_journal_drops_events_first_then_sessions_and_says_so():
    d = tmpdir("jf")
    reports = []

    def report(de, ds):
        reports.append((de, ds))
        return '{"type": "journal_full", "dropped_events": %d, "dropped_sessions": %d}' % (de, ds)

    j = J.Journal(d + "/journal.log", 1024, max_records=12, report=report)
    for i in range(6):
        j.add("s", '{"id": %d, "pad": "%s"}' % (i, "x" * 40))
        j.add("e", '{"n": %d, "pad": "%s"}' % (i, "y" * 40))
    kinds = [r[1] for r in j.live]
    assert j.live_bytes <= 1024 and len(j.live) <= 12
    assert j.dropped_sessions == 0 and j.dropped_events > 0, (j.dropped_events, kinds)
    assert kinds.count("s") == 6  # every session kept while events could go
    rep = [r for r in j.live if "journal_full" in r[2]]
    assert len(rep) == 1, rep  # one report, merged while unpublished
    assert '"dropped_events": %d' % j.dropped_events in rep[0][2]
    for i in range(6, 20):
        j.add("s", '{"id": %d, "pad": "%s"}' % (i, "x" * 40))
    assert j.dropped_sessions > 0
    ids = [r[2] for r in j.live if r[1] == "s"]
    assert '"id": 19' in ids[-1] and '"id": 0,' not in ids[0]  # the oldest went
    rep = [r for r in j.live if "journal_full" in r[2]]
    assert len(rep) == 1 and '"dropped_sessions": %d' % j.dropped_sessions in rep[0][2]
    # all of it is on flash too
    j2 = J.Journal(d + "/journal.log", 1024, max_records=12)
    assert [r[0] for r in j2.load()] == [r[0] for r in j.live]
    # a record larger than the journal is dropped and reported, not written
    assert j.add("s", "z" * 2000) is None


def test_write_errors_keep_the_record_in_ram():
    d = tmpdir("je")
    j = J.Journal(d + "/nodir/journal.log", 4096)  # a folder that does not exist
    assert j.add("s", '{"id": 1}') == 1
    assert j.errors == 1 and [r[0] for r in j.live] == [1]
    j.ack([1])
    assert j.live == ()


def test_bounded_on_flash_however_long_nothing_is_acknowledged():
    """No acknowledgement for 1,500 records (a backend down for days, a
    meter flapping): the file never grows past 1.5 x its bound plus one
    record, the live records stay within theirs, and what went is counted
    and reported."""
    d = tmpdir("jb")
    path = d + "/journal.log"
    j = J.Journal(path, 2048, report=lambda de, ds: '{"dropped": [%d, %d]}' % (de, ds))
    biggest = 0
    for i in range(1500):
        j.add("e" if i % 5 else "s", '{"n": %d, "pad": "%s"}' % (i, "x" * (i % 40)))
        size = len(read(path) or b"")
        biggest = max(biggest, size)
    line = len(J.encode("s", 9999, '{"n": 9999, "pad": "%s"}' % ("x" * 39)))
    assert biggest <= 2048 + 1024 + line + 256, biggest
    assert j.live_bytes <= 2048 and j.dropped_events > 0
    back = J.Journal(path, 2048)
    assert [r[0] for r in back.load()] == [r[0] for r in j.live]
    return biggest


def test_a_large_legacy_file_loads_within_the_bounds():
    """A file far larger than the journal's bound (written by a firmware
    that compacted only on acknowledgement) is read in chunks, keeps the
    newest records within the bound, says what it dropped, and is
    rewritten bounded."""
    d = tmpdir("jl")
    path = d + "/journal.log"
    f = open(path, "wb")
    for i in range(1, 4001):
        f.write(J.encode("e", i, '{"n": %d}' % i))
    f.write(J.encode("s", 4001, '{"id": 1}'))
    f.close()
    j = J.Journal(path, 2048)
    live = j.load()
    assert live[-1] == (4001, "s", '{"id": 1}')  # the session is kept, old events went
    assert j.live_bytes <= 2048 and j.dropped_events >= 3900 and j.dropped_sessions == 0
    assert len(read(path)) <= 2048 and j.next_seq == 4002
    assert [r[0] for r in J.Journal(path, 2048).load()] == [r[0] for r in live]


def test_stream_reads_what_scan_reads_chunk_by_chunk():
    import io

    recs = b"".join([J.encode("s", i, '{"n": %d, "t": "r\\u00e9cord"}' % i) for i in range(1, 60)])
    for tail in (b"", b"@", b"@00", b"junk", b"@0030abcdef12 s 9 {", b"@ffff00000000 "):
        for head in (b"", b"garbage@", b"@@"):
            buf = head + recs[:len(recs) // 2] + b"\x00torn" + recs[len(recs) // 2:] + tail
            st = [0]
            assert (list(J.stream(io.BytesIO(buf), st, 4096)), st[0]) == scan(buf), (head, tail)


def test_an_unreadable_journal_is_set_aside_never_deleted():
    d = tmpdir("ju")
    path = d + "/journal.log"
    j = J.Journal(path, 4096)
    j.add("s", '{"id": 7}')
    image = read(path)
    j2 = J.Journal(path, 4096)

    def fail(*a, **k):
        raise MemoryError()

    saved = J.stream
    J.stream = fail
    try:
        assert j2.load() == ()
    finally:
        J.stream = saved
    assert j2.unread == path + ".unread" and read(path + ".unread") == image
    j2.add("e", '{"n": 1}')
    j2.ack([r[0] for r in j2.live])  # the new journal empties: the old file stays
    assert read(path + ".unread") == image and read(path) is None


def test_records_written_while_the_flash_was_full_reach_it_when_there_is_room():
    d = tmpdir("jf")
    path = d + "/journal.log"
    j = J.Journal(path, 4096)
    j.add("s", '{"id": 1}')
    real = J.__dict__.get("open")

    def full(p, mode="r"):
        if "a" in mode or "w" in mode:
            raise OSError(28)  # ENOSPC
        return open(p, mode)

    J.open = full
    try:
        j.add("s", '{"id": 2}')
        j.add("e", '{"n": 3}')
    finally:
        if real is None:
            del J.open
        else:
            J.open = real
    assert j.errors == 2 and j.dirty and [r[0] for r in j.live] == [1, 2, 3]
    assert [r[0] for r in J.Journal(path, 4096).load()] == [1]  # a reboot now loses 2 and 3
    j.add("e", '{"n": 4}')  # room again: the whole journal is rewritten
    assert not j.dirty
    assert [r[2] for r in J.Journal(path, 4096).load()] == [
        '{"id": 1}', '{"id": 2}', '{"n": 3}', '{"n": 4}']
