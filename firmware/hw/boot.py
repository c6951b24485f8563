"""Boot: the safe state before anything else, then build and run the charger.

main.py (deployed as source, which the board compiles at every boot) is a
stub that imports this module, compiled like the rest of the firmware, and
calls `main()`. This module imports nothing at import time (but `const`
from the built-in `micropython`).

Order (tested by host_tests/test_boot.py with a fake `machine`):

1. Safe state, with nothing but `machine.Pin` and `json`: read board.json for
   the pins and drive the contactor outputs to open, the RCD test output off
   and the CP generator to steady +12 V. (Before this, and whenever the MCU
   is in reset, the board's pull resistors must hold the same state: see
   README, "Boards and deploy".)
2. A one-shot maintenance flag (file `maint`, written when someone
   interrupts the running charger from the USB console): stay in the safe
   state at -12 V (unavailable), start no watchdog, return to the REPL.
3. Import the firmware, validate board profile and configuration
   (hw.system.build). An invalid one: -12 V (state F), the reason printed
   and recorded in crash.json, no reset loop: the REPL stays usable.
4. Start Wi-Fi and the MQTT link when a broker is configured, and run the
   control loop with the watchdog (hw.system.run_all: the loop in a second
   thread beside the network, or alone without a broker).

Any uncaught exception: safe state, a crash record in crash.json (the
journal of the MQTT issue takes these over), reset after _RESET_DELAY_MS.
After _MAX_CRASHES crashes in a row without a healthy minute in between the
board stays unavailable instead of resetting again. A hang: the watchdog
resets into this same boot.
"""
from micropython import const

_BOARD_FILE = const("board.json")
CONFIG_FILE = "config.json"
CRASH_FILE = "crash.json"
_MAINT_FILE = const("maint")
_RESET_DELAY_MS = const(1000)  # below the WDT timeout (2 s), so this reset is the one taken
_MAX_CRASHES = const(5)


def _level(spec, on):
    # Output level of a profile output spec {"pin", "active"}.
    low = spec.get("active") == "low"
    return (1 if on else 0) ^ (1 if low else 0)


def early_safe(machine, root, high=True):
    """Drive the outputs named in board.json to the safe state.

    Works on the raw JSON (validated later): every output is attempted on
    its own, so one bad entry cannot keep the others from their safe level.
    Returns the decoded profile, or None when there is no readable file.
    """
    import json

    try:
        f = open(root + _BOARD_FILE)
        try:
            raw = json.loads(f.read())
        finally:
            f.close()
    except Exception:
        return None
    if not isinstance(raw, dict):
        return None
    Pin = machine.Pin
    outs = []
    try:
        for c in raw.get("contactor") or ():
            outs.append((c, False))
    except Exception:
        pass
    try:
        outs.append((raw["rcd"]["test"], False))
    except Exception:
        pass
    try:
        outs.append((raw["cp"]["disconnect"], False))
    except Exception:
        pass
    for spec, on in outs:
        try:
            Pin(spec["pin"], Pin.OUT, value=_level(spec, on))
        except Exception:
            pass
    try:
        cp = raw["cp"]
        level = 1 if high else 0
        if cp.get("invert"):
            level ^= 1
        Pin(cp["pwm_pin"], Pin.OUT, value=level)
    except Exception:
        pass
    return raw


def _read_json(path):
    import json

    try:
        f = open(path)
        try:
            return json.loads(f.read())
        finally:
            f.close()
    except Exception:
        return None


def _exc_text(e):
    try:
        import io
        import sys

        s = io.StringIO()
        if hasattr(sys, "print_exception"):
            sys.print_exception(e, s)  # MicroPython
        else:
            import traceback

            traceback.print_exception(type(e), e, e.__traceback__, file=s)
        return s.getvalue()[-600:]
    except Exception:
        return repr(e)


def record_crash(root, where, e, fatal=False):
    """Write crash.json: count, where, exception and traceback tail. Returns
    the number of crashes in a row."""
    import json

    prev = _read_json(root + CRASH_FILE)
    n = prev.get("n", 0) if isinstance(prev, dict) else 0
    if not isinstance(n, int):
        n = 0
    rec = {"n": n + 1, "where": where, "type": type(e).__name__, "msg": str(e),
           "fatal": fatal, "tb": _exc_text(e)}
    try:
        f = open(root + CRASH_FILE + ".tmp", "w")
        try:
            f.write(json.dumps(rec))
        finally:
            f.close()
        import os

        os.rename(root + CRASH_FILE + ".tmp", root + CRASH_FILE)
    except Exception:
        pass
    return n + 1


def healthy_minute(root):
    """The loop ran a minute: clear the count of crashes in a row."""
    import json

    prev = _read_json(root + CRASH_FILE)
    if isinstance(prev, dict) and prev.get("n"):
        prev["n"] = 0
        try:
            f = open(root + CRASH_FILE, "w")
            try:
                f.write(json.dumps(prev))
            finally:
                f.close()
        except Exception:
            pass


def _take_maint(root):
    import os

    try:
        os.remove(root + _MAINT_FILE)
        return True
    except OSError:
        return False


def _set_maint(root):
    try:
        f = open(root + _MAINT_FILE, "w")
        f.close()
    except Exception:
        pass


def main(machine=None, clock=None, root="", out=print, max_ticks=None):
    if machine is None:
        import machine  # noqa: the real one, on the board
    raw = early_safe(machine, root)  # 1. before anything else
    if clock is None:
        import time as clock
    try:
        import micropython

        micropython.alloc_emergency_exception_buf(100)
    except Exception:
        pass
    if _take_maint(root):  # 2.
        early_safe(machine, root, high=False)
        out("evse: maintenance boot: outputs safe, pilot -12 V, no watchdog; "
            "machine.reset() to run")
        return "maint"
    prev = _read_json(root + CRASH_FILE)
    if isinstance(prev, dict) and isinstance(prev.get("n"), int) and prev["n"] >= _MAX_CRASHES:
        early_safe(machine, root, high=False)
        out("evse: %d crashes in a row (last: %s %s); staying unavailable. "
            "Remove %s and reset to retry" % (prev["n"], prev.get("type"), prev.get("msg"),
                                             CRASH_FILE))
        return "crashed"
    prev = None  # the crash record (its traceback text) is not kept while the charger runs
    ctx = None
    where = "build"
    try:
        from hw import system  # 3.

        try:
            if raw is None:
                raise system.SetupError("board profile: %s missing or not JSON" % _BOARD_FILE)
            ctx = system.build(machine, clock, raw, root + CONFIG_FILE,
                               root[:-1] if root else "")
            raw = None  # the profile's JSON: built from, not needed any more
        except system.SetupError as e:
            early_safe(machine, root, high=False)
            record_crash(root, "setup", e, fatal=True)
            out("evse: unavailable: %s" % e)
            return "unavailable"
        out("evse: board %s (%s), pwm full scale %d, cp burst %d samples x %d us"
            % (ctx.profile.name, ctx.profile.port, ctx.board.full, ctx.board.cp.n,
               ctx.board.cp.us_per_sample))
        where = "run"
        link = system.start_network(ctx, root, out)  # None without mqtt_host
        system.run_all(ctx, link, max_ticks=max_ticks,
                       healthy=lambda: healthy_minute(root), out=out, root=root)  # 4.
        return "stopped"
    except KeyboardInterrupt:
        # Someone at the USB console (or mpremote) stopped the charger. The
        # watchdog cannot be stopped, so: safe state, and reset into a
        # maintenance boot that starts none.
        _safe(ctx, machine, root)
        if ctx is not None and ctx.supervisor is not None:  # the WDT runs
            _set_maint(root)
            out("evse: interrupted: resetting into maintenance mode")
            machine.reset()
        return "interrupted"
    except Exception as e:
        _safe(ctx, machine, root)
        n = record_crash(root, where, e)
        out("evse: crash %d in %s: %r; reset in %d ms" % (n, where, e, _RESET_DELAY_MS))
        if n >= _MAX_CRASHES:
            early_safe(machine, root, high=False)
            out("evse: too many crashes in a row: staying unavailable")
            return "crashed"
        clock.sleep_ms(_RESET_DELAY_MS)
        machine.reset()
        return "reset"


def _safe(ctx, machine, root):
    try:
        ctx.board.safe()
    except Exception:
        early_safe(machine, root)

