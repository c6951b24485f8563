#!/usr/bin/env python3
"""Draw a simulator trace as a timeline.

    tools/plot_trace.py TRACE.jsonl OUT.png [--scenario SCENARIO.json] [--title TEXT]

Stacked panels sharing the time axis: the charger's IEC 61851-1 state (with
the error shown, and the scenario's inputs and faults marked), the PWM duty
and the offered current, the contactor, the measured current, the session
energy. The title is the scenario's name and description (--scenario), else
the trace's file name. Labels that would overlap (inputs and errors close in
time, as around a fault and state F) go on separate lanes. The measured
current while the contactor is open is drawn apart, grey and dotted: it is
the meter's last reading (the meter is polled about once a second), not
current flowing. Uses matplotlib's Agg backend (no display needed).
"""
import os
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STATES = ("A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F")
STATE_COLOR = {"A": "#9e9e9e", "B1": "#64b5f6", "B2": "#1e88e5", "C1": "#ffb74d",
               "C2": "#43a047", "D1": "#ffb74d", "D2": "#2e7d32", "E": "#e53935", "F": "#b71c1c"}


def load(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise SystemExit("%s:%d: not a JSON line: %s" % (path, n, e))
    if not rows:
        raise SystemExit("%s: empty trace" % path)
    return rows


def steps(rows, key, conv=lambda v: v):
    """x, y for a step plot (each value holds until the next line)."""
    xs, ys = [], []
    for d in rows:
        xs.append(d["t"])
        v = d.get(key)
        ys.append(float("nan") if v is None else conv(v))
    return xs, ys


def _label(e):
    k = list(e)[0]
    v = e[k]
    if k == "cmd":
        s = v.get("cmd", "?")
        if "amps" in v:
            s += " %sA" % v["amps"]
        return "cmd " + str(s)
    if k == "fault":
        fk = list(v)[0]
        return "%s=%s" % (fk, json.dumps(v[fk]))
    if k == "ev_draw":
        return None
    return "%s=%s" % (k, json.dumps(v))


def lanes(xs, min_gap, n_lanes):
    """A lane (0..n_lanes-1) for each label at position xs[i] (in order), so
    that two labels in one lane are at least min_gap apart; when every lane
    is taken, the one whose last label came first."""
    last = [None] * n_lanes  # (x, order) of each lane's last label
    out = []
    for i, x in enumerate(xs):
        pick = None
        for k in range(n_lanes):
            if last[k] is None or x - last[k][0] >= min_gap:
                pick = k
                break
        if pick is None:  # all taken: the lane used longest ago
            pick = min(range(n_lanes), key=lambda k: last[k])
        last[pick] = (x, i)
        out.append(pick)
    return out


def meter_lag(rows):
    """Split the measured current into (flowing, lagging) step series: while
    the contactor is closed the reading is current flowing; while it is open
    a non-zero reading is the meter's last answer from before the opening."""
    fx, fy, lx, ly = [], [], [], []
    for d in rows:
        v = d.get("ev_a")
        v = float("nan") if v is None else v
        closed = bool(d.get("contactor"))
        fx.append(d["t"])
        lx.append(d["t"])
        fy.append(v if closed else (0.0 if v == v else v))
        ly.append(v if not closed and v == v and v > 0 else float("nan"))
    return (fx, fy), (lx, ly)


def title_for(trace_path, scenario_path=None):
    """The scenario's name and description, else the trace file's name."""
    if scenario_path:
        with open(scenario_path) as f:
            d = json.load(f)
        name = d.get("name") or os.path.basename(scenario_path)
        desc = d.get("description")
        if isinstance(desc, str) and desc:
            return "%s: %s" % (name, desc if len(desc) <= 90 else desc[:87] + "...")
        return str(name)
    return os.path.splitext(os.path.basename(trace_path))[0]


def plot(rows, out, title=None):
    t_end = rows[-1]["t"]
    hours = t_end > 3 * 3600
    scale = 3600.0 if hours else 1.0
    unit = "h" if hours else "s"
    fig, axes = plt.subplots(5, 1, sharex=True, figsize=(13, 10),
                             gridspec_kw={"height_ratios": [2.2, 1.6, 0.7, 1.4, 1.4]})
    ax_s, ax_d, ax_c, ax_i, ax_e = axes

    # state: a band per state, coloured segments, errors written on top
    idx = dict((s, i) for i, s in enumerate(STATES))
    seg = [rows[0]["t"], rows[0]["state"]]
    for d in rows[1:] + [None]:
        if d is None or d["state"] != seg[1]:
            x1 = (d["t"] if d is not None else t_end) / scale
            ax_s.broken_barh([(seg[0] / scale, max(x1 - seg[0] / scale, t_end / scale / 2000))],
                             (idx[seg[1]] - 0.3, 0.6), color=STATE_COLOR[seg[1]])
            if d is not None:
                seg = [d["t"], d["state"]]
    ax_s.set_yticks(range(len(STATES)))
    ax_s.set_yticklabels(STATES)
    ax_s.set_ylim(-0.7, len(STATES) + 1.8)  # room above F for the input labels
    ax_s.set_ylabel("state")
    ax_s.grid(axis="y", alpha=0.3)
    gap = t_end / scale / 9.0  # about one label's width on the axis
    errs = []
    last_err = None
    for d in rows:
        if d["error"] is not None and d["error"] != last_err:
            errs.append(d)
        last_err = d["error"]
    for d, lane in zip(errs, lanes([d["t"] / scale for d in errs], gap, 3)):
        ax_s.annotate(d["error"], (d["t"] / scale, idx[d["state"]]),
                      xytext=(3, -12 - 10 * lane if d["state"] in ("E", "F") else 7 + 10 * lane),
                      textcoords="offset points", color="#b71c1c", fontsize=8,
                      fontweight="bold")
    # scenario inputs as thin vertical lines with a label, on lanes at the top
    marks = []
    for d in rows:
        labels = [s for s in (_label(e) for e in d.get("input", ())) if s]
        if labels and d["t"] > 0:
            marks.append((d["t"] / scale, ", ".join(labels)))
    for (x, text), lane in zip(marks, lanes([m[0] for m in marks], gap, 4)):
        for ax in axes:
            ax.axvline(x, color="#555555", lw=0.6, ls=":", alpha=0.7)
        ax_s.text(x, len(STATES) + 1.6 - 0.75 * lane, " " + text, fontsize=7, va="top",
                  color="#333333", clip_on=False)

    # duty and offer
    x, y = steps(rows, "duty")
    ax_d.step([v / scale for v in x], y, where="post", color="#6a1b9a", lw=1.3, label="duty %")
    ax_d.set_ylabel("duty %")
    ax_d.set_ylim(-5, 105)
    ax_o = ax_d.twinx()
    x, y = steps(rows, "offer_a")
    ax_o.step([v / scale for v in x], y, where="post", color="#ef6c00", lw=1.3, label="offer A")
    ax_o.set_ylabel("offer A", color="#ef6c00")
    top = max([d["offer_a"] for d in rows] + [6]) * 1.15
    ax_o.set_ylim(-top * 0.05, top)
    h1, l1 = ax_d.get_legend_handles_labels()
    h2, l2 = ax_o.get_legend_handles_labels()
    ax_d.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)

    # contactor
    x, y = steps(rows, "contactor", lambda v: 1.0 if v else 0.0)
    ax_c.fill_between([v / scale for v in x], y, step="post", color="#2e7d32", alpha=0.6)
    ax_c.set_yticks([0, 1])
    ax_c.set_yticklabels(["open", "closed"])
    ax_c.set_ylim(-0.1, 1.2)
    ax_c.set_ylabel("contactor")

    # measured current: flowing while closed; the meter's last reading while open
    (x, y), (lx, ly) = meter_lag(rows)
    ax_i.step([v / scale for v in x], y, where="post", color="#1565c0", lw=1.3,
              label="measured (largest phase)")
    if any(v == v for v in ly):
        ax_i.step([v / scale for v in lx], ly, where="post", color="#9e9e9e", lw=1.2, ls=":",
                  label="meter's last reading, contactor open")
    x, y = steps(rows, "offer_a")
    ax_i.step([v / scale for v in x], y, where="post", color="#ef6c00", lw=0.8, ls="--",
              alpha=0.7, label="offer")
    ax_i.set_ylabel("current A")
    ax_i.set_ylim(bottom=-1)
    ax_i.legend(loc="upper right", fontsize=8)

    # energy
    x, y = steps(rows, "energy_wh")
    kwh = max([d["energy_wh"] for d in rows]) >= 10000
    y = [v / 1000.0 for v in y] if kwh else y
    ax_e.step([v / scale for v in x], y, where="post", color="#00695c", lw=1.5)
    ax_e.set_ylabel("session energy " + ("kWh" if kwh else "Wh"))
    ax_e.set_xlabel("time (%s)" % unit)
    ax_e.set_xlim(0, t_end / scale)
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title or "charger trace", fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description="Draw a simulator trace (JSON lines) as a timeline.")
    p.add_argument("trace")
    p.add_argument("out", help="output image (PNG)")
    p.add_argument("--scenario", help="the scenario the trace comes from (for the title)")
    p.add_argument("--title")
    a = p.parse_args(argv)
    rows = load(a.trace)
    plot(rows, a.out, a.title or title_for(a.trace, a.scenario))
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
