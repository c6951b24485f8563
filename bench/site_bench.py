#!/usr/bin/env python3
"""The site-energy benchmark's scenarios and their physics (bench/bench.py
--only site; docs/benchmarks.md, "site").

    .venv/bin/python bench/site_bench.py --write-day FILE [--quick]
    .venv/bin/python bench/site_bench.py --write-steps FILE [--quick]
    .venv/bin/python bench/site_bench.py [--quick]      (both runs, the figures as JSON)

Two scenarios, generated here deterministically (no table of invented
numbers; the same output on every run and every machine):

- pv_day(): a clear-sky PV day from 06:00 to 20:00 (virtual t = 0 is
  06:00) of a ~10 kWp roof on a three-phase inverter (PV_PEAK_W AC at
  solar noon), a base load per phase, a few appliances switched on and off,
  and clouds from a seeded generator (short ones of tens of seconds, a few
  long ones of tens of minutes, each edge a short ramp). The charger runs in
  `solar` mode with the default solar timers, a vehicle that takes up to
  16 A on three phases is plugged in all day.
- smart_steps(): `smart` mode at the 25 A fuse, the vehicle charging at 16 A
  on a 5 A house, then house load steps on one phase that leave 13, 10, 7
  and 3 A of room (the last one pauses the charger), each at a different
  fraction of a second so that the steps fall on every part of the meters'
  1 s poll cycle.

Both run through tools/sim.py's run_cpython (the firmware in virtual time:
deterministic, no machine noise); solar() and smart() read the trace back
against the house the scenario applied.
"""
import json
import math
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in reversed((os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "host"),
                    os.path.join(ROOT, "tools"))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

VOLTS = 230  # the virtual meters' voltage per phase
MIN_A = 6  # the least the PWM offers, per phase
PHASES = 3

# ------------------------------------------------------------ the PV day
DAY_START_H = 6.0  # virtual t = 0
DAY_END_H = 20.0
SUNRISE_H = 5.5  # a summer day in central Europe (CEST): solar noon at 13:15
SUNSET_H = 21.0
PV_PEAK_W = 8000  # AC at solar noon, clear sky: ~10 kWp at a performance ratio of ~0.8
PV_SHAPE = 1.3  # clear sky ~ sin(elevation-ish)^1.3: a bell, flatter than a sine
CLOUD_FACTOR = (0.2, 0.4)  # a cloud leaves this fraction of the clear-sky power (diffuse)
RAMP_S = 6  # a cloud's edge crosses the roof in this long (events every 2 s)
GRID_S = 60  # the clear-sky curve and the base load: a `site` event a minute
SEED = 14
BASE_W = (150, 120, 130)  # fridge, router, standby: per phase L1..L3
# (on at h, off at h, W on L1, L2, L3)
APPLIANCES = (
    (7.00, 7.08, (2000, 0, 0)),  # kettle
    (7.50, 7.75, (0, 1200, 0)),  # coffee machine, toaster
    (10.00, 10.33, (0, 2000, 0)),  # washing machine: heating
    (10.33, 11.50, (0, 300, 0)),  # ... washing, spinning
    (12.00, 12.67, (1800, 0, 1800)),  # cooktop, two zones
    (13.50, 14.00, (0, 0, 2000)),  # dishwasher: heating
    (14.00, 14.75, (0, 0, 150)),  # ... rest of the programme
    (15.00, 17.00, (500, 500, 500)),  # heat pump, hot water (three-phase)
    (18.50, 19.17, (2500, 0, 0)),  # oven
)
VEHICLE_MAX_A = 16  # per phase; the charger's max_current_a too


def clear_sky_w(h):
    """PV AC power (W, all phases) at hour h, clear sky."""
    x = (h - SUNRISE_H) / (SUNSET_H - SUNRISE_H)
    if x <= 0 or x >= 1:
        return 0.0
    return PV_PEAK_W * math.sin(math.pi * x) ** PV_SHAPE


def clouds(seed=SEED):
    """[(start h, end h, factor)], not overlapping: 12 short clouds (20-120 s)
    between 09:00 and 17:30, 3 long ones (15-40 min), one in each of the
    late morning, early afternoon and late afternoon."""
    rnd = random.Random(seed)
    out = []

    def place(lo_h, hi_h, lo_s, hi_s):
        for _ in range(100):
            d = rnd.uniform(lo_s, hi_s) / 3600.0
            s = rnd.uniform(lo_h, hi_h - d)
            f = rnd.uniform(*CLOUD_FACTOR)
            gap = 300 / 3600.0  # at least 5 min of sun between two clouds
            if all(s + d + gap < a or s > b + gap for a, b, _ in out):
                out.append((round(s * 3600) / 3600.0, round((s + d) * 3600) / 3600.0,
                            round(f, 3)))
                return

    for lo, hi in ((10.5, 12.0), (13.0, 15.0), (16.0, 17.5)):
        place(lo, hi, 15 * 60, 40 * 60)
    for _ in range(12):
        place(9.0, 17.5, 20, 120)
    return sorted(out)


def _sun_factor(h, cl):
    """The fraction of the clear-sky power that reaches the roof at h."""
    r = RAMP_S / 3600.0
    f = 1.0
    for a, b, k in cl:
        if a <= h <= b + r:
            if h < a + r:
                x = (h - a) / r  # shade coming in
            elif h <= b:
                x = 1.0
            else:
                x = 1.0 - (h - b) / r  # going
            f = min(f, 1.0 - (1.0 - k) * x)
    return f


def house_a(t_s, cl):
    """The house per phase at virtual second t_s (A, signed: negative is
    export): the loads less the PV inverter's output, spread evenly over
    the three phases, rounded to 0.01 A (the scenario's resolution)."""
    h = DAY_START_H + t_s / 3600.0
    load = list(BASE_W)
    for on, off, w in APPLIANCES:
        if on <= h < off:
            for i in range(3):
                load[i] += w[i]
    pv = clear_sky_w(h) * _sun_factor(h, cl)
    return [round((load[i] - pv / 3) / VOLTS, 2) for i in range(3)]


def pv_day(quick=False):
    """The PV-day scenario (a dict in the scenario format). quick: 11:00 to
    12:30 only (the tests)."""
    cl = clouds()
    t0 = 0
    dur = int((DAY_END_H - DAY_START_H) * 3600)
    if quick:
        t0 = int((11.0 - DAY_START_H) * 3600)
        dur = int(1.5 * 3600)
    times = set(range(0, dur + 1, GRID_S))
    for on, off, _ in APPLIANCES:
        for h in (on, off):
            times.add(int(round((h - DAY_START_H) * 3600)) - t0)
    for a, b, _ in cl:
        for h in (a, b):
            s = int(round((h - DAY_START_H) * 3600)) - t0
            times.update(range(s, s + RAMP_S + 1, 2))
    events = []
    last = None
    for t in sorted(x for x in times if 0 <= x <= dur):
        v = house_a(t + t0, cl)
        if v != last:
            events.append({"t": t, "site": {"house_a": v}})
            last = v
    events[1:1] = [{"t": 1, "ev_draw": {"max_a": VEHICLE_MAX_A}}, {"t": 1, "ev": "B"},
                   {"t": 2, "ev": "C"}]
    events.sort(key=lambda e: e["t"])  # stable: the vehicle after the t = 0 house
    return {
        "name": "bench-site-pv-day%s" % ("-quick" if quick else ""),
        "description": "generated by bench/site_bench.py (pv_day): a %g kW (AC) PV day "
                       "%02d:00-%02d:00 with appliance steps and clouds (seed %d); the vehicle "
                       "plugged in all day, solar mode with the default timers"
                       % (PV_PEAK_W / 1000.0, DAY_START_H + t0 / 3600.0,
                          DAY_START_H + (t0 + dur) / 3600.0, SEED),
        "duration_s": dur,
        "config": {"mode": "solar", "grid_meter": "sdm630", "max_current_a": VEHICLE_MAX_A,
                   "phases": PHASES},
        "events": events,
    }


# ---------------------------------------------------------- smart steps
MAINS_A = 25
BASE_A = 5
CYCLE_S = 120  # a step, the house back to base after STEP_HOLD_S, time to recover
STEP_HOLD_S = 40
STEP_ROOM_A = (13, 10, 7, 3)  # the room each step leaves (3: below 6 A, a pause)
FRACTIONS = 10  # steps at +0.0, +0.1, ... +0.9 s of a whole second


def smart_steps(quick=False):
    """Smart mode: (room, fraction) steps, one per CYCLE_S, rotating over
    the phases. quick: one fraction per room."""
    steps = []
    k = 0
    for room in STEP_ROOM_A:
        for j in range(1 if quick else FRACTIONS):
            frac = (j * 3 % FRACTIONS) / float(FRACTIONS) if not quick else (k % 4) * 0.25
            steps.append((room, round(frac, 2), k % 3))
            k += 1
    events = [{"t": 0, "site": {"house_a": [BASE_A] * 3}},
              {"t": 1, "ev_draw": {"max_a": VEHICLE_MAX_A}}, {"t": 1, "ev": "B"},
              {"t": 2, "ev": "C"}]
    marks = []
    for n, (room, frac, ph) in enumerate(steps):
        t = 60 + n * CYCLE_S + frac
        h = [BASE_A] * 3
        h[ph] = MAINS_A - room
        events.append({"t": t, "site": {"house_a": h}})
        events.append({"t": t + STEP_HOLD_S, "site": {"house_a": [BASE_A] * 3}})
        marks.append({"t": t, "room_a": room, "phase": ph, "frac_s": frac})
    dur = 60 + len(steps) * CYCLE_S
    return {
        "name": "bench-site-smart-steps%s" % ("-quick" if quick else ""),
        "description": "generated by bench/site_bench.py (smart_steps): house steps on one "
                       "phase leaving %s A of room under the %d A fuse, at fractions of a "
                       "second" % ("/".join(str(r) for r in STEP_ROOM_A), MAINS_A),
        "duration_s": dur,
        "config": {"mode": "smart", "mains_max_a": MAINS_A, "grid_meter": "sdm630",
                   "max_current_a": VEHICLE_MAX_A, "phases": PHASES},
        "events": events,
    }, marks


# ------------------------------------------------------------- running
def run(raw):
    """Run a scenario dict through tools/sim.py's run_cpython; the trace rows."""
    import sim
    from simcore import scenario

    scen = scenario.load(json.dumps(raw))
    rows = []
    sim.run_cpython(scen, lambda text: rows.append(json.loads(text)))
    return rows


def _house_steps(raw):
    """[(t s, [A per phase])] of the scenario's site events."""
    return [(e["t"], e["site"]["house_a"]) for e in raw["events"] if "site" in e]


def ideal_kwh(raw, vmax=VEHICLE_MAX_A, mains=MAINS_A):
    """The ideal: what the vehicle could have taken from the surplus alone.
    With the house piecewise constant (its `site` events), the surplus per
    phase s = -(h1 + h2 + h3) / 3 (A: the export summed over the phases, as a
    bidirectional meter nets it, shared by the three phases), and the ideal
    integrates P = 3 x 230 V x min(s, vmax, room) where s >= 6 A, else 0
    (room: the fuse's mains_max_a less the busiest phase; it never binds
    while the site exports)."""
    steps = _house_steps(raw)
    dur = raw["duration_s"]
    wh = 0.0
    for k, (t, h) in enumerate(steps):
        t1 = steps[k + 1][0] if k + 1 < len(steps) else dur
        s = -sum(h) / 3.0
        if s >= MIN_A:
            a = min(s, vmax, mains - max(h))
            wh += PHASES * VOLTS * a * (t1 - t) / 3600.0
    return wh / 1000.0


def solar(raw, rows):
    """The PV day's figures from its trace.

    Between two trace lines (one at every change and at least once per
    virtual second) the vehicle's current per phase is grid_a - house (the
    virtual grid meter reads house plus charger). Per interval, with
    P_ev = 230 V x the vehicle's current summed over the phases and
    S = 230 V x the export without the charger (0 when the house imports):
    from PV min(P_ev, S), from the grid the rest (the import the charging
    caused at a meter that nets the phases, as the firmware's surplus does).
    Achieved: the PV energy the vehicle took while the surplus allowed 6 A
    per phase, the part the ideal counts: at every instant
    min(P_ev, S) <= min(3 x 230 x vmax, S), so achieved <= ideal.
    import_per_phase: the import the charging added at a meter that bills
    each phase's import on its own (sum over the phases of max(0, g) -
    max(0, h)), for comparison.
    """
    steps = _house_steps(raw)
    k = 0
    e = {"charged": 0.0, "pv": 0.0, "grid": 0.0, "achieved": 0.0, "pv_below6": 0.0,
         "lost_open": 0.0, "lost_running": 0.0, "per_phase": 0.0}
    ideal_rate = 0.0
    closings = 0
    closed = False
    runs = []
    for n, d in enumerate(rows):
        t = d["t"]
        while k + 1 < len(steps) and steps[k + 1][0] <= t + 1e-9:
            k += 1
        h = steps[k][1]
        if d["contactor"] and not closed:
            closings += 1
            runs.append([t, None])
        elif closed and not d["contactor"]:
            runs[-1][1] = t
        closed = d["contactor"]
        if n + 1 == len(rows):
            break
        dt = rows[n + 1]["t"] - t
        g = d.get("grid_a") or [0, 0, 0]
        ev = sum(max(0.0, g[i] - h[i]) for i in range(PHASES))  # A summed over the phases
        p_ev = VOLTS * ev
        s_a = max(0.0, -sum(h))
        s_w = VOLTS * s_a
        pv = min(p_ev, s_w)
        e["charged"] += p_ev * dt
        e["pv"] += pv * dt
        e["grid"] += (p_ev - pv) * dt
        e["per_phase"] += VOLTS * sum(max(0.0, g[i]) - max(0.0, h[i])
                                      for i in range(PHASES)) * dt
        per = s_a / PHASES
        if per >= MIN_A:
            ideal_rate = PHASES * VOLTS * min(per, VEHICLE_MAX_A, MAINS_A - max(h))
            e["achieved"] += pv * dt
            if d["contactor"]:
                e["lost_running"] += (ideal_rate - pv) * dt
            else:
                e["lost_open"] += (ideal_rate - pv) * dt
        else:
            e["pv_below6"] += pv * dt
    kwh = dict((key, v / 3600.0 / 1000.0) for key, v in e.items())
    ideal = ideal_kwh(raw)
    hours = raw["duration_s"] / 3600.0
    last = rows[-1]
    return {
        "charged_kwh": kwh["charged"], "from_pv_kwh": kwh["pv"], "from_grid_kwh": kwh["grid"],
        "ideal_kwh": ideal, "achieved_kwh": kwh["achieved"],
        "achieved_pct": 100.0 * kwh["achieved"] / ideal if ideal else None,
        "pv_below6_kwh": kwh["pv_below6"], "lost_open_kwh": kwh["lost_open"],
        "lost_running_kwh": kwh["lost_running"], "closings": closings,
        "import_per_phase_kwh": kwh["per_phase"],
        "closings_per_h": closings / hours, "runs_s": runs,
        "session_energy_wh": last.get("energy_wh"), "hours": hours,
        "surplus_kwh": sum(max(0.0, -sum(h)) * VOLTS * ((steps[j + 1][0] if j + 1 < len(steps)
                                                         else raw["duration_s"]) - t)
                           for j, (t, h) in enumerate(steps)) / 3.6e6,
    }


def smart(raw, rows, marks, tol=0.05):
    """For each step: from the step to (a) the first trace line with an
    offer below the one before the step, (b) the first line with the
    stepped phase of the grid meter at or below mains_max_a (+ tol: the
    trace's 0.01 A and the PWM's duty steps). In virtual seconds."""
    out = []
    for m in marks:
        t = m["t"] / 1.0
        before = [d for d in rows if d["t"] < t - 1e-9]
        prev = before[-1]
        if prev["offer_a"] < VEHICLE_MAX_A - 0.1 or not prev["contactor"]:
            raise ValueError("step at %s: the charger was not back at %d A (%s)"
                             % (t, VEHICLE_MAX_A, prev))
        after = [d for d in rows if t - 1e-9 <= d["t"] <= t + STEP_HOLD_S]
        ph = m["phase"]
        if after[0]["grid_a"][ph] <= MAINS_A + tol:
            raise ValueError("step at %s does not put L%d above the fuse: %s"
                             % (t, ph + 1, after[0]))
        lowered = next((d["t"] for d in after if d["offer_a"] < prev["offer_a"]), None)
        back = next((d["t"] for d in after if d["grid_a"][ph] <= MAINS_A + tol), None)
        if lowered is None or back is None:
            raise ValueError("step at %s: no answer within %d s" % (t, STEP_HOLD_S))
        stays = all(d["grid_a"][ph] <= MAINS_A + tol for d in after if d["t"] >= back)
        out.append(dict(m, offer_s=round(lowered - t, 3), grid_s=round(back - t, 3),
                        stays=stays, paused=any(not d["contactor"] for d in after)))
    return out


def percentile(xs, q):
    """The q-quantile (0..1), nearest rank, of a non-empty list."""
    ys = sorted(xs)
    return ys[min(len(ys) - 1, max(0, int(math.ceil(q * len(ys))) - 1))]


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write-day", metavar="FILE")
    ap.add_argument("--write-steps", metavar="FILE")
    a = ap.parse_args(argv)
    if a.write_day or a.write_steps:
        for path, raw in ((a.write_day, lambda: pv_day(a.quick)),
                          (a.write_steps, lambda: smart_steps(a.quick)[0])):
            if path:
                with open(path, "w") as f:
                    json.dump(raw(), f, indent=1)
                    f.write("\n")
        return 0
    day = pv_day(a.quick)
    res = solar(day, run(day))
    res.pop("runs_s")
    raw, marks = smart_steps(a.quick)
    res["steps"] = smart(raw, run(raw), marks)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
