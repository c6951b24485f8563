"""Power cut in the middle of a journal write, at every byte (CPython).

The journal module's `open` is replaced by one whose files stop writing
after a budget of bytes and then raise PowerCut, which is not an OSError:
the firmware does not get to handle it, as when the supply goes. The
journal is then read back as at the next boot: every record whose add()
returned is there, the one being written is there whole or not at all,
removals are applied whole or not at all, and writing goes on after it.
"""
import builtins
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evse import journal as J

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakes"))

from powercut import Budget as _Budget  # noqa: E402  (host_tests/fakes/powercut.py)
from powercut import CutFile as _CutFile  # noqa: E402
from powercut import PowerCut  # noqa: E402


@pytest.fixture
def cut(monkeypatch):
    """cut(n): from now on, the supply goes after n more bytes written."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # a tmp folder: no need

    def arm(n):
        budget = _Budget(n)

        def opener(path, mode="r", *a):
            f = builtins.open(path, mode, *a)
            return _CutFile(f, budget) if ("a" in mode or "w" in mode) else f
        monkeypatch.setattr(J, "open", opener, raising=False)
    yield arm
    monkeypatch.delattr(J, "open", raising=False)


def _fill(path, n=6):
    j = J.Journal(path, 8192)
    j.load()
    for i in range(n):
        j.add("s" if i % 2 else "e", '{"n": %d, "text": "r\\u00e9cord %d"}' % (i, i))
    j.ack([2, 3])
    return j


def _live(path):
    return [(r[0], r[2]) for r in J.Journal(path, 8192).load()]


def test_power_cut_during_an_append_at_every_byte(tmp_path, cut):
    base = str(tmp_path / "base.log")
    before = _fill(base)
    want = [(r[0], r[2]) for r in before.live]
    data = '{"id": 99, "reason": "unplugged"}'
    size = len(J.encode("s", before.next_seq, data))
    image = open(base, "rb").read()
    for k in range(size + 1):
        path = str(tmp_path / ("j%d.log" % k))
        open(path, "wb").write(image)
        j = J.Journal(path, 8192)
        j.load()
        cut(k)
        try:
            seq = j.add("s", data)
            assert k == size, "the whole record fits only in %d bytes" % size
        except PowerCut:
            seq = None
        cut(10 ** 9)
        got = _live(path)
        if seq is None:
            assert got == want, (k, got)
        else:
            assert got == want + [(seq, data)]
        # the next boot writes on, after whatever the cut left
        j2 = J.Journal(path, 8192)
        j2.load()
        s2 = j2.add("e", '{"after": %d}' % k)
        assert _live(path)[-1] == (s2, '{"after": %d}' % k)
        assert _live(path)[:len(want)] == want


def test_power_cut_during_an_acknowledgement_at_every_byte(tmp_path, cut):
    base = str(tmp_path / "base.log")
    before = _fill(base, 8)
    want = [(r[0], r[2]) for r in before.live]
    image = open(base, "rb").read()
    victim = want[1][0]
    size = len(J.encode("a", 0, str(victim)))
    for k in range(size + 1):
        path = str(tmp_path / ("a%d.log" % k))
        open(path, "wb").write(image)
        j = J.Journal(path, 8192)
        j.load()
        cut(k)
        try:
            j.ack([victim])
            done = True
        except PowerCut:
            done = False
        cut(10 ** 9)
        got = _live(path)
        assert got == ([r for r in want if r[0] != victim] if done else want), (k, got)


def test_power_cut_during_a_compaction_at_every_byte(tmp_path, cut):
    """Compaction writes FILE.tmp and renames it over FILE: cut anywhere in
    the .tmp, the old FILE is read back."""
    path = str(tmp_path / "c.log")
    j = _fill(path, 10)
    want = [(r[0], r[2]) for r in j.live]
    image = open(path, "rb").read()
    total = sum(len(J.encode(k, s, d)) for s, k, d in j.live)
    for k in range(total + 1):
        open(path, "wb").write(image)
        if os.path.exists(path + ".tmp"):
            os.remove(path + ".tmp")
        j = J.Journal(path, 8192)
        j.load()
        cut(k)
        try:
            j.dirty = True  # due, as past 1.5 x max_bytes
            j._compact()  # what ack() then does
            assert k == total
        except PowerCut:
            assert os.path.exists(path + ".tmp")
        cut(10 ** 9)
        assert _live(path) == want, k
        assert not os.path.exists(path + ".tmp")  # cleaned up at load


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from("se"), st.integers(0, 120)),
    st.tuples(st.just("ack"), st.integers(0, 30)),
    st.tuples(st.just("boot"))), max_size=60))
def test_any_sequence_keeps_bounds_and_loses_only_what_it_reports(tmp_path_factory, ops):
    """Random adds, acknowledgements and reboots: the journal stays within
    its bounds, reads back what it holds, never drops a session while an
    event could go, and counts (and reports) every record it dropped."""
    path = str(tmp_path_factory.mktemp("h") / "j.log")

    def report(de, ds):
        return '{"type": "journal_full", "e": %d, "s": %d}' % (de, ds)

    def reports(j):
        return [r for r in j.live if "journal_full" in r[2]]

    j = J.Journal(path, 2048, max_records=16, report=report)
    j.load()
    first = j.next_seq  # the first seq of this boot
    lost = 0  # records gone without an acknowledgement, since this boot
    for op in ops:
        before = dict((r[0], r) for r in j.live)
        if op[0] == "add":
            seq = j.add(op[1], '{"pad": "%s"}' % ("x" * op[2]))
            after = dict((r[0], r) for r in j.live)
            gone = [before[s] for s in before if s not in after]
            # a merged report replaces the old one: that is not a loss
            lost += len([r for r in gone if "journal_full" not in r[2]])
            if seq is None:
                lost += 1  # larger than the whole journal
            if [r for r in gone if r[1] == "s"]:
                assert not [r for r in before.values() if r[1] == "e"
                            and "journal_full" not in r[2]], "a session went before an event"
        elif op[0] == "ack":
            if before:
                s = sorted(before)[op[1] % len(before)]
                j.ack([s])
                assert s not in [r[0] for r in j.live]
        else:
            j = J.Journal(path, 2048, max_records=16, report=report)
            j.load()
            first = j.next_seq
            lost = 0
            assert dict((r[0], r) for r in j.live) == before  # the reboot loses nothing
        assert j.dropped_events + j.dropped_sessions == lost
        assert len([r for r in reports(j) if r[0] >= first]) <= (1 if lost else 0)
        assert j.live_bytes <= 2048 and len(j.live) <= 16
        size = os.path.getsize(path) if os.path.exists(path) else 0
        assert size <= 2048 * 3 // 2 + 400, size
        assert [r for r in J.Journal(path, 2048).load()] == list(j.live)
