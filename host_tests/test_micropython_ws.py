"""The WebSocket client under real MicroPython: the unix port from PyPI
(.venv/bin/micropython, 64-bit) and build/mp32/plain/micropython (32-bit,
with the GIL, built without TLS: no hashlib.sha1, so evse/sha1.py makes the
Accept). host_tests/mp_ws.py decodes server frames made by the
`websockets` package's own framing, fed in pieces (the results must be what
CPython's run of the same decoder gives, and the messages framed), encodes
client frames that `websockets` must parse, and then runs hw/wsock.py over
the port's own socket module against a `websockets` server on loopback.
"""
import asyncio
import json
import os
import random
import subprocess

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from test_micropython_core import UNIX_PORT
from test_ws import _parse
from ws_env import Server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MP32 = os.path.join(ROOT, "build", "mp32", "plain", "micropython")
SCRIPT = os.path.join(ROOT, "host_tests", "mp_ws.py")
PORTS = {"unix64": UNIX_PORT, "mp32": MP32}


def run(port, *args, timeout=120):
    exe = PORTS[port]
    assert os.path.isfile(exe), "%s missing: `make setup` builds it" % exe
    env = dict(os.environ)
    env["MICROPYPATH"] = os.path.join(ROOT, "firmware")
    p = subprocess.run([exe, "-X", "heapsize=512K", SCRIPT] + list(args), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _message(parts, kind=Opcode.TEXT):
    out = b""
    for i, p in enumerate(parts):
        out += Frame(kind if i == 0 else Opcode.CONT, p,
                     fin=i == len(parts) - 1).serialize(mask=False)
    return out


def vectors():
    rnd = random.Random(6455)
    decode = []
    for i in range(20):
        parts = [bytes(rnd.getrandbits(8) for _ in range(rnd.choice((0, 5, 125, 126, 400))))
                 for _ in range(rnd.randint(1, 3))]
        raw = _message(parts, rnd.choice((Opcode.TEXT, Opcode.BINARY)))
        if len(parts) > 1 and i % 2:
            k = len(Frame(Opcode.TEXT, parts[0], fin=False).serialize(mask=False))
            raw = raw[:k] + Frame(Opcode.PING, b"ping").serialize(mask=False) + raw[k:]
        raw += Frame(Opcode.CLOSE, b"\x03\xe8bye").serialize(mask=False)
        decode.append({"name": "m%d" % i, "raw": raw.hex(), "step": rnd.choice((1, 2, 7, 64)),
                       "max": 1300, "parts": [p.hex() for p in parts],
                       "kind": int(raw[0] & 15), "ping": bool(len(parts) > 1 and i % 2)})
    decode.append({"name": "too_big", "raw": _message([b"a" * 300, b"b" * 300]).hex(),
                   "step": 3, "max": 512})
    decode.append({"name": "masked", "raw": Frame(Opcode.TEXT, b"abc").serialize(mask=True).hex(),
                   "step": 1, "max": 512})
    encode = [{"name": "e%d" % n, "op": 1, "data": os.urandom(n).hex(), "mask": os.urandom(4).hex()}
              for n in (0, 1, 125, 126, 300)]
    return {"decode": decode, "encode": encode, "key": "dGhlIHNhbXBsZSBub25jZQ=="}


@pytest.mark.parametrize("port", sorted(PORTS))
def test_framing_under_micropython(port, tmp_path):
    v = vectors()
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps(v))
    out = run(port, "frames", str(path))
    lines = {}
    for line in out.splitlines():
        f = line.split(" ", 2)
        lines[(f[0], f[1])] = f[2] if len(f) > 2 else ""
    for c in v["decode"][:-2]:
        want = ([[9, b"ping".hex()]] if c["ping"] else []) + [
            [c["kind"], "".join(c["parts"])], [8, (b"\x03\xe8bye").hex()]]
        assert lines[("DECODE", c["name"])] == json.dumps(want) + " 0", c["name"]
    assert lines[("DECODE", "too_big")] == "error 1009"
    assert lines[("DECODE", "masked")] == "error 1002"
    for c in v["encode"]:
        f = _parse(bytes.fromhex(lines[("ENCODE", c["name"])]), mask=True)
        assert f.opcode == Opcode.TEXT and f.fin and f.data.hex() == c["data"]
    assert lines[("ACCEPT", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")] == ""  # RFC 6455 1.3
    assert lines[("AUTH", "Basic")] == "Q1AxOnMzY3JldDpwdw=="  # base64 of CP1:s3cret:pw


@pytest.mark.parametrize("port", sorted(PORTS))
def test_socket_client_under_micropython(port):
    seen = []

    async def handler(ws):
        try:
            if ws.request.path == "/big":
                await ws.send("b" * 600)
                await asyncio.wait_for(ws.wait_closed(), 20)
                seen.append(("big", ws.close_code))
                return
            for _ in range(2):
                await ws.send("echo:" + await ws.recv() if _ == 0 else str(len(await ws.recv())))
            await ws.send(["[2,", '"a"', ',"Heartbeat"', ",{}]"])
            await asyncio.wait_for(await ws.ping(b"theirs"), 20)
            seen.append("pong")
            await ws.send("after ping")
            await ws.recv()
            await ws.close(4001, "bye")
            seen.append(("closed", ws.close_code))
        except ConnectionClosed:
            pass

    s = Server(handler, user="CP1", password="s3cret:pw")
    try:
        out = run(port, "client", str(s.port))
    finally:
        s.stop()
    lines = out.splitlines()
    assert lines == ["AUTH_WRONG HTTP 401", "CONNECTED", "ECHO echo:hello", "ECHO_LONG 4",
                     "FRAGMENTED [2,\"a\",\"Heartbeat\",{}]", "AFTER_PING after ping",
                     "PONGS 1", "CLOSED True 4001 False", "BIG 1009 False"], out
    assert seen == ["pong", ("closed", 4001), ("big", 1009)]
