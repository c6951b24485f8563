#!/usr/bin/env python3
"""The README's table of figures, made from bench/results.json (the record
`make bench-baseline` commits), so that every number in it is a measured one.

    .venv/bin/python tools/readme_figures.py [RESULTS.json]     # prints the table
    .venv/bin/python tools/readme_figures.py --write            # rewrites it in README.md

host_tests/test_readme.py fails when the README's table is not what this
prints for the committed results.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import bench as B  # noqa: E402  (bench/bench.py: the same formatting as its own tables)

RESULTS = os.path.join(ROOT, "bench", "results.json")
README = os.path.join(ROOT, "README.md")
BEGIN = "<!-- figures: begin (tools/readme_figures.py --write) -->"
END = "<!-- figures: end -->"
# The figures a reader of the README wants first; the rest: bench/results.md.
SHOWN = ("step_alloc_bytes", "session_alloc_steady", "heap32_session_frozen_link",
         "heap32_session_frozen_ocpp",
         "heap32_session_mpy_link", "heap32_session_romfs_link", "mpy_total_bytes",
         "step_gap_broker_ms", "meter_poll_ratio", "sim_speed_cpython",
         "sim_speed_micropython", "step_ratio_wasm_cpython")


def table(results):
    figs = dict((f["id"], f) for f in results["figures"])
    lines = ["| figure | value | goal | |", "|---|---|---|---|"]
    for fid in SHOWN:
        f = figs.get(fid)
        if f is None:
            continue
        verdict = B.judge(f["value"], f.get("goal"), f["unit"])[1] or "-"
        lines.append("| %s | %s | %s | %s |" % (f["name"], B.fmt_value(f),
                                               B.fmt_goal(f.get("goal"), f["unit"]), verdict))
    lines.append("")
    lines.append("Measured %s on %s (`make bench-baseline`; every figure's method: "
                 "`bench/results.md`)." % (results.get("date", "?")[:10],
                                          results.get("machine", "this machine")))
    return "\n".join(lines)


def block(results):
    return BEGIN + "\n" + table(results) + "\n" + END


def main(argv):
    write = "--write" in argv
    args = [a for a in argv if a != "--write"]
    with open(args[0] if args else RESULTS) as f:
        results = json.load(f)
    if not write:
        print(table(results))
        return 0
    with open(README) as f:
        text = f.read()
    i, j = text.index(BEGIN), text.index(END) + len(END)
    with open(README, "w") as f:
        f.write(text[:i] + block(results) + text[j:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
