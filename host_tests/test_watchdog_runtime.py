"""The watchdog in the board's runtime (hw/system.run_all, hw/watchdog.py),
with real threads, on the fake machine (host_tests/fakes/fakemachine.py):
its WDT counts feeds, it does not reset by itself.

- a control step that hangs stops the feeding at once, whatever the
  network thread does (it goes on showing life);
- a network thread that is stuck (no sign of life) or dead (an exception)
  stops the feeding once the contactor is open, and the board is put in
  its safe state (pilot steady +12 V, contactor open) until the reset;
- a healthy pair of threads feeds after every control step.

The network thread here is a stand-in with the Link's interface to the
runtime (run, close, alive): what is tested is the supervisor's reaction to
it. The real Link under the real runtime is tested in
host_tests/test_micropython_system.py.
"""
import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests", "fakes"))

import fakemachine as fm  # noqa: E402
import evse as ticks  # noqa: E402
from hw import system, watchdog  # noqa: E402

STALL_MS = 300


def make_ctx(tmp_path, config=None):
    """hw.system.build on the fake machine with the esp32-devkitc profile
    (no PE detection: its mains pulses come with the fake clock's sleeps)
    and the real clock (evse's tick functions), as main.py builds it on the board."""
    with open(os.path.join(ROOT, "boards", "esp32-devkitc.json")) as f:
        raw = json.load(f)
    del raw["pe"]
    w = fm.reset_world(raw["port"])
    from hw.profile import cp_transfer

    w.cp_zero_uv, w.cp_uv_per_v = cp_transfer(raw["cp"])
    w.cp_adc_pin = raw["cp"]["adc_pin"]
    w.adc_uv[raw["temp"]["adc_pin"]] = 900000 if raw["temp"]["type"] == "linear" else 1650000
    w.inputs[raw["mirror"]["pin"]] = 1  # active low: the contacts are open
    w.record = False
    cfg = tmp_path / "config.json"
    c = {"rcd_selftest": False, "meter": None}
    c.update(config or {})
    cfg.write_text(json.dumps(c))
    return w, raw, system.build(fm, ticks, raw, str(cfg), str(tmp_path))


def _ctx(tmp_path):
    w, raw, ctx = make_ctx(tmp_path)
    return w, ctx


class Net:
    """The network thread's side: shows life every pass unless `stuck`;
    raises from run() when `crash` is set."""

    def __init__(self, stuck=False, crash=None):
        self.alive = ticks.ticks_ms()
        self.stuck = stuck
        self.crash = crash
        self.passes = 0
        self.closed = False
        self.connects = 0  # the Link's: connections made (evse/ota.py Runner reads it)

    def run(self, sleep_ms, stop, hook=None):
        while not stop():
            if hook is not None:
                hook()
            if self.crash is not None and self.passes == 5:
                raise self.crash
            if not self.stuck:
                self.alive = ticks.ticks_ms()
            self.passes += 1
            sleep_ms(20)

    def close(self):
        self.closed = True


def _run(ctx, net, ticks_n, lines):
    return system.run_all(ctx, net, max_ticks=ticks_n, out=lines.append,
                          net_stall_ms=STALL_MS)


def test_healthy_threads_feed_after_every_step(tmp_path):
    w, ctx = _ctx(tmp_path)
    net = Net()
    lines = []
    n = _run(ctx, net, 60, lines)
    assert n == 60 and w.feeds == 60, (n, w.feeds)
    assert ctx.supervisor.reason == watchdog.OK and net.closed and net.passes > 0
    print("max gap %d ms, late steps %d" % (ctx.supervisor.max_gap_ms, ctx.supervisor.late))


def test_a_hung_control_step_stops_the_feeding_at_once(tmp_path):
    w, ctx = _ctx(tmp_path)
    net = Net()
    gate = threading.Event()
    tick = ctx.app.tick
    done = []

    def hanging(now):
        if ctx.ticks == 20:
            gate.wait(30)  # a driver call that does not return
        return tick(now)

    ctx.app.tick = hanging
    runner = threading.Thread(target=lambda: done.append(_run(ctx, net, 40, [])))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while ctx.ticks < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        passes = net.passes
        time.sleep(0.5)  # 50 ticks' worth of time, hung
        assert w.feeds == 20, w.feeds  # one feed per completed step, none since
        assert net.passes > passes  # the network thread runs on: it cannot feed
    finally:
        gate.set()
        runner.join(30)
    assert done == [40] and w.feeds == 40


def test_a_stuck_network_thread_resets_the_board_with_the_contactor_open(tmp_path):
    w, ctx = _ctx(tmp_path)
    net = Net(stuck=True)
    lines = []
    steps = _run(ctx, net, 100, lines)  # 1 s, three times the stall limit
    sup = ctx.supervisor
    assert sup.reason == watchdog.NET_STUCK, lines
    assert 0 < w.feeds == steps - 1 < 99, (w.feeds, steps)  # fed up to the limit, never after
    assert ("watchdog: network thread stuck; contactor open: the board resets") in lines
    assert ctx.app.out.contactor is False and ctx.app.out.state == "A"
    # safe state until the reset: the pilot steady +12 V (no PWM), contactor open
    assert w.pwm is None or w.pwm.duty in (0, w.pwm_max), w.pwm.duty
    assert w.generator_high()


def test_a_dead_network_thread_is_reported_and_resets_the_board(tmp_path):
    w, ctx = _ctx(tmp_path)
    net = Net(crash=RuntimeError("bug in the link"))
    lines = []
    steps = _run(ctx, net, 60, lines)
    assert steps == w.feeds + 1  # fed after each step but the one that found it dead
    assert any(x.startswith("network thread died: RuntimeError") for x in lines), lines
    assert ctx.supervisor.reason == watchdog.NET_DEAD
    assert w.feeds < 60
    assert "watchdog: network thread died; contactor open: the board resets" in lines
