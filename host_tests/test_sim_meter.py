"""The simulator's virtual Modbus RTU meter (tools/simcore/meter.py): the
firmware's Meter reads it over the virtual UART with the wire time of the
configured line, for every catalogue profile."""
import json
import os
import struct
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from evse import meter, meter_maps
from evse.meter import Meter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "tools") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "tools"))

import sim  # noqa: E402
from simcore import meter as vm  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False))
def test_float32_encoder_matches_ieee(x):
    want = struct.unpack(">I", struct.pack(">f", x))[0]
    # any float32 is an exact fraction m / 2**k
    n, d = x.as_integer_ratio()
    got = vm.f32_bits(n, d)
    if x == 0:
        assert got == 0
    else:
        assert got == want, (x, hex(got), hex(want))


def test_float32_encoder_rounds_fractions_to_nearest_even():
    for n, d in ((1, 3), (2301, 10), (1234567, 1000), (-11040, 1), (16020, 1000), (1, 1000)):
        want = struct.unpack(">I", struct.pack(">f", n / d))[0]
        assert vm.f32_bits(n, d) == want, (n, d)


def _tick_until_good(meter, dev, step=10, limit=10000):
    t = 0
    while meter.good == 0 and t <= limit:
        dev.integrate(step if t else 0, dev.a_ma, dev.phases_now)
        meter.poll(t)
        if meter.good:
            return t
        t += step
    return None


def test_a_poll_takes_its_wire_time():
    # sdm630 at 9600 8N1: one read, 8 bytes out, 153 back. The answer is
    # complete 8 + 153 characters (1042 us each) + 3.5 characters of silence
    # + 2 ms of the meter after the request went out: 173.4 ms -> tick 180.
    dev = vm.MeterDevice("sdm630", 1, 9600, "N")
    dev.set_current(16000)
    m = Meter("sdm630", vm.VirtualUart(dev))
    assert _tick_until_good(m, dev) == 180
    assert (dev.requests, dev.tx_bytes, dev.rx_bytes) == (1, 8, 153)
    assert m.phase_mv == [230000] * 3 and m.phase_ma == [16000] * 3
    assert m.power_w == 11040 and m.energy_wh == vm.START_WH
    # 19200 8E1: (8 + 153) characters of 573 us, 2006 us of silence, 2 ms:
    # 96.3 ms -> tick 100
    dev = vm.MeterDevice("sdm630", 1, 19200, "E")
    m = Meter("sdm630", vm.VirtualUart(dev), baud=19200, parity="E")
    assert _tick_until_good(m, dev) == 100


def test_two_reads_wait_the_inter_frame_silence():
    # abb_b23: energy block (4 registers) then the 22-register block. The
    # first answer is complete after (8 + 13) characters + 5.6 ms = 27.5 ms,
    # seen at tick 30; the second request goes out at the first tick after
    # the 4 ms of silence, 40, and its answer after (8 + 49) characters +
    # 5.6 ms = 65.0 ms more: tick 110.
    dev = vm.MeterDevice("abb_b23", 1, 9600, "N")
    m = Meter("abb_b23", vm.VirtualUart(dev))
    t = _tick_until_good(m, dev)
    assert dev.requests == 2 and dev.rx_bytes == 13 + 49
    assert t == 110, t


def test_offline_device_is_silent_and_the_meter_fails():
    dev = vm.MeterDevice("sdm630")
    dev.online = False
    m = Meter("sdm630", vm.VirtualUart(dev), fail_polls=2)
    t = 0
    while t < 5000:
        dev.integrate(10 if t else 0, 0, 3)
        m.poll(t)
        t += 10
    assert dev.requests >= 4 and dev.answers == 0 and not m.ok


def test_device_answers_like_a_meter():
    dev = vm.MeterDevice("em340", unit=3)
    uart = vm.VirtualUart(dev)
    from evse import modbus as mb

    def ask(req, wait_ms=500):
        uart.write(req)
        dev.integrate(wait_ms, 0, 3)
        buf = bytearray(256)
        return bytes(buf[:uart.readinto(buf, uart.any())])

    req = bytearray(8)
    mb.build_read(req, 3, 3, 0, 2)  # em340 serves input registers (04)
    assert ask(req)[:3] == bytes([3, 0x83, 1])
    mb.build_read(req, 3, 4, 0, 51)  # above its 50-register limit
    assert ask(req)[:3] == bytes([3, 0x84, 3])
    mb.build_read(req, 4, 4, 0, 2)  # another unit: nothing
    assert ask(req) == b""
    mb.build_read(req, 3, 4, 0x0034, 2)
    bad = bytearray(req)
    bad[7] ^= 1
    assert ask(bad) == b""  # bad CRC: nothing
    ans = ask(req)
    assert mb.check_response(ans, len(ans), req) == 9
    assert meter.decode(ans, 3, meter.I32 | meter.LO_FIRST, 100, 1) == vm.START_WH
    mb.build_read(req, 3, 4, 0x0100, 2)  # not in the map: zeros
    assert ask(req)[3:7] == b"\x00\x00\x00\x00"


def _scenario(name, config, events, duration_s):
    return {"name": name, "duration_s": duration_s, "config": config, "events": events}


def _run(doc, tmp_path):
    p = tmp_path / ("%s.json" % doc["name"])
    p.write_text(json.dumps(doc))
    scen = sim.load_scenario(str(p))
    lines = []
    s = sim.run_cpython(scen, lines.append)
    return s, [json.loads(x) for x in lines]


def test_every_profile_charges_in_the_simulator(tmp_path):
    """A 60 s charge at 16 A with each profile: the firmware reads the
    current and the energy through the profile's map on the virtual bus."""
    for p in [meter_maps.load(_n) for _n in meter_maps.NAMES]:
        phases = p["phases"]
        doc = _scenario("p-" + p["id"], {"meter": p["id"], "phases": phases,
                                        "meter_baud": 19200, "meter_parity": "E"},
                        [{"t": 0, "ev": "A"}, {"t": 1, "ev": "B"},
                         {"t": 1, "ev_draw": {"max_a": 16}}, {"t": 3, "ev": "C"},
                         {"t": 63, "ev": "A"}], 66)
        s, rows = _run(doc, tmp_path)
        at30 = [r for r in rows if r["t"] == 30.0][0]
        expect_a = None if p["id"] == "sdm72d" else 16.0
        assert at30["ev_a"] == expect_a and at30["contactor"], (p["id"], at30)
        stop = [e for r in rows for e in r.get("events", ()) if e[0] == "session_stop"]
        wh = stop[0][3]
        exact = 16 * 230 * phases * 60.0 / 3600  # ~60 s of current
        resolution = {"em340": 100, "abb_b23": 10, "orno_we514": 10}.get(p["id"], 1)
        assert exact - 6 - resolution <= wh <= exact + 3 + resolution, (p["id"], wh, exact)
        assert s.device.requests == s.device.answers > 60


def test_quiet_periods_keep_the_poll_rate(tmp_path):
    """In quiet strides the runner still follows each exchange: one poll a
    second, not one every two."""
    doc = _scenario("quiet", {}, [{"t": 0, "ev": "A"}, {"t": 1, "ev": "B"},
                                  {"t": 3, "ev": "C"}], 300)
    s, rows = _run(doc, tmp_path)
    assert 299 <= s.device.requests <= 301, s.device.requests
