"""The board adapter's read()/apply() and the whole control loop allocate
nothing per tick on MicroPython's heap, and the adapter's interrupt handlers
run with the heap locked: measured in the
official WebAssembly port on the fake machine (host_tests/mp_board_alloc.py).
"""
import pytest

from mpwasm import run_micropython


@pytest.mark.parametrize("board", ["esp32-devkitc", "pico-w", "smartevse-v3"])
def test_board_read_apply_and_isrs_allocate_nothing(board):
    rc, out, err = run_micropython(
        "host_tests/mp_board_alloc.py", args=[board],
        mounts=[("firmware", "/fw"), ("host_tests/fakes", "/fakes"), ("boards", "/boards")],
        paths=["/fw", "/fakes"])
    assert rc == 0, err
    lines = out.split("\n")
    phases = {}
    isrs = 0
    for line in lines:
        if line.startswith("ALLOC "):
            _, name, used, calls = line.split()
            phases[name] = (int(used), int(calls))
        elif line.startswith("ISR ") and line.endswith(" ok"):
            isrs += 1
    assert set(phases) == {"A", "B2", "C2", "F"}, out
    for name, (used, calls) in phases.items():
        assert used == 0, "%s: %d bytes over %d read()+apply()" % (name, used, calls)
    assert isrs >= 1, out
    loop = [l for l in lines if l.startswith("LOOP ")][0].split()
    # hw/system.run: 100 and 600 ticks allocate the same (the WDT and its
    # supervisor, made when the loop starts): nothing per tick
    assert int(loop[1]) == int(loop[2]), loop
    assert loop[3] == "A", loop
    cp = [l for l in lines if l.startswith("CP ")][0].split()
    assert abs(int(cp[1]) + 12000) < 100  # the last phase drove -12 V
