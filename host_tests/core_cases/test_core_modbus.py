"""Modbus RTU master (evse.modbus): CRC, frames, response checks, timing and
the non-blocking exchange, with hand-written peers (busfake)."""
from busfake import ScriptBus, frame, read_answer

from evse import modbus as mb
from evse import ticks_add


def _bitwise_crc(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _hex(b):
    return "".join(["%02x" % x for x in b])


# ------------------------------------------------------------------- CRC
def test_crc_check_value():
    # The CRC catalogue's check value of CRC-16/MODBUS for "123456789".
    assert mb.crc16(b"123456789", 0, 9) == 0x4B37


def test_crc_table_is_the_polynomial():
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        assert mb._CRC_TABLE[i] == c, i


def test_crc_matches_bitwise_on_frames_and_slices():
    data = bytes([(i * 73 + 11) & 0xFF for i in range(200)])
    for start, end in ((0, 0), (0, 1), (3, 50), (0, 200), (17, 151)):
        assert mb.crc16(data, start, end) == _bitwise_crc(data[start:end])


def test_crc_of_a_published_request():
    # Read input registers 0x0004, 2 registers, unit 1: "01 04 00 04 00 02 30 0A"
    # (meter vendors' protocol examples print this frame).
    buf = bytearray(8)
    assert mb.build_read(buf, 1, 4, 0x0004, 2) == 8
    assert _hex(buf) == "0104000400 02300a".replace(" ", "")
    assert mb.crc_ok(buf, 8)
    buf[7] ^= 1
    assert not mb.crc_ok(buf, 8)
    assert not mb.crc_ok(buf, 3)


# ---------------------------------------------------------------- frames
def test_build_requests():
    buf = bytearray(256)
    mb.build_read(buf, 0x11, 3, 0x5B00, 22)
    assert bytes(buf[:6]) == bytes([0x11, 3, 0x5B, 0, 0, 22]) and mb.crc_ok(buf, 8)


def _refused(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    return False


def test_build_refuses_what_the_protocol_does_not_allow():
    buf = bytearray(256)
    assert _refused(mb.build_read, buf, 1, 4, 0, 0)
    assert _refused(mb.build_read, buf, 1, 4, 0, 126)
    assert _refused(mb.build_read, buf, 0, 4, 0, 1)  # broadcast: no answer to a read
    assert _refused(mb.build_read, buf, 248, 4, 0, 1)
    assert _refused(mb.build_read, buf, 1, 6, 0, 1)
    assert _refused(mb.build_read, buf, 1, 4, 0x10000, 1)


def test_check_response_classifies_every_kind():
    req = bytearray(8)
    mb.build_read(req, 1, 4, 0, 2)
    good = read_answer(1, 4, [0x4366, 0x0000])
    assert mb.check_response(good, len(good), req) == 9
    assert mb.check_response(good + b"\x00\x01", 11, req) == 9  # trailing bytes not read
    assert mb.check_response(good, 8, req) == mb.R_SHORT
    assert mb.check_response(good, 2, req) == mb.R_SHORT
    bad = bytearray(good)
    bad[4] ^= 0x10
    assert mb.check_response(bad, 9, req) == mb.R_CRC
    other = read_answer(2, 4, [0x4366, 0x0000])
    assert mb.check_response(other, 9, req) == mb.R_OTHER
    other_fc = read_answer(1, 3, [0x4366, 0x0000])
    assert mb.check_response(other_fc, 9, req) == mb.R_OTHER
    exc = frame(1, 0x84, 2)
    assert mb.check_response(exc, 5, req) == mb.R_EXCEPTION
    assert mb.check_response(frame(2, 0x84, 2), 5, req) == mb.R_OTHER
    wrong_count = read_answer(1, 4, [1, 2, 3])
    assert mb.check_response(wrong_count, 11, req) == mb.R_FRAME
    assert mb.check_response(frame(0, 4, 2, b"\x00\x00"), 7, req) == mb.R_FRAME
    assert mb.check_response(frame(1, 0x2B, 0), 5, req) == mb.R_FRAME
    assert mb.check_response(frame(1, 4, 0), 5, req) == mb.R_FRAME  # byte count 0


def test_check_response_of_writes_compares_the_echo():
    # the requests written out (the write path is tools/modbus_tools.py's)
    req = frame(5, 6, 0, 0x14, 0, 7)
    assert mb.check_response(req, 8, req) == 8
    assert mb.check_response(frame(5, 6, 0, 0x14, 0, 8), 8, req) == mb.R_FRAME
    req = frame(5, 0x10, 0, 0x14, 0, 2, 4, 0, 1, 0, 2)
    assert mb.check_response(frame(5, 0x10, 0, 0x14, 0, 2), 8, req) == 8
    assert mb.check_response(frame(5, 0x10, 0, 0x14, 0, 3), 8, req) == mb.R_FRAME


def test_register_reads_big_endian_words():
    ans = read_answer(1, 3, [0x1234, 0xABCD])
    assert mb.register(ans, 0) == 0x1234 and mb.register(ans, 1) == 0xABCD


# ---------------------------------------------------------------- timing
def test_character_and_silence_times():
    assert mb.char_bits("N") == 10 and mb.char_bits("E") == 11 and mb.char_bits("O") == 11
    assert mb.char_bits("N", 2) == 11
    assert mb.char_us(9600, 10) == 1042  # 1041.67 us, rounded up
    assert mb.char_us(9600, 11) == 1146
    assert mb.silence_us(9600, 10) == 3646  # 3.5 x 1041.67 us
    assert mb.silence_us(19200, 11) == 2006
    assert mb.silence_us(38400, 10) == 1750  # fixed above 19200 baud
    assert mb.silence_us(115200, 11) == 1750
    m = mb.Master(ScriptBus(), 9600, "N")
    assert m.gap_ms == 4 and m.wire_ms(8) == 9 and m.wire_ms(153) == 160
    m = mb.Master(ScriptBus(), 1200, "E")
    assert m.gap_ms == 33 and m.wire_ms(8) == 74


# -------------------------------------------------------------- exchange
def _run(master, bus, t0=0, step=10, limit=5000):
    """Poll every `step` ms until DONE/FAILED; (result, t) ."""
    t = t0
    while t - t0 <= limit:
        r = master.poll(t)
        if r == mb.DONE or r == mb.FAILED:
            return r, t
        t += step
    return None, t


def test_exchange_reads_registers():
    ans = read_answer(7, 4, [0x4366, 0x8000, 0x0001])
    bus = ScriptBus([ans])
    m = mb.Master(bus)
    assert m.poll(0) == mb.IDLE
    m.start_read(7, 4, 0x0010, 3)
    assert m.busy
    r, t = _run(m, bus)
    assert r == mb.DONE and t == 0  # the answer was there at once
    assert bus.sent == [bytes(m.tx[:8])] and bus.sent[0][:6] == bytes([7, 4, 0, 0x10, 0, 3])
    assert mb.register(m.rx, 0) == 0x4366 and mb.register(m.rx, 2) == 1
    assert m.n_ok == 1 and m.error is None and not m.busy
    assert m.poll(10) == mb.DONE  # stays DONE until the next start


def test_silent_unit_times_out_after_retry():
    bus = ScriptBus()
    m = mb.Master(bus, 9600, "N", retries=1, turnaround_ms=200)
    m.start_read(1, 4, 0, 74)
    r, t = _run(m, bus, step=1)
    # two attempts of (8 + 153 bytes on the wire + 200 ms) plus the silence
    assert r == mb.FAILED and m.error.args[0] == mb.NO_RESPONSE
    assert len(bus.sent) == 2 and m.n_timeout == 2
    assert 2 * 368 <= t <= 2 * 368 + 10, t


def test_exception_response_is_typed_and_not_retried():
    bus = ScriptBus([frame(1, 0x84, 2)])
    m = mb.Master(bus)
    m.start_read(1, 4, 0x9000, 2)
    r, _ = _run(m, bus)
    assert r == mb.FAILED and m.error.args[0] == mb.EXCEPTION
    assert m.error.code == 2 and len(bus.sent) == 1 and m.n_exception == 1


def test_crc_error_is_retried_and_never_yields_a_value():
    good = read_answer(1, 4, [0x1111, 0x2222])
    bad = bytearray(good)
    bad[3] ^= 0xFF
    bus = ScriptBus([bytes(bad), good])
    m = mb.Master(bus)
    m.start_read(1, 4, 0, 2)
    r, _ = _run(m, bus)
    assert r == mb.DONE and m.n_crc == 1 and len(bus.sent) == 2
    assert mb.register(m.rx, 0) == 0x1111
    bus = ScriptBus([bytes(bad), bytes(bad)])
    m = mb.Master(bus)
    m.start_read(1, 4, 0, 2)
    r, _ = _run(m, bus)
    assert r == mb.FAILED and m.error.args[0] == mb.BAD_CRC and m.n_crc == 2


def test_short_frame_fails_at_the_deadline():
    good = read_answer(1, 4, [0x1111, 0x2222])
    bus = ScriptBus([good[:6], good[:7]])
    m = mb.Master(bus)
    m.start_read(1, 4, 0, 2)
    r, t = _run(m, bus)
    assert r == mb.FAILED and m.error.args[0] == mb.BAD_FRAME and m.n_frame == 2
    assert t > 200


def test_frame_of_another_unit_is_skipped_then_the_answer_taken():
    mine = read_answer(1, 4, [0x0102, 0x0304])
    other = read_answer(2, 4, [0xFFFF, 0xFFFF])
    bus = ScriptBus([other + mine])
    m = mb.Master(bus)
    m.start_read(1, 4, 0, 2)
    r, _ = _run(m, bus)
    assert r == mb.DONE and m.n_other == 1 and mb.register(m.rx, 0) == 0x0102


def test_only_another_unit_answering_is_no_answer():
    bus = ScriptBus([read_answer(2, 4, [1, 2]), read_answer(2, 4, [1, 2])])
    m = mb.Master(bus)
    m.start_read(1, 4, 0, 2)
    r, _ = _run(m, bus)
    assert r == mb.FAILED and m.error.args[0] == mb.NO_RESPONSE and m.n_other == 2


def test_a_small_buffer_takes_its_answers_and_refuses_longer_frames():
    # sized for two registers: 5 + 2 * 2 bytes; fit() only ever grows it
    mine = read_answer(1, 4, [0x0102, 0x0304])
    bus = ScriptBus([mine])
    m = mb.Master(bus, rx_size=9)
    m.fit(7)
    assert len(m.rx) == 9
    m.start_read(1, 4, 0, 2)
    r, _ = _run(m, bus)
    assert r == mb.DONE and mb.register(m.rx, 1) == 0x0304
    # another unit's longer answer does not fit: a framing error, then ours
    bus = ScriptBus([read_answer(2, 4, [1, 2, 3]), mine])
    m = mb.Master(bus, rx_size=9)
    m.start_read(1, 4, 0, 2)
    r, _ = _run(m, bus)
    assert r == mb.DONE and m.n_frame == 1 and mb.register(m.rx, 0) == 0x0102
    m.fit(5 + 2 * 3)
    bus = ScriptBus([read_answer(1, 4, [7, 8, 9])])
    m.transport = bus
    m.start_read(1, 4, 0, 3)
    r, _ = _run(m, bus)
    assert r == mb.DONE and len(m.rx) == 11 and mb.register(m.rx, 2) == 9
    m.fit(1000)
    assert len(m.rx) == mb.MAX_ADU


def test_garbage_header_fails_the_attempt():
    bus = ScriptBus([b"\x00\xff\x13\x37", read_answer(1, 4, [5, 6])])
    m = mb.Master(bus)
    m.start_read(1, 4, 0, 2)
    r, _ = _run(m, bus)
    assert r == mb.DONE and m.n_frame == 1 and mb.register(m.rx, 1) == 6


def test_stale_bytes_are_drained_before_a_request():
    bus = ScriptBus([read_answer(1, 4, [9, 9])])
    bus.feed(read_answer(1, 4, [1, 1]))  # a late answer to an earlier request
    m = mb.Master(bus)
    m.start_read(1, 4, 0, 2)
    r, _ = _run(m, bus)
    assert r == mb.DONE and mb.register(m.rx, 0) == 9


def test_inter_frame_silence_before_the_next_request():
    bus = ScriptBus([read_answer(1, 4, [1]), read_answer(1, 4, [2])])
    m = mb.Master(bus, 1200, "N")  # t3.5 = 29.2 ms -> 30 ms
    m.start_read(1, 4, 0, 1)
    assert m.poll(1000) == mb.DONE
    m.start_read(1, 4, 1, 1)
    for t in (1000, 1010, 1029):
        assert m.poll(t) == mb.BUSY and len(bus.sent) == 1, t
    assert m.poll(1030) == mb.DONE and len(bus.sent) == 2


def test_a_transport_that_raises_fails_the_exchange_without_raising():
    for where in ("write", "any", "readinto"):
        bus = ScriptBus([read_answer(1, 4, [1, 2])])
        bus.raise_on = where
        m = mb.Master(bus)
        m.start_read(1, 4, 0, 2)
        r, _ = _run(m, bus)
        assert r == mb.FAILED and m.error.args[0] == mb.TRANSPORT, where
        assert m.n_io >= 1


def test_deadline_across_the_tick_wrap():
    bus = ScriptBus()
    m = mb.Master(bus, turnaround_ms=100)
    start = ticks_add(0, -50)  # 50 ms before the port's wrap
    m.start_read(1, 4, 0, 2)
    assert m.poll(start) == mb.BUSY
    assert m.poll(ticks_add(start, 100)) == mb.BUSY
    r = m.poll(ticks_add(start, 300))  # past the deadline of start + 118
    assert r == mb.BUSY and m.n_timeout == 1 and len(bus.sent) == 1
    m.poll(ticks_add(start, 304))  # after the silence: the retry
    assert len(bus.sent) == 2
