"""A host fake of MicroPython's `network` module (the unix port has none).

Just what a station needs: `WLAN(STA_IF)` with `active()`, `connect()`,
`disconnect()`, `isconnected()`, `status()` and `ifconfig()`. As on the
boards, WLAN(STA_IF) is one object whatever the number of calls, and
connect() returns at once: the station is connected JOIN_MS later (the
association and DHCP a real one goes through), and only if it is active and
was given an SSID. A test (or a driver) can set JOIN_MS, or make the access
point unreachable with `FAKE.reachable = False`; `FAKE.joins` counts the
connect() calls. No socket is touched: the host's loopback is the "network".

Runs under CPython and MicroPython (unix port).
"""
import time

STA_IF = 0
AP_IF = 1

STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 1010

JOIN_MS = 200


class _Fake:
    def __init__(self):
        self.reachable = True
        self.joins = 0


FAKE = _Fake()


def _now_ms():
    try:
        return time.ticks_ms()  # MicroPython
    except AttributeError:
        return int(time.monotonic() * 1000)


def _since(t0):
    try:
        return time.ticks_diff(time.ticks_ms(), t0)
    except AttributeError:
        return _now_ms() - t0


class _Station:
    def __init__(self, interface):
        self.interface = interface
        self._active = False
        self._ssid = None
        self._since = None  # when connect() was called

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._since = None

    def connect(self, ssid=None, key=None, **kw):
        if not self._active:
            raise OSError("STA must be active")  # as the ESP32 port says
        FAKE.joins += 1
        self._ssid = ssid
        self._since = _now_ms()

    def disconnect(self):
        self._since = None

    def isconnected(self):
        return (self._active and self._ssid is not None and self._since is not None
                and FAKE.reachable and _since(self._since) >= JOIN_MS)

    def status(self, param=None):
        if self.isconnected():
            return STAT_GOT_IP
        return STAT_CONNECTING if self._since is not None else STAT_IDLE

    def ifconfig(self, config=None):
        if self.isconnected():
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")


_IFS = {}


def WLAN(interface=STA_IF):
    s = _IFS.get(interface)
    if s is None:
        s = _IFS[interface] = _Station(interface)
    return s
