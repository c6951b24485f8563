"""micropython-lib's real umqtt.simple on the host (CPython).

`make setup` copies the unmodified umqtt/simple.py of each supported
version from micropython-lib (default `../shared/vendor/micropython-lib`,
or `UMQTT_SRC=...`) to `build/umqtt-<version>/umqtt/simple.py`
(git-ignored). `load(version)` imports that file as it is, with its
`import socket` answered by `mpsocket` (MicroPython's socket API over
CPython's); nothing else in the process sees that.

    mod = umqtt_host.load()           # EVSE_UMQTT (default 1.8.0)
    mod = umqtt_host.load("1.7.0")    # the one frozen into ESP32 firmware 1.28
    mod.MQTTClient, mod.MQTTException

The default version, once loaded, is also registered as `umqtt.simple` in
sys.modules, so that the firmware's `import umqtt.simple` finds it.
"""
import builtins
import importlib.util
import os
import sys

import mpsocket

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
VERSIONS = ("1.7.0", "1.8.0")  # 1.7.0: frozen in MicroPython 1.28 (ESP32); 1.8.0: `mip` today
DEFAULT = "1.8.0"

_loaded = {}


class MissingClient(RuntimeError):
    pass


def version():
    """The version the host uses unless told: $EVSE_UMQTT, else DEFAULT."""
    v = os.environ.get("EVSE_UMQTT") or DEFAULT
    if v not in VERSIONS:
        raise MissingClient("EVSE_UMQTT=%s: umqtt.simple versions here are %s"
                            % (v, ", ".join(VERSIONS)))
    return v


def path(v=None):
    return os.path.join(BUILD, "umqtt-%s" % (v or version()), "umqtt", "simple.py")


def missing(v=None):
    """None when the client file is there, else the message saying how to get it."""
    v = v or version()
    p = path(v)
    if os.path.isfile(p):
        return None
    return ("micropython-lib's umqtt.simple %s is missing: no %s. Run `make setup`: it "
            "copies it from ../shared/vendor/micropython-lib, or from the folder (or "
            "micropython-lib checkout at that version) named by UMQTT_SRC: "
            "`make setup UMQTT_SRC=DIR`. It is not on PyPI. EVSE_UMQTT picks the version "
            "(%s)." % (v, os.path.relpath(p, ROOT), " or ".join(VERSIONS)))


def _importer(name, globals=None, locals=None, fromlist=(), level=0):
    if name == "socket" and level == 0:
        return mpsocket
    return builtins.__import__(name, globals, locals, fromlist, level)


def load(v=None):
    """The umqtt.simple module of version `v` (see version())."""
    v = v or version()
    mod = _loaded.get(v)
    if mod is not None:
        return mod
    msg = missing(v)
    if msg:
        raise MissingClient(msg)
    spec = importlib.util.spec_from_file_location("umqtt.simple", path(v))
    mod = importlib.util.module_from_spec(spec)
    b = dict(builtins.__dict__)
    b["__import__"] = _importer
    mod.__builtins__ = b  # the module's own imports: `socket` is mpsocket
    mod.UMQTT_VERSION = v
    spec.loader.exec_module(mod)
    assert mod.socket is mpsocket
    _loaded[v] = mod
    if v == version() and "umqtt.simple" not in sys.modules:
        import types

        pkg = types.ModuleType("umqtt")
        pkg.__path__ = [os.path.dirname(path(v))]
        pkg.simple = mod
        sys.modules.setdefault("umqtt", pkg)
        sys.modules["umqtt.simple"] = mod
    return mod
