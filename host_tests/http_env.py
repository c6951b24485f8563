"""A real HTTP(S) file server on loopback for the update-download tests:
aiohttp's static file handling (byte ranges as RFC 9110 has them) in an
asyncio loop of its own thread, serving one folder, plus a few routes a
download meets in the field.

    srv = FileServer(folder, tls=(cert, key))   # tls: https://
    srv.url("/b.evu")                            # http[s]://127.0.0.1:PORT/b.evu
    srv.ranges                                   # the Range header of each GET (or None)
    srv.stop()

Routes besides the folder (under /files/...): /norange/NAME answers every
GET with the whole file and a 200 (a server without range support);
/moved/NAME redirects (302) to /files/NAME; /busy/NAME answers 503 the
first `busy` times, then redirects like /moved.
"""
import asyncio
import ssl
import threading

from aiohttp import web

WAIT_S = 20


class FileServer:
    def __init__(self, folder, tls=None, busy=1):
        self.folder = str(folder)
        self.tls = tls
        self.busy = busy
        self.ranges = []
        self.paths = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(WAIT_S):
            raise RuntimeError("http server did not start")

    def _main(self, ready):
        asyncio.set_event_loop(self.loop)

        @web.middleware
        async def log(request, handler):
            self.paths.append(request.path)
            self.ranges.append(request.headers.get("Range"))
            return await handler(request)

        async def norange(request):
            with open(self.folder + "/" + request.match_info["name"], "rb") as f:
                return web.Response(body=f.read(), content_type="application/octet-stream")

        async def moved(request):
            raise web.HTTPFound("/files/" + request.match_info["name"])

        async def busy(request):
            if self.busy > 0:
                self.busy -= 1
                raise web.HTTPServiceUnavailable()
            raise web.HTTPFound("/files/" + request.match_info["name"])

        async def start():
            app = web.Application(middlewares=[log])
            app.router.add_static("/files", self.folder)
            app.router.add_get("/norange/{name}", norange)
            app.router.add_get("/moved/{name}", moved)
            app.router.add_get("/busy/{name}", busy)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            ctx = None
            if self.tls:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(*[str(p) for p in self.tls])
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def url(self, path, port=None):
        return "%s://127.0.0.1:%d%s" % ("https" if self.tls else "http", port or self.port, path)

    def stop(self):
        async def down():
            await self._runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(down(), self.loop).result(WAIT_S)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(WAIT_S)
