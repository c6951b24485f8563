# Run under MicroPython's unix ports by host_tests/test_micropython_ws.py
# (MICROPYPATH: firmware). Two modes:
#   frames VECTORS.json  decode the server frames in the file (made by the
#                        test with the `websockets` package's own framing),
#                        fed in pieces of the given size; print what came;
#                        encode the client frames asked for (printed as hex,
#                        the test parses them with `websockets`)
#   client PORT          hw.wsock over the port's real socket module against
#                        the test's websockets server on 127.0.0.1:PORT
import json
import os
import socket
import sys
import time

from binascii import hexlify, unhexlify

from evse import ws as W


def frames(path):
    f = open(path)
    cases = json.load(f)
    f.close()
    for c in cases["decode"]:
        raw = unhexlify(c["raw"])
        d = W.Decoder(c["max"])
        got = []
        try:
            for i in range(0, len(raw), c["step"]):
                chunk = memoryview(raw[i:i + c["step"]])
                pos = 0
                while pos < len(chunk):
                    pos = d.feed(chunk, pos, len(chunk))
                    if d.got:
                        buf = d.ctl if d.got >= W.OP_CLOSE else d.msg
                        got.append([d.got, hexlify(bytes(buf[:d.n])).decode()])
            print("DECODE", c["name"], json.dumps(got), int(d.busy()))
        except W.WsError as e:
            print("DECODE", c["name"], "error", e.args[0])
    enc = W.Encoder(300)
    for c in cases["encode"]:
        fr = enc.frame(c["op"], unhexlify(c["data"]), unhexlify(c["mask"]))
        print("ENCODE", c["name"], hexlify(bytes(fr)).decode())
    print("ACCEPT", W.accept_of(cases["key"].encode()).decode())
    print("AUTH", W.basic_auth("CP1", "s3cret:pw").decode())


def _wait(ws):
    for _ in range(3000):  # 5 ms apart at least: a bound, never asserted on
        op = ws.poll()
        if op:
            return op
        time.sleep_ms(5)
    raise OSError("nothing came")


def _text(ws):
    op = _wait(ws)
    if op != W.OP_TEXT:
        raise OSError("not a text message: %d" % op)
    return bytes(ws.dec.msg[:ws.dec.n]).decode()


def client(port):
    from hw.wsock import WebSocket

    url = "ws://127.0.0.1:%d" % port
    ws = WebSocket(socket, os.urandom, max_bytes=2048, timeout_s=10)
    try:
        ws.connect(url + "/ocpp/CP1", b"ocpp1.6", W.basic_auth("CP1", "wrong"))
        print("AUTH_WRONG accepted")
    except W.WsError as e:
        print("AUTH_WRONG", e.args[1])
    ws.connect(url + "/ocpp/CP1", b"ocpp1.6", W.basic_auth("CP1", "s3cret:pw"))
    print("CONNECTED")
    ws.send_text(b"hello")
    print("ECHO", _text(ws))
    ws.send_text(b"x" * 2000)
    print("ECHO_LONG", len(_text(ws)))
    print("FRAGMENTED", _text(ws))
    print("AFTER_PING", _text(ws))
    ws.ping(b"mine")
    for _ in range(3000):
        if ws.pongs:
            break
        ws.poll()
        time.sleep_ms(5)
    print("PONGS", ws.pongs)
    ws.send_text(b"done")
    op = _wait(ws)
    print("CLOSED", op == W.OP_CLOSE, ws.closed, ws.connected())
    big = WebSocket(socket, os.urandom, max_bytes=512, timeout_s=10)
    big.connect(url + "/big", b"ocpp1.6", W.basic_auth("CP1", "s3cret:pw"))
    try:
        _wait(big)
        print("BIG accepted")
    except W.WsError as e:
        print("BIG", e.args[0], big.connected())


if sys.argv[1] == "frames":
    frames(sys.argv[2])
else:
    client(int(sys.argv[2]))
