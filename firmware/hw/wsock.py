"""A WebSocket client connection over MicroPython's socket (and ssl): the
socket-facing half of evse/ws.py, for the OCPP link's network thread.
Imported only when the OCPP backend is configured.

    ws = WebSocket(socket, os.urandom, ssl=ctx)   # ctx: an SSLContext for wss://
    ws.connect("ws://csms:9000/ocpp/CP1", b"ocpp1.6", ws_mod.basic_auth(u, pw))
    ws.send_text(b"[2,...]")
    op = ws.poll()            # 0, OP_TEXT (ws.dec.msg[:ws.dec.n]) or OP_CLOSE
    ws.close()

Every call returns within about `timeout_s` (a few such bounds for
connect: the TCP connect and TLS handshake, then the HTTP answer): the
socket is non-blocking after the handshake and every wait for more bytes
is against a deadline. poll() returns at once when nothing has come; once
a message's first byte is there, it reads the whole message (and answers
the pings in between) before that message's deadline, whatever pace its
bytes come at (a server dripping a byte at a time cannot hold the thread),
or raises OSError(ETIMEDOUT). A WsError from the decoder (protocol error,
message too big) is answered with that close code and the socket closed.

`socket`, `rand` (n -> n random bytes: os.urandom) and `ssl` are passed in:
MicroPython's on the board, tools/host/mpsocket.py's over CPython's in tests.
"""
from micropython import const

from evse import sleep_ms, ticks_add, ticks_diff, ticks_ms
from evse.ws import (CLOSE_NORMAL, Decoder, Encoder, HANDSHAKE, OP_BINARY, OP_CLOSE, OP_PING,
                     OP_PONG, OP_TEXT, WsError, b64, check_response, close_code, parse_url,
                     request)

_RX_BYTES = const(256)  # bytes read from the socket at a time
_HEAD_BYTES = const(1024)  # longest HTTP answer to the opening handshake
_POLL_MS = const(5)  # pause while bytes trickle in


class WebSocket:
    def __init__(self, socket, rand, max_bytes=2048, timeout_s=5, ssl=None):
        self.socket = socket
        self.rand = rand
        self.ssl = ssl
        self.timeout_ms = int(timeout_s * 1000)
        self.enc = Encoder(max_bytes)
        self.dec = Decoder(max_bytes)
        self._rx = bytearray(_RX_BYTES)
        self._mv = memoryview(self._rx)
        self._pos = 0  # unread bytes: _rx[_pos:_end]
        self._end = 0
        self.sock = None  # the stream (TLS or plain); None: not connected
        self.raw = None  # the TCP socket (its timeout governs the TLS one)
        self.closed = None  # the server's close code, once it closed
        self._closing = False  # our close frame is sent
        self.pongs = 0  # pongs received

    # ------------------------------------------------------- connection
    def connect(self, url, protocol, auth=None):
        """TCP (and TLS for wss://), then the opening handshake; raises
        OSError or WsError, with the socket closed."""
        tls, host, port, path = parse_url(url)
        if tls and self.ssl is None:
            raise WsError(HANDSHAKE, "wss:// without a TLS context")
        so = self.socket
        ai = so.getaddrinfo(host, port, 0, so.SOCK_STREAM)[0]
        s = so.socket(ai[0], so.SOCK_STREAM, ai[2])
        self.raw = self.sock = s
        self._pos = self._end = 0
        self.dec.reset()  # a new connection starts with no frame
        self.closed = None
        self._closing = False
        try:
            s.settimeout(self.timeout_ms / 1000)
            s.connect(ai[-1])
            if tls:
                self.sock = self.ssl.wrap_socket(s, server_hostname=host)
            key = b64(self.rand(16))
            self.sock.setblocking(False)  # from here every wait is against a deadline
            self._write(request(host, port, path, key, protocol, auth, tls))
            check_response(self._head(), key, protocol)
        except Exception:
            self._drop()
            raise

    def _head(self):
        """The server's answer up to its blank line (not included); what
        comes after it stays in _rx for the frames."""
        head = b""
        deadline = ticks_add(ticks_ms(), self.timeout_ms)
        while True:
            n = self._read(deadline)
            head += self._mv[:n]
            i = head.find(b"\r\n\r\n")
            if i >= 0:
                self._pos = n - (len(head) - i - 4)
                self._end = n
                return head[:i]
            if len(head) > _HEAD_BYTES:
                raise WsError(HANDSHAKE, "answer too long")

    def _read(self, deadline):
        """Bytes into _rx (their count, > 0) before `deadline`."""
        while True:
            n = self.sock.readinto(self._rx)
            if n:
                return n
            if n is not None:
                raise OSError(-1)  # 0: the server closed the connection
            if ticks_diff(deadline, ticks_ms()) <= 0:
                raise OSError(110)  # ETIMEDOUT
            sleep_ms(_POLL_MS)

    def _write(self, data):
        mv = memoryview(data)
        deadline = ticks_add(ticks_ms(), self.timeout_ms)
        while len(mv):
            n = self.sock.write(mv)
            if n:
                if n == len(mv):
                    return
                mv = mv[n:]
            elif ticks_diff(deadline, ticks_ms()) <= 0:
                raise OSError(110)
            else:
                sleep_ms(_POLL_MS)

    def _drop(self):
        s = self.sock
        self.sock = None
        if s is not None:
            try:
                s.close()
            except Exception:
                pass

    def connected(self):
        return self.sock is not None

    # ---------------------------------------------------------- frames
    def send(self, op, data, n=None):
        if self.sock is None:
            raise OSError(-1)
        self._write(self.enc.frame(op, data, self.rand(4), n))

    def send_text(self, data):
        self.send(OP_TEXT, data)

    def ping(self, data=b""):
        self.send(OP_PING, data)

    def poll(self):
        """0 when no whole message is there; OP_TEXT or OP_BINARY with the
        message in dec.msg[:dec.n] (until the next poll); OP_CLOSE once the
        server has closed (its code in `closed`; the close answered, the
        socket dropped). Pings are answered with a pong here."""
        d = self.dec
        d.release()  # the last message's buffer: its time was until this poll
        deadline = None
        while True:
            if self._pos == self._end:
                if self.sock is None:
                    raise OSError(-1)
                n = self.sock.readinto(self._rx)
                if not n:
                    if n is not None:
                        self._drop()
                        raise OSError(-1)  # closed with no close frame
                    if not d.busy():
                        return 0
                    if deadline is None:
                        deadline = ticks_add(ticks_ms(), self.timeout_ms)
                    elif ticks_diff(deadline, ticks_ms()) <= 0:
                        self._drop()
                        raise OSError(110)  # the message is too slow
                    sleep_ms(_POLL_MS)
                    continue
                self._pos = 0
                self._end = n
                if deadline is None:
                    deadline = ticks_add(ticks_ms(), self.timeout_ms)
            try:
                self._pos = d.feed(self._mv, self._pos, self._end)
            except WsError as e:
                self._fail(e.args[0])
                raise
            op = d.got
            if op == OP_PING:
                self.send(OP_PONG, d.ctl, d.n)
            elif op == OP_PONG:
                self.pongs += 1
            elif op == OP_CLOSE:
                self.closed = close_code(d.ctl, d.n)
                if not self._closing:
                    try:  # answer with the same code (5.5.1), then drop the TCP connection
                        self.send(OP_CLOSE, d.ctl, 2 if d.n >= 2 else 0)
                    except Exception:
                        pass
                self._drop()
                return OP_CLOSE
            elif op == OP_TEXT or op == OP_BINARY:
                return op

    def _fail(self, code):
        self._closing = True
        try:
            self.send(OP_CLOSE, bytes((code >> 8, code & 0xFF)))
        except Exception:
            pass
        self._drop()

    def close(self, code=CLOSE_NORMAL):
        """The closing handshake: our close frame, then (within the
        timeout) the server's, then the socket closed."""
        if self.sock is None:
            return
        self._closing = True
        try:
            self.send(OP_CLOSE, bytes((code >> 8, code & 0xFF)))
            deadline = ticks_add(ticks_ms(), self.timeout_ms)
            while self.sock is not None and ticks_diff(deadline, ticks_ms()) > 0:
                if self.poll() == 0:
                    sleep_ms(_POLL_MS)
        except Exception:
            pass
        self._drop()
