"""The watchdog's policy: what it watches, and when it lets the board reset.

machine.WDT resets the board when it is not fed for WDT_TIMEOUT_MS. Only
the control loop feeds it (hw/system.run), through `Supervisor.check`,
after each control step that completed. What can fail, and what follows:

- The control step hangs (a driver call that never returns, a loop that
  never ends) or the control thread dies: nothing feeds the WDT and the
  board resets within WDT_TIMEOUT_MS into the same safe boot (main.py),
  whatever the contactor does. This is the one case that resets with the
  contactor closed: with the control loop stuck, nothing else would open it.
- The network thread is stuck (it has not shown life for `net_stall_ms`:
  a socket call that never returns, a loop bug) or dead (Link.run ended on
  an exception). Charging is not at risk: the control loop runs on, and
  a reset would cut a charge under way. So the supervisor keeps feeding
  while the contactor is closed, and stops once it is open: then the
  control loop puts the board in its safe state (pilot steady +12 V, no
  PWM: no new charge can start) and the reset brings the network back.
  The network thread shows life with every pass of its loop and every
  message it sends (Link.alive, a ticks_ms value), at least every few
  socket timeouts even against the slowest broker; NET_STALL_MS is well
  beyond that.

`late` counts control steps that came more than _LATE_MS after the one
before (IEC 61851-1 gives the contactor 100 ms to open after the vehicle
asks), `max_gap_ms` is the longest such gap.
"""
from micropython import const

WDT_TIMEOUT_MS = const(2000)  # ESP32: >= 1 s; RP2040: <= 8388 ms
NET_STALL_MS = const(180000)
_LATE_MS = const(100)

# Supervisor.reason
OK = const(0)
NET_STUCK = const(1)  # no sign of life from the network thread for net_stall_ms
NET_DEAD = const(2)  # the network thread ended on an exception
OTA = const(3)  # the network thread asked for a reset (evse/ota.py Runner: an update's switch)
REASONS = ("ok", "network thread stuck", "network thread died", "update: reboot")


class Supervisor:
    def __init__(self, wdt, ticks_diff, now, net_stall_ms=NET_STALL_MS):
        self._wdt = wdt
        self._diff = ticks_diff
        self.net_stall_ms = net_stall_ms
        self.net = None  # the network thread's Link (its `alive`), once there is one
        self.net_dead = False  # set by the network thread's runner
        self.reason = OK  # why feeding stopped (OK: it has not)
        self.holding = False  # the network is down, the reset waits for the contactor
        self.want = OK  # a reset the network thread asked for (request)
        self.late = 0
        self.max_gap_ms = 0
        self._last = now

    def watch(self, link):
        """From now on, also watch the network thread running `link`."""
        self.net = link

    def request(self, reason=OTA):
        """From the network thread: reset the board, through the same path
        as a stuck network (feeding stops once the contactor is open)."""
        self.want = reason

    def check(self, now, contactor):
        """After a completed control step at `now`: feed the WDT, unless the
        network thread is stuck or dead and the contactor is open. Returns
        False once feeding has stopped (it never starts again: the reset
        follows within WDT_TIMEOUT_MS)."""
        gap = self._diff(now, self._last)
        self._last = now
        if gap > _LATE_MS:
            self.late += 1
        if gap > self.max_gap_ms:
            self.max_gap_ms = gap
        if self.reason != OK:
            return False
        net = self.net
        down = OK
        if self.net_dead:
            down = NET_DEAD
        elif self.want != OK:
            down = self.want
        elif net is not None and self._diff(now, net.alive) > self.net_stall_ms:
            down = NET_STUCK
        if down != OK:
            if not contactor:
                self.reason = down
                return False
            self.holding = True  # charging: not now
        else:
            self.holding = False
        self._wdt.feed()
        return True
