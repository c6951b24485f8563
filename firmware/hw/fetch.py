"""An update bundle downloaded over HTTP(S) in the network thread, a bounded
piece per step, into evse/ota.py's Stager (docs/ota.md, "Delivery").
Imported only while an update downloads.

    f = Fetch(socket, "https://fw.example.com/evse-0.7.0.evu", stager, ssl=ctx)
    while f.step() == RUNNING:   # each call returns within about timeout_s
        ...                       # the rest of the network thread's pass

A dropped connection, a timeout or a 5xx is tried again (a GET from the
byte the Stager has, `Range: bytes=N-`), up to `retries` times in a row
without progress, with a growing pause; the download goes on from there,
whatever the server does with the range (a 200 is read past the bytes
already had). A 4xx, a bundle the Stager refuses (signature, port, space,
hash) or a file shorter than its manifest ends it: FAILED, with `error`.
After the TCP connect and the head, the socket is non-blocking: a step
reads what is there (at most _READS_PER_STEP buffers) and returns; a
server that sends nothing for timeout_s is a dropped connection.

`socket` and `ssl` (an SSLContext for https://, or None) are passed in:
MicroPython's on the board, tools/host/mpsocket.py's in tests. `hold()`,
when given, is asked before each TLS connect: True puts it off (the
link's rule for boards without a CP interlock: no handshake while the
contactor is closed).
"""
from micropython import const

from evse import sleep_ms, ticks_add, ticks_diff, ticks_ms
from evse.http import HttpError, answer, parse_url, request, resolve

RUNNING = const(0)
DONE = const(1)
FAILED = const(2)

_RX_B = const(512)  # bytes read from the socket at a time
_READS_PER_STEP = const(8)
_HEAD_B = const(2048)  # longest answer head
_POLL_MS = const(5)
_PAUSE_MS = const(2000)  # first pause before a retry; doubles up to _PAUSE_MAX_MS
_PAUSE_MAX_MS = const(60000)
_REDIRECTS = const(3)


class Fetch:
    def __init__(self, socket, url, sink, ssl=None, timeout_s=10, retries=5, hold=None,
                 pause_ms=_PAUSE_MS):
        self.socket = socket
        self.ssl = ssl
        self.url = url
        self.sink = sink  # feed(data), finish(), got, total (evse.ota.Stager)
        self.timeout_ms = int(timeout_s * 1000)
        self.retries = retries
        self.hold = hold
        self.pause_ms = pause_ms
        self.state = RUNNING
        self.error = None  # why it failed (or the last retry's reason)
        self.tries = 0  # failed attempts in a row without progress
        self.opens = 0  # connections made
        self.redirects = 0
        self.sock = None
        self._buf = bytearray(_RX_B)
        self._mv = memoryview(self._buf)
        self._skip = 0  # body bytes to pass over (a 200 after a dropped connection)
        self._left = -1  # body bytes still to come on this connection (-1: until it closes)
        self._seen = 0  # when bytes last came
        self._at = ticks_ms()  # the next connection not before this
        parse_url(url)  # HttpError now rather than later

    def progress(self):
        """(bytes had, bytes the bundle has: 0 until its manifest is read)."""
        return self.sink.got, self.sink.total

    def step(self):
        if self.state != RUNNING:
            return self.state
        try:
            if self.sock is None:
                if ticks_diff(self._at, ticks_ms()) > 0:
                    return RUNNING
                self._open()
            else:
                self._body()
        except HttpError as e:
            self._end(FAILED, e.args[0])
        except OSError as e:
            self._retry("connection: %r" % e)
        except Exception as e:  # the Stager's OtaError (code, text), or a bug: stop
            a = e.args
            self._end(FAILED, a[1] if len(a) > 1 else repr(e))
        return self.state

    def cancel(self, why="cancelled"):
        self._end(FAILED, why)

    # ---------------------------------------------------------- internals
    def _open(self):
        tls, host, port, path = parse_url(self.url)
        if tls:
            if self.ssl is None:
                raise HttpError("https:// without a CA on the board (mqtt_ca)")
            if self.hold is not None and self.hold():
                return  # asked again at the next step
        so = self.socket
        ai = so.getaddrinfo(host, port, 0, so.SOCK_STREAM)[0]
        s = so.socket(ai[0], so.SOCK_STREAM, ai[2])
        self.sock = s
        s.settimeout(self.timeout_ms / 1000)
        s.connect(ai[-1])
        if tls:
            self.sock = s = self.ssl.wrap_socket(s, server_hostname=host)
        self.opens += 1
        have = self.sink.got
        s.write(request(host, port, path, have, tls))
        s.setblocking(False)  # from here every wait is against a deadline
        head, n = self._head()
        code, length, first, where = answer(head)
        if code in (301, 302, 303, 307, 308) and where is not None:
            self._close()
            self.redirects += 1
            if self.redirects > _REDIRECTS:
                raise HttpError("more than %d redirects" % _REDIRECTS)
            self.url = resolve(self.url, where)
            parse_url(self.url)
            return
        if code >= 500:
            raise OSError("HTTP %d" % code)
        if code == 200:
            self._skip = have  # the whole file again: pass over what was had
        elif code == 206:
            if first > have:
                raise HttpError("the server sent a range from byte %d, not %d" % (first, have))
            self._skip = have - first
        else:
            raise HttpError("HTTP %d" % code)
        self._left = length
        self._seen = ticks_ms()
        if n:
            self._take(self._mv[len(self._buf) - n:], n)  # body bytes that came with the head
        self._check_end(False)

    def _head(self):
        """The answer's head (bytes before its blank line) and the count of
        body bytes read with it, left at the end of _buf."""
        head = b""
        deadline = ticks_add(ticks_ms(), self.timeout_ms)
        while True:
            n = self.sock.readinto(self._buf)
            if n == 0:
                raise OSError("closed before the answer")
            if n is None:
                if ticks_diff(deadline, ticks_ms()) <= 0:
                    raise OSError("no answer")
                sleep_ms(_POLL_MS)
                continue
            head += self._mv[:n]
            i = head.find(b"\r\n\r\n")
            if i >= 0:
                rest = len(head) - i - 4
                b = self._buf
                b[len(b) - rest:] = head[i + 4:]
                return head[:i], rest
            if len(head) > _HEAD_B:
                raise HttpError("answer head too long")

    def _body(self):
        for _ in range(_READS_PER_STEP):
            n = self.sock.readinto(self._buf)
            if n is None:
                if ticks_diff(ticks_ms(), self._seen) >= self.timeout_ms:
                    raise OSError("no bytes for %d s" % (self.timeout_ms // 1000))
                return
            if n == 0:
                self._check_end(True)
                return
            self._seen = ticks_ms()
            self._take(self._mv, n)
            if self._check_end(False):
                return

    def _take(self, mv, n):
        if self._left >= 0:
            if n > self._left:
                n = self._left  # beyond the announced length: not the file's
            self._left -= n
        k = self._skip
        if k:
            if k >= n:
                self._skip = k - n
                return
            self._skip = 0
        else:
            k = 0
        got = self.sink.got
        self.sink.feed(mv[k:n])
        if self.sink.got > got:
            self.tries = 0  # progress: the retries start again

    def _check_end(self, closed):
        """True once the download has ended (or the connection has)."""
        s = self.sink
        if s.total and s.got >= s.total:
            self._close()
            s.finish()
            self._end(DONE, None)
            return True
        if self._left == 0 or closed:
            if self._left == 0 and not self._skip:
                # the server's whole file is had and the bundle is not complete
                self._close()
                s.finish()  # OtaError(E_TRUNCATED)
                self._end(FAILED, "the file ends early")
                return True
            raise OSError("connection closed at byte %d" % s.got)
        return False

    def _retry(self, why):
        self._close()
        self.error = why
        self.tries += 1
        if self.tries > self.retries:
            self._end(FAILED, why)
            return
        w = self.pause_ms << (self.tries - 1 if self.tries < 6 else 5)
        self._at = ticks_add(ticks_ms(), w if w < _PAUSE_MAX_MS else _PAUSE_MAX_MS)

    def _end(self, state, why):
        self._close()
        if state == FAILED and self.state == RUNNING:
            try:
                self.sink.cancel()
            except Exception:
                pass
        self.state = state
        self.error = why

    def _close(self):
        s = self.sock
        self.sock = None
        if s is not None:
            try:
                s.close()
            except Exception:
                pass
