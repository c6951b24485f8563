"""Whole-buffer reference readers of the journal format (evse/journal.py),
for the tests: the firmware reads its file in chunks (journal.stream,
Journal.load), and these say what that reading must find."""
from evse.journal import _parse_at


def scan(buf):
    """Every valid record in `buf` (bytes), in order, and the count of bytes
    that were skipped as garbage: ([(kind, seq, data), ...], skipped)."""
    out = []
    skipped = 0
    i = 0
    n = len(buf)
    while i < n:
        if buf[i] != 0x40:  # "@"
            j = buf.find(b"@", i)
            if j < 0:
                skipped += n - i
                break
            skipped += j - i
            i = j
        r = _parse_at(buf, i)
        if r is None:
            skipped += 1
            i += 1
        else:
            out.append(r[0])
            i = r[1]
    return out, skipped


def replay(records):
    """The live records [(seq, kind, data)], oldest first, after the removals."""
    live = {}
    order = []
    for kind, seq, data in records:
        if kind == "a":
            for s in data.split():
                try:
                    live.pop(int(s), None)
                except ValueError:
                    pass
        else:
            if seq not in live:
                order.append(seq)
            live[seq] = (seq, kind, data)
    return [live[s] for s in order if s in live]
