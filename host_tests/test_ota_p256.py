"""evse.p256, the board's ECDSA P-256 verifier, against the `cryptography`
package (OpenSSL) as the reference: every signature it makes is accepted,
and for any change to the key, the signature or the digest both give the
same answer (FIPS 186-5 verification; ECDSA also accepts (r, n - s))."""
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from hypothesis import given, settings
from hypothesis import strategies as st

from evse import p256

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P = 2 ** 256 - 2 ** 224 + 2 ** 192 + 2 ** 96 - 1
KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]


def raw_pub(k):
    n = k.public_key().public_numbers()
    return n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")


def sign(k, msg):
    r, s = utils.decode_dss_signature(k.sign(msg, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def reference(pub, sig, digest):
    try:
        key = ec.EllipticCurvePublicNumbers(int.from_bytes(pub[:32], "big"),
                                            int.from_bytes(pub[32:], "big"),
                                            ec.SECP256R1()).public_key()
    except ValueError:  # not a point of the curve
        return False
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (0 < r < N and 0 < s < N):
        return False
    try:
        key.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except InvalidSignature:
        return False


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(range(len(KEYS))), st.binary(max_size=300))
def test_accepts_what_cryptography_signs(ki, msg):
    k = KEYS[ki]
    sig = sign(k, msg)
    d = hashlib.sha256(msg).digest()
    assert p256.verify(raw_pub(k), sig, d)
    s = int.from_bytes(sig[32:], "big")
    high = sig[:32] + (N - s).to_bytes(32, "big")  # the other s of the same signature
    assert p256.verify(raw_pub(k), high, d) == reference(raw_pub(k), high, d) == True  # noqa: E712
    other = KEYS[(ki + 1) % len(KEYS)]
    assert not p256.verify(raw_pub(other), sig, d)


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(("pub", "sig", "digest")),
       st.integers(0, 511), st.sampled_from(("flip", "zero_r", "zero_s", "n_r", "n_s", "p_x")))
def test_any_change_gives_the_references_answer(msg, part, bit, how):
    k = KEYS[0]
    pub, sig, d = raw_pub(k), sign(k, msg), hashlib.sha256(msg).digest()
    parts = {"pub": bytearray(pub), "sig": bytearray(sig), "digest": bytearray(d)}
    if how == "flip":
        b = parts[part]
        b[(bit // 8) % len(b)] ^= 1 << (bit % 8)
    elif how in ("zero_r", "n_r"):
        parts["sig"][:32] = (0 if how == "zero_r" else N).to_bytes(32, "big")
    elif how in ("zero_s", "n_s"):
        parts["sig"][32:] = (0 if how == "zero_s" else N).to_bytes(32, "big")
    else:  # x beyond the field
        parts["pub"][:32] = ((int.from_bytes(pub[:32], "big") + P) % 2 ** 256).to_bytes(32, "big")
    pub2, sig2, d2 = bytes(parts["pub"]), bytes(parts["sig"]), bytes(parts["digest"])
    assert p256.verify(pub2, sig2, d2) == reference(pub2, sig2, d2)
    assert not (how != "flip" and p256.verify(pub2, sig2, d2))


def test_wrong_lengths_and_points_off_the_curve_are_refused():
    k = KEYS[1]
    pub, sig, d = raw_pub(k), sign(k, b"m"), hashlib.sha256(b"m").digest()
    assert p256.verify(pub, sig, d)
    assert not p256.verify(pub[:63], sig, d)
    assert not p256.verify(b"\x04" + pub, sig, d)
    assert not p256.verify(pub, sig + b"\0", d)
    assert not p256.verify(pub, sig, d[:31])
    y = int.from_bytes(pub[32:], "big")
    off = pub[:32] + ((y + 1) % P).to_bytes(32, "big")
    assert not p256.on_curve(int.from_bytes(off[:32], "big"), int.from_bytes(off[32:], "big"))
    assert not p256.verify(off, sig, d)
    assert p256.on_curve(int.from_bytes(pub[:32], "big"), y)
