"""docs/scenarios.md, the scenario and trace format in this repository:
every key it lists is what the simulator accepts and writes, and (when
../shared is beside the repository) the shared format lists exactly the
same keys in each of its tables.

The tables are read from the Markdown: the first column's backticked name
per row, per section.
"""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from evse import config  # noqa: E402
from evse.commands import FIELDS as COMMANDS  # noqa: E402
from simcore import scenario as S  # noqa: E402

DOC = os.path.join(ROOT, "docs", "scenarios.md")
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "scenarios", "FORMAT.md"))
SIM = os.path.join(ROOT, "tools", "sim.py")
# The site-energy part of the format: grid_a is written only with a grid meter.
SITE_TRACE = {"grid_a"}


def tables(path, headings):
    """{section: [first-column names]} for the tables under each heading
    (a heading's first words, as in `headings`)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = {}
    section = None
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            section = None
            for key, start in headings.items():
                if title.startswith(start):
                    section = key
            continue
        if section is None or not line.startswith("| "):
            continue
        first = line.split("|")[1].strip()
        if section == "commands":
            names = re.findall(r'"cmd": "(\w+)"', first) or re.findall(r"^`(\w+)`$", first)
        else:
            names = re.findall(r"^`(\w+)`$", first)
        out.setdefault(section, []).extend(names)
    return out


OURS = {"scenario": "The scenario", "config": "`config`", "events": "Events",
        "trace": "The trace", "commands": "Commands"}
THEIRS = {"scenario": "Scenario", "config": "`config`", "events": "Events",
          "trace": "Trace", "commands": "Commands"}


def ours():
    t = tables(DOC, OURS)
    assert set(t) == set(OURS), t
    return t


def _load(d):
    return S.load(json.dumps(d))


def test_every_documented_key_is_what_the_simulator_takes():
    t = ours()
    assert t["scenario"] == ["name", "description", "duration_s", "seed", "config", "events"]
    defaults = config.defaults()
    base = {"name": "x", "description": "d", "duration_s": 1, "seed": 3, "config": {},
            "events": [{"t": 0, "ev": "A"}]}
    assert _load(base)["name"] == "x"
    for k in t["config"]:
        assert k in defaults, k  # the firmware's own key, with its default
        _load(dict(base, config={k: defaults[k]}))
    assert set(t["events"]) == set(S.EVENT_KEYS), t["events"]
    assert set(t["commands"]) == set(COMMANDS), t["commands"]


def test_the_documented_trace_fields_are_the_ones_written(tmp_path):
    t = ours()
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps({"name": "s", "duration_s": 3, "config": {}, "events": [
        {"t": 0, "ev": "B"}, {"t": 1, "ev": "C"}, {"t": 2, "cmd": {"cmd": "pause", "id": 1}}]}))
    trace = tmp_path / "s.jsonl"
    p = subprocess.run([sys.executable, SIM, "--scenario", str(scen), "--trace", str(trace)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in trace.read_text().splitlines()]
    extras = {"input", "replies", "events", "notes", "phases"}  # ours (docs/simulator.md)
    for r in rows:
        assert set(t["trace"]) - SITE_TRACE <= set(r) <= set(t["trace"]) | extras, r
    # with a grid meter, grid_a too: one value per phase of the grid meter
    scen.write_text(json.dumps({"name": "g", "duration_s": 2, "config": {
        "grid_meter": "sdm630"}, "events": [{"t": 0, "site": {"house_a": [1, -2, 3.5]}}]}))
    p = subprocess.run([sys.executable, SIM, "--scenario", str(scen), "--trace", str(trace)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in trace.read_text().splitlines()]
    for r in rows:
        assert set(t["trace"]) <= set(r) <= set(t["trace"]) | extras, r
    assert rows[-1]["grid_a"] == [1.0, -2.0, 3.5]


@pytest.mark.skipif(not os.path.isfile(SHARED), reason="../shared is not beside the repository "
                    "(the shared format is compared when it is)")
def test_the_same_keys_as_the_shared_format():
    mine = ours()
    theirs = tables(SHARED, THEIRS)
    for section in OURS:
        assert sorted(mine[section]) == sorted(theirs.get(section, [])), section
