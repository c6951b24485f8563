"""Run a script under MicroPython's official WebAssembly port (via Node).

Thin wrapper around ``tools/wasm/run.mjs``; ``make setup`` installs the port
(``npm ci`` in tools/wasm).  Example::

    rc, out, err = run_micropython(
        "host_tests/core_cases/runner.py",
        mounts=[("firmware", "/fw"), ("host_tests/core_cases", "/cases")],
        paths=["/fw", "/cases"],
    )

Relative host paths are taken relative to the repository root.
"""
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tools", "wasm", "run.mjs")
PACKAGE_DIR = os.path.join(
    ROOT, "tools", "wasm", "node_modules", "@micropython",
    "micropython-webassembly-pyscript",
)


def _abs(p):
    p = os.fspath(p)
    return p if os.path.isabs(p) else os.path.join(ROOT, p)


def node_executable():
    """Path of `node`, or None if it is not installed."""
    return shutil.which("node")


def available():
    """True when node and the installed WebAssembly port are both present."""
    return node_executable() is not None and os.path.isdir(PACKAGE_DIR)


def run_micropython(script, mounts=(), paths=(), args=(), heap=None,
                    timeout=120, use_async=False):
    """Run SCRIPT under MicroPython (WebAssembly); return (rc, stdout, stderr).

    mounts:   iterable of (host_dir, mp_dir): host_dir is copied recursively
              into the in-memory filesystem at mp_dir (absolute).
    paths:    MicroPython directories prepended to sys.path.
    args:     extra sys.argv entries after the script.
    heap:     initial GC heap in bytes (int) or a string such as "256k".
    use_async: run with top-level `await` allowed (the port has no asyncio.run).

    rc is 0 on success, 1 if the Python code raised, n for sys.exit(n),
    2 for usage/host errors.  Raises subprocess.TimeoutExpired on timeout and
    RuntimeError if node or the npm package is missing.
    """
    node = node_executable()
    if node is None:
        raise RuntimeError("node not found on PATH (run `make setup`)")
    if not os.path.isdir(PACKAGE_DIR):
        raise RuntimeError(
            "MicroPython WebAssembly port not installed in tools/wasm "
            "(run `make setup`)")
    cmd = [node, RUNNER]
    if heap is not None:
        cmd += ["--heap", str(heap)]
    if use_async:
        cmd.append("--async")
    for host_dir, mp_dir in mounts:
        cmd += ["--mount", "%s=%s" % (_abs(host_dir), mp_dir)]
    for p in paths:
        cmd += ["--path", p]
    cmd.append(_abs(script))
    cmd += [str(a) for a in args]
    proc = subprocess.run(
        cmd, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=timeout,
    )
    return (proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))
