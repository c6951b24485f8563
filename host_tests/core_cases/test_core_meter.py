"""The meter the application polls (evse.meter): one poll through a hand-
written Modbus peer per catalogue profile, the failure policy, poll timing,
and session energy in the App."""
from busfake import ScriptBus, Slave

from evse import config
from evse import modbus as mb
from evse.app import App
from evse.meter import Meter, from_config
from evse import ticks_add


def _f(*pairs):
    """{address: word} from (address, word, word, ...) groups."""
    out = {}
    for p in pairs:
        for i in range(1, len(p)):
            out[p[0] + i - 1] = p[i]
    return out


# Register images in each vendor's encoding, written out by hand, for
# 230.1 / 229.8 / 231.0 V, 16.02 / 15.98 / 16.00 A, 11040 W, 1234.567 kWh
# (or the nearest the meter's resolution gives), and what must come out.
_SDM = _f((0x0000, 0x4366, 0x199A, 0x4365, 0xCCCD, 0x4367, 0x0000),
          (0x0006, 0x4180, 0x28F6, 0x417F, 0xAE14, 0x4180, 0x0000),
          (0x0034, 0x462C, 0x8000), (0x0048, 0x449A, 0x5225))
_V3 = [230100, 229800, 231000]
_A3 = [16020, 15980, 16000]
IMAGES = {
    "sdm630": (4, _SDM, _V3, _A3, 11040, 1234567),
    "sdm72d2": (4, _SDM, _V3, _A3, 11040, 1234567),
    "sdm72d": (4, _f((0x0034, 0x462C, 0x8000), (0x0048, 0x449A, 0x5225)),
               [None] * 3, [None] * 3, 11040, 1234567),
    # single phase, exporting 1234 W, 0.5 kWh imported
    "sdm120": (4, _f((0x0000, 0x4366, 0x199A), (0x0006, 0x4180, 0x28F6),
                     (0x000C, 0xC49A, 0x4000), (0x0048, 0x3F00, 0x0000)),
               [230100, None, None], [16020, None, None], -1234, 500),
    # L3 current not available (all ones), exporting
    "abb_b23": (3, _f((0x5B00, 0, 0x08FD, 0, 0x08FA, 0, 0x0906),
                      (0x5B0C, 0, 0x0642, 0, 0x063E, 0xFFFF, 0xFFFF),
                      (0x5B14, 0xFFEF, 0x2780), (0x5000, 0, 0, 0x0001, 0xE240)),
                _V3, [16020, 15980, None], -11040, 1234560),
    "em340": (4, _f((0x0000, 0x08FD, 0, 0x08FA, 0, 0x0906, 0),
                    (0x000C, 0x3E94, 0, 0x3E6C, 0, 0x3E80, 0),
                    (0x0028, 0xAF40, 0x0001), (0x0034, 0x3039, 0)),
              _V3, _A3, 11040, 1234500),
    "orno_we514": (3, _f((0x0131, 0x59E2), (0x0139, 0, 0x3E94), (0x0140, 0, 0x0E66),
                         (0xA000, 0x0001, 0xE240)),
                   [230100, None, None], [16020, None, None], 3686, 1234560),
    "dtsu666": (3, _f((0x2006, 0x450F, 0xD000, 0x450F, 0xA000, 0x4510, 0x6000),
                      (0x200C, 0x467A, 0x5000, 0x4679, 0xB000, 0x467A, 0x0000),
                      (0x2012, 0x47D7, 0xA000), (0x101E, 0x449A, 0x5225)),
                _V3, _A3, 11040, 1234567),
    "pro380": (3, _f((0x5002, 0x4366, 0x199A, 0x4365, 0xCCCD, 0x4367, 0x0000),
                     (0x500C, 0x4180, 0x28F6, 0x417F, 0xAE14, 0x4180, 0x0000),
                     (0x5012, 0x4130, 0xA3D7), (0x600C, 0x449A, 0x5225)),
               _V3, _A3, 11040, 1234567),
}


def _poll_until_done(m, t0=0, step=10, limit=5000):
    t = t0
    polls = m.polls
    while m.polls == polls and t - t0 <= limit:
        m.poll(t)
        t += step
    return t


def test_one_poll_of_every_profile():
    out = []
    for name in sorted(IMAGES):
        fc, regs, mv, ma, w, wh = IMAGES[name]
        slave = Slave(17, fc, regs)
        m = Meter(name, slave, unit=17)
        assert m.ok and m.energy_wh is None and m.a_ma is None
        _poll_until_done(m)
        assert m.last_good and m.ok, (name, m.error)
        assert m.phase_mv == mv, (name, m.phase_mv)
        assert m.phase_ma == ma, (name, m.phase_ma)
        assert m.power_w == w and m.energy_wh == wh, (name, m.power_w, m.energy_wh)
        present = [abs(a) for a in ma if a is not None]
        assert m.a_ma == (max(present) if present else None), name
        assert slave.requests == len(m.blocks), name
        out.append("%s:%d" % (name, m.energy_wh))
    return " ".join(out)


def test_the_bus_buffer_holds_the_longest_answer_of_the_maps_that_share_it():
    m = Meter("sdm120", ScriptBus())
    longest = max([b[1] for b in m.blocks])
    assert len(m.master.rx) == 5 + 2 * longest < mb.MAX_ADU
    g = Meter("sdm630", None, unit=2, master=m.master)  # a grid meter on the same line
    assert g.master is m.master
    assert len(m.master.rx) == 5 + 2 * max([b[1] for b in g.blocks])
    Meter("sdm120", None, unit=3, master=m.master)  # a shorter map: the buffer stays
    assert len(m.master.rx) == 5 + 2 * max([b[1] for b in g.blocks])


def test_fail_polls_then_recovery():
    fc, regs, mv, ma, w, wh = IMAGES["sdm630"]
    slave = Slave(1, fc, regs)
    m = Meter("sdm630", slave, fail_polls=3, poll_ms=1000)
    _poll_until_done(m, 0)
    assert m.ok and m.energy_wh == wh
    slave.silent = True
    seen = []
    for i in range(4):
        _poll_until_done(m, (i + 1) * 1000)
        seen.append((m.ok, m.fails))
    assert seen == [(True, 1), (True, 2), (False, 3), (False, 4)], seen
    # the last good values stay, App reads them only while ok
    assert m.energy_wh == wh and m.a_ma == 16020
    slave.silent = False
    slave.regs[0x0049] = 0x5A1D  # 1234.8160400 kWh
    _poll_until_done(m, 5000)
    assert m.ok and m.fails == 0 and m.energy_wh == 1234816
    assert m.polls == 6 and m.good == 2


def test_a_failed_block_publishes_nothing():
    fc, regs, mv, ma, w, wh = IMAGES["abb_b23"]
    slave = Slave(1, fc, regs)
    m = Meter("abb_b23", slave)
    _poll_until_done(m)
    assert m.energy_wh == 1234560
    # the second read (currents, voltages) fails: the new energy must not show
    regs = slave.regs
    regs[0x5003] = 0xE241
    answers = []

    class Flaky(Slave):
        def write(self, buf):
            answers.append(buf[2])
            if buf[2] == 0x5B:  # the 0x5B00 block: no answer
                self.requests += 1
                return len(buf)
            return Slave.write(self, buf)

    flaky = Flaky(1, fc, regs)
    m.master.transport = flaky
    _poll_until_done(m, 1000)
    assert not m.last_good and m.energy_wh == 1234560 and m.fails == 1
    assert answers == [0x50, 0x5B, 0x5B]  # energy read, then two tries of the rest
    assert m.error.args[0] == mb.NO_RESPONSE


def test_exception_crc_and_wrong_unit_are_failed_polls():
    fc, regs, mv, ma, w, wh = IMAGES["sdm630"]
    for fault in ("exception", "corrupt", "other_unit"):
        slave = Slave(1, fc, regs)
        if fault == "exception":
            slave.exception = 2
        else:
            setattr(slave, fault, True)
        m = Meter("sdm630", slave, fail_polls=1)
        _poll_until_done(m)
        assert not m.ok and m.energy_wh is None and m.a_ma is None, fault
    assert m.error.args[0] == mb.NO_RESPONSE  # another unit's answer is no answer


def test_nan_energy_is_a_failed_poll():
    fc, regs, mv, ma, w, wh = IMAGES["sdm630"]
    regs = dict(regs)
    regs[0x0048] = 0x7FC0
    m = Meter("sdm630", Slave(1, fc, regs), fail_polls=1)
    _poll_until_done(m)
    assert not m.ok and m.energy_wh is None and m.error is None


def test_polls_start_every_poll_ms_and_never_early():
    fc, regs, mv, ma, w, wh = IMAGES["sdm630"]
    slave = Slave(1, fc, regs)
    m = Meter("sdm630", slave, poll_ms=2000)
    starts = []
    t = 0
    while t <= 9000:
        before = slave.requests
        m.poll(t)
        if slave.requests != before:
            starts.append(t)
        t += 10
    assert starts == [0, 2000, 4000, 6000, 8000], starts
    assert not m.busy


def test_a_slow_poll_is_followed_at_once():
    bus = ScriptBus()  # silent: each poll takes two timeouts
    m = Meter("sdm630", bus, poll_ms=500, fail_polls=2)
    starts = []
    t = 0
    while t <= 3000:
        n = len(bus.sent)
        m.poll(t)
        if len(bus.sent) != n:
            starts.append(t)
        t += 10
    # each attempt times out after 8 + 153 bytes at 9600 baud + 200 ms = 368 ms
    # (seen at the 370 ms tick), then 4 ms of silence: poll 1 at 0, its retry
    # at 380; poll 2 (due since 500) at once after poll 1: 760, its retry 1140
    assert starts[:4] == [0, 380, 760, 1140], starts
    assert not m.ok


def test_poll_never_raises():
    class Hostile:
        def write(self, buf):
            raise RuntimeError("bus on fire")

        def any(self):
            raise MemoryError()

        def readinto(self, buf, n):
            raise ValueError()

    m = Meter("sdm630", Hostile(), fail_polls=2)
    for t in range(0, 3000, 10):
        m.poll(t)
    assert not m.ok and m.polls >= 2

    class Lying(ScriptBus):
        def any(self):
            return 1000  # claims bytes it does not have

    m = Meter("em340", Lying(), fail_polls=1)
    for t in range(0, 3000, 10):
        m.poll(t)
    assert not m.ok


def test_from_config():
    cfg = config.validate({"meter": "em340", "meter_unit": 12, "meter_baud": 19200,
                           "meter_parity": "E", "meter_fail_polls": 5, "meter_poll_s": 2.5})
    m = from_config(cfg, ScriptBus())
    assert m.unit == 12 and m.fail_polls == 5 and m.poll_ms == 2500
    assert m.master.baud == 19200 and m.master.bits == 11 and m.master.gap_ms == 3
    assert m.name == "em340"
    assert from_config(config.validate({"meter": None}), ScriptBus()) is None


class _Board:
    """Pilot, RCD test loop and mirror contact, for the App."""

    def __init__(self):
        self.ev_mv = 12000
        self.contactor = False
        self.rcd_test = False

    def read(self, inp):
        inp.cp_high_mv = self.ev_mv
        inp.cp_low_mv = -12000
        inp.rcd = self.rcd_test
        inp.fb = self.contactor

    def apply(self, out):
        self.contactor = out.contactor
        self.rcd_test = out.rcd_test

    def safe(self):
        self.contactor = False


class _RecApp(App):
    """The App with its finished sessions kept, as the simulator keeps them."""

    def _finished(self, sid, reason, start_wh, stop_wh, energy_wh, status):
        self.records.append({"id": sid, "reason": reason, "meter_start_wh": start_wh,
                             "meter_stop_wh": stop_wh, "energy_wh": energy_wh,
                             "energy_status": status})


def test_session_energy_is_stop_minus_start_reading():
    fc, regs, mv, ma, w, wh = IMAGES["sdm630"]
    slave = Slave(1, fc, regs)
    regs = slave.regs
    cfg = config.validate({"meter": "sdm630"})
    meter = from_config(cfg, slave)
    board = _Board()
    now = 0
    app = _RecApp(board, cfg, now, meter)
    app.records = []

    def run(ms):
        nonlocal now
        for _ in range(ms // 10):
            now = ticks_add(now, 10)
            app.tick(now)

    run(1500)
    board.ev_mv = 9000  # B: session starts, meter reads 1234.567 kWh
    run(1000)
    assert app.out.session == 1 and app.start_wh == 1234567
    board.ev_mv = 6000
    run(3000)
    assert app.out.contactor and app.inp.ev_ma == 16020
    board.ev_mv = 12000  # unplug
    run(100)
    assert not app.out.contactor and app.out.session is None
    # The register moves once more for energy that flowed before the contactor
    # opened: the record waits for a poll that started after the opening.
    regs[0x0048], regs[0x0049] = 0x449A, 0x6CCD  # 1235.4000 kWh
    assert app.records == []
    run(2500)
    rec = app.records[-1]
    assert rec["meter_start_wh"] == 1234567 and rec["meter_stop_wh"] == 1235400
    assert rec["energy_wh"] == 833 and rec["reason"] == "unplugged"
    assert app.energy_wh == 833  # 1235.4000244 kWh - 1234.5670166 kWh


def test_meter_fault_in_the_charger_and_its_clearing():
    fc, regs, mv, ma, w, wh = IMAGES["sdm630"]
    slave = Slave(1, fc, regs)
    cfg = config.validate({"meter": "sdm630", "meter_fail_polls": 2})
    app = App(_Board(), cfg, 0, from_config(cfg, slave))
    now = 0
    for _ in range(150):
        now += 10
        app.tick(now)
    assert app.out.error is None and app.inp.ev_ma == 16020
    slave.silent = True
    t_fault = None
    while now < 10000:
        now += 10
        app.tick(now)
        if app.out.error == "meter":
            t_fault = now
            break
    # the polls at 2.01 s and 3.01 s fail (two 368 ms attempts each)
    assert t_fault == 3760 and app.inp.ev_ma is None, t_fault
    slave.silent = False
    while now < 20000 and app.out.error is not None:
        now += 10
        app.tick(now)
    assert now == 4010 and app.inp.ev_ma == 16020, now
