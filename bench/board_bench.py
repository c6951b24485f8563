"""The charger's benchmark on a board (MicroPython only).

After deploying the firmware (make deploy BOARD=... PORT=...):

    mpremote connect PORT run bench/board_bench.py

(a board running the charger answers mpremote's interrupt by resetting into
its maintenance boot: run the command again.) It prints `BENCH key value`
lines and a summary:

  heap_import        bytes of heap the firmware's modules take once imported
                     (gc.collect(); gc.mem_alloc() before and after)
  step_median_us,    one control step (Charger.step) in steady C2, timed with
  step_p99_us,       time.ticks_us() around each step, over STEPS steps; the
  step_max_us        clock's own cost (two reads) is subtracted
  step_alloc_bytes   heap allocated over STEPS more steps (goal 0)
  tick_*             with board.json and config.json on the board (a deployed
                     charger): the whole control tick, ctx.step(now) of
                     hw/system (CP burst on the real ADC, meter poll on the
                     real UART, charger step), over TICKS ticks at 10 ms;
                     the outputs are held safe throughout (apply() is not
                     called: no PWM, contactor open), so no vehicle charges
  heap_built         heap in use after building board, meter and App
  mem_info           micropython.mem_info() at the end

bench/bench.py runs the same functions inside the MicroPython WebAssembly
port (with a finer clock there: the port's ticks_us counts whole ms) and
under CPython. Optional arguments (the WebAssembly runner passes them;
mpremote run does not): STEPS [TICKS].
"""
import gc
import sys

import micropython
from micropython import const

STEPS = 10000
TICKS = 500
NBINS = const(4096)  # histogram of step times, in clock units; the last bin: above


class C2:
    """The charger alone, driven by plain attribute stores into steady C2
    (16 A offered, contactor closed, meter answering): as host_tests/mp_alloc.py."""

    def __init__(self):
        from evse import config
        from evse.charger import Charger
        from evse import ticks_add

        self.ticks_add = ticks_add
        self.ch = Charger(config.validate({"max_current_a": 16}), 0)
        inp = self.ch.inp
        inp.meter_ok = True
        inp.ev_ma = 15800
        inp.temp_dc = 350
        self.now = 0
        self.drive(12000, 100)
        self.drive(9000, 100)
        self.drive(6000, 500)
        out = self.ch.out
        if out.state != "C2" or not out.contactor:
            raise RuntimeError("rig not in steady C2: %s" % out.state)
        self.ch.take_events()

    def drive(self, high_mv, n):
        ch = self.ch
        inp = ch.inp
        out = ch.out
        add = self.ticks_add
        now = self.now
        i = 0
        while i < n:
            now = add(now, 10)
            inp.cp_high_mv = high_mv
            inp.rcd = out.rcd_test
            inp.fb = out.contactor
            ch.step(now)
            i += 1
        self.now = now


def percentile(hist, total, p):
    """The value (bin) at percentile p (0..100) of a histogram."""
    want = (total * p + 99) // 100
    if want < 1:
        want = 1
    seen = 0
    for i in range(len(hist)):
        seen += hist[i]
        if seen >= want:
            return i
    return len(hist) - 1


def clock_cost(clock, n=2000):
    """Median cost of reading the clock (two consecutive reads), in its units."""
    from array import array

    hist = array("H", [0] * 256)
    i = 0
    while i < n:
        t0 = clock()
        t1 = clock()
        d = t1 - t0
        hist[d if d < 255 else 255] += 1
        i += 1
    return percentile(hist, n, 50)


def time_steps(rig, n, clock, hist=None):
    """Time n steady-C2 steps with `clock` (integer units); returns
    (histogram, max). Only ch.step(now) is between the two clock reads."""
    from array import array

    if hist is None:
        hist = array("H", [0] * NBINS)
    ch = rig.ch
    inp = ch.inp
    out = ch.out
    add = rig.ticks_add
    now = rig.now
    top = NBINS - 1
    mx = 0
    i = 0
    while i < n:
        now = add(now, 10)
        inp.cp_high_mv = 6000
        inp.rcd = out.rcd_test
        inp.fb = out.contactor
        t0 = clock()
        ch.step(now)
        d = clock() - t0
        if d > mx:
            mx = d
        hist[d if d < top else top] += 1
        i += 1
    rig.now = now
    return hist, mx


def step_stats(rig, n, clock, units_per_us=1, chunk=1000):
    """Median, 99th percentile and max of one step in us (clock cost removed),
    and the clock cost. Timed in chunks with a gc.collect() in between, so
    that a collection never lands inside a timed step on a port whose clock
    allocates (a float per read in the WebAssembly port)."""
    cost = clock_cost(clock)
    hist = None
    mx = 0
    done = 0
    while done < n:
        k = chunk if n - done > chunk else n - done
        gc.collect()
        hist, m = time_steps(rig, k, clock, hist)
        if m > mx:
            mx = m
        done += k
    med = percentile(hist, n, 50) - cost
    p99 = percentile(hist, n, 99) - cost
    return {"median_us": med / units_per_us, "p99_us": p99 / units_per_us,
            "max_us": (mx - cost) / units_per_us, "clock_cost_us": cost / units_per_us,
            "steps": n}


def step_alloc(rig, n):
    """Heap bytes allocated by n steady-C2 steps (after one warm-up pass)."""
    rig.drive(6000, 100)
    gc.collect()
    before = gc.mem_alloc()
    rig.drive(6000, n)
    return gc.mem_alloc() - before


def heap_import():
    """Heap taken by importing the whole firmware (a fresh interpreter)."""
    gc.collect()
    before = gc.mem_alloc()
    from hw import system  # noqa: F401  (imports evse.* and hw.* but main)
    from evse import commands, pilot  # noqa: F401

    gc.collect()
    return gc.mem_alloc() - before


def _board_files():
    try:
        import json

        f = open("board.json")
        raw = json.loads(f.read())
        f.close()
        open("config.json").close()
        return raw
    except (OSError, ValueError):
        return None


def whole_tick(raw, n):
    """On a deployed board: build hw/system as main.py does and time n whole
    control ticks (ctx.step) at 10 ms, outputs held safe."""
    import time

    import machine
    from hw import system

    gc.collect()
    before = gc.mem_alloc()
    ctx = system.build(machine, time, raw, "config.json", "")
    gc.collect()
    built = gc.mem_alloc() - before
    board = ctx.board
    board.safe()
    board.apply = _no_apply  # the outputs stay safe: no PWM, contactor open
    res = {"heap_built": built, "cp_samples": board.cp.n,
           "cp_us_per_sample": board.cp.us_per_sample}
    try:
        from array import array

        hist = array("H", [0] * NBINS)
        mx = 0
        top = NBINS - 1
        nxt = time.ticks_ms()
        k = 0
        a0 = 0
        while k < n + 50:
            if k == 50:  # warm-up done
                gc.collect()
                a0 = gc.mem_alloc()
            now = time.ticks_ms()
            t0 = time.ticks_us()
            ctx.step(now)
            d = time.ticks_diff(time.ticks_us(), t0)
            if k >= 50:
                if d > mx:
                    mx = d
                hist[d if d < top else top] += 1
            nxt = time.ticks_add(nxt, 10)
            w = time.ticks_diff(nxt, time.ticks_ms())
            if w > 0:
                time.sleep_ms(w)
            k += 1
        res["tick_alloc_bytes"] = gc.mem_alloc() - a0
        res["tick_median_us"] = percentile(hist, n, 50)
        res["tick_p99_us"] = percentile(hist, n, 99)
        res["tick_max_us"] = mx
        res["tick_state"] = ctx.app.out.state
    finally:
        board.safe()
    return res


def _no_apply(out):
    pass


def main(steps=STEPS, ticks=TICKS, clock=None, units_per_us=1):
    import time

    res = {"platform": sys.platform,
           "micropython": ".".join([str(x) for x in sys.implementation.version[:3]])}
    try:
        import machine

        res["freq_hz"] = machine.freq()
    except (ImportError, AttributeError):
        pass
    res["heap_import"] = heap_import()
    rig = C2()
    if clock is None:
        clock = time.ticks_us
        res["clock"] = "time.ticks_us"
    st = step_stats(rig, steps, clock, units_per_us)
    for k in st:
        res["step_" + k] = st[k]
    res["step_alloc_bytes"] = step_alloc(rig, steps)
    raw = _board_files()
    if raw is not None and ticks:
        res.update(whole_tick(raw, ticks))
    gc.collect()
    res["heap_in_use"] = gc.mem_alloc()
    res["heap_free"] = gc.mem_free()
    for k in sorted(res):
        v = res[k]
        if isinstance(v, float):
            v = "%.2f" % v
        print("BENCH %s %s" % (k, v))
    micropython.mem_info()
    return res


if __name__ == "__main__":
    argv = getattr(sys, "argv", [])
    main(int(argv[1]) if len(argv) > 1 else STEPS, int(argv[2]) if len(argv) > 2 else TICKS)
