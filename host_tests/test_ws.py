"""The WebSocket client (evse/ws.py framing, hw/wsock.py over the socket)
against a real server: the `websockets` package on loopback (ws_env.py),
the client through tools/host/mpsocket.py (MicroPython's socket API over
CPython's). RFC 6455: the opening handshake with its Accept and
subprotocol (4.1, 4.2.2), HTTP Basic auth (OCPP 1.6 security profile 1),
masked client frames (5.3), fragments (5.4), ping/pong (5.5.2-3), the
closing handshake (5.5.1, 7), and the limits: a frame too large is
refused with 1009, a server that drips bytes is read whole, one too slow
costs one timeout.
"""
import asyncio
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

import mpsocket
from evse import ws as W
from hw.wsock import WebSocket
from ws_env import Proxy, Server

PROTO = b"ocpp1.6"
LOOP_S = 15  # bound of a client-side wait loop (never asserted on)


def client(max_bytes=2048, timeout_s=5):
    return WebSocket(mpsocket, os.urandom, max_bytes=max_bytes, timeout_s=timeout_s)


def wait(ws, want=(W.OP_TEXT, W.OP_BINARY, W.OP_CLOSE)):
    end = time.monotonic() + LOOP_S
    while time.monotonic() < end:
        op = ws.poll()
        if op in want:
            return op
        time.sleep(0.002)
    raise AssertionError("nothing came")


def text(ws):
    assert wait(ws) == W.OP_TEXT
    return bytes(ws.dec.msg[:ws.dec.n]).decode()


async def echo(ws):
    try:
        async for m in ws:
            await ws.send("echo:" + m)
    except ConnectionClosed:
        pass


@pytest.fixture
def echo_server():
    s = Server(echo, user="CP1", password="s3cret:pw")
    yield s
    s.stop()


# ------------------------------------------------------------- pure parts
def test_accept_is_the_rfc_example():
    # RFC 6455 section 1.3: the sample nonce and its Accept
    assert W.accept_of(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_basic_auth_header():
    # RFC 7617 section 2: "Aladdin" / "open sesame"
    assert W.basic_auth("Aladdin", "open sesame") == b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="


def test_parse_url():
    assert W.parse_url("ws://csms.example:9000/ocpp/CP1") == (False, "csms.example", 9000,
                                                              "/ocpp/CP1")
    assert W.parse_url("wss://csms.example/ocpp/CP1") == (True, "csms.example", 443,
                                                          "/ocpp/CP1")
    assert W.parse_url("ws://10.0.0.2") == (False, "10.0.0.2", 80, "/")
    for bad in ("http://x/", "ws://:80/", "ws://x:0/", "ws://x:http/", "ws://u@x/"):
        with pytest.raises(ValueError):
            W.parse_url(bad)


def test_client_frames_parse_as_masked_frames():
    enc = W.Encoder(300)
    for n in (0, 1, 125, 126, 300):
        data = os.urandom(n)
        mask = os.urandom(4)
        raw = bytes(enc.frame(W.OP_BINARY, data, mask))
        f = _parse(raw, mask=True)
        assert f.opcode == Opcode.BINARY and f.fin and f.data == data
        assert raw[1] & 0x80 and raw[-n - 4:-n or None][:4] == mask if n else True
    with pytest.raises(W.WsError) as e:
        enc.frame(W.OP_TEXT, b"x" * 301, b"abcd")
    assert e.value.args[0] == W.CLOSE_TOO_BIG
    with pytest.raises(W.WsError):
        enc.frame(W.OP_PING, b"x" * 126, b"abcd")


def _parse(raw, mask):
    """websockets' own frame parser over `raw`."""
    from websockets.streams import StreamReader

    r = StreamReader()
    r.feed_data(raw)
    r.feed_eof()
    gen = Frame.parse(r.read_exact, mask=mask)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def _server_frames(parts, kind):
    """A message as websockets frames it (unmasked), in len(parts) fragments."""
    out = b""
    for i, p in enumerate(parts):
        op = kind if i == 0 else Opcode.CONT
        out += Frame(op, p, fin=i == len(parts) - 1).serialize(mask=False)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4), st.integers(1, 64),
       st.booleans())
def test_decoder_any_split_any_fragments(parts, step, with_ping):
    data = _server_frames(parts, Opcode.TEXT)
    if with_ping and len(parts) > 1:  # a ping between the first two fragments (5.5)
        first = len(Frame(Opcode.TEXT, parts[0], fin=False).serialize(mask=False))
        data = data[:first] + Frame(Opcode.PING, b"p!").serialize(mask=False) + data[first:]
    d = W.Decoder(1200)
    got = []
    for i in range(0, len(data), step):
        chunk = memoryview(data[i:i + step])
        pos = 0
        while pos < len(chunk):
            pos = d.feed(chunk, pos, len(chunk))
            if d.got:
                got.append((d.got, bytes((d.ctl if d.got >= 8 else d.msg)[:d.n])))
        assert d.feed(chunk, len(chunk), len(chunk)) == len(chunk)
    want = [(W.OP_TEXT, b"".join(parts))]
    if with_ping and len(parts) > 1:
        want.insert(0, (W.OP_PING, b"p!"))
    assert got == want
    assert not d.busy()


def test_decoder_holds_a_message_buffer_only_while_the_message_is_used():
    """No 2 KB buffer held between messages: a whole message gets a buffer
    of its own length, fragments one of max_bytes (their total is not told
    before), and release() drops it, but not while fragments still come."""
    d = W.Decoder(2048)
    assert len(d.msg) == 0
    one = _server_frames([b"x" * 300], Opcode.TEXT)
    assert d.feed(one, 0, len(one)) == len(one)
    assert d.got == W.OP_TEXT and len(d.msg) == 300 and bytes(d.msg[:d.n]) == b"x" * 300
    d.release()
    assert len(d.msg) == 0
    two = _server_frames([b"a" * 10, b"b" * 10], Opcode.TEXT)
    first = len(Frame(Opcode.TEXT, b"a" * 10, fin=False).serialize(mask=False))
    assert d.feed(two, 0, first) == first and d.got == 0 and d.busy()
    d.release()  # mid-message: kept
    assert len(d.msg) == 2048
    d.feed(two, first, len(two))
    assert d.got == W.OP_TEXT and bytes(d.msg[:d.n]) == b"a" * 10 + b"b" * 10
    d.release()
    assert len(d.msg) == 0
    d.feed(one, 0, 7)  # a new connection in the middle of a message: nothing held
    d.reset()
    assert len(d.msg) == 0 and not d.busy()


def test_encoder_builds_data_frames_in_buffers_of_their_own():
    """Each data frame in a buffer of its own length (none held between
    frames); control frames in the one small buffer the encoder keeps."""
    enc = W.Encoder(2048)
    a = enc.frame(W.OP_TEXT, b"x" * 10, b"abcd")
    b = enc.frame(W.OP_TEXT, b"y" * 300, b"abcd")
    assert len(a) == 16 and len(b) == 308 and len(a.obj) == 16 and len(b.obj) == 308
    assert _parse(bytes(a), mask=True).data == b"x" * 10  # not overwritten by the second
    p = enc.frame(W.OP_PONG, b"p" * 125, b"abcd")
    assert p.obj is enc.ctl and _parse(bytes(p), mask=True).data == b"p" * 125


@pytest.mark.parametrize("raw, code", [
    (b"\xc1\x03abc", W.CLOSE_PROTOCOL),  # RSV1 set, no extension agreed
    (Frame(Opcode.TEXT, b"abc").serialize(mask=True), W.CLOSE_PROTOCOL),  # masked by a server
    (Frame(Opcode.CONT, b"abc").serialize(mask=False), W.CLOSE_PROTOCOL),
    (b"\x83\x00", W.CLOSE_PROTOCOL),  # reserved opcode 3
    (b"\x09\x00", W.CLOSE_PROTOCOL),  # a fragmented ping
    (b"\x89\x7e\x00\x7e" + b"x" * 126, W.CLOSE_PROTOCOL),  # a 126-byte ping
    (b"\x88\x01\x03", W.CLOSE_PROTOCOL),  # a 1-byte close payload
    (b"\x01\x01a\x81\x01b", W.CLOSE_PROTOCOL),  # a new message inside a fragmented one
    (b"\x81\x7e\x01\x00", W.CLOSE_TOO_BIG),  # 256 bytes for a 255-byte buffer: the header says
    (b"\x81\x7f\x00\x00\x00\x01\x00\x00\x00\x00", W.CLOSE_TOO_BIG),  # 2**32 bytes
    (b"\x01\x7e\x00\xc8" + b"x" * 200 + b"\x80\x7e\x00\xc8", W.CLOSE_TOO_BIG),  # fragments add up
])
def test_decoder_refuses(raw, code):
    d = W.Decoder(255)
    with pytest.raises(W.WsError) as e:
        pos = 0
        while pos < len(raw):
            pos = d.feed(raw, pos, len(raw))
    assert e.value.args[0] == code


def test_response_check():
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    ok = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, "
          b"Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
          b"Sec-WebSocket-Protocol: ocpp1.6")
    W.check_response(ok, key, PROTO)
    for bad, why in (
            (ok.replace(b"101 Switching", b"401 Unauth"), "HTTP 401"),
            (ok.replace(b"s3pP", b"s3pQ"), "wrong Sec-WebSocket-Accept"),
            (ok.replace(b"ocpp1.6", b"ocpp2.0.1"), "another subprotocol"),
            (ok.replace(b"\r\nSec-WebSocket-Protocol: ocpp1.6", b""), "no subprotocol ocpp1.6"),
            (ok + b"\r\nSec-WebSocket-Extensions: permessage-deflate", "an extension not asked for"),
            (ok.replace(b"Upgrade: WebSocket", b"Upgrade: h2c"), "no upgrade to websocket"),
            (ok.replace(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", b""),
             "no Sec-WebSocket-Accept"),
            (b"SSH-2.0-OpenSSH", "not an HTTP answer")):
        with pytest.raises(W.WsError) as e:
            W.check_response(bad, key, PROTO)
        assert e.value.args == (W.HANDSHAKE, why)


# ------------------------------------------------------- against websockets
def test_handshake_auth_subprotocol_and_text_both_ways(echo_server):
    ws = client()
    ws.connect(echo_server.url("/ocpp/CP1"), PROTO, W.basic_auth("CP1", "s3cret:pw"))
    conn = echo_server.conn(0)
    assert conn.subprotocol == "ocpp1.6"
    assert conn.request.path == "/ocpp/CP1"
    for m in ("hello", "ü" * 200, "x" * 2000):  # 7-bit, 16-bit and 64-bit length forms
        ws.send_text(m.encode())
        assert text(ws) == "echo:" + m
    assert ws.poll() == 0 and len(ws.dec.msg) == 0  # the last message's buffer dropped
    ws.close()
    echo_server.run(conn.wait_closed())
    assert conn.close_code == 1000  # the closing handshake, client first


def test_wrong_password_refused(echo_server):
    ws = client()
    with pytest.raises(W.WsError) as e:
        ws.connect(echo_server.url("/ocpp/CP1"), PROTO, W.basic_auth("CP1", "wrong"))
    assert e.value.args == (W.HANDSHAKE, "HTTP 401")
    assert not ws.connected()
    with pytest.raises(W.WsError):
        client().connect(echo_server.url("/ocpp/CP1"), PROTO)  # no Authorization at all
    assert echo_server.auth[1] is None


def test_server_without_the_subprotocol_refused():
    s = Server(echo, subprotocols=())
    try:
        with pytest.raises(W.WsError) as e:
            client().connect(s.url("/CP1"), PROTO)
        assert e.value.args == (W.HANDSHAKE, "no subprotocol ocpp1.6")
    finally:
        s.stop()


def test_fragmented_message_ping_pong_and_server_close():
    async def handler(ws):
        await ws.send(["[2,", '"a"', ',"Heartbeat"', ",{}]"])  # 4 fragments (5.4)
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)  # the client answered with the same payload
        ws_seen.append("pong")
        await ws.send("after ping")
        await ws.recv()  # the client's text after its own ping
        await ws.close(4001, "bye")
        ws_seen.append(ws.close_code)

    ws_seen = []
    s = Server(handler)
    try:
        ws = client()
        ws.connect(s.url("/CP1"), PROTO)
        assert text(ws) == '[2,"a","Heartbeat",{}]'
        assert text(ws) == "after ping"
        assert ws_seen == ["pong"]
        ws.ping(b"mine")
        end = time.monotonic() + LOOP_S
        while ws.pongs == 0 and time.monotonic() < end:
            assert ws.poll() == 0
        assert ws.pongs == 1
        ws.send_text(b"done")
        assert wait(ws) == W.OP_CLOSE
        assert ws.closed == 4001 and not ws.connected()
        s.run(s.conn(0).wait_closed())
        assert ws_seen == ["pong", 4001]  # our close frame echoed the code: handshake complete
    finally:
        s.stop()


def test_server_dripping_bytes_one_at_a_time():
    async def handler(ws):
        await ws.send(["fragment one, ", "fragment two"])
        await ws.send("y" * 300)

    s = Server(handler)
    p = Proxy(s.port, delay_s=0.001)  # every byte of the answer and the frames alone
    try:
        ws = client(timeout_s=30)
        ws.connect(s.url("/CP1", port=p.port), PROTO)
        assert text(ws) == "fragment one, fragment two"
        assert text(ws) == "y" * 300
    finally:
        p.stop()
        s.stop()


def test_server_too_slow_costs_one_timeout():
    async def handler(ws):
        await ws.send("z" * 120)
        await ws.wait_closed()

    def drip_after_head(data):
        out = []
        if not head:  # the 101 answer whole, then every byte alone
            i = data.index(b"\r\n\r\n") + 4
            head.append(data[:i])
            out.append(data[:i])
            data = data[i:]
        return out + [data[i:i + 1] for i in range(len(data))]

    head = []
    s = Server(handler)
    p = Proxy(s.port, downstream=drip_after_head, delay_s=0.05)  # 120+ bytes at 50 ms:
    try:  # far beyond the 0.5 s bound
        ws = client(timeout_s=0.5)
        ws.connect(s.url("/CP1", port=p.port), PROTO)
        with pytest.raises(OSError) as e:
            wait(ws)
        assert e.value.args[0] == 110 and not ws.connected()
    finally:
        p.stop()
        s.stop()



def test_oversized_message_refused_with_1009():
    async def handler(ws):
        await ws.send("a" * 100)
        await ws.send("b" * 600)
        try:
            await asyncio.wait_for(ws.wait_closed(), 10)
        finally:
            seen.append(ws.close_code)

    seen = []
    s = Server(handler)
    try:
        ws = client(max_bytes=512)
        ws.connect(s.url("/CP1"), PROTO)
        assert text(ws) == "a" * 100
        with pytest.raises(W.WsError) as e:
            wait(ws)
        assert e.value.args[0] == W.CLOSE_TOO_BIG and not ws.connected()
        end = time.monotonic() + LOOP_S
        while not seen and time.monotonic() < end:
            time.sleep(0.01)
        assert seen == [1009]
    finally:
        s.stop()


def test_bad_accept_refused():
    head = []

    def rewrite(data):
        if not head:  # the 101 answer comes first and whole from websockets
            head.append(data)
            return [data.replace(b"Sec-WebSocket-Accept: ", b"Sec-WebSocket-Accept: x")]
        return [data]

    s = Server(echo)
    p = Proxy(s.port, downstream=rewrite)
    try:
        with pytest.raises(W.WsError) as e:
            client().connect(s.url("/CP1", port=p.port), PROTO)
        assert e.value.args == (W.HANDSHAKE, "wrong Sec-WebSocket-Accept")
        assert b"Sec-WebSocket-Accept: " in head[0]
    finally:
        p.stop()
        s.stop()


def test_wss_with_the_ca_and_refused_without_it(tmp_path):
    import ssl

    from evse.tls import context
    from mqtt_env import make_ca

    ca, crt, key = make_ca(tmp_path / "good", server=True)
    other, _, _ = make_ca(tmp_path / "other")
    s = Server(echo, tls=(crt, key))
    try:
        with open(ca, "rb") as f:
            ws = WebSocket(mpsocket, os.urandom, timeout_s=5, ssl=mpsocket.tls(context(ssl, f.read())))
        ws.connect(s.url("/ocpp/CP1"), PROTO)
        ws.send_text(b"over tls")
        assert text(ws) == "echo:over tls"
        ws.close()
        with open(other, "rb") as f:
            ws = WebSocket(mpsocket, os.urandom, timeout_s=5, ssl=mpsocket.tls(context(ssl, f.read())))
        with pytest.raises(ssl.SSLCertVerificationError):
            ws.connect(s.url("/ocpp/CP1"), PROTO)
        assert not ws.connected()
        with pytest.raises(W.WsError):  # wss:// needs a TLS context: never in the clear
            client().connect(s.url("/ocpp/CP1"), PROTO)
    finally:
        s.stop()


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200))
def test_sha1_fallback_is_sha1(data):
    import hashlib

    from evse.sha1 import digest

    assert digest(data) == hashlib.sha1(data).digest()
