"""SHA-1 (FIPS 180-4 section 6.1) in Python, for the WebSocket handshake's
Sec-WebSocket-Accept (RFC 6455 4.2.2) on a port built without TLS, whose
hashlib has no sha1. Imported only then (evse/ws.py): once per connect, a
60-byte input; speed and the big ints of a 32-bit port do not matter there.
"""
from micropython import const

_M32 = const(0xFFFFFFFF)


def _rol(x, n):
    return ((x << n) | (x >> (32 - n))) & _M32


def digest(data):
    """The 20-byte SHA-1 digest of `data` (bytes)."""
    n = len(data)
    msg = bytearray(data)
    msg.append(0x80)
    while len(msg) % 64 != 56:
        msg.append(0)
    bits = n * 8
    for i in range(8):
        msg.append((bits >> (56 - 8 * i)) & 0xFF)
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    w = [0] * 80
    for off in range(0, len(msg), 64):
        for t in range(16):
            j = off + 4 * t
            w[t] = (msg[j] << 24) | (msg[j + 1] << 16) | (msg[j + 2] << 8) | msg[j + 3]
        for t in range(16, 80):
            w[t] = _rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
        a, b, c, d, e = h
        for t in range(80):
            if t < 20:
                f = (b & c) | (~b & d)
                k = 0x5A827999
            elif t < 40:
                f = b ^ c ^ d
                k = 0x6ED9EBA1
            elif t < 60:
                f = (b & c) | (b & d) | (c & d)
                k = 0x8F1BBCDC
            else:
                f = b ^ c ^ d
                k = 0xCA62C1D6
            tmp = (_rol(a, 5) + (f & _M32) + e + k + w[t]) & _M32
            e = d
            d = c
            c = _rol(b, 30)
            b = a
            a = tmp
        h[0] = (h[0] + a) & _M32
        h[1] = (h[1] + b) & _M32
        h[2] = (h[2] + c) & _M32
        h[3] = (h[3] + d) & _M32
        h[4] = (h[4] + e) & _M32
    out = bytearray(20)
    for i in range(5):
        for j in range(4):
            out[4 * i + j] = (h[i] >> (24 - 8 * j)) & 0xFF
    return bytes(out)
