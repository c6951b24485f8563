"""The simulator's network side inside MicroPython's unix port
(tools/sim.py --realtime --broker HOST:PORT --micropython).

The same runner hooks as tools/simnet.py's SimNet (boot, power_off, cmd,
broker, take), with the firmware's Link in a `_thread` and
micropython-lib's umqtt.simple found on MICROPYPATH (build/umqtt-<v>),
the way the board runs them. What belongs to the host stays in sim.py
(CPython): the proxy that scenario `broker` events cut and restore, and the
backend client that publishes `cmd` events and brings back the replies.
They talk over this process's stdio:

    stdout  @C cmd <json>       publish this command on the command topic
            @C broker up|down   switch the proxy
    stdin   @R <json>           [replies, notes] that arrived since the last

The Link's log lines become trace notes, as with SimNet.
"""
import json
import select
import sys
import time

import _thread

from simcore.simapp import SimApp
from evse.link import Link

LINK_JOIN_MS = 1000  # for a Link's thread to finish its step at a reboot or the end


def _epoch():
    return int(time.time())


class UnixNet:
    def __init__(self, out=None):
        self.out = out or sys.stdout.write
        self.app = None
        self.link = None  # (link, state): state = [halt, done]
        self.links = []
        self._lock = _thread.allocate_lock()  # no GIL in this port: lists are guarded
        self._notes = []
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._buf = ""

    # ------------------------------------------------------- runner hooks
    def boot(self, board, cfg, now, meter, flash_dir, grid=None):
        graceful = self.app is not None and self.app.reboot_requested
        self._stop_link(graceful)
        app = SimApp(board, cfg, now, meter, flash_dir, backend=True, clock=_epoch,
                  grid=grid)
        ssl = None
        if cfg["mqtt_tls"]:  # the port's own ssl module, as the board's
            import ssl as _ssl

            from evse.tls import context

            f = open(cfg["mqtt_ca"], "rb")
            try:
                ssl = context(_ssl, f.read())
            finally:
                f.close()
        link = Link(app, cfg, cfg["mqtt_device_id"], ssl=ssl, log=self._link_log)
        state = [False, False]
        self.link = (link, state)
        self.links.append(link)
        self.app = app
        _thread.start_new_thread(self._run, (link, state))
        return app

    def _run(self, link, state):
        try:
            link.run(time.sleep_ms, lambda: state[0])
        finally:
            state[1] = True

    def _link_log(self, text):
        with self._lock:
            self._notes.append(text)

    def _stop_link(self, graceful=False, wait=False):
        """As SimNet's: a power cut closes the socket at once; a reboot lets
        the thread finish its step and closes in order (offline, then
        DISCONNECT) in a thread of its own; `wait` at the end of a run."""
        if self.link is None:
            return
        link, state = self.link
        self.link = None
        if not graceful or link.client is None:
            link.stop()
            if wait:
                self._join(state)
            return

        def close():
            state[0] = True
            if self._join(state):
                link.close()
            else:
                link.stop()

        if wait:
            close()
        else:
            _thread.start_new_thread(close, ())

    def _join(self, state):
        t0 = time.ticks_ms()
        while not state[1] and time.ticks_diff(time.ticks_ms(), t0) < LINK_JOIN_MS:
            time.sleep_ms(5)
        return state[1]

    def power_off(self):
        self._stop_link()
        self.app = None

    def cmd(self, msg, now=None):
        self.out("@C cmd %s\n" % json.dumps(msg))

    def broker(self, up):
        self.out("@C broker %s\n" % ("up" if up else "down"))

    def take(self):
        replies = []
        notes = []
        while self._poll.poll(0):
            c = sys.stdin.read(1)
            if not c:
                break
            if c != "\n":
                self._buf += c
                continue
            line, self._buf = self._buf, ""
            if line.startswith("@R "):
                r, n = json.loads(line[3:])
                replies.extend(r)
                notes.extend(n)
        with self._lock:
            if self._notes:
                notes = self._notes + notes
                self._notes = []
        return replies, notes

    def close(self):
        self._stop_link(graceful=True, wait=True)
