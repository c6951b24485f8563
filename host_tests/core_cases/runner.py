"""Minimal test runner for the core cases, identical under CPython and MicroPython.

    python3 runner.py [MODULE...]        # CPython (PYTHONPATH: firmware, tools/host)
    node tools/wasm/run.mjs ... runner.py [MODULE...]   # MicroPython (WebAssembly)

With no MODULE, runs every test_*.py in this file's directory.  For each module,
every callable attribute named test_* is called with no arguments, in sorted
order, and exactly one line is printed:

    RESULT <module>.<func> PASS
    RESULT <module>.<func> PASS <repr(return value)>     (if not None)
    RESULT <module>.<func> FAIL <ExceptionType>: <message>

then `SUMMARY <passed> passed, <failed> failed`.  Exits 1 if any test failed or
none ran.  A module that cannot be imported counts as one failed test named
`<module>.<import>`.  Tracebacks of failures go to stderr.

A test may return a digest (prefer str or int: float and object reprs differ
between the implementations) so that host_tests/test_micropython_core.py can
check both implementations computed the same thing.

Keep this file to the common subset of CPython 3.11 and MicroPython 1.27:
no pytest, inspect, importlib, typing or f-string `=` specifiers.
"""
import os
import sys


def _one_line(text):
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _print_traceback(exc):
    try:
        tb = __import__("traceback")  # CPython
    except ImportError:
        tb = None
    if tb is not None:
        tb.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    else:  # MicroPython
        sys.print_exception(exc, sys.stderr)


def _collect_garbage():
    try:
        __import__("gc").collect()
    except Exception:
        pass


def _here():
    path = globals().get("__file__")
    if not path:
        return "."
    i = path.rfind("/")
    if os.sep != "/":
        i = max(i, path.rfind(os.sep))
    if i < 0:
        return "."
    if i == 0:
        return "/"
    return path[:i]


def discover(directory):
    names = []
    for name in os.listdir(directory):
        if name.startswith("test_") and name.endswith(".py"):
            names.append(name[:-3])
    return sorted(names)


def load(name):
    mod = __import__(name)
    for part in name.split(".")[1:]:  # __import__("a.b") returns a
        mod = getattr(mod, part)
    return mod


def fail_text(exc):
    msg = str(exc)
    if msg:
        return "%s: %s" % (type(exc).__name__, _one_line(msg))
    return type(exc).__name__


def run_module(name):
    """Run one module's tests; return (passed, failed)."""
    passed = failed = 0
    try:
        mod = load(name)
    except Exception as exc:
        print("RESULT %s.<import> FAIL %s" % (name, fail_text(exc)))
        _print_traceback(exc)
        return 0, 1
    for attr in sorted(dir(mod)):
        if not attr.startswith("test_"):
            continue
        func = getattr(mod, attr)
        if not callable(func):
            continue
        label = "%s.%s" % (name, attr)
        _collect_garbage()
        try:
            value = func()
        except Exception as exc:
            failed += 1
            print("RESULT %s FAIL %s" % (label, fail_text(exc)))
            _print_traceback(exc)
            continue
        except SystemExit as exc:
            failed += 1
            print("RESULT %s FAIL SystemExit: %s" % (label, _one_line(str(exc))))
            continue
        passed += 1
        if value is None:
            print("RESULT %s PASS" % label)
        else:
            print("RESULT %s PASS %s" % (label, _one_line(repr(value))))
    return passed, failed


def main(argv):
    here = _here()
    if here not in sys.path:
        sys.path.insert(0, here)
    names = argv[1:] if len(argv) > 1 else discover(here)
    passed = failed = 0
    for name in names:
        p, f = run_module(name)
        passed += p
        failed += f
    print("SUMMARY %d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    if main(sys.argv):
        sys.exit(1)
