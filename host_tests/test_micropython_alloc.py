"""The control step allocates nothing on the heap in steady state, measured
with gc.mem_alloc() in real MicroPython (the WebAssembly port): the
charger's step, and the App's whole tick with the backend link's journal
and Bus attached."""
from mpwasm import run_micropython


def test_control_step_allocates_nothing_in_steady_state():
    rc, out, err = run_micropython(
        "host_tests/mp_alloc.py", mounts=[("firmware", "/fw")], paths=["/fw"])
    assert rc == 0, err
    lines = out.split("\n")
    assert "STATE C2 True" in lines, out
    assert "APPSTATE C2 True" in lines, out
    phases = {}
    for line in lines:
        if line.startswith("ALLOC "):
            _, name, used, steps = line.split()
            phases[name] = (int(used), int(steps))
    assert set(phases) == {"A", "B2", "C2", "APP_C2"}, out
    assert phases["C2"][1] >= 10000
    for name, (used, steps) in phases.items():
        assert used == 0, "%s: %d bytes over %d steps" % (name, used, steps)
