"""The hardware-side logic that needs no hardware: the CP burst sampler's
plateau detection, the watchdog supervisor, the temperature converters.
Runs under CPython and MicroPython (runner.py)."""
from hw import profile as bp
from hw.cp import CpSampler
from hw.temp import FAULT_DC, LinearSensor, NtcTable
from hw.watchdog import NET_DEAD, NET_STUCK, OK, Supervisor


def _prof():
    return bp.validate({
        "name": "t", "port": "esp32",
        "cp": {"pwm_pin": 26, "adc_pin": 36,
               "divider": {"r_cp": 100000, "r_vref": 22000, "r_gnd": 16000}},
        "contactor": [{"pin": 27, "active": "high"}],
    })


class Wave:
    """A PWM'd CP line read by an ADC every `us` microseconds: returns the
    ESP32 read_uv() value (calibrated, mV resolution)."""

    def __init__(self, prof, hi_mv, lo_mv, duty, us=25, phase_us=0, edge_us=0):
        self.z, self.g = bp.cp_transfer(prof.d["cp"])
        self.hi = hi_mv
        self.lo = lo_mv
        self.duty = duty  # 0.01 %
        self.us = us
        self.t = phase_us
        self.edge = edge_us  # samples this close after an edge read mid-way

    def read(self):
        self.t += self.us
        ph = self.t % 1000
        on = ph * 10000 < self.duty * 1000
        mv = self.hi if on else self.lo
        if self.edge and (ph < self.edge or 0 <= ph - self.duty // 10 < self.edge):
            mv = (self.hi + self.lo) // 2
        return (self.z + mv * (self.g // 10) // 100) // 1000 * 1000


def _sampler(w, n=None):
    s = CpSampler(w.read, 1000, _prof(), size=160)
    if n:
        s.n = n
    return s


def test_steady_levels_average_all_samples():
    p = _prof()
    for mv in (12000, 9000, 0, -12000):
        w = Wave(p, mv, mv, 10000)
        s = _sampler(w, 48)
        s.sample()
        assert s.steady
        assert abs(s.high_mv - mv) <= 15 and s.high_mv == s.low_mv, (mv, s.high_mv)


def test_plateaus_at_every_phase_and_duty():
    p = _prof()
    worst = 0
    for duty in (1000, 2500, 5333, 8500, 9600):  # 6 A .. 80 A
        for phase in range(0, 1000, 37):
            w = Wave(p, 9000, -12000, duty, us=25, phase_us=phase, edge_us=10)
            s = _sampler(w, 48)
            s.sample()
            assert not s.steady
            e = max(abs(s.high_mv - 9000), abs(s.low_mv + 12000))
            worst = max(worst, e)
    assert worst <= 15, worst
    return worst


def test_edge_samples_are_left_out():
    # A sample caught on an edge reads half-way; the plateau mean ignores it.
    p = _prof()
    w = Wave(p, 6000, -12000, 1000, us=25, edge_us=20)
    s = _sampler(w, 48)
    s.sample()
    assert abs(s.high_mv - 6000) <= 15 and abs(s.low_mv + 12000) <= 15, (s.high_mv, s.low_mv)


def test_missing_diode_low_plateau():
    p = _prof()
    w = Wave(p, 6000, -6000, 2500)
    s = _sampler(w, 48)
    s.sample()
    assert abs(s.low_mv + 6000) <= 15


def test_calibrate_sizes_burst_to_cover_period():
    p = _prof()
    clock = [0]

    class R:
        def __init__(self, us):
            self.us = us

        def read(self):
            clock[0] += self.us
            return 1500000

    def ticks_us():
        return clock[0]

    def diff(a, b):
        return a - b

    res = []
    for us in (10, 25, 60):
        s = CpSampler(R(us).read, 1000, p, size=160)
        n = s.calibrate(ticks_us, diff)
        assert n * us >= 1200 and (n - 1) * us < 1200, (us, n)
        res.append(n)
    s = CpSampler(R(5).read, 1000, p, size=100)
    assert s.calibrate(ticks_us, diff) == 100  # capped by the buffer
    return ",".join([str(x) for x in res])


class FakeWdt:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


def _diff(a, b):
    return a - b


class _Net:
    def __init__(self, alive):
        self.alive = alive


def test_supervisor_feeds_after_each_step_and_counts_late_steps():
    w = FakeWdt()
    s = Supervisor(w, _diff, 0, net_stall_ms=1000)
    t = 0
    for _ in range(50):  # no network thread: every completed step feeds
        t += 10
        assert s.check(t, False)
    assert w.feeds == 50 and s.late == 0 and s.max_gap_ms == 10
    t += 150  # one step 150 ms after the last: late (IEC 61851-1: 100 ms)
    assert s.check(t, True)
    t += 100  # 100 ms is on time
    assert s.check(t, True)
    assert (s.late, s.max_gap_ms, w.feeds) == (1, 150, 52)
    return w.feeds


def test_a_stuck_network_thread_resets_only_with_the_contactor_open():
    w = FakeWdt()
    s = Supervisor(w, _diff, 0, net_stall_ms=1000)
    net = _Net(0)
    s.watch(net)
    t = 0
    while t < 5000:  # the network thread shows life every 400 ms
        t += 10
        if t % 400 == 0:
            net.alive = t
        assert s.check(t, False)
    net.alive = t
    fed = w.feeds
    stuck = t  # from here on it shows none
    while t < stuck + 1000:  # up to the limit: still fed
        t += 10
        assert s.check(t, True)
    for _ in range(500):  # beyond it, charging: the reset waits (5 s here)
        t += 10
        assert s.check(t, True) and s.holding
    assert w.feeds == fed + 100 + 500 and s.reason == OK
    t += 10
    assert not s.check(t, False)  # the contactor is open: stop feeding
    assert s.reason == NET_STUCK and w.feeds == fed + 600
    net.alive = t  # too late: feeding never starts again, the reset comes
    for _ in range(10):
        t += 10
        assert not s.check(t, True)
    assert w.feeds == fed + 600
    return w.feeds


def test_a_dead_network_thread_resets_once_the_contactor_is_open():
    w = FakeWdt()
    s = Supervisor(w, _diff, 0)
    net = _Net(0)
    s.watch(net)
    s.net_dead = True
    assert s.check(10, True) and s.holding  # charging: fed
    assert not s.check(20, False) and s.reason == NET_DEAD and w.feeds == 1
    # without a network thread to watch, a dead flag alone still counts
    s2 = Supervisor(FakeWdt(), _diff, 0)
    s2.net_dead = True
    assert not s2.check(10, False)


def test_supervisor_ticks_wrap():
    """ticks_ms wraps at 2**30 on the boards: the stall is measured with
    ticks_diff, across the wrap."""
    period = 1 << 30

    def diff(a, b):
        return ((a - b + (period >> 1)) % period) - (period >> 1)

    w = FakeWdt()
    start = period - 500
    s = Supervisor(w, diff, start, net_stall_ms=1000)
    net = _Net(start)
    s.watch(net)
    assert s.check((start + 900) % period, False)  # 900 ms later, across the wrap
    assert not s.check((start + 1010) % period, False) and s.reason == NET_STUCK


def test_ntc_table():
    t = NtcTable(10000, 3950, 10000, "gnd", 3300)
    # 25 C: NTC = fixed resistor: half of 3.3 V
    assert abs(t.dc(165000) - 250) <= 1
    # 60 C: R = 10k * exp(3950 * (1/333.15 - 1/298.15)) = 2488 ohm
    v = 330000 * 2488 // (2488 + 10000)
    assert abs(t.dc(v) - 600) <= 5, t.dc(v)
    assert t.dc(329900) == FAULT_DC  # open NTC: the rail
    assert t.dc(10) == FAULT_DC  # shorted NTC
    up = NtcTable(10000, 3950, 10000, "vref", 3300)
    assert abs(up.dc(165000) - 250) <= 1
    assert abs(up.dc(330000 - v) - 600) <= 5


def test_linear_sensor():
    s = LinearSensor(500, 10000)  # MCP9700A
    assert s.dc(75000) == 250  # 750 mV
    assert s.dc(120000) == 700
    assert s.dc(0) == FAULT_DC  # missing sensor: 0 V
    assert s.dc(330000) == FAULT_DC
