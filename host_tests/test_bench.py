"""make bench (bench/bench.py): every piece runs (--quick), the result files
have their structure, and a regression against the baseline is flagged.
No timing is asserted here: performance is measured by the benchmark, never
by a timed test."""
import copy
import json
import os
import subprocess
import sys

import pytest

from mpwasm import available, run_micropython

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "bench.py")
FIELDS = {"id", "name", "value", "unit", "goal", "better", "tolerance", "method", "command",
          "status"}
IDS = {"step_wasm_median_us", "step_wasm_p99_us", "step_cpython_median_us",
       "step_cpython_p99_us", "step_alloc_bytes", "session_alloc_steady",
       "session_alloc_total", "heap_start_mpy", "heap_session_mpy", "heap_start_py",
       "heap_session_py", "mpy_total_bytes", "sim_speed_cpython", "sim_speed_micropython",
       "meter_poll_bytes", "meter_poll_ratio", "step_gap_no_broker_ms",
       "step_gap_broker_ms", "step_ratio_wasm_cpython", "sim_speed_ratio"} | set(
    "heap32_%s_%s%s" % (when, kind, link) for when in ("start", "session")
    for kind in ("mpy", "frozen", "romfs") for link in ("", "_link"))
# the site group (issue 14): not in the committed baseline until it is renewed
SITE_IDS = {"site_solar_charged_kwh", "site_solar_from_pv_kwh", "site_solar_from_grid_kwh",
            "site_solar_ideal_kwh", "site_solar_achieved_pct", "site_solar_closings",
            "site_smart_offer_p50_s", "site_smart_offer_max_s", "site_smart_grid_p50_s",
            "site_smart_grid_max_s"}

pytestmark = pytest.mark.skipif(not available(), reason="MicroPython WebAssembly port missing")


def _bench(*args):
    return subprocess.run([sys.executable, BENCH, "--quick"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, BENCH_STRICT="0"))


def _load_bench_module():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import bench
    finally:
        sys.path.pop(0)
    return bench


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    p = _bench("--out", str(out), "--baseline", str(out / "none.json"))
    assert p.returncode == 0, p.stdout + p.stderr
    with open(out / "results.json") as f:
        res = json.load(f)
    return res, (out / "results.md").read_text(), p.stdout


def test_quick_run_writes_every_figure(quick_run):
    res, md, stdout = quick_run
    assert res["quick"] is True and res["groups"] == ["step", "alloc", "heap", "heap32", "mpy",
                                                      "sim", "meter", "gap", "site"]
    figs = dict((f["id"], f) for f in res["figures"])
    assert IDS | SITE_IDS <= set(figs), sorted((IDS | SITE_IDS) - set(figs))
    for f in res["figures"]:
        assert FIELDS <= set(f), f["id"]
        assert f["better"] in ("lower", "higher")
        assert f["method"] and f["command"]
        assert f["status"] in ("met", "missed", "", "not measured")
        if f["goal"] is not None:
            assert f["goal"][0] in ("<=", ">=")
    # what is true whatever the machine's speed
    assert figs["step_alloc_bytes"]["value"] == 0
    assert figs["session_alloc_steady"]["value"] == 0
    assert figs["meter_poll_bytes"]["value"] == 161
    assert figs["heap_start_mpy"]["value"] > 0 and figs["mpy_total_bytes"]["value"] > 0
    h32 = figs["heap32_start_mpy_link"]
    if os.path.isdir(os.path.join(ROOT, "..", "shared", "vendor")) or h32["value"] is not None:
        # measured: with the link, more than without; frozen less than .mpy files
        assert h32["value"] > figs["heap32_start_mpy"]["value"] > 0
        assert figs["heap32_start_frozen_link"]["value"] < h32["value"]
    else:  # a clone without ../shared: said, not measured
        assert "MICROPYTHON_SRC" in h32["not_measured"]
    gap = figs["step_gap_broker_ms"]
    if gap["value"] is None:  # until the MQTT link (issue 5)
        assert "issue 5" in gap["not_measured"] and gap["status"] == "not measured"
    else:
        assert gap["value"] > 0
    assert figs["step_gap_no_broker_ms"]["value"] > 0
    sizes = res["raw"]["mpy_sizes"]
    assert "evse/charger.mpy" in sizes and "main.mpy" not in sizes
    assert sum(sizes.values()) == figs["mpy_total_bytes"]["value"]
    # the Markdown table: a header and a row per figure
    rows = [l for l in md.splitlines() if l.startswith("| ")]
    assert rows[0] == ("| figure | value | goal | met / missed | vs baseline | method | "
                       "command |")
    assert len([r for r in rows if r.count("|") == 8]) == len(res["figures"]) + 1
    assert "Quick run" in md
    assert "no regression" in stdout


def test_site_figures_follow_the_physics(quick_run):
    # bench/site_bench.py: a PV window in solar mode and house steps in smart
    # mode, in virtual time; what must hold whatever the firmware's tuning
    res, _, _ = quick_run
    v = dict((f["id"], f["value"]) for f in res["figures"] if f["id"] in SITE_IDS)
    sol = res["raw"]["site_solar"]
    assert v["site_solar_charged_kwh"] > 0 and v["site_solar_closings"] >= 1
    # every kWh charged came from the surplus or from the grid
    assert abs(v["site_solar_charged_kwh"] - v["site_solar_from_pv_kwh"]
               - v["site_solar_from_grid_kwh"]) <= 0.002
    # ... and the vehicle's current from the grid meter less the house is what the
    # charger's own meter counted for the session (its Wh register, 1 Wh steps)
    wh = sol["session_energy_wh"]
    assert abs(sol["charged_kwh"] * 1000 - wh) <= 0.01 * wh + 2
    # the car cannot take more surplus than there was, nor than the ideal where it counts
    assert sol["achieved_kwh"] <= sol["from_pv_kwh"] + 1e-9
    assert sol["from_pv_kwh"] <= sol["surplus_kwh"] + 1e-9
    assert 0 < sol["achieved_kwh"] <= v["site_solar_ideal_kwh"] + 0.001
    assert 0 < v["site_solar_achieved_pct"] <= 100.0
    pct = 100.0 * sol["achieved_kwh"] / sol["ideal_kwh"]
    assert abs(v["site_solar_achieved_pct"] - pct) < 0.01
    # what is left of the ideal is the time it waited and the time it charged below it
    assert abs(sol["ideal_kwh"] - sol["achieved_kwh"] - sol["lost_open_kwh"]
               - sol["lost_running_kwh"]) <= 0.01
    assert v["site_solar_ideal_kwh"] < sol["surplus_kwh"]
    # grid import: never negative, and a per-phase meter counts at least the net
    assert 0 <= v["site_solar_from_grid_kwh"] <= sol["import_per_phase_kwh"] + 0.001
    # smart: the offer comes with the grid meter's next reading, taken once the
    # charger meter has read after it (two polls of meter_poll_s 1 s, the wire
    # time; docs/site.md), the grid phase after the vehicle's response (response_s 1 s)
    steps = res["raw"]["site_smart"]["steps"]
    assert len(steps) >= 4 and all(s["stays"] for s in steps)
    assert any(s["paused"] for s in steps) and not all(s["paused"] for s in steps)
    for s in steps:
        assert 0 < s["offer_s"] <= 2.5, s
        assert s["grid_s"] >= s["offer_s"] + 1.0, s
    assert v["site_smart_offer_p50_s"] <= v["site_smart_offer_max_s"] <= 2.5
    assert v["site_smart_grid_p50_s"] <= v["site_smart_grid_max_s"] <= 4.5
    # deterministic: neither a timing nor flagged as one
    assert not any(f.get("timing") for f in res["figures"] if f["id"] in SITE_IDS)


def test_site_ideal_is_the_surplus_above_6_a():
    # the ideal on a profile worked by hand: 1 h exporting 30 A (10 A per phase),
    # 1 h exporting 15 A (5 A per phase: below 6 A, nothing), 1 h exporting 60 A
    # (20 A per phase: the vehicle's 16 A)
    d = os.path.join(ROOT, "bench")
    sys.path.insert(0, d)
    try:
        import site_bench as sb  # puts firmware/ and tools/ on the path, as sim.py does
    finally:
        sys.path.remove(d)
    raw = {"duration_s": 3 * 3600, "events": [
        {"t": 0, "site": {"house_a": [-10, -10, -10]}},
        {"t": 3600, "site": {"house_a": [-5, -5, -5]}},
        {"t": 7200, "site": {"house_a": [-30, -20, -10]}}]}
    want = 3 * 230 * (10 + 0 + 16) / 1000.0
    assert abs(sb.ideal_kwh(raw) - want) < 1e-9
    # the generated day: deterministic, and in the format
    assert sb.pv_day() == sb.pv_day() and sb.clouds() == sb.clouds()
    from simcore import scenario
    scenario.load(json.dumps(sb.pv_day()))
    scenario.load(json.dumps(sb.smart_steps()[0]))


def test_comparison_flags_a_fabricated_regression(quick_run, tmp_path):
    res, _, _ = quick_run
    bench = _load_bench_module()
    base = copy.deepcopy(res)
    old = dict((f["id"], f) for f in base["figures"])
    old["heap_start_mpy"]["value"] -= 4096  # we were 4 KB smaller
    old["step_alloc_bytes"]["value"] = 0
    old["sim_speed_cpython"]["value"] *= 3  # three times faster: a timing, not flagged
    old["sim_speed_ratio"]["value"] *= 2  # but the same run's ratio was twice as good
    now = copy.deepcopy(res)
    for f in now["figures"]:
        if f["id"] == "step_alloc_bytes":
            f["value"] = 0.5  # now the step allocates
    regressed = bench.compare(now, base)
    assert set(regressed) == {"heap_start_mpy", "step_alloc_bytes", "sim_speed_ratio"}
    figs = dict((f["id"], f) for f in now["figures"])
    assert not figs["sim_speed_cpython"]["regression"]
    assert "not compared across runs" in figs["sim_speed_cpython"]["change"]
    assert figs["heap_start_mpy"]["regression"] and "REGRESSION" in figs["heap_start_mpy"]["change"]
    assert not figs["mpy_total_bytes"]["regression"]
    md = bench.markdown(now)
    assert "REGRESSION" in md and "heap_start_mpy" in md.split("Regressions against")[1]
    # within tolerance, or against a quick/full mismatch: nothing flagged
    assert bench.compare(copy.deepcopy(res), copy.deepcopy(res)) == []
    full = copy.deepcopy(base)
    full["quick"] = False
    assert bench.compare(copy.deepcopy(now), full) == []


def test_regression_is_flagged_on_stdout_and_exit_status(quick_run, tmp_path):
    res, _, _ = quick_run
    base = copy.deepcopy(res)
    for f in base["figures"]:
        if f["id"] == "mpy_total_bytes":
            f["value"] = f["value"] // 2
    bl = tmp_path / "baseline.json"
    bl.write_text(json.dumps(base))
    p = _bench("--only", "mpy", "--out", str(tmp_path), "--baseline", str(bl))
    assert p.returncode == 0, p.stderr
    assert "REGRESSION" in p.stdout and "mpy_total_bytes" in p.stdout
    assert "REGRESSION" in (tmp_path / "results.md").read_text()
    p = _bench("--only", "mpy", "--out", str(tmp_path), "--baseline", str(bl), "--strict")
    assert p.returncode == 1, p.stdout + p.stderr


def test_committed_baseline_matches_the_figures():
    with open(os.path.join(ROOT, "bench", "baseline.json")) as f:
        base = json.load(f)
    assert base["quick"] is False
    assert IDS <= set(f["id"] for f in base["figures"])


def test_board_bench_runs_under_micropython(tmp_path):
    # the board script is MicroPython-only code: run it in the port, on the
    # fake machine (as `machine`) with a board.json and config.json beside it
    (tmp_path / "machine.py").write_text("from fakemachine import *  # noqa\n")
    with open(os.path.join(ROOT, "boards", "esp32-devkitc.json")) as f:
        (tmp_path / "board.json").write_text(f.read())
    (tmp_path / "config.json").write_text('{"meter": "sdm630"}')
    rc, out, err = run_micropython(
        "bench/board_bench.py", args=[300, 10],
        mounts=[("firmware", "/fw"), ("host_tests/fakes", "/fakes"), (str(tmp_path), "/")],
        paths=["/fw", "/fakes"])
    assert rc == 0, err
    got = dict(l.split(" ", 2)[1:] for l in out.splitlines() if l.startswith("BENCH "))
    for k in ("heap_import", "step_median_us", "step_p99_us", "step_max_us",
              "step_alloc_bytes", "heap_built", "tick_median_us", "tick_alloc_bytes"):
        assert k in got, (k, out)
    assert got["step_alloc_bytes"] == "0"
    assert "GC: total" in out  # micropython.mem_info()


def test_default_output_is_outside_the_tracked_tree(tmp_path):
    # make bench writes build/bench/; the committed record changes only with --record
    tracked = [os.path.join(ROOT, "bench", n) for n in ("results.json", "results.md",
                                                         "baseline.json")]
    before = [open(p, "rb").read() if os.path.exists(p) else None for p in tracked]
    out = os.path.join(ROOT, "build", "bench", "results.json")
    if os.path.exists(out):
        os.remove(out)
    p = _bench("--only", "mpy", "--baseline", str(tmp_path / "none.json"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.path.exists(out) and "build/bench/results.json" in p.stdout
    assert before == [open(p, "rb").read() if os.path.exists(p) else None for p in tracked]
