"""The hardware-side logic that needs no hardware: the CP burst sampler's
plateau detection, the watchdog supervisor, the temperature converters.
Runs under CPython and MicroPython (runner.py)."""
from evse import profile as bp
from hw.cp import CpSampler
from hw.temp import FAULT_DC, LinearSensor, NtcTable
from hw.watchdog import Supervisor


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


def test_supervisor_feeds_only_when_control_step_on_time():
    w = FakeWdt()
    s = Supervisor(w, _diff, max_age_ms=500)
    assert not s.poll(0)  # nothing stamped yet: no feed
    assert w.feeds == 0
    s.stamp(1000)
    assert s.poll(1010) and w.feeds == 1
    assert s.poll(1500) and w.feeds == 2
    assert not s.poll(1501)  # the step is late: withhold
    assert w.feeds == 2 and s.withheld == 2
    s.stamp(1600)
    assert s.poll(1605) and w.feeds == 3


def test_supervisor_hang_stops_feeding_for_good():
    w = FakeWdt()
    s = Supervisor(w, _diff, max_age_ms=500)
    t = 0
    for _ in range(100):  # healthy: a step every 10 ms
        t += 10
        s.stamp(t)
        s.poll(t)
    fed = w.feeds
    for _ in range(300):  # the control step hangs; the poller keeps running
        t += 10
        s.poll(t)
    assert w.feeds - fed == 50  # only while the last stamp was <= 500 ms old
    return w.feeds


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
