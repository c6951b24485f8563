"""The two-thread structure of the App and the Link (README, "Backend
link (MQTT)"; docs/mqtt.md, "Never blocking"). On the board, main.py runs
it through hw.system.run_all (its control loop adds the watchdog
supervisor, the button and status lines); `control_loop` here is the same
loop on the bare App, which the host tests run beside a real Link.

    control thread  control_loop(): App.tick every 10 ms, on deadlines
                    (ticks_add); reads the board, steps the charger, drives
                    the outputs, writes the journal; never touches a socket.
    network thread  Link.run(): the MQTT client; may block in a socket call
                    for up to SOCK_TIMEOUT_S, which the control thread does
                    not notice.

On the Pico W (RP2040) the main thread runs on core 0 and `_thread` starts
the second on core 1: the network (cyw43 and lwIP, which belong to core 0)
stays in the main thread and the control loop gets core 1 to itself. On the
ESP32 both threads share the GIL on one core; a thread waiting in a socket
call has released the GIL, so the control thread runs on time. The two talk
only through the App's Bus (lock-free rings) and the journal's immutable
`live` tuple; all flash I/O is in the control thread (MicroPython's VFS is
not thread-safe).

The host simulator (tools/sim.py --broker) has the same two threads: its
runner ticks the App in the main thread on the same 10 ms deadlines, and
the same Link runs in a second thread with a client of the same API.
"""
from evse.ticks import sleep_ms, ticks_add, ticks_diff, ticks_ms

CONTROL_PERIOD_MS = 10


class LoopStats:
    def __init__(self, late_ms=50):
        self.ticks = 0
        self.max_gap_ms = 0  # longest time between two control steps
        self.overruns = 0  # deadlines missed by more than a period
        self.late_ms = late_ms
        self.late = 0  # gaps longer than late_ms (the project's goal: none)


def control_loop(app, stats, period_ms=CONTROL_PERIOD_MS, wdt=None, stop=None):
    """Tick the App every `period_ms` until it asks for a reboot (or `stop()`).
    `wdt`: a machine.WDT, fed every tick, so that a control thread that dies
    or hangs resets the board."""
    nxt = ticks_ms()
    last = nxt
    while stop is None or not stop():
        now = ticks_ms()
        gap = ticks_diff(now, last)
        if gap > stats.max_gap_ms:
            stats.max_gap_ms = gap
        if gap > stats.late_ms:
            stats.late += 1
        last = now
        try:
            app.tick(now)
        except Exception:
            app.board.safe()  # then die: the watchdog resets the board
            raise
        stats.ticks += 1
        if wdt is not None:
            wdt.feed()
        if app.reboot_requested:
            return
        nxt = ticks_add(nxt, period_ms)
        d = ticks_diff(nxt, ticks_ms())
        if d > 0:
            sleep_ms(d)
        elif d < -period_ms:
            stats.overruns += 1
            nxt = ticks_ms()
