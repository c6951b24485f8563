"""tools/release.py: the signing key stays off the tree, the bundle holds
the firmware as tools/deploy.py compiles it (main.py left out), its
manifest names each file's size and SHA-256, and the signature covers the
manifest: a changed byte anywhere is refused (docs/ota.md)."""
import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import release as R  # noqa: E402


def run(*args):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "release.py"), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel")
    key, pub, out = str(d / "k" / "ota_key.pem"), str(d / "ota_key.bin"), str(d / "b.evu")
    assert run("keygen", "--key", key, "--pub", pub)[0] == 0
    rc, so, se = run("build", "--port", "esp32", "--key", key, "--out", out, "--min", "0.4")
    assert rc == 0, se
    return key, pub, out


def test_keygen_writes_a_private_key_only_for_its_owner_and_64_public_bytes(built):
    key, pub, _ = built
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert len(open(pub, "rb").read()) == 64
    rc, _, err = run("keygen", "--key", key, "--pub", pub)
    assert rc == 2 and "exists" in err  # a new key would orphan the fleet's public key


def test_keygen_refuses_a_path_inside_the_tree_that_git_keeps(tmp_path):
    rc, _, err = run("keygen", "--key", os.path.join(ROOT, "tools", "k.key"),
                     "--pub", str(tmp_path / "p.bin"))
    assert rc == 2 and "not ignored" in err
    assert not os.path.exists(os.path.join(ROOT, "tools", "k.key"))


def test_the_bundle_holds_the_compiled_firmware_and_checks(built, tmp_path):
    key, pub, out = built
    rc, so, se = run("check", out, "--pub", pub)
    assert rc == 0, se
    data = open(out, "rb").read()
    m = R.check(data, open(pub, "rb").read())
    assert m["version"] == R.firmware_version() and m["port"] == "esp32"
    assert m["arch"] == 10 and m["mpy"] == R.mpy_version() and m["min"] == "0.4"
    paths = [f[0] for f in m["files"]]
    want = sorted(rel[:-3] + ".mpy" for rel, _ in R.deploy.firmware_sources() if rel != "main.py")
    assert sorted(paths) == want and "main.mpy" not in paths
    at = R.HEAD + int.from_bytes(data[4:6], "big")
    for path, size, digest in m["files"]:
        blob = data[at:at + size]
        assert blob[:1] == b"M"  # a .mpy file
        assert hashlib.sha256(blob).hexdigest() == digest
        at += size
    assert at == len(data)


def test_any_changed_byte_is_refused(built, tmp_path):
    _, pub, out = built
    data = open(out, "rb").read()
    n = int.from_bytes(data[4:6], "big")
    for at in (6, 40, R.HEAD + 3, R.HEAD + n // 2, R.HEAD + n + 17, len(data) - 1):
        bad = bytearray(data)
        bad[at] ^= 0x20
        with pytest.raises(R.ReleaseError):
            R.check(bytes(bad), open(pub, "rb").read())
    with pytest.raises(R.ReleaseError, match="truncated"):
        R.check(data[:-1], open(pub, "rb").read())
    other = tmp_path / "other.bin"
    R.keygen(str(tmp_path / "o.pem"), str(other))
    rc, _, err = run("check", out, "--pub", str(other))
    assert rc == 3 and "signature" in err


def test_the_manifest_is_compact_sorted_ascii_json(built):
    _, _, out = built
    data = open(out, "rb").read()
    man = data[R.HEAD:R.HEAD + int.from_bytes(data[4:6], "big")]
    m = json.loads(man)
    assert man == json.dumps(m, sort_keys=True,
                                  separators=(",", ":")).encode("ascii")
    assert len(man) <= R.MAX_MANIFEST
