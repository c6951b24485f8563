#!/usr/bin/env python3
"""Bench check of a real charger over MQTT (issue 6, "Bench tool").

    tools/bench_check.py --broker HOST:PORT --device ID [--prefix evse] --report DIR [--sim]

Follows `P/ID/status` and `P/ID/event` and walks the operator through an
IEC 61851-1 sequence with a vehicle simulator box: A, B, C, B, A; a diode
fault while charging; a CP short. Before each step it says what to do and
waits for Enter; then it waits (up to --step-timeout) for the charger's
expected reaction in the status payloads and measures the reaction time
from the moment Enter was pressed. It writes DIR/report.md (each step:
instruction, expectation, measured time, PASS/FAIL) and DIR/timeline.png.

With --sim it builds a scenario with the same steps at fixed times, runs
tools/sim.py --realtime --broker against the broker (the firmware's real
MQTT link) and follows it exactly as it follows a real charger: the only
difference is who switches the vehicle and when (the scenario's event
times, on the simulator's clock, instead of the operator's Enter).

Timing resolution: the status carries no millisecond time stamp
(`uptime_s` is whole seconds), so a reaction is timed by the arrival of
the first status that shows it. The firmware publishes a change at most
every 500 ms (the last change always follows), so the arrival is late by
up to 0.5 s plus the network's latency, never early: a measured time is an
upper bound of the true one, and a limit below 0.5 s cannot be shown from
MQTT alone. For such limits (contactor open within 100 ms after C->B,
Table A.6 seq. 8.1; E within 100 ms) the tool checks what it can: the
contactor is already open in the first status that shows the new state
(the firmware opens it in the control step that sees the change), and the
time is within the limit plus the 0.5 s status granularity.

Exit 0 when every step passes, 1 otherwise (also: broker not reachable,
no status from the device); errors are one line on stderr.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "tools", "sim.py")

STATUS_GRANULARITY_S = 0.5   # docs/mqtt.md: status changes at most every 500 ms
LATENCY_ALLOWANCE_S = 0.2    # broker and network, on the bench's LAN
STATES = ["A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F"]


class BenchError(Exception):
    """A one-line error for the operator."""


# ------------------------------------------------------------------ steps
def _st(d, *states):
    return d.get("state") in states


def step(key, instruction, expect, match, limit_s, clause, sim, dwell_s=2.0, already_ok=False,
         fault=None, same_status=None):
    """One step of the sequence.

    match(status) -> bool: the expected reaction; limit_s: the limit the
    reaction must meet (clause: where it comes from); sim: the scenario
    events that perform the step in --sim; dwell_s: --sim time until the
    next step; already_ok: a status that already matches before the step
    counts (the baseline: nothing changes, so nothing is published);
    fault: a fault code whose `fault` event must arrive; same_status(first)
    -> (ok, text): a check on the first status after the step that shows a
    new state."""
    return dict(key=key, instruction=instruction, expect=expect, match=match, limit_s=limit_s,
                clause=clause, sim=sim, dwell_s=dwell_s, already_ok=already_ok, fault=fault,
                same_status=same_status)


def _open_with_new_state(first):
    if first is None:
        return False, "no status with a new state"
    if first.get("contactor"):
        return False, "contactor still closed in the first status with state %s" % first["state"]
    return True, "contactor open in the first status with state %s" % first["state"]


def steps():
    idle = lambda d: _st(d, "A") and not d.get("contactor") and d.get("error") is None  # noqa
    b2 = lambda d: _st(d, "B2") and not d.get("contactor") and d.get("error") is None  # noqa
    c2 = lambda d: _st(d, "C2") and d.get("contactor") is True  # noqa
    return [
        step("A", "Set the vehicle simulator to A (unplugged), diode in, no CP short.",
             "state A, contactor open, no error", idle, 1.0, "baseline",
             [{"ev": "A"}, {"ev_diode": True}, {"cp_short": False}], already_ok=True),
        step("A->B", "Set the vehicle simulator to B (vehicle connected).",
             "state B2 (PWM on, offer > 0), contactor open", lambda d: b2(d) and
             (d.get("offer_a") or 0) > 0, 2.0, "bench limit (B1->B2 on connection)",
             [{"ev": "B"}, {"ev_draw": {"max_a": 16}}], dwell_s=2.5),
        step("B->C", "Set the vehicle simulator to C (vehicle ready to charge, S2 closed).",
             "state C2, contactor closed", c2, 3.0, "IEC 61851-1 Table A.6 seq. 4",
             [{"ev": "C"}], dwell_s=3.5),
        step("C->B", "Set the vehicle simulator back to B (S2 open).",
             "state B2, contactor open", b2, 0.1, "IEC 61851-1 Table A.6 seq. 8.1",
             [{"ev": "B"}], same_status=_open_with_new_state),
        step("B->A", "Set the vehicle simulator to A (unplugged).",
             "state A, contactor open, duty 100 % (steady +12 V)",
             lambda d: idle(d) and d.get("duty") == 100.0, 1.0, "bench limit (seq. 2.1 unplug)",
             [{"ev": "A"}]),
        step("A->B (2)", "Set the vehicle simulator to B again.",
             "state B2, contactor open", b2, 2.0, "bench limit", [{"ev": "B"}], dwell_s=2.5),
        step("B->C (2)", "Set the vehicle simulator to C.",
             "state C2, contactor closed", c2, 3.0, "IEC 61851-1 Table A.6 seq. 4",
             [{"ev": "C"}], dwell_s=3.5),
        step("diode fault", "Switch the simulator's diode fault on (pilot diode shorted/missing).",
             "error `diode`, contactor open, `fault` event `diode`",
             lambda d: d.get("error") == "diode" and not d.get("contactor"), 0.1,
             "IEC 61851-1 diode check (state F reaction, contactor open)",
             [{"ev_diode": False}], fault="diode", same_status=_open_with_new_state),
        step("unplug", "Switch the diode fault off and set the simulator to A (unplugged).",
             "state A, error cleared", idle, 1.0, "bench limit (diode error latches until A)",
             [{"ev_diode": True}, {"ev": "A"}]),
        step("A->B (3)", "Set the vehicle simulator to B.",
             "state B2, contactor open", b2, 2.0, "bench limit", [{"ev": "B"}], dwell_s=2.5),
        step("CP short", "Short CP to PE on the simulator.",
             "state E, error `cp_short`, contactor open, `fault` event `cp_short`",
             lambda d: _st(d, "E") and d.get("error") == "cp_short" and not d.get("contactor"),
             0.1, "IEC 61851-1 state E (contactor open within 100 ms)",
             [{"cp_short": True}], fault="cp_short", same_status=_open_with_new_state),
        step("short off", "Remove the CP short.",
             "state B2, error cleared", b2, 2.0, "bench limit (recovery from E)",
             [{"cp_short": False}], dwell_s=2.5),
        step("end", "Set the vehicle simulator to A (unplugged). Done.",
             "state A, contactor open", idle, 1.0, "bench limit", [{"ev": "A"}]),
    ]


def bound(st):
    """The largest measured time that passes: the limit plus what MQTT
    cannot resolve."""
    return st["limit_s"] + STATUS_GRANULARITY_S + LATENCY_ALLOWANCE_S


# ------------------------------------------------------------------- MQTT
class Follower:
    """Records every status and event of one device with its arrival time
    (time.monotonic())."""

    def __init__(self, host, port, prefix, device, user=None, password=None):
        import paho.mqtt.client as paho
        self.base = "%s/%s/" % (prefix, device)
        self.cond = threading.Condition()
        self.status = []   # (t, dict, retained)
        self.events = []   # (t, dict)
        self.online = None
        self.subscribed = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                             client_id="bench-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000),
                             protocol=paho.MQTTv311)
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        try:
            self.c.connect(host, port, keepalive=30)
        except (OSError, ValueError) as e:
            raise BenchError("cannot reach the broker at %s:%d: %s" % (
                host, port, getattr(e, "strerror", None) or e))
        self.c.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise BenchError("the broker at %s:%d did not accept the connection within 10 s"
                             % (host, port))

    def _on_connect(self, c, u, flags, rc, props=None):
        if rc != 0:
            return
        c.subscribe([(self.base + "status", 0), (self.base + "event", 1),
                     (self.base + "online", 1)])

    def _on_message(self, c, u, m):
        now = time.monotonic()
        text = m.payload.decode("utf-8", "replace")
        what = m.topic[len(self.base):]
        with self.cond:
            if what == "online":
                self.online = text
            else:
                try:
                    d = json.loads(text)
                except ValueError:
                    return
                if not isinstance(d, dict):
                    return
                if what == "status":
                    self.status.append((now, d, bool(m.retain)))
                elif what == "event":
                    self.events.append((now, d))
            self.cond.notify_all()

    def live_status(self):
        """True once a status from a running device came: one published
        while we listen, or the retained one while the device is online."""
        with self.cond:
            return any(not r for _, _, r in self.status) or (
                self.online == "online" and bool(self.status))

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.05))

    def close(self):
        self.c.loop_stop()
        try:
            self.c.disconnect()
        except Exception:
            pass


def measure(fol, st, t_act, t_end):
    """Wait until t_end for the step's reaction; returns a result dict."""
    def find():
        with fol.cond:
            before = [d for t, d, _ in fol.status if t < t_act]
            if st["already_ok"] and before and st["match"](before[-1]):
                return ("now", None)
            for t, d, _ in fol.status:
                if t >= t_act and st["match"](d):
                    return (t, d)
        return None

    hit = fol.wait(find, max(0.0, t_end - time.monotonic()))
    res = dict(measured_s=None, ok=False, notes=[])
    if hit is None:
        res["notes"].append("no matching status within %.1f s" % (t_end - t_act))
    else:
        res["measured_s"] = 0.0 if hit[0] == "now" else hit[0] - t_act
        res["ok"] = res["measured_s"] <= bound(st)
        if not res["ok"]:
            res["notes"].append("slower than %.2f s (limit %.2f s + %.1f s status granularity "
                                "+ %.1f s latency)" % (bound(st), st["limit_s"],
                                                       STATUS_GRANULARITY_S, LATENCY_ALLOWANCE_S))
    if st["same_status"] is not None:
        with fol.cond:
            prev = [d for t, d, _ in fol.status if t < t_act]
            s0 = prev[-1]["state"] if prev else None
            first = next((d for t, d, _ in fol.status if t >= t_act and d["state"] != s0), None)
        ok, text = st["same_status"](first)
        res["notes"].append(text)
        res["ok"] = res["ok"] and ok
    if st["fault"] is not None:
        # the fault event (QoS 1) may follow its status a little later
        fol.wait(lambda: any(t >= t_act and e.get("type") == "fault" and
                             e.get("code") == st["fault"] for t, e in fol.events),
                 max(0.0, min(t_end, time.monotonic() + 1.0) - time.monotonic()))
        with fol.cond:
            ev = next((t for t, e in fol.events if t >= t_act and e.get("type") == "fault"
                       and e.get("code") == st["fault"]), None)
        if ev is None:
            res["notes"].append("no `fault` event `%s`" % st["fault"])
            res["ok"] = False
        else:
            res["event_s"] = ev - t_act
            res["notes"].append("`fault` event `%s` after %.3f s" % (st["fault"], ev - t_act))
    return res


# -------------------------------------------------------------- --sim mode
def build_scenario(sequence, device, prefix, lead_s):
    """The steps at fixed times: step i at lead_s + the dwell of the ones
    before it."""
    events, times, t = [], [], lead_s
    for st in sequence:
        times.append(t)
        for e in st["sim"]:
            ev = dict(e)
            ev["t"] = round(t, 3)
            events.append(ev)
        t += st["dwell_s"]
    events.sort(key=lambda e: e["t"])
    return {"name": "bench", "description": "tools/bench_check.py --sim: the bench sequence",
            "duration_s": round(t + 0.5, 3), "seed": 0,
            "config": {"mqtt_device_id": device, "mqtt_prefix": prefix},
            "events": events}, times


class SimClock:
    """Maps the simulator's scenario time to time.monotonic(): follows the
    trace that sim.py writes line by line in real time; each line at
    scenario time t arrives no earlier than t, so the smallest arrival - t
    seen is the best estimate of the start."""

    def __init__(self, trace):
        self.trace = trace
        self.t0 = None
        self.pos = 0
        self.buf = ""

    def poll(self):
        now = time.monotonic()
        try:
            with open(self.trace) as f:
                f.seek(self.pos)
                chunk = f.read()
                self.pos = f.tell()
        except OSError:
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            try:
                t = float(json.loads(line)["t"])
            except (ValueError, KeyError, TypeError):
                continue
            if self.t0 is None or now - t < self.t0:
                self.t0 = now - t


def start_sim(scen, folder, host, port):
    path = os.path.join(folder, "bench-scenario.json")
    with open(path, "w") as f:
        json.dump(scen, f, indent=1)
    trace = os.path.join(folder, "sim-trace.jsonl")
    if os.path.exists(trace):
        os.remove(trace)
    out = open(os.path.join(folder, "sim.out"), "w")
    p = subprocess.Popen([sys.executable, SIM, "--scenario", path, "--trace", trace,
                          "--realtime", "--no-live", "--broker", "%s:%d" % (host, port)],
                         cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT)
    out.close()
    return p, trace


# ---------------------------------------------------------------- report
def fmt_s(v):
    return "-" if v is None else "%.3f s" % v


def write_report(folder, a, sequence, results, fol, t_ref, mode):
    lines = ["# Bench report: %s/%s" % (a.prefix, a.device), "",
             "- mode: %s" % mode,
             "- broker: %s:%d" % a.broker,
             "- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
             "- result: **%s** (%d of %d steps pass)" % (
                 "PASS" if all(r["ok"] for r in results) and len(results) == len(sequence)
                 else "FAIL", sum(1 for r in results if r["ok"]), len(sequence)),
             "",
             "Measured time: from the step (%s) to the arrival of the first status that "
             "shows the expected reaction. The status has no millisecond time stamp and a "
             "change is published at most every %.1f s, so a measured time is an upper "
             "bound of the charger's true reaction, late by up to %.1f s plus network "
             "latency. A step passes when it is within its limit + %.1f s (granularity) + "
             "%.1f s (latency); limits below that resolution are backed by a check that the "
             "contactor is already open in the first status with the new state."
             % ("the operator's Enter" if mode == "bench" else
                "the event's time in the scenario, on the simulator's clock",
                STATUS_GRANULARITY_S, STATUS_GRANULARITY_S, STATUS_GRANULARITY_S,
                LATENCY_ALLOWANCE_S), "",
             "| # | step | instruction | expected | limit | measured | verdict | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for i, st in enumerate(sequence):
        r = results[i] if i < len(results) else dict(measured_s=None, ok=False,
                                                   notes=["not run"])
        lines.append("| %d | %s | %s | %s | %.1f s (%s) | %s | %s | %s |" % (
            i + 1, st["key"], st["instruction"], st["expect"], st["limit_s"], st["clause"],
            fmt_s(r["measured_s"]), "PASS" if r["ok"] else "FAIL",
            "; ".join(r["notes"]) or ""))
    with fol.cond:
        evs = list(fol.events)
    lines += ["", "## Events", ""]
    if evs:
        for t, e in evs:
            lines.append("- %+.3f s: `%s`" % (t - t_ref, json.dumps(e, sort_keys=True)))
    else:
        lines.append("(none)")
    with open(os.path.join(folder, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(folder, fol, marks, t_ref, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with fol.cond:
        rows = [(t - t_ref, d) for t, d, _ in fol.status]
    t_end = max([t for t, _ in rows] + [m[0] for m in marks] + [1.0]) + 1.0
    rows = [(max(t, 0.0), d) for t, d in rows]
    fig, (ax_s, ax_c, ax_d) = plt.subplots(3, 1, sharex=True, figsize=(13, 7.5),
                                           gridspec_kw={"height_ratios": [2.2, 0.8, 1.6]})
    xs = [t for t, _ in rows] + [t_end]

    def series(key, conv=lambda v: v):
        return xs, [conv(d.get(key)) for _, d in rows] + [conv(rows[-1][1].get(key))]

    if rows:
        idx = dict((s, i) for i, s in enumerate(STATES))
        x, y = series("state", lambda s: idx.get(s, -1))
        ax_s.step(x, y, where="post", color="#1565c0", lw=1.8)
        last = None
        for t, d in rows:
            if d.get("error") and d.get("error") != last:
                ax_s.annotate(d["error"], (t, idx.get(d["state"], 0)), xytext=(3, 6),
                              textcoords="offset points", color="#b71c1c", fontsize=8,
                              fontweight="bold")
            last = d.get("error")
        x, y = series("contactor", lambda v: 1.0 if v else 0.0)
        ax_c.fill_between(x, y, step="post", color="#2e7d32", alpha=0.6)
        x, y = series("duty", lambda v: v or 0.0)
        ax_d.step(x, y, where="post", color="#6a1b9a", lw=1.3, label="duty %")
        ax_o = ax_d.twinx()
        x, y = series("offer_a", lambda v: v or 0.0)
        ax_o.step(x, y, where="post", color="#ef6c00", lw=1.3, label="offer A")
        ax_o.set_ylabel("offer A", color="#ef6c00")
        ax_o.set_ylim(bottom=-1, top=max(y + [6]) * 1.15)
        h1, l1 = ax_d.get_legend_handles_labels()
        h2, l2 = ax_o.get_legend_handles_labels()
        ax_d.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    ax_s.set_yticks(range(len(STATES)))
    ax_s.set_yticklabels(STATES)
    ax_s.set_ylim(-0.7, len(STATES) - 0.3)
    ax_s.set_ylabel("state")
    ax_c.set_yticks([0, 1])
    ax_c.set_yticklabels(["open", "closed"])
    ax_c.set_ylim(-0.1, 1.2)
    ax_c.set_ylabel("contactor")
    ax_d.set_ylabel("duty %")
    ax_d.set_ylim(-5, 105)
    ax_d.set_xlabel("time (s) from the first step; markers: steps (green PASS, red FAIL)")
    ax_d.set_xlim(min([0.0] + [m[0] for m in marks]) - 0.5, t_end)
    for n, (t, label, ok) in enumerate(marks):
        for ax in (ax_s, ax_c, ax_d):
            ax.axvline(t, color="#2e7d32" if ok else "#c62828", lw=0.8, ls="--", alpha=0.8)
        ax_s.text(t, len(STATES) - 0.45 - 0.8 * (n % 3), " %d %s" % (n + 1, label),
                  fontsize=7, va="top", color="#2e7d32" if ok else "#c62828")
    for ax in (ax_s, ax_c, ax_d):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "timeline.png"), dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------ main
def hostport(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("HOST:PORT expected")
    return host, int(port)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench_check.py", description="Check a charger on the bench "
                                "over MQTT through an IEC 61851-1 sequence; write a report.")
    p.add_argument("--broker", type=hostport, required=True, metavar="HOST:PORT")
    p.add_argument("--device", required=True, help="the charger's mqtt_device_id")
    p.add_argument("--prefix", default="evse", help="mqtt_prefix (default: evse)")
    p.add_argument("--report", required=True, metavar="DIR", help="folder for report.md and "
                   "timeline.png")
    p.add_argument("--sim", action="store_true", help="run the sequence against tools/sim.py")
    p.add_argument("--user")
    p.add_argument("--password", default=os.environ.get("EVSE_MQTT_PASSWORD"),
                   help="(default: $EVSE_MQTT_PASSWORD)")
    p.add_argument("--status-timeout", type=float, default=15.0, metavar="S",
                   help="give up when no status comes from the device within S s (default 15)")
    p.add_argument("--step-timeout", type=float, default=10.0, metavar="S",
                   help="interactive: how long to wait for each step's reaction (default 10)")
    return p.parse_args(argv)


def run(a):
    host, port = a.broker
    os.makedirs(a.report, exist_ok=True)
    sequence = steps()
    sim = None
    fol = Follower(host, port, a.prefix, a.device, a.user, a.password)
    results, marks = [], []
    t_ref = time.monotonic()
    try:
        if a.sim:
            scen, times = build_scenario(sequence, a.device, a.prefix, lead_s=2.0)
            sim, trace = start_sim(scen, a.report, host, port)
            clock = SimClock(trace)
        print("bench: following %s/%s/# on %s:%d" % (a.prefix, a.device, host, port), flush=True)
        got = fol.wait(lambda: fol.live_status() or (sim is not None and sim.poll() is not None),
                       a.status_timeout)
        if sim is not None and sim.poll() is not None:
            with open(os.path.join(a.report, "sim.out")) as f:
                tail = [s for s in f.read().splitlines() if s.strip()][-1:]
            raise BenchError("the simulator exited (%s)" % ("; ".join(tail) or sim.returncode))
        if not got:
            raise BenchError("no status from device %r on %s/%s/status within %.0f s"
                             % (a.device, a.prefix, a.device, a.status_timeout))
        if a.sim:
            deadline = time.monotonic() + 5
            while clock.t0 is None and time.monotonic() < deadline:
                clock.poll()
                time.sleep(0.01)
            if clock.t0 is None:
                raise BenchError("the simulator wrote no trace within 5 s")
            t_ref = clock.t0 + times[0]
        for i, st in enumerate(sequence):
            print("\nStep %d/%d  %s\n  %s\n  expect: %s (limit %.1f s, %s)"
                  % (i + 1, len(sequence), st["key"], st["instruction"], st["expect"],
                     st["limit_s"], st["clause"]), flush=True)
            if a.sim:
                # refine the start estimate until the step is due
                while True:
                    clock.poll()
                    t_act = clock.t0 + times[i]
                    if time.monotonic() >= t_act:
                        break
                    time.sleep(min(0.01, t_act - time.monotonic()))
                t_end = clock.t0 + times[i] + st["dwell_s"] - 0.05
            else:
                sys.stdout.write("  press Enter at the moment you switch > ")
                sys.stdout.flush()
                if sys.stdin.readline() == "":
                    raise BenchError("stdin closed: the interactive mode needs an operator "
                                     "(or use --sim)")
                t_act = time.monotonic()
                if i == 0:
                    t_ref = t_act
                t_end = t_act + a.step_timeout
            r = measure(fol, st, t_act, t_end)
            results.append(r)
            marks.append((t_act - t_ref, st["key"], r["ok"]))
            print("  %s  measured %s%s" % ("PASS" if r["ok"] else "FAIL", fmt_s(r["measured_s"]),
                                           ("  (" + "; ".join(r["notes"]) + ")") if r["notes"]
                                           else ""), flush=True)
    finally:
        if sim is not None:
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait(5)
        fol.close()
        if results:
            write_report(a.report, a, sequence, results, fol, t_ref, "sim" if a.sim else "bench")
            plot(a.report, fol, marks, t_ref, "bench: %s/%s (%s)" % (
                a.prefix, a.device, "simulator" if a.sim else "bench"))
    ok = len(results) == len(sequence) and all(r["ok"] for r in results)
    print("\n%s: %d of %d steps pass; report: %s" % (
        "PASS" if ok else "FAIL", sum(1 for r in results if r["ok"]), len(sequence),
        os.path.join(a.report, "report.md")), flush=True)
    return 0 if ok else 1


def main(argv=None):
    a = parse_args(argv)
    try:
        return run(a)
    except BenchError as e:
        sys.stderr.write("bench_check.py: %s\n" % e)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("bench_check.py: interrupted\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
