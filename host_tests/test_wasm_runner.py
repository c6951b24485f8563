"""tools/wasm/run.mjs: exit codes, argv, mounts, sys.path and output flushing."""
import textwrap

from mpwasm import run_micropython


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_runs_micropython_and_sets_argv_and_file(tmp_path):
    script = write(tmp_path / "s.py", """\
        import sys
        print(sys.implementation.name)
        print(sys.argv)
        print(__file__)
        """)
    rc, out, err = run_micropython(script, args=["a", "b c"])
    assert rc == 0, err
    assert out.splitlines() == [
        "micropython", "['/main/s.py', 'a', 'b c']", "/main/s.py"]


def test_mounts_and_paths(tmp_path):
    write(tmp_path / "lib" / "pkg" / "__init__.py", "")
    write(tmp_path / "lib" / "pkg" / "mod.py", "VALUE = 42\n")
    write(tmp_path / "lib" / "__pycache__" / "junk.py", "")
    (tmp_path / "lib" / "stale.pyc").write_bytes(b"\0")
    script = write(tmp_path / "app" / "main.py", """\
        import os, sys
        import pkg.mod
        print(pkg.mod.VALUE, pkg.mod.__file__)
        print(sorted(os.listdir("/l")))
        print(sys.path[:3])
        print(__file__)
        """)
    rc, out, err = run_micropython(
        script, mounts=[(tmp_path / "lib", "/l"), (tmp_path / "app", "/app")],
        paths=["/l"])
    assert rc == 0, err
    assert out.splitlines() == [
        "42 /l/pkg/mod.py",
        "['pkg']",
        "['/app', '/l', '']",
        "/app/main.py",
    ]


def test_exception_exits_1_with_traceback(tmp_path):
    script = write(tmp_path / "boom.py", """\
        print("before")
        def f():
            raise ValueError("bad value")
        f()
        """)
    rc, out, err = run_micropython(script)
    assert rc == 1
    assert out == "before\n"
    assert 'File "/main/boom.py", line 3, in f' in err
    assert "ValueError: bad value" in err
    assert "<stdin>" not in err


def test_sys_exit_codes(tmp_path):
    for code, expected in (("", 0), ("0", 0), ("3", 3), ("'msg'", 1)):
        script = write(tmp_path / "x.py",
                       "import sys\nprint('out')\nsys.exit(%s)\n" % code)
        rc, out, err = run_micropython(script)
        assert (rc, out) == (expected, "out\n"), (code, rc, out, err)


def test_partial_last_line_and_stderr_are_flushed(tmp_path):
    script = write(tmp_path / "p.py", """\
        import sys
        for i in range(3000):
            print("line", i)
        sys.stderr.write("to stderr\\n")
        print("no newline", end="")
        """)
    rc, out, err = run_micropython(script)
    assert rc == 0, err
    lines = out.split("\n")
    assert len(lines) == 3001
    assert lines[2999] == "line 2999"
    assert lines[-1] == "no newline"
    assert err == "to stderr\n"


def test_async_allows_top_level_await(tmp_path):
    script = write(tmp_path / "a.py", """\
        import asyncio
        async def main():
            await asyncio.sleep_ms(5)
            return 7
        print(await main())
        """)
    rc, out, err = run_micropython(script, use_async=True)
    assert (rc, out) == (0, "7\n"), err


def test_heap_option(tmp_path):
    # --heap sets the initial GC heap; this port adds heap areas on demand,
    # so it is not a limit (see tools/wasm/run.mjs).
    script = write(tmp_path / "h.py", """\
        import micropython
        micropython.mem_info()
        """)
    rc, out, err = run_micropython(script, heap="256k")
    assert rc == 0, err
    gc_line = [l for l in out.splitlines() if l.startswith("GC: total: ")][0]
    total = int(gc_line.split(",")[0].split()[-1])
    assert 200 * 1024 < total <= 256 * 1024, gc_line
