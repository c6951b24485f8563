"""The meter poll (Modbus master, decoding, publishing) allocates nothing on
the heap in steady state, for every profile and also while the meter is
silent or garbled: gc.mem_alloc() in real MicroPython (WebAssembly port)."""
from evse import meter, meter_maps
from mpwasm import run_micropython


def test_meter_poll_allocates_nothing():
    rc, out, err = run_micropython(
        "host_tests/mp_meter_alloc.py",
        mounts=[("firmware", "/fw"), ("host_tests/core_cases", "/cases")],
        paths=["/fw", "/cases"])
    assert rc == 0, err
    rows = {}
    for line in out.splitlines():
        if line.startswith("MALLOC "):
            _, name, used, polls, check = line.split()
            rows[name] = (int(used), int(polls), check)
    assert set(rows) == set(meter_maps.NAMES) | {"silent", "crc"}, out
    for name, (used, polls, check) in rows.items():
        assert check == "ok", (name, out)
        assert polls >= 300
        assert used == 0, "%s: %d bytes over %d polls" % (name, used, polls)
