"""tools/deploy.py: the dry run's file set and mpremote commands, errors
that name the problem, a fast clear exit when no board is there; the mip
package.json and the freeze manifest list every firmware module."""
import json
import os
import subprocess
import sys
import time

import pytest

from mqtt_env import make_ca

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "tools", "deploy.py")


def deploy(*args, timeout=60):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, DEPLOY, *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def firmware_py():
    out = []
    for d, dirs, files in os.walk(os.path.join(ROOT, "firmware")):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for f in files:
            if f.endswith(".py") and f != "manifest.py":
                out.append(os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "firmware")))
    return sorted(out)


@pytest.mark.parametrize("board,arch", [("pico-w", "armv6m"), ("esp32-devkitc", "xtensawin")])
def test_dry_run_prints_files_and_commands(board, arch, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"max_current_a": 16}))
    sec = tmp_path / "secrets.json"
    sec.write_text(json.dumps({"wifi_password": "hunter2-very-secret"}))
    rc, out, err, _ = deploy("--board", board, "--port", "/dev/ttyACM7", "--dry-run",
                             "--config", str(cfg), "--secrets", str(sec))
    assert rc == 0, err
    assert "mpy-cross -march=%s" % arch in out
    files = [l.split()[0] for l in out.splitlines() if l.startswith("  :")]
    want = sorted(":" + (p if p == "main.py" else p[:-3] + ".mpy") for p in firmware_py())
    assert sorted(f for f in files if f.endswith((".py", ".mpy"))) == want
    assert ":board.json" in files and ":config.json" in files and ":secrets.json" in files
    assert "hunter2" not in out + err
    cmds = [l.strip() for l in out.splitlines()[out.splitlines().index("commands:") + 1:]]
    assert cmds[0].startswith("mpremote connect /dev/ttyACM7 exec $'import sys")
    assert cmds[1].startswith("mpremote connect /dev/ttyACM7 mip install umqtt.simple")
    assert cmds[2].startswith("mpremote connect /dev/ttyACM7 exec $'import os")
    assert "+ fs cp firmware/main.py :main.py" in cmds[2]
    assert "+ fs cp build/deploy/%s/board.json :board.json" % board in cmds[2]
    assert cmds[3] == "mpremote connect /dev/ttyACM7 reset"
    assert cmds[4].startswith("monitor /dev/ttyACM7")


def test_dry_run_source_and_no_mip():
    rc, out, err, _ = deploy("--board", "pico-w", "--port", "/dev/ttyACM0", "--dry-run",
                             "--source", "--no-mip", "--secrets", os.devnull)
    assert rc == 2  # /dev/null is not a JSON object
    assert "secrets" in err
    rc, out, err, _ = deploy("--board", "pico-w", "--port", "/dev/ttyACM0", "--dry-run",
                             "--source", "--no-mip")
    assert rc == 0, err
    assert ":evse/charger.py <- firmware/evse/charger.py" in out
    assert "mip install" not in out


def _clean_script():
    rc, out, err, _ = deploy("--board", "pico-w", "--port", "/dev/ttyACM0", "--dry-run")
    cmd = [l.strip() for l in out.splitlines() if "exec $'import os" in l][0]
    # bash parses the ANSI-C quoted script back to the exact text
    p = subprocess.run(["bash", "-c", "printf '%s\\0' " + cmd[len("mpremote "):]],
                       capture_output=True, text=True)
    argv = p.stdout.split("\0")
    script = argv[argv.index("exec") + 1]
    assert script.startswith("import os\n")
    compile(script, "clean", "exec")
    return script


def test_dry_run_commands_are_valid_bash():
    _clean_script()


def test_clean_script_empties_the_firmware_folders_on_micropython(tmp_path):
    """The script the board runs before the copy, under MicroPython's unix
    port in a scratch folder: old files and folders of evse/ and hw/ go
    (nested ones too), the new folder set is made, other files stay."""
    script = _clean_script()
    for d in ("evse/old_pkg/deeper", "hw", "ota_b/evse", "ota_b/hw"):
        os.makedirs(tmp_path / d)
    for f in ("evse/app.mpy", "evse/old_pkg/x.mpy", "evse/old_pkg/deeper/y.mpy", "hw/board.mpy",
              "board.json", "ota_b/evse/app.mpy", "ota_b/ota.json", "ota.state", "ota.try",
              "ota.state.tmp", "ota.fail", "ota_key.bin"):
        (tmp_path / f).write_text("old")
    mp = os.path.join(ROOT, ".venv", "bin", "micropython")
    p = subprocess.run([mp, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    found = sorted(os.path.relpath(os.path.join(d, f), tmp_path)
                   for d, dirs, files in os.walk(tmp_path) for f in dirs + files)
    # the OTA slot and state go (the copy is slot 0, committed: docs/ota.md); the key stays
    assert found == ["board.json", "evse", "evse/meter_maps", "hw", "ota_key.bin"]


def test_no_board_on_a_missing_port_is_fast_and_clear():
    rc, out, err, took = deploy("--board", "pico-w", "--port", "/dev/ttyEVSE-none")
    assert rc == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy: no board on /dev/ttyEVSE-none")
    assert took < 5


def test_no_board_answering_on_a_silent_port(tmp_path):
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        rc, out, err, took = deploy("--board", "pico-w", "--port", port, "--timeout", "2",
                                    "--tries", "1", timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 3, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy: no MicroPython board answered on "
                                                   + port), err
    assert took < 10


def test_bad_inputs_name_the_problem(tmp_path):
    rc, _, err, _ = deploy("--board", "nope", "--port", "/dev/ttyACM0", "--dry-run")
    assert rc == 2 and "no board profile 'nope'" in err and "pico-w" in err
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"max_current_a": 100}))
    rc, _, err, _ = deploy("--board", "pico-w", "--port", "/dev/ttyACM0", "--dry-run",
                           "--config", str(cfg))
    assert rc == 2 and "max_current_a" in err
    cfg.write_text(json.dumps({}))
    rc, _, err, _ = deploy("--board", "smartevse-v3", "--port", "/dev/ttyACM0", "--dry-run",
                           "--config", str(cfg))
    assert rc == 2 and "rcd_selftest" in err


def test_mip_package_json_lists_every_firmware_module():
    with open(os.path.join(ROOT, "package.json")) as f:
        pkg = json.load(f)
    dests = sorted(d for d, _ in pkg["urls"])
    assert dests == firmware_py(), "package.json is stale: run tools/mip_package.py"
    for dest, src in pkg["urls"]:
        assert src == "firmware/" + dest and os.path.isfile(os.path.join(ROOT, src))
    assert ["umqtt.simple", "latest"] in pkg["deps"]
    from evse.app import VERSION

    assert pkg["version"] == VERSION  # one version string (tools/mip_package.py reads it)


def _run_manifest(**kwargs):
    """firmware/manifest.py executed with the calls of MicroPython's
    tools/manifestfile.py recorded (include's kwargs become `options`, with
    its defaults())."""
    calls = []

    class Options:
        def __init__(self, kw):
            self._kw = kw
            self._defaults = {}

        def defaults(self, **kw):
            self._defaults = kw

        def __getattr__(self, name):
            return self._kw.get(name, self._defaults.get(name))

    g = {"options": Options(kwargs)}
    for name in ("include", "require", "package", "module"):
        g[name] = (lambda n: lambda *a, **kw: calls.append((n,) + a))(name)
    with open(os.path.join(ROOT, "firmware", "manifest.py")) as f:
        exec(f.read(), g)
    return calls


def test_manifest_freezes_the_packages_and_main():
    body = [("require", "umqtt.simple"), ("package", "evse"), ("package", "hw"),
            ("module", "main.py")]
    # esp32 and rp2: the port's own frozen modules stay
    assert _run_manifest() == [("include", "$(PORT_DIR)/boards/manifest.py")] + body
    # the unix port (make mp32): no port line
    assert _run_manifest(port_manifest=None) == body
    tops = {p.split("/")[0] for p in firmware_py()}
    assert tops == {"evse", "hw", "main.py"}


@pytest.mark.parametrize("board,arch", [("pico-w", 4), ("smartevse-v3", 10)])
def test_build_compiles_for_the_ports_architecture(board, arch):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import deploy as dp
    finally:
        sys.path.pop(0)
    args = dp.argparse.Namespace(board=board, port="/dev/null", config=None, secrets=None,
                                 source=False)
    raw, prof, cfg, secrets, spath = dp.load_inputs(args)
    files, cmds = dp.plan(args, prof, None, spath, need_mip=False)
    dp.build(args, raw, prof, cfg, files)
    for dest, local, compiled in files:
        if compiled:
            with open(local, "rb") as f:
                head = f.read(4)
            # .mpy header: 'M', version 6; byte 2 carries the architecture only
            # when a module holds native code (bytecode .mpy are portable)
            assert head[0:1] == b"M" and head[1] == 6 and head[2] >> 2 in (0, arch), (dest, head)
    with open([l for d, l, _ in files if d == "board.json"][0]) as f:
        assert json.load(f)["name"] == board


def test_docs_boards_names_every_shipped_profile():
    with open(os.path.join(ROOT, "docs", "boards.md")) as f:
        doc = f.read()
    for name in sorted(os.listdir(os.path.join(ROOT, "boards"))):
        assert "| `%s` |" % name[:-5] in doc, name

def _dp():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import deploy as dp
    finally:
        sys.path.pop(0)
    return dp


@pytest.mark.parametrize("board,make,flash", [
    ("esp32-devkitc", "ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=", "write_flash 0x1000"),
    ("pico-w", "ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=", "firmware.uf2")])
def test_dry_run_frozen_prints_the_build_and_copies_no_firmware(board, make, flash):
    rc, out, err, _ = deploy("--board", board, "--port", "/dev/ttyUSB0", "--dry-run",
                             "--image", "frozen", "--secrets", os.devnull + "x")
    assert rc == 2  # a missing secrets file named
    rc, out, err, _ = deploy("--board", board, "--port", "/dev/ttyUSB0", "--dry-run",
                             "--image", "frozen")
    assert rc == 0, err
    assert "freezes all %d firmware modules" % len(firmware_py()) in out
    assert make + os.path.join(ROOT, "firmware", "manifest.py") in out and flash in out
    files = [l.split()[0] for l in out.splitlines() if l.startswith("  :")]
    assert files == [":board.json"]  # the firmware is in the image
    copy = [l for l in out.splitlines() if "exec $'import os" in l][0]
    assert "os.remove(\\'main.py\\')" in copy and "rm(d)" in copy
    assert "mip install" not in out


def test_dry_run_romfs_builds_the_image():
    rc, out, err, _ = deploy("--board", "esp32-devkitc", "--port", "/dev/ttyUSB0", "--dry-run",
                             "--image", "romfs", timeout=120)
    assert rc == 0, err
    img = os.path.join(ROOT, "build", "deploy", "esp32-devkitc", "firmware.romfs")
    assert os.path.getsize(img) > 10000
    with open(img, "rb") as f:
        data = f.read()
    # each module's source name is the one on the board, not this machine's path
    assert b"./evse/app.py" in data and ROOT.encode() not in data
    assert "romfs deploy build/deploy/esp32-devkitc/firmware.romfs" in out
    files = [l.split()[0] for l in out.splitlines() if l.startswith("  :")]
    assert files == [":main.py", ":board.json"]


def test_manifest_check_names_a_module_it_does_not_freeze(tmp_path):
    dp = _dp()
    assert len(dp.check_manifest()) == len(firmware_py())
    man = tmp_path / "manifest.py"
    man.write_text('require("umqtt.simple")\npackage("evse", base_path=%r)\nmodule("main.py", '
                   'base_path=%r)\n' % (os.path.join(ROOT, "firmware"),
                                        os.path.join(ROOT, "firmware")))
    with pytest.raises(dp.DeployError) as e:
        dp.check_manifest(str(man))
    assert "hw/boot.py" in str(e.value)


def test_tls_needs_a_readable_ca_and_deploy_copies_it(tmp_path):
    """A charger whose mqtt_ca is not on the board runs without its link:
    deploy refuses a TLS configuration without the CA file, or with one
    that holds no certificate, and copies a good one to mqtt_ca."""
    cfg = tmp_path / "tls.json"
    cfg.write_text(json.dumps({"mqtt_host": "b.example", "mqtt_tls": True,
                               "mqtt_ca": "certs/ca.pem"}))
    base = [sys.executable, DEPLOY, "--board", "esp32-devkitc", "--port", "/dev/null",
            "--config", str(cfg), "--dry-run"]

    def run(*extra):
        return subprocess.run(base + list(extra), capture_output=True, text=True, timeout=120,
                              cwd=str(tmp_path))

    p = run()
    assert p.returncode == 2 and "mqtt_tls needs the CA file 'certs/ca.pem'" in p.stderr, p.stderr
    (tmp_path / "junk.pem").write_text("not a certificate")
    p = run("--ca", str(tmp_path / "junk.pem"))
    assert p.returncode == 2 and "not a certificate" in p.stderr, p.stderr
    make_ca(tmp_path)
    p = run("--ca", str(tmp_path / "ca.pem"))
    assert p.returncode == 0, p.stderr
    assert ":certs/ca.pem <- " in p.stdout, p.stdout
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"mqtt_host": "b.example"}))
    p = subprocess.run([sys.executable, DEPLOY, "--board", "esp32-devkitc", "--port", "/dev/null",
                        "--config", str(plain), "--dry-run", "--ca", str(tmp_path / "ca.pem")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no mqtt_tls" in p.stderr, p.stderr


def test_deploy_uploads_the_ota_public_key_it_is_given(tmp_path):
    """--ota-key: the public key release.py keygen writes (docs/ota.md) is
    copied to ota_key.bin, the file evse/ota.py reads; a file that is not
    a P-256 point is refused before anything is touched."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import release as R

    R.keygen(str(tmp_path / "k.pem"), str(tmp_path / "pub.bin"))
    base = [sys.executable, DEPLOY, "--board", "esp32-devkitc", "--port", "/dev/null",
            "--dry-run", "--ota-key"]

    def run(path):
        return subprocess.run(base + [str(path)], capture_output=True, text=True, timeout=120)

    p = run(tmp_path / "pub.bin")
    assert p.returncode == 0, p.stderr
    assert ":ota_key.bin <- " in p.stdout and "ota_key.bin" in p.stdout.split("commands:")[1]
    (tmp_path / "short.bin").write_bytes((tmp_path / "pub.bin").read_bytes()[:63])
    (tmp_path / "off.bin").write_bytes(bytes(63) + b"\x07")  # 64 bytes, not on the curve
    for bad in ("short.bin", "off.bin", "missing.bin"):
        p = run(tmp_path / bad)
        assert p.returncode == 2 and "--ota-key" in p.stderr, (bad, p.stderr)
