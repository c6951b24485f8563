"""Host (CPython) stand-in for micropython-lib's umqtt.simple.

The firmware's link (firmware/evse/link.py) runs on the board with
umqtt.simple and in the simulator and the tests with this module, so this
keeps umqtt.simple's API and its blocking behaviour over a real TCP (or TLS)
connection; it is written here from the MQTT 3.1.1 specification.

  MQTTClient(client_id, server, port=0, user=None, password=None,
             keepalive=0, ssl=None)         ssl: an SSLContext (wrap_socket)
  set_callback(f)      f(topic: bytes, msg: bytes) for incoming PUBLISHes
  set_last_will(topic, msg, retain=False, qos=0)
  connect(clean_session=True) -> session present flag; blocks until CONNACK
  publish(topic, msg, retain=False, qos=0)   QoS 1 blocks until its PUBACK,
                                             handing PUBLISHes that arrive
                                             meanwhile to the callback
  subscribe(topic, qos=0)                    blocks until its SUBACK
  wait_msg()          blocks for one packet; returns its type byte, None
                      for a PINGRESP (or nothing, when non-blocking)
  check_msg()         wait_msg() on a non-blocking socket: None at once
                      when nothing is there; the socket is left blocking
  ping(), disconnect()
  sock                the connection, with MicroPython's stream methods
                      read(n) / write(buf, n) / setblocking / settimeout /
                      close. Blocking means without a timeout unless one is
                      set, as on the board; a dead connection raises
                      OSError; the end of the stream reads as b"".

Module-level `socket` is what connect() makes its socket with (the link
wraps it to give every socket a timeout), as in umqtt.simple.
"""
import socket
import ssl as _ssl
import struct
from socket import SHUT_RDWR, SOCK_STREAM


class MQTTException(Exception):
    pass


class _Stream:
    """A CPython socket as a MicroPython stream."""

    def __init__(self, sock):
        self.s = sock

    def read(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.s.recv(n - len(buf))
            except (BlockingIOError, _ssl.SSLWantReadError):
                return buf if buf else None  # non-blocking: what is there
            if not chunk:
                break  # end of stream
            buf += chunk
        return buf

    def write(self, buf, n=None):
        data = memoryview(buf)
        if n is not None:
            data = data[:n]
        self.s.sendall(data)
        return len(data)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def settimeout(self, t):
        self.s.settimeout(t)

    def close(self):
        try:
            self.s.shutdown(SHUT_RDWR)
        except OSError:
            pass
        self.s.close()


def _b(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def _str16(s):
    s = _b(s)
    return struct.pack("!H", len(s)) + s


def _varlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None):
        if port == 0:
            port = 8883 if ssl else 1883
        self.client_id = client_id
        self.sock = None
        self.server = server
        self.port = port
        self.ssl = ssl
        self.pid = 0
        self.cb = None
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False
        self._puback = None
        self._suback = None

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not 0 <= qos <= 2 or not topic:
            raise ValueError("bad last will")
        self.lw_topic = topic
        self.lw_msg = msg
        self.lw_qos = qos
        self.lw_retain = retain

    def _send(self, first, body):
        self.sock.write(bytes([first]) + _varlen(len(body)) + body)

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def connect(self, clean_session=True):
        family, kind, proto, _, addr = socket.getaddrinfo(
            self.server, self.port, 0, SOCK_STREAM)[0]
        raw = socket.socket(family, kind, proto)
        try:
            raw.connect(addr)
            if self.ssl:
                raw = self.ssl.wrap_socket(raw, server_hostname=self.server)
        except BaseException:
            raw.close()
            raise
        self.sock = _Stream(raw)
        flags = 0x02 if clean_session else 0
        payload = _str16(self.client_id)
        if self.lw_topic:
            flags |= 0x04 | self.lw_qos << 3 | (0x20 if self.lw_retain else 0)
            payload += _str16(self.lw_topic) + _str16(self.lw_msg)
        if self.user:
            flags |= 0xC0
            payload += _str16(self.user) + _str16(self.pswd or b"")
        if not 0 <= self.keepalive < 65536:
            raise ValueError("keepalive")
        self._send(0x10, _str16(b"MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive)
                   + payload)
        resp = self.sock.read(4)
        if resp is None or len(resp) < 4:
            raise OSError(-1, "connection closed before CONNACK")
        if resp[0] != 0x20 or resp[1] != 0x02:
            raise MQTTException("bad CONNACK")
        if resp[3] != 0:
            raise MQTTException(resp[3])
        return resp[2] & 1

    def disconnect(self):
        self.sock.write(b"\xe0\x00")
        self.sock.close()

    def ping(self):
        self.sock.write(b"\xc0\x00")

    def publish(self, topic, msg, retain=False, qos=0):
        if qos not in (0, 1):
            raise MQTTException("QoS %r not supported" % (qos,))
        body = _str16(topic)
        if qos:
            pid = self._next_pid()
            body += struct.pack("!H", pid)
        body += _b(msg)
        if len(body) >= 2097152:
            raise MQTTException("message too large")
        self._send(0x30 | qos << 1 | (1 if retain else 0), body)
        if qos == 1:
            while True:
                if self.wait_msg() == 0x40 and self._puback == pid:
                    return

    def subscribe(self, topic, qos=0):
        if self.cb is None:
            raise MQTTException("subscribe callback is not set")
        pid = self._next_pid()
        self._send(0x82, struct.pack("!H", pid) + _str16(topic) + bytes([qos]))
        while True:
            if self.wait_msg() == 0x90 and self._suback[0] == pid:
                if self._suback[1] == 0x80:
                    raise MQTTException(0x80)
                return

    def _recv_len(self):
        n = 0
        sh = 0
        while True:
            b = self.sock.read(1)
            if not b:
                raise OSError(-1, "connection closed")
            n |= (b[0] & 0x7F) << sh
            if not b[0] & 0x80:
                return n
            sh += 7
            if sh > 21:
                raise MQTTException("bad remaining length")

    def wait_msg(self):
        res = self.sock.read(1)
        self.sock.setblocking(True)
        if res is None:
            return None
        if res == b"":
            raise OSError(-1, "connection closed")
        op = res[0]
        sz = self._recv_len()
        body = self.sock.read(sz) if sz else b""
        if body is None or len(body) < sz:
            raise OSError(-1, "connection closed")
        if op == 0xD0:  # PINGRESP
            return None
        if op & 0xF0 == 0x30:
            qos = (op >> 1) & 3
            tl = body[0] << 8 | body[1]
            topic = body[2:2 + tl]
            i = 2 + tl
            pid = None
            if qos:
                pid = body[i] << 8 | body[i + 1]
                i += 2
            self.cb(topic, body[i:])
            if qos == 1:
                self.sock.write(b"\x40\x02" + struct.pack("!H", pid))
            elif qos == 2:
                raise MQTTException("QoS 2 not supported")
            return op
        if op == 0x40 and sz >= 2:
            self._puback = body[0] << 8 | body[1]
        elif op == 0x90 and sz >= 3:
            self._suback = (body[0] << 8 | body[1], body[2])
        return op

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()
