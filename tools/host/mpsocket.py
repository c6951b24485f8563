"""MicroPython's `socket` module, as far as micropython-lib's umqtt.simple
uses it, over CPython's (host only).

umqtt.simple calls `socket.socket()`, `socket.getaddrinfo(host, port)` and,
on the socket, `settimeout`, `setblocking`, `connect`, `read(n)`,
`write(buf[, n])` and `close`. CPython's sockets have no `read`/`write`
stream methods; this gives them, with MicroPython's semantics:

- `read(n)` returns n bytes, fewer only at the end of the stream (b"" when
  it has ended), None on a non-blocking socket with nothing there (or what
  arrived so far); a timeout raises OSError(ETIMEDOUT) (CPython makes that a
  TimeoutError), a dead connection OSError;
- `write(buf, n)` writes buf[:n] (all of it when blocking or with a timeout);
- `setblocking(True)` means "wait forever" (no timeout), as on the board.

`umqtt_host.load()` imports the unmodified umqtt/simple.py with its
`import socket` answered by this module; nothing else sees it.

`tls(ctx)` turns a CPython `ssl.SSLContext` into what MicroPython's
`ssl.SSLContext` is to umqtt.simple: `wrap_socket(sock, server_hostname=...)`
on one of these sockets returns a socket of the same kind. As on the board,
the timeout of the socket that was wrapped governs the TLS socket too.
"""
import errno
import socket as _s
import ssl as _ssl

AF_INET = _s.AF_INET
AF_INET6 = _s.AF_INET6
SOCK_STREAM = _s.SOCK_STREAM
SOCK_DGRAM = _s.SOCK_DGRAM
IPPROTO_TCP = _s.IPPROTO_TCP
SOL_SOCKET = _s.SOL_SOCKET
SO_REUSEADDR = _s.SO_REUSEADDR

_AGAIN = (BlockingIOError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    """As MicroPython's: (family, type, proto, canonname, sockaddr) tuples;
    IPv4 and TCP unless asked otherwise (umqtt.simple makes an AF_INET
    socket and connects it to the first address)."""
    return _s.getaddrinfo(host, port, af or AF_INET, type or SOCK_STREAM, proto, flags)


def _timeout():
    return OSError(errno.ETIMEDOUT, "timed out")


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0, _sock=None):
        self.s = _sock if _sock is not None else _s.socket(af, type, proto)

    def settimeout(self, t):
        self.s.settimeout(t)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def connect(self, addr):
        try:
            self.s.connect(addr)
        except _s.timeout:
            raise _timeout() from None

    def read(self, n=-1):
        if n is None or n < 0:
            raise ValueError("read() needs a size here")
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.s.recv(n - len(buf))
            except _AGAIN:
                return buf if buf else None
            except _s.timeout:
                raise _timeout() from None
            if not chunk:
                break
            buf += chunk
        return buf

    recv = read

    def readinto(self, buf, n=None):
        data = self.read(len(buf) if n is None else n)
        if data is None:
            return None
        buf[:len(data)] = data
        return len(data)

    def write(self, buf, n=None):
        data = memoryview(buf)
        if n is not None:
            data = data[:n]
        try:
            if self.s.gettimeout() == 0:
                return self.s.send(data)
            self.s.sendall(data)
        except _AGAIN:
            return None
        except _s.timeout:
            raise _timeout() from None
        return len(data)

    send = write

    def close(self):
        s = self.s
        try:
            s.shutdown(_s.SHUT_RDWR)
        except OSError:
            pass
        s.close()


class _TLSContext:
    def __init__(self, ctx):
        self.ctx = ctx

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        try:
            t = self.ctx.wrap_socket(sock.s, server_side=server_side,
                                     do_handshake_on_connect=do_handshake_on_connect,
                                     server_hostname=server_hostname)
        except _s.timeout:
            raise _timeout() from None
        sock.s = t  # CPython detached the plain socket: its timeout is now the TLS one's
        return socket(_sock=t)


def tls(ctx):
    """A CPython ssl.SSLContext as MicroPython's, for MQTTClient(ssl=...)."""
    return _TLSContext(ctx)
