"""WebSocket (RFC 6455) for the OCPP link, client side, pure: the opening
handshake's request and the check of the server's answer (section 4), the
frames a client sends (masked, section 5.3) and an incremental decoder of the
frames a server sends. No socket here: hw/wsock.py moves the bytes.
Imported only when the OCPP backend is configured (docs/ocpp.md).

    key = b64(urandom(16))
    sock.write(request(host, port, path, key, b"ocpp1.6", basic_auth(u, pw)))
    check_response(head, key, b"ocpp1.6")   # the answer up to its blank line
    enc = Encoder(2048); sock.write(enc.frame(OP_TEXT, b"[2,...]", urandom(4)))
    dec = Decoder(2048); pos = dec.feed(buf, pos, end); if dec.got: ...; dec.release()

No extensions are offered (a server that names one is refused), so every
RSV bit must be clear. Frames from the server must not be masked (5.1).
A data message may come in fragments (5.4), with control frames between
them (5.5); its whole payload must fit in max_bytes, else
WsError(CLOSE_TOO_BIG) before any byte of it is stored.
"""
from binascii import b2a_base64

from micropython import const

OP_CONT = const(0)
OP_TEXT = const(1)
OP_BINARY = const(2)
OP_CLOSE = const(8)
OP_PING = const(9)
OP_PONG = const(10)
CLOSE_NORMAL = const(1000)
CLOSE_PROTOCOL = const(1002)
CLOSE_NONE = const(1005)  # a close frame without a status code (never sent, 7.4.1)
CLOSE_TOO_BIG = const(1009)
HANDSHAKE = const(0)  # WsError's code for a refused opening handshake
_GUID = const(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")  # section 1.3
_MAX_CONTROL = const(125)  # bytes of a control frame's payload (5.5)
_HEAD_MAX = const(10)  # a server frame's header: 2 + 8 length bytes, no mask key


class WsError(Exception):
    """args[0]: the close code to send (CLOSE_PROTOCOL, CLOSE_TOO_BIG), or
    HANDSHAKE; args[1]: what was wrong (for the log)."""


def b64(data):
    """Base64 of `data` as bytes, without binascii's trailing newline."""
    return b2a_base64(data)[:-1]


def accept_of(key):
    """The Sec-WebSocket-Accept a server must answer to `key` (4.2.2)."""
    try:
        from hashlib import sha1

        d = sha1(key + _GUID).digest()
    except ImportError:  # a port built without TLS has no SHA-1
        from evse.sha1 import digest

        d = digest(key + _GUID)
    return b64(d)


def basic_auth(user, password):
    """The Authorization header's value for HTTP Basic (RFC 7617): OCPP 1.6
    security profiles 1 and 2, the charge point's identity as the user and
    its AuthorizationKey as the password."""
    return b"Basic " + b64((user + ":" + password).encode())


def parse_url(url):
    """(tls, host, port, path) of a ws:// or wss:// URL; ValueError else."""
    from evse.url import split

    return split(url, "ws://", "wss://")


def request(host, port, path, key, protocol, auth=None, tls=False):
    """The opening handshake's request (4.1) as bytes: `key` the base64 of
    16 random bytes, `protocol` the one subprotocol asked for, `auth` the
    Authorization header's value (bytes) or None."""
    if port != (443 if tls else 80):
        host = "%s:%d" % (host, port)
    r = (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode()
         + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
         + b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + protocol + b"\r\n")
    if auth is not None:
        r += b"Authorization: " + auth + b"\r\n"
    return r + b"\r\n"


def check_response(head, key, protocol):
    """Raise WsError(HANDSHAKE, why) unless `head` (the server's answer up
    to, not including, its blank line) accepts the upgrade as 4.1 requires:
    status 101, Upgrade websocket, Connection upgrade, the Accept of `key`,
    no extension, and the subprotocol asked for (OCPP-J 1.6 section 3.1.2:
    a server that does not name it does not speak it)."""
    lines = bytes(head).split(b"\r\n")
    status = lines[0].split(b" ")
    if len(status) < 2 or not status[0].startswith(b"HTTP/1."):
        raise WsError(HANDSHAKE, "not an HTTP answer")
    if status[1] != b"101":
        raise WsError(HANDSHAKE, "HTTP " + status[1][:3].decode())
    upgrade = conn = accept = proto = False
    for line in lines[1:]:
        i = line.find(b":")
        if i <= 0:
            raise WsError(HANDSHAKE, "bad header line")
        name = line[:i].strip().lower()
        value = line[i + 1:].strip()
        if name == b"upgrade":
            upgrade = value.lower() == b"websocket"
        elif name == b"connection":
            for t in value.split(b","):
                if t.strip().lower() == b"upgrade":
                    conn = True
        elif name == b"sec-websocket-accept":
            accept = value == accept_of(key)
            if not accept:
                raise WsError(HANDSHAKE, "wrong Sec-WebSocket-Accept")
        elif name == b"sec-websocket-extensions":
            raise WsError(HANDSHAKE, "an extension not asked for")
        elif name == b"sec-websocket-protocol":
            proto = value == protocol
            if not proto:
                raise WsError(HANDSHAKE, "another subprotocol")
    if not (upgrade and conn):
        raise WsError(HANDSHAKE, "no upgrade to websocket")
    if not accept:
        raise WsError(HANDSHAKE, "no Sec-WebSocket-Accept")
    if not proto:
        raise WsError(HANDSHAKE, "no subprotocol " + protocol.decode())


def close_code(payload, n):
    """The status code of a close frame's payload[:n] (7.1.5)."""
    if n < 2:
        return CLOSE_NONE
    return (payload[0] << 8) | payload[1]


class Encoder:
    """Client frames (always FIN, masked). A data frame is built in a
    buffer of its own size, made for it and dropped once it is written: the
    link holds no buffer for the longest message between messages (about
    2 KB of heap, all the time, against a copy of the frame while it is
    sent, as the message's text already is). Control frames (pong, close:
    the answers that must go out whatever the heap holds) are built in the
    one small buffer made here."""

    def __init__(self, max_bytes):
        self.max = max_bytes
        self.ctl = bytearray(_MAX_CONTROL + 6)  # 2 header + 4 mask bytes

    def frame(self, op, data, mask, n=None):
        """A memoryview of the frame of opcode `op` carrying data[:n] (all of
        it when n is None), masked with the 4 bytes `mask` (from a strong
        random source, 10.3). Valid until the next call."""
        if n is None:
            n = len(data)
        if op >= OP_CLOSE:
            if n > _MAX_CONTROL:
                raise WsError(CLOSE_TOO_BIG, "frame too large to send")
            b = self.ctl
        elif n > self.max:
            raise WsError(CLOSE_TOO_BIG, "frame too large to send")
        else:
            b = bytearray((6 if n < 126 else 8) + n)
        b[0] = 0x80 | op
        if n < 126:
            b[1] = 0x80 | n
            h = 2
        else:  # max_bytes is below 64 KiB: the 16-bit length
            b[1] = 0xFE
            b[2] = n >> 8
            b[3] = n & 0xFF
            h = 4
        for i in range(4):
            b[h + i] = mask[i]
        h += 4
        for i in range(n):
            b[h + i] = data[i] ^ mask[i & 3]
        return memoryview(b)[:h + n]


class Decoder:
    """The server's frames, from bytes in whatever pieces they come.

    feed(data, pos, end) takes bytes from data[pos:end] and returns the
    position after the last one it took; it stops right after a frame that
    completes something, with `got` its opcode and `n` its length:
    OP_TEXT/OP_BINARY, the whole message in msg[:n] (fragments joined);
    OP_CLOSE, OP_PING, OP_PONG, the payload in ctl[:n]. Otherwise `got` is
    0. Both stay valid until the next feed, or release(). `busy()`: in the
    middle of a frame or a fragmented message. Raises WsError(code, why) on
    a protocol violation (the caller sends that close code and drops the
    connection).

    A data message is gathered in a buffer made when its first frame's
    header has come: of that frame's length when it is the whole message,
    of max_bytes when fragments follow (their total is not told before).
    release() drops it once the message is used, so between messages the
    decoder holds only its small buffers, not one of max_bytes.
    """

    def __init__(self, max_bytes):
        self.max = max_bytes
        self.ctl = bytearray(_MAX_CONTROL)
        self._h = bytearray(_HEAD_MAX)
        self.reset()

    def reset(self):
        """Forget any frame under way (a new connection)."""
        self.msg = b""
        self.got = 0
        self.n = 0
        self._hn = 0  # header bytes held
        self._need = 2  # header bytes this frame's header has
        self._left = -1  # payload bytes of the frame still to come; -1: in its header
        self._op = 0  # the frame's opcode
        self._fin = 0
        self._kind = 0  # the data message's opcode while its fragments come, else 0
        self._mn = 0  # bytes of the data message held
        self._cn = 0  # bytes of the control frame held

    def busy(self):
        return self._hn > 0 or self._left >= 0 or self._kind != 0

    def release(self):
        """The data message delivered is used: drop its buffer (not one
        still being gathered)."""
        if not self._kind:
            self.msg = b""

    def feed(self, data, pos, end):
        self.got = 0
        while pos < end:
            if self._left < 0:
                h = self._h
                hn = self._hn
                h[hn] = data[pos]
                pos += 1
                hn += 1
                self._hn = hn
                if hn == 2:
                    if h[0] & 0x70:
                        raise WsError(CLOSE_PROTOCOL, "RSV bit set")
                    if h[1] & 0x80:
                        raise WsError(CLOSE_PROTOCOL, "masked server frame")
                    ln = h[1] & 0x7F
                    self._need = 2 if ln < 126 else (4 if ln == 126 else 10)
                if hn == self._need:
                    self._start()
                    if self._left == 0 and self._done():
                        return pos
                continue
            k = end - pos
            if k > self._left:
                k = self._left
            if self._op >= OP_CLOSE:
                o = self._cn
                self.ctl[o:o + k] = data[pos:pos + k]
                self._cn = o + k
            else:
                o = self._mn
                self.msg[o:o + k] = data[pos:pos + k]
                self._mn = o + k
            pos += k
            self._left -= k
            if self._left == 0 and self._done():
                return pos
        return pos

    def _start(self):
        h = self._h
        op = h[0] & 0x0F
        fin = h[0] & 0x80
        need = self._need
        if need == 2:
            n = h[1] & 0x7F
        elif need == 4:
            n = (h[2] << 8) | h[3]
        else:
            if h[2] | h[3] | h[4] | h[5]:  # 2**32 bytes or more (no big int made)
                raise WsError(CLOSE_TOO_BIG, "message too large")
            n = (h[6] << 24) | (h[7] << 16) | (h[8] << 8) | h[9]
        if op >= OP_CLOSE:
            if op > OP_PONG:
                raise WsError(CLOSE_PROTOCOL, "unknown opcode")
            if not fin or n > _MAX_CONTROL:
                raise WsError(CLOSE_PROTOCOL, "fragmented or long control frame")
            if op == OP_CLOSE and n == 1:
                raise WsError(CLOSE_PROTOCOL, "close frame of 1 byte")
            self._cn = 0
        elif op == OP_CONT:
            if not self._kind:
                raise WsError(CLOSE_PROTOCOL, "continuation of nothing")
        elif op <= OP_BINARY:
            if self._kind:
                raise WsError(CLOSE_PROTOCOL, "new message inside a fragmented one")
            self._kind = op
            self._mn = 0
        else:
            raise WsError(CLOSE_PROTOCOL, "unknown opcode")
        if op < OP_CLOSE:
            if self._mn + n > self.max:
                raise WsError(CLOSE_TOO_BIG, "message too large")
            if op != OP_CONT:  # a new message: its buffer, made only once it fits
                self.msg = bytearray(n if fin else self.max)
        self._op = op
        self._fin = fin
        self._left = n
        self._hn = 0
        self._need = 2

    def _done(self):
        """The frame's payload is all there: True when that completes something."""
        self._left = -1
        op = self._op
        if op >= OP_CLOSE:
            self.got = op
            self.n = self._cn
            return True
        if not self._fin:
            return False
        self.got = self._kind
        self.n = self._mn
        self._kind = 0
        return True
