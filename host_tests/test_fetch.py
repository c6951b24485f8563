"""hw/fetch.py: an update bundle downloaded over HTTP(S) into evse/ota.py's
Stager (issue 15 part 2; docs/ota.md, "Delivery"), against a real HTTP
server (aiohttp's static files, host_tests/http_env.py) over loopback,
through MicroPython's socket API (tools/host/mpsocket.py).

What the expectations come from: RFC 9110 (a Range GET answered 206 with
a Content-Range from the byte asked for, or 200 with the whole file by a
server without ranges; 3xx with a Location; 4xx the client's fault, 5xx
worth a retry) and the bundle format (docs/ota.md): the download is
staged only when every byte arrived and verified, and nothing else is.
"""
import os
import ssl as _ssl
import sys

import pytest

from evse import ota
from evse.http import HttpError, answer, parse_url, request, resolve
from hw import fetch as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools", "host"))

import mpsocket  # noqa: E402
from http_env import FileServer  # noqa: E402
from mqtt_env import make_ca  # noqa: E402
from test_ota import KEY, NEW, OLD, booted_version, bundle, flash, slot_files, stager  # noqa: E402
from ws_env import Proxy  # noqa: E402

MAX_STEPS = 20000  # every download here ends well within this many steps


def big_files():
    """A bundle of about 40 KB: many socket reads, several files."""
    files = dict(NEW)
    files["evse/app.mpy"] = bytes(range(256)) * 100
    files["hw/board.mpy"] = bytes((i * 7919 >> 3) & 0xFF for i in range(15000))
    return files


@pytest.fixture
def site(tmp_path):
    """(the board's flash, a file server holding good.evu, its bytes)."""
    root = flash(tmp_path / "flash")
    www = tmp_path / "www"
    www.mkdir()
    data = bundle(big_files())
    (www / "good.evu").write_bytes(data)
    srv = FileServer(www)
    yield root, www, srv, data
    srv.stop()


def run(f):
    for n in range(MAX_STEPS):
        s = f.step()
        if s != F.RUNNING:
            return s, n
    raise AssertionError("the download did not end")


def fetch(root, url, **kw):
    kw.setdefault("pause_ms", 0)
    kw.setdefault("timeout_s", 5)
    return F.Fetch(mpsocket, url, stager(root), **kw)


def staged(root):
    st = ota.read_state(root)
    return st[1] if st[3] == ota.R_STAGED else None


def test_a_whole_download_is_staged_in_the_slot_not_running(site):
    root, _, srv, data = site
    f = fetch(root, srv.url("/files/good.evu"))
    s, _ = run(f)
    assert (s, f.error) == (F.DONE, None)
    assert f.progress() == (len(data), len(data))
    assert staged(root) == 1
    assert slot_files(root, 1) == big_files()
    assert slot_files(root, 0) == OLD  # the running slot untouched
    assert (f.opens, srv.ranges) == (1, [None])


def test_a_dropped_connection_resumes_from_the_byte_it_had(site):
    root, _, srv, data = site
    sent = [0]

    def cut(chunk):  # the first connection dies after about 9 KB of the answer
        sent[0] += len(chunk)
        return None if sent[0] > 9000 else [chunk]

    px = Proxy(srv.port, downstream=cut, conns=1)
    try:
        f = fetch(root, srv.url("/files/good.evu", port=px.port))
        s = F.RUNNING
        for _ in range(MAX_STEPS):
            s = f.step()
            if s != F.RUNNING or f.opens == 1 and f.sock is None:
                break
        assert s == F.RUNNING and f.tries == 1 and "closed" in f.error
        had = f.sink.got
        assert 4000 < had < 9000
        f.url = srv.url("/files/good.evu")  # the proxy served its one connection
        s, _ = run(f)
    finally:
        px.stop()
    assert s == F.DONE
    assert srv.ranges == [None, "bytes=%d-" % had]
    assert slot_files(root, 1) == big_files()
    assert staged(root) == 1


def test_a_server_without_ranges_is_read_past_what_was_had(site):
    root, www, srv, data = site
    sent = [0]

    def cut(chunk):
        sent[0] += len(chunk)
        return None if sent[0] > 20000 else [chunk]

    px = Proxy(srv.port, downstream=cut, conns=1)
    try:
        f = fetch(root, srv.url("/norange/good.evu", port=px.port))
        while f.opens == 0 or f.sock is not None:
            assert f.step() == F.RUNNING
        f.url = srv.url("/norange/good.evu")
        s, _ = run(f)
    finally:
        px.stop()
    assert s == F.DONE
    assert srv.ranges[1] is not None  # asked for a range, got the whole file: 200
    assert slot_files(root, 1) == big_files()


def test_redirects_are_followed_and_a_503_is_tried_again(site):
    root, _, srv, data = site
    srv.busy = 2
    f = fetch(root, srv.url("/busy/good.evu"))
    s, _ = run(f)
    assert s == F.DONE
    assert srv.paths == ["/busy/good.evu"] * 3 + ["/files/good.evu"]
    assert staged(root) == 1


@pytest.mark.parametrize("path,why", [("/files/none.evu", "HTTP 404"),
                                      ("/moved/none.evu", "HTTP 404")])
def test_a_missing_file_fails_at_once(site, path, why):
    root, _, srv, _ = site
    f = fetch(root, srv.url(path))
    s, _ = run(f)
    assert (s, f.error) == (F.FAILED, why)
    assert f.opens == 1 + path.startswith("/moved")
    assert staged(root) is None


def test_retries_end_when_nothing_comes(tmp_path):
    root = flash(tmp_path)
    ls = __import__("socket").socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)  # accepts connections (the kernel's backlog), never answers
    try:
        f = fetch(root, "http://127.0.0.1:%d/b.evu" % ls.getsockname()[1], timeout_s=0.2,
                  retries=2)
        s, _ = run(f)
    finally:
        ls.close()
    assert s == F.FAILED and f.tries == 3 and "no answer" in f.error
    assert staged(root) is None


@pytest.mark.parametrize("kind", ["signature", "hash", "truncated", "port"])
def test_a_bad_bundle_is_refused_and_nothing_is_staged(site, kind):
    root, www, srv, data = site
    from cryptography.hazmat.primitives.asymmetric import ec

    files = big_files()
    if kind == "signature":
        data = bundle(files, key=ec.generate_private_key(ec.SECP256R1()))
    elif kind == "hash":
        data = bytearray(data)
        data[-100] ^= 1
    elif kind == "truncated":
        data = data[:-10]
    else:
        data = bundle(files, port="rp2")
    (www / "bad.evu").write_bytes(bytes(data))
    f = fetch(root, srv.url("/files/bad.evu"))
    s, _ = run(f)
    assert s == F.FAILED
    assert {"signature": "signature", "hash": "SHA-256", "truncated": "bytes",
            "port": "rp2"}[kind] in f.error
    assert f.opens == 1  # a bad bundle is not fetched again
    assert staged(root) is None
    assert booted_version(root) == (0, OLD)


def test_https_with_the_backend_ca(tmp_path):
    root = flash(tmp_path / "flash")
    ca, crt, key = make_ca(tmp_path / "ca", server=True)
    www = tmp_path / "www"
    www.mkdir()
    data = bundle(big_files())
    (www / "good.evu").write_bytes(data)
    srv = FileServer(www, tls=(crt, key))
    try:
        ctx = _ssl.create_default_context(cafile=str(ca))
        f = fetch(root, srv.url("/files/good.evu"), ssl=mpsocket.tls(ctx))
        s, _ = run(f)
        assert (s, f.error) == (F.DONE, None)
        assert staged(root) == 1
        held = [True]
        g = fetch(root, srv.url("/files/good.evu"), ssl=mpsocket.tls(ctx), hold=lambda: held[0])
        for _ in range(50):
            assert g.step() == F.RUNNING
        assert g.opens == 0  # no TLS handshake while held (the contactor is closed)
        g2 = fetch(root, srv.url("/files/good.evu"))  # no context: refused, not sent in clear
        assert run(g2)[0] == F.FAILED and "CA" in g2.error
    finally:
        srv.stop()


# ----------------------------------------------------------- evse/http.py
def test_parse_url():
    assert parse_url("http://h/x.evu") == (False, "h", 80, "/x.evu")
    assert parse_url("https://fw.example.com:8443/a/b") == (True, "fw.example.com", 8443, "/a/b")
    assert parse_url("https://h") == (True, "h", 443, "/")
    for bad in ("ftp://h/x", "http://", "http://u@h/x", "http://h:0/x", "http://h:99999/",
                "http://h/a b", "http://[::1]/x", 5, "http://h/" + "x" * 300):
        with pytest.raises(HttpError):
            parse_url(bad)


def test_request_and_answer():
    r = request("h", 8080, "/x", 1234)
    assert r.startswith(b"GET /x HTTP/1.1\r\nHost: h:8080\r\n")
    assert b"\r\nRange: bytes=1234-\r\n" in r and r.endswith(b"\r\n\r\n")
    assert b"Range" not in request("h", 443, "/x", 0, tls=True)
    assert b"Host: h\r\n" in request("h", 443, "/x", 0, tls=True)
    assert answer(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n"
                  b"Content-Range: bytes 90-99/100") == (206, 10, 90, None)
    assert answer(b"HTTP/1.0 302 Found\r\nlocation: /f/x") == (302, -1, 0, "/f/x")
    for bad in (b"SSH-2.0", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip",
                b"HTTP/1.1 206 OK\r\nContent-Range: items 1-2/3",
                b"HTTP/1.1 200 OK\r\nContent-Length: -1", b"HTTP/1.1 200 OK\r\nno colon"):
        with pytest.raises(HttpError):
            answer(bad)
    assert resolve("http://a:1/x/y", "/z") == "http://a:1/z"
    assert resolve("http://a/x", "https://b/c") == "https://b/c"
    with pytest.raises(HttpError):
        resolve("http://a/x", "z")
