"""A real WebSocket server on loopback for the tests: the `websockets`
package (requirements.txt) in an asyncio loop of its own thread, plus two
TCP proxies between the client and it (a drip feed, and one that rewrites
the server's handshake answer).

    srv = Server(handler, subprotocols=["ocpp1.6"], user="CP1", password="pw")
    srv.url("/ocpp/CP1")          # ws://127.0.0.1:PORT/ocpp/CP1
    srv.run(coro)                 # run a coroutine in the server's loop, wait
    srv.stop()

`handler(ws)` is an `async def` given each connection
(websockets.asyncio.server.ServerConnection); what it records goes into
`srv.seen` (a list) as the test wants.
"""
import asyncio
import base64
import socket
import threading
import time

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

WAIT_S = 20  # bound of every wait on the server's side


class Server:
    def __init__(self, handler, subprotocols=("ocpp1.6",), user=None, password=None,
                 max_size=1 << 20, tls=None):
        self.handler = handler
        self.seen = []
        self.conns = []
        self.auth = []  # the Authorization headers received
        self.loop = asyncio.new_event_loop()
        self._user = user
        self._password = password
        self._tls = tls  # (cert, key) files: wss://
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(subprotocols, max_size, ready),
                                        daemon=True)
        self._thread.start()
        if not ready.wait(WAIT_S):
            raise RuntimeError("websocket server did not start")

    def _main(self, subprotocols, max_size, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            self._server = await serve(
                self._handle, "127.0.0.1", 0, subprotocols=list(subprotocols) or None,
                process_request=self._check, max_size=max_size, ping_interval=None,
                close_timeout=2, ssl=self._ssl())
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def _ssl(self):
        if self._tls is None:
            return None
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self._tls)
        return ctx

    def _check(self, conn, request):
        got = request.headers.get("Authorization")
        self.auth.append(got)
        if self._user is None:
            return None
        want = "Basic " + base64.b64encode(
            ("%s:%s" % (self._user, self._password)).encode()).decode()
        if got != want:
            return Response(401, "Unauthorized", Headers([("Content-Length", "0")]), b"")
        return None

    async def _handle(self, ws):
        self.conns.append(ws)
        await self.handler(ws)

    def conn(self, i=0):
        """The i-th connection, once its handler has been called."""
        end = time.monotonic() + WAIT_S
        while len(self.conns) <= i:
            if time.monotonic() > end:
                raise AssertionError("no connection %d" % i)
            time.sleep(0.005)
        return self.conns[i]

    def url(self, path="/", port=None):
        return "%s://127.0.0.1:%d%s" % ("wss" if self._tls else "ws", port or self.port, path)

    def run(self, coro, timeout=WAIT_S):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        async def down():
            self._server.close()
            await self._server.wait_closed()

        try:
            self.run(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(WAIT_S)


class Proxy:
    """One TCP connection at a time from a listening port to `port`; the
    server's bytes pass through `downstream(data) -> [chunks]` and go to
    the client chunk by chunk, `delay_s` apart (a drip feed when each chunk
    is one byte); when it returns None the connection is cut there. Bounded: it serves `conns` connections, then stops."""

    def __init__(self, port, downstream=None, delay_s=0.0, conns=1):
        self.port_to = port
        self.down = downstream or (lambda data: [data[i:i + 1] for i in range(len(data))])
        self.delay_s = delay_s
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(conns)
        self.ls.settimeout(WAIT_S)
        self.port = self.ls.getsockname()[1]
        self.threads = []
        self._stop = threading.Event()
        t = threading.Thread(target=self._accept, args=(conns,), daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self, conns):
        for _ in range(conns):
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.port_to), WAIT_S)
            for a, b, f in ((c, s, None), (s, c, self.down)):
                t = threading.Thread(target=self._pipe, args=(a, b, f), daemon=True)
                t.start()
                self.threads.append(t)

    def _pipe(self, src, dst, f):
        src.settimeout(WAIT_S)
        try:
            while not self._stop.is_set():
                data = src.recv(4096)
                if not data:
                    break
                chunks = f(data) if f else [data]
                if chunks is None:  # the downstream function cuts the connection here
                    break
                for chunk in chunks:
                    dst.sendall(chunk)
                    if f and self.delay_s:
                        self._stop.wait(self.delay_s)
        except OSError:
            pass
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        self.ls.close()
        for t in self.threads:
            t.join(WAIT_S)
