"""ECDSA P-256 signature verification (FIPS 186-5, SEC 1), pure MicroPython.

The update bundle's manifest is signed with ECDSA over NIST P-256 and
SHA-256 (tools/release.py, with the `cryptography` package). This module
checks such a signature on the board with Python integers (MicroPython's
mpz): no SHA-512 is needed (the ports' hashlib has sha256 only, which the
caller uses for the digest), no table is kept, and nothing is imported.

Imported only while an update is processed (evse.ota, in the network
thread), never on the default boot path. Every step is a short operation
on 256-bit integers, so no single C call holds the GIL for long: the
inverse mod n is a square-and-multiply loop in Python (not pow(x, e, m),
one long C call), and the affine x is compared without an inverse mod p.
docs/ota.md has its time and allocation on the 32-bit port.

verify(pub, sig, digest) -> bool
  pub     64 bytes, X || Y of the public key (big-endian, uncompressed
          without the 0x04 prefix);
  sig     64 bytes, r || s (big-endian);
  digest  32 bytes, SHA-256 of the signed message.
"""
from micropython import const

_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
_B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_GX = const(0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296)
_GY = const(0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def _int(b):
    return int.from_bytes(b, "big")


def _inv_n(x):
    # x ** (n - 2) mod n (n is prime), bit by bit from the top
    e = _N - 2
    r = 1
    i = 255
    while i >= 0:
        r = r * r % _N
        if (e >> i) & 1:
            r = r * x % _N
        i -= 1
    return r


def _dbl(X, Y, Z):
    # Jacobian doubling for a = -3 (dbl-2001-b); Z == 0 is the point at infinity
    if Z == 0 or Y == 0:
        return 0, 1, 0
    p = _P
    d = Z * Z % p
    g = Y * Y % p
    be = X * g % p
    al = 3 * (X - d) * (X + d) % p
    X3 = (al * al - 8 * be) % p
    Z3 = ((Y + Z) * (Y + Z) - g - d) % p
    Y3 = (al * (4 * be - X3) - 8 * g * g) % p
    return X3, Y3, Z3


def _add(X1, Y1, Z1, X2, Y2, Z2):
    # Jacobian addition (add-2007-bl), with the doubling and infinity cases
    if Z1 == 0:
        return X2, Y2, Z2
    if Z2 == 0:
        return X1, Y1, Z1
    p = _P
    z1 = Z1 * Z1 % p
    z2 = Z2 * Z2 % p
    u1 = X1 * z2 % p
    u2 = X2 * z1 % p
    s1 = Y1 * Z2 * z2 % p
    s2 = Y2 * Z1 * z1 % p
    h = (u2 - u1) % p
    r = 2 * (s2 - s1) % p
    if h == 0:
        if r == 0:
            return _dbl(X1, Y1, Z1)
        return 0, 1, 0
    i = 4 * h * h % p
    j = h * i % p
    v = u1 * i % p
    X3 = (r * r - j - 2 * v) % p
    Y3 = (r * (v - X3) - 2 * s1 * j) % p
    Z3 = ((Z1 + Z2) * (Z1 + Z2) - z1 - z2) * h % p
    return X3, Y3, Z3


def on_curve(x, y):
    """Whether (x, y) is an affine point of P-256 (not the infinity)."""
    return 0 <= x < _P and 0 <= y < _P and (y * y - (x * x * x - 3 * x + _B)) % _P == 0


def verify(pub, sig, digest):
    if len(pub) != 64 or len(sig) != 64 or len(digest) != 32:
        return False
    qx = _int(pub[:32])
    qy = _int(pub[32:])
    r = _int(sig[:32])
    s = _int(sig[32:])
    if not (0 < r < _N and 0 < s < _N) or not on_curve(qx, qy):
        return False
    w = _inv_n(s)
    u1 = _int(digest) * w % _N  # the digest is 256 bits: no truncation
    u2 = r * w % _N
    # u1 G + u2 Q, both scalars at once (Shamir), G + Q computed once
    gq = _add(_GX, _GY, 1, qx, qy, 1)
    X, Y, Z = 0, 1, 0
    i = 255
    while i >= 0:
        X, Y, Z = _dbl(X, Y, Z)
        k = ((u1 >> i) & 1) | (((u2 >> i) & 1) << 1)
        if k == 1:
            X, Y, Z = _add(X, Y, Z, _GX, _GY, 1)
        elif k == 2:
            X, Y, Z = _add(X, Y, Z, qx, qy, 1)
        elif k == 3:
            X, Y, Z = _add(X, Y, Z, gq[0], gq[1], gq[2])
        i -= 1
    if Z == 0:
        return False
    # affine x = X / Z^2; accept when x mod n == r: x is r or r + n (< p)
    zz = Z * Z % _P
    if (X - r * zz) % _P == 0:
        return True
    return r + _N < _P and (X - (r + _N) * zz) % _P == 0
