"""Heap in use by the whole application, with or without its backend link,
inside MicroPython's 32-bit unix port (`make mp32`; bench/bench.py and
host_tests/test_micropython_heap.py start it):

    build/mp32/{plain,frozen}/micropython [-X heapsize=N] bench/mp_heap_unix.py \
        ROOT MINUTES PATH[:PATH...] [ROMFS_IMAGE|-] [MODULE...]

ROOT (ending in /) holds board.json, config.json, rig.json and meter.json as
for bench/mp_heap.py, and secrets.json when the link is configured
(`mqtt_host` in config.json, or `backend` "ocpp" with `ocpp_url`). PATH becomes sys.path: the firmware's folder
of .mpy files (with main.py as source, umqtt/simple.mpy beside them), or
`.frozen` for the firmware frozen into the binary, then host_tests/fakes.
ROMFS_IMAGE: a ROMFS image (mpremote romfs build) of the firmware, read
into a buffer that stands for the board's flash partition and mounted at
/rom (first on sys.path) before the baseline is taken, so the image itself
is not counted: the firmware then runs in place from it.

The test rig (host_tests/fakes/heaprig.py: the fake machine, the canned
meter, the vehicle's physics; the fake `network` module, which a board has
in C) is built first and its heap is the baseline. Then what hw/boot.main()
does, step by step: safe state from board.json, the emergency exception
buffer, the crash record, the firmware's import, hw/system.build, and
hw/system.start_network (Wi-Fi from secrets.json and the Link, or None).
With a link, the network thread's work is done in this one thread: the link
is stepped until it is connected (connect, `online`, subscribe: the real
umqtt.simple against the broker of config.json), and during the session
once per 50 ms of fake time from the fake clock's sleep (this port's
collector runs at once, so no thread is needed to measure; the board runs
the link in its own thread, hw/system.run_all). Then the control loop
(hw/system.run) for MINUTES of fake time. `RESULT key value` lines:

  heap_base      bytes in use before the firmware (interpreter, test rig)
  heap_start     after boot (build, network started, link connected), less the baseline
  heap_session   the same after MINUTES of control steps (10 min: 60,000)
  heap_total     gc.mem_alloc() + gc.mem_free(): the heap the collector has
  ticks, meter_good, sessions, connects, link_steps, link_error, ...

MODULE...: instead of the boot, import these modules one by one (in
dependency order) and print `RESULT import NAME BYTES` for each.

"In use" is gc.mem_alloc() after gc.collect(). A MemoryError anywhere ends
the run with `RESULT memory_error ...` and exit status 3.
"""
import gc
import sys

import micropython

ROOT = sys.argv[1]
MINUTES = int(sys.argv[2])
END_MS = MINUTES * 60000
sys.path[:] = sys.argv[3].split(":")
IMAGE = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
ONLY_IMPORTS = sys.argv[5:]  # one module per argument (an argument is a qstr: < 256 bytes)

rom = None
if IMAGE:
    import vfs

    f = open(IMAGE, "rb")
    try:
        rom = f.read()  # stands for the flash partition: in the baseline
    finally:
        f.close()
    vfs.mount(vfs.VfsRom(rom), "/rom")
    sys.path.insert(0, "/rom")

import fakemachine as fm  # noqa: E402
import heaprig  # noqa: E402

try:
    import network  # host_tests/fakes/network.py: on a board, built in

    network.JOIN_MS = 0
except ImportError:
    network = None


def live():
    gc.collect()
    return gc.mem_alloc()


clock, METER = heaprig.setup(ROOT, END_MS)
lines = [0]


def out(line):
    lines[0] += 1


def result(key, value):
    print("RESULT %s %s" % (key, value))


base = live()
result("heap_base", base)
result("heap_total", gc.mem_alloc() + gc.mem_free())

if ONLY_IMPORTS:
    total = 0
    for name in ONLY_IMPORTS:
        before = live()
        __import__(name)
        used = live() - before
        total += used
        result("import", "%s %d" % (name, used))
    result("import_total", total)
    sys.exit(0)

link = None
ctx = None


def connected():
    """The link is up: MQTT's client, or the OCPP link's WebSocket."""
    return link.up if hasattr(link, "up") else link.client is not None


def run():
    global link, ctx
    import main  # noqa: F401  (the stub the board runs; it imports hw.boot)
    from hw import boot

    raw = boot.early_safe(fm, ROOT)
    try:
        micropython.alloc_emergency_exception_buf(100)
    except AttributeError:
        pass
    boot._read_json(ROOT + boot.CRASH_FILE)
    from hw import system

    ctx = system.build(fm, clock, raw, ROOT + boot.CONFIG_FILE, ROOT[:-1])
    raw = None  # as hw/boot.main does once the charger is built
    link = system.start_network(ctx, ROOT, out)
    import time

    if link is not None:
        deadline = time.ticks_add(time.ticks_ms(), 30000)
        while not connected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            w = link.step()
            if w > 0:
                time.sleep_ms(w if w < 50 else 50)
        if not connected():
            result("link_error", getattr(link, "last_error", None))
            raise SystemExit(4)
    start = live()
    result("heap_start", start - base)

    steps = [0, 0]

    def hook():
        # the network thread, every 50 ms of fake time (5 sleeps of the loop)
        steps[0] += 1
        if steps[0] % 5 == 0:
            link.step()
            steps[1] += 1

    if link is not None:
        clock.hook = hook
    for minute in range(MINUTES):
        system.run(ctx, max_ticks=6000, out=out)
    clock.hook = None
    session = live()
    result("heap_session", session - base)
    result("link_steps", steps[1])


try:
    run()
except MemoryError as e:
    result("memory_error", "at %d ticks: %r" % (ctx.ticks if ctx else 0, e))
    micropython.mem_info()
    sys.exit(3)

st = {}
try:
    st = heaprig.load(ROOT + "state.json")
except OSError:
    pass
result("ticks", ctx.ticks)
result("fake_ms", fm.WORLD.t_us // 1000)
result("state", ctx.app.out.state)
result("meter_requests", METER.polls)
result("meter_good", ctx.app.meter.good)
result("sessions", st.get("session_seq", 0))
result("status_lines", lines[0])
if link is not None:
    result("connects", link.connects)
    result("link_connected", 1 if connected() else 0)
    result("link_error", getattr(link, "last_error", None))
    link.close()
micropython.mem_info()
