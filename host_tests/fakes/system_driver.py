"""The board's real runtime on the host: firmware/main.py's main() under
MicroPython's unix port, on the fake machine in real time, with the link.

    MICROPYPATH=firmware:host_tests/fakes:build/umqtt-<version> \\
        .venv/bin/micropython host_tests/fakes/system_driver.py ROOT/

ROOT holds board.json, config.json (mqtt_host, or backend "ocpp") and secrets.json, as a
board's flash does. main() runs as on the board: hw.system.run_all with the
control loop in its own thread and the Link (micropython-lib's umqtt.simple,
whichever version MICROPYPATH finds) in this, the main, thread; Wi-Fi is the
host fake `network` (host_tests/fakes/network.py); `ntptime` is absent.

The fake machine runs in real time (fakemachine.RealClock, WORLD.realtime):
an ADC read takes its conversion time and sees the PWM's real phase. A
third thread plays the world around the board, every PLANT_MS:

- the vehicle: the pilot's two plateaus from the circuit of IEC 61851-1
  Annex A (R1 1 kOhm behind +/-12 V; the vehicle's diode, 0.7 V; R3
  2.74 kOhm; S2 closing R2 1.3 kOhm in C, 270 Ohm in D), through the board
  profile's divider to the ADC;
- the contactor: the mirror contact follows the coil outputs;
- the RCD: its trip input follows the test winding (and a residual current);
- the mains: an edge on the PE input every 10 ms (50 Hz half-waves);
- the enclosure temperature: the NTC's voltage from its beta equation.

It takes commands on stdin, one per line, whenever the test sends them:

    ev A|B|C|D     the vehicle: unplugged, plugged in, S2 closed, D (ventilation)
    temp_c X       the enclosure temperature
    rcd 0|1        a residual current (the trip input held)
    gaps LABEL     print the control-step gaps since the last `gaps`, start again
    quit           stop the board: the next control step raises Halt

and writes on stdout:

    @L text                 a line the firmware printed (main's `out`)
    @J kind data            a record the journal took (Journal.add), as written
    @G label steps max_ms over_50ms max_step_ms
    @END {json}             main()'s result, watchdog feeds, resets, steps
"""
import json
import math
import select
import sys
import time

import _thread
import fakemachine as fm

PLANT_MS = 2
MAINS_EDGE_MS = 10
R1 = 1000
R3 = 2740
R2 = {"C": 1300, "D": 270}
DIODE_MV = 700


class Halt(BaseException):
    """Ends the run: raised by the control step once `quit` came."""


def _w(text):
    sys.stdout.write(text + "\n")


def cp_plateaus(state):
    """(high, low) pilot mV of a vehicle in `state` on a +/-12 V generator
    behind R1: the diode passes only the positive half, into R3 (|| R2)."""
    if state == "A":
        return 12000, -12000
    r = R3 if state == "B" else R3 * R2[state] // (R3 + R2[state])
    i_ua = (12000 - DIODE_MV) * 1000 // (R1 + r)  # mV / ohm * 1000 = uA
    return 12000 - R1 * i_ua // 1000, -12000


def divider(cp):
    """(ADC uV at CP 0 V, ADC uV per CP volt) of the profile's CP divider:
    CP through r_cp into the ADC node, r_vref to the reference, r_gnd to
    ground (superposition of the two sources)."""
    if "linear" in cp:
        return cp["linear"]["zero_mv"] * 1000, cp["linear"]["uv_per_v"]
    d = cp["divider"]
    g_cp, g_ref, g_gnd = 1 / d["r_cp"], 1 / d["r_vref"], 1 / d["r_gnd"]
    g = g_cp + g_ref + g_gnd
    return int(d.get("vref_mv", 3300) * 1000 * g_ref / g + 0.5), int(1e6 * g_cp / g + 0.5)


def ntc_uv(t, temp_c):
    """The temperature input's voltage (uV) at temp_c."""
    if t["type"] == "linear":
        return t["mv_at_0c"] * 1000 + t["uv_per_c"] * temp_c
    r = t["r25"] * math.exp(t["beta"] * (1 / (temp_c + 273.15) - 1 / 298.15))
    f = r / (r + t["r_fixed"]) if t["ntc_to"] == "gnd" else t["r_fixed"] / (r + t["r_fixed"])
    return int(t["vref_mv"] * 1000 * f)


def _active(spec, level):
    return (level == 0) if spec.get("active") == "low" else (level == 1)


def _level(spec, on):
    return (0 if on else 1) if spec.get("active") == "low" else (1 if on else 0)


class Plant:
    def __init__(self, w, prof):
        self.w = w
        self.prof = prof
        self.state = "A"
        self.temp_c = 25
        self.residual = False
        self.quit = False
        self.running = True
        self.done = False
        w.cp_zero_uv, w.cp_uv_per_v = divider(prof["cp"])
        w.cp_adc_pin = prof["cp"]["adc_pin"]
        # every input pin the world drives gets its key now: the threads
        # share these dicts, which must not grow while they do (no GIL here)
        self.mirror = prof.get("mirror")
        self.rcd = prof.get("rcd")
        self.pe = prof.get("pe")
        self.coils = prof.get("contactor") or ()
        for spec in (self.mirror, self.rcd, self.pe):
            if spec is not None:
                w.inputs[spec["pin"]] = _level(spec, spec is self.pe)
        for spec in self.coils:
            w.levels.setdefault(spec["pin"], _level(spec, False))
        if self.rcd is not None and self.rcd.get("test"):
            w.levels.setdefault(self.rcd["test"]["pin"], _level(self.rcd["test"], False))
        t = prof.get("temp")
        if t is not None:
            w.adc_uv[t["adc_pin"]] = ntc_uv(t, self.temp_c)
        pp = prof.get("pp")
        if pp is not None:
            w.adc_uv[pp["adc_pin"]] = pp["vref_mv"] * 1000  # no cable resistor: open
        self.apply()

    def apply(self):
        w = self.w
        w.cp_hi_mv, w.cp_lo_mv = cp_plateaus(self.state)
        t = self.prof.get("temp")
        if t is not None:
            w.adc_uv[t["adc_pin"]] = ntc_uv(t, self.temp_c)

    def step(self, mains):
        w = self.w
        closed = any(_active(c, w.levels.get(c["pin"], 0)) for c in self.coils)
        m = self.mirror
        if m is not None:
            w.inputs[m["pin"]] = _level(m, closed)
        r = self.rcd
        if r is not None:
            test = r.get("test")
            trip = self.residual or (test is not None and _active(test, w.levels.get(test["pin"], 0)))
            was = _active(r, w.inputs[r["pin"]])
            w.inputs[r["pin"]] = _level(r, trip)
            if trip and not was:
                h = w.irqs.get(r["pin"])
                if h is not None:
                    h[0](None)
        if mains and self.pe is not None and self.pe.get("mode") == "pulses":
            h = w.irqs.get(self.pe["pin"])
            if h is not None:
                h[0](None)

    def command(self, line):
        parts = line.split()
        if not parts:
            return
        k = parts[0]
        if k == "ev":
            self.state = parts[1]
        elif k == "temp_c":
            self.temp_c = float(parts[1])
        elif k == "rcd":
            self.residual = parts[1] == "1"
        elif k == "gaps":
            GAPS.report(parts[1] if len(parts) > 1 else "-")
        elif k == "quit":
            self.quit = True
        self.apply()

    def run(self):
        poll = select.poll()
        poll.register(sys.stdin, select.POLLIN)
        last = time.ticks_ms()
        buf = ""
        try:
            while self.running:
                for obj, ev in poll.poll(PLANT_MS):
                    if ev & select.POLLIN:
                        c = sys.stdin.read(1)
                        if not c:
                            self.quit = True  # the test went away
                        elif c == "\n":
                            self.command(buf)
                            buf = ""
                        else:
                            buf += c
                    elif ev & (select.POLLHUP | select.POLLERR):
                        self.quit = True
                now = time.ticks_ms()
                mains = time.ticks_diff(now, last) >= MAINS_EDGE_MS
                if mains:
                    last = now
                self.step(mains)
        finally:
            self.done = True


class Gaps:
    """Time between the starts of two control steps (App.tick), in us."""

    def __init__(self):
        self.last = None
        self.reset = False
        self.steps = 0
        self.max_us = 0
        self.over = 0
        self.max_step_us = 0
        self.all_steps = 0
        self.all_max_us = 0

    def tick(self, t):
        if self.reset:
            self.reset = False
            self.steps = self.max_us = self.over = self.max_step_us = 0
        if self.last is not None:
            g = time.ticks_diff(t, self.last)
            if g > self.max_us:
                self.max_us = g
            if g > self.all_max_us:
                self.all_max_us = g
            if g > 50000:
                self.over += 1
        self.last = t
        self.steps += 1
        self.all_steps += 1

    def took(self, us):
        if us > self.max_step_us:
            self.max_step_us = us

    def report(self, label):
        _w("@G %s %d %.1f %d %.1f" % (label, self.steps, self.max_us / 1000, self.over,
                                      self.max_step_us / 1000))
        self.reset = True


GAPS = Gaps()


def _spy():
    """Wrap App.tick (the control step: gaps, and Halt) and Journal.add
    (every record, as the journal took it)."""
    from evse import journal as J
    from evse.app import App

    add = J.Journal.add

    def spied_add(self, kind, data):
        r = add(self, kind, data)
        _w("@J %s %s" % (kind, data))
        return r

    J.Journal.add = spied_add
    tick = App.tick

    def timed_tick(self, now):
        t = time.ticks_us()
        GAPS.tick(t)
        if PLANT.quit:
            raise Halt()
        r = tick(self, now)
        GAPS.took(time.ticks_diff(time.ticks_us(), t))
        return r

    App.tick = timed_tick


def main(root):
    global PLANT
    f = open(root + "board.json")
    try:
        prof = json.loads(f.read())
    finally:
        f.close()
    w = fm.reset_world(prof.get("port", "esp32"))
    w.record = False  # the log is a list: one thread may grow it, and three run
    w.realtime = True
    PLANT = Plant(w, prof)
    _thread.start_new_thread(PLANT.run, ())
    _spy()
    # The test's outages come seconds apart: a link that stays up 1 s ends
    # the run of failures here (30 s on a board), so each reconnect is
    # tried within the first backoff steps.
    from evse import link as _link

    _link.STABLE_MS = 1000
    import main as fw_main  # firmware/main.py

    result = None
    try:
        result = fw_main.main(machine=fm, clock=fm.RealClock(), root=root,
                              out=lambda text: _w("@L " + text))
    except Halt:
        result = "halted"
    except fm.FakeReset:
        result = "reset"
    PLANT.running = False
    for _ in range(100):
        if PLANT.done:
            break
        time.sleep_ms(10)
    _w("@END " + json.dumps({"result": result, "feeds": w.feeds, "resets": w.resets,
                             "steps": GAPS.all_steps, "max_gap_ms": GAPS.all_max_us / 1000}))


PLANT = None
main(sys.argv[1])
