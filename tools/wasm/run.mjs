#!/usr/bin/env node
// Run a MicroPython script under the official MicroPython WebAssembly port
// (npm: @micropython/micropython-webassembly-pyscript, pinned in package.json).
//
// Usage:
//   node tools/wasm/run.mjs [--heap BYTES] [--async] [--mount HOSTDIR=MPDIR]...
//                           [--path MPDIR]... SCRIPT.py [ARGS...]
//
//   --heap BYTES   initial GC heap (suffix k/K or m/M allowed; default 1M).
//                  NOTE: this port's GC heap grows on demand (split heap), so
//                  the value is not a hard limit; measure footprint with
//                  gc.mem_alloc() / micropython.mem_info() instead.
//   --mount H=M    copy every file under host directory H (recursively, skipping
//                  __pycache__ and *.pyc) into the in-memory filesystem at M.
//   --path M       prepend M to sys.path (repeatable; the first given is
//                  searched first).
//   --async        run with runPythonAsync: the script may use top-level
//                  `await` (this port has no asyncio.run()).
//
// sys.argv is set to [SCRIPT, ARGS...] and __file__ to the script's path
// inside MicroPython: its mounted path if SCRIPT lies in a mounted directory,
// else /main/<basename> (the script is copied there).  Like CPython, the
// script's directory is put first on sys.path, before the --path entries.
//
// stdout/stderr are streamed line by line ("\r\n" normalised to "\n"); a
// final partial line is flushed before exit.  Exit status: 0 on success,
// 1 if the Python code raised (traceback on stderr), the SystemExit code for
// sys.exit(n), 2 for usage or host-side errors.
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const USAGE =
  "usage: node run.mjs [--heap BYTES] [--async] [--mount HOSTDIR=MPDIR]... " +
  "[--path MPDIR]... SCRIPT.py [ARGS...]";

// ---------------------------------------------------------------- output --

// Collects the port's byte-at-a-time output and writes whole lines.
class LineSink {
  constructor(stream) {
    this.stream = stream;
    this.buf = Buffer.alloc(4096);
    this.len = 0;
  }
  push(byte) {
    if (byte === 10) {
      let end = this.len;
      if (end > 0 && this.buf[end - 1] === 13) end -= 1; // \r\n -> \n
      const line = Buffer.alloc(end + 1);
      this.buf.copy(line, 0, 0, end);
      line[end] = 10;
      this.stream.write(line);
      this.len = 0;
      return;
    }
    if (this.len === this.buf.length) {
      const bigger = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(bigger);
      this.buf = bigger;
    }
    this.buf[this.len++] = byte;
  }
  pushBytes(bytes) {
    for (let i = 0; i < bytes.length; i++) this.push(bytes[i]);
  }
  flush() {
    if (this.len > 0) {
      this.stream.write(Buffer.from(this.buf.subarray(0, this.len)));
      this.len = 0;
    }
  }
}

const out = new LineSink(process.stdout);
const err = new LineSink(process.stderr);

// A reader that went away (e.g. `| head`) is not our error.
for (const s of [process.stdout, process.stderr]) {
  s.on("error", (e) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

function finish(code) {
  out.flush();
  err.flush();
  process.exitCode = code;
  // Exit only once both streams have handed everything to the OS, so that no
  // output is lost when stdout is a pipe or file; pending JS timers (e.g.
  // asyncio tasks the script left behind) are deliberately not waited for.
  process.stdout.write("", () => {
    process.stderr.write("", () => process.exit(code));
  });
}

function fail(msg, code = 2) {
  err.flush();
  process.stderr.write(`run.mjs: ${msg}\n`);
  finish(code);
}

// ------------------------------------------------------------- arguments --

function parseSize(text) {
  const m = /^(\d+)([kKmM]?)$/.exec(text);
  if (!m) return NaN;
  const mult = { "": 1, k: 1024, K: 1024, m: 1048576, M: 1048576 }[m[2]];
  return parseInt(m[1], 10) * mult;
}

function parseArgs(argv) {
  const opts = { heap: 1024 * 1024, mounts: [], paths: [], async: false };
  let i = 0;
  const value = (name) => {
    if (i + 1 >= argv.length) throw new Error(`${name} needs a value`);
    i += 1;
    return argv[i];
  };
  for (; i < argv.length; i++) {
    let a = argv[i];
    let inline = null;
    if (a.startsWith("--") && a.includes("=") && !a.startsWith("--mount=")) {
      [a, inline] = [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)];
    } else if (a.startsWith("--mount=")) {
      [a, inline] = ["--mount", a.slice("--mount=".length)];
    }
    const v = (name) => (inline !== null ? inline : value(name));
    if (a === "--heap") {
      const n = parseSize(v(a));
      if (!(n >= 16 * 1024)) throw new Error("--heap must be >= 16k bytes");
      opts.heap = n;
    } else if (a === "--mount") {
      const spec = v(a);
      const eq = spec.lastIndexOf("=");
      if (eq <= 0 || eq === spec.length - 1) {
        throw new Error(`--mount expects HOSTDIR=MPDIR, got ${spec}`);
      }
      const host = path.resolve(spec.slice(0, eq));
      const mpdir = normMpPath(spec.slice(eq + 1));
      if (!fs.existsSync(host) || !fs.statSync(host).isDirectory()) {
        throw new Error(`--mount: not a directory: ${host}`);
      }
      opts.mounts.push([host, mpdir]);
    } else if (a === "--path") {
      opts.paths.push(normMpPath(v(a)));
    } else if (a === "--async") {
      opts.async = true;
    } else if (a === "-h" || a === "--help") {
      opts.help = true;
      return opts;
    } else if (a === "--") {
      i += 1;
      break;
    } else if (a.startsWith("--")) {
      throw new Error(`unknown option ${a}`);
    } else {
      break;
    }
  }
  if (i >= argv.length) throw new Error("no SCRIPT given");
  opts.script = path.resolve(argv[i]);
  opts.args = argv.slice(i + 1);
  return opts;
}

function normMpPath(p) {
  if (!p.startsWith("/")) throw new Error(`MicroPython path must be absolute: ${p}`);
  const n = path.posix.normalize(p);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

// ------------------------------------------------------------ filesystem --

function mkdirs(FS, dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    try {
      FS.mkdir(cur);
    } catch (e) {
      // EEXIST is fine as long as it is a directory.
      if (!FS.isDir(FS.stat(cur).mode)) throw e;
    }
  }
}

function copyTree(FS, hostDir, mpDir) {
  let count = 0;
  mkdirs(FS, mpDir);
  for (const ent of fs.readdirSync(hostDir, { withFileTypes: true })) {
    const name = ent.name;
    const hostPath = path.join(hostDir, name);
    const mpPath = (mpDir === "/" ? "" : mpDir) + "/" + name;
    let isDir = ent.isDirectory();
    let isFile = ent.isFile();
    if (ent.isSymbolicLink()) {
      const st = fs.statSync(hostPath, { throwIfNoEntry: false });
      if (!st) continue;
      isDir = st.isDirectory();
      isFile = st.isFile();
    }
    if (isDir) {
      if (name === "__pycache__") continue;
      count += copyTree(FS, hostPath, mpPath);
    } else if (isFile) {
      if (name.endsWith(".pyc")) continue;
      FS.writeFile(mpPath, fs.readFileSync(hostPath));
      count += 1;
    }
  }
  return count;
}

// Where the script lives inside MicroPython.
function scriptMpPath(opts) {
  for (const [host, mpdir] of opts.mounts) {
    const rel = path.relative(host, opts.script);
    if (rel && !rel.startsWith("..") && !path.isAbsolute(rel)) {
      return path.posix.join(mpdir, ...rel.split(path.sep));
    }
  }
  return null;
}

// ------------------------------------------------------------------ main --

function pyStr(s) {
  // A JSON string literal is a valid Python string literal.
  return JSON.stringify(s);
}

// Drop the frame of our own `execfile(...)` call; code run as a string
// (--async) is compiled as "<stdin>", so give it the script's name instead.
function tidyTraceback(message, mpScript, viaExecfile) {
  const lines = message.split("\n");
  if (viaExecfile && lines[0].startsWith("Traceback") && /^  File "<stdin>", line 1, in <module>$/.test(lines[1] || "")
      && (lines[2] || "").startsWith("  File ")) {
    lines.splice(1, 1);
  }
  return lines.join("\n").split('File "<stdin>"').join(`File ${pyStr(mpScript)}`);
}

function exitCodeForSystemExit(message) {
  // message is a traceback whose last line is "SystemExit: <arg>".
  const lines = message.trimEnd().split("\n");
  const last = lines[lines.length - 1];
  const arg = last.startsWith("SystemExit:") ? last.slice(11).trim() : "";
  if (arg === "" || arg === "None") return 0;
  if (/^-?\d+$/.test(arg)) return parseInt(arg, 10) & 0xff;
  // sys.exit("message"): CPython prints the message and exits 1.
  err.flush();
  process.stderr.write(arg + "\n");
  return 1;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    return fail(`${e.message}\n${USAGE}`);
  }
  if (opts.help) {
    process.stdout.write(USAGE + "\n");
    return finish(0);
  }
  let source;
  try {
    source = fs.readFileSync(opts.script, "utf8");
  } catch (e) {
    return fail(`cannot read script: ${e.message}`);
  }

  const mp = await loadMicroPython({
    heapsize: opts.heap,
    linebuffer: false,
    stdout: (bytes) => out.pushBytes(bytes),
    stderr: (bytes) => err.pushBytes(bytes),
  });

  let mpScript;
  try {
    for (const [host, mpdir] of opts.mounts) copyTree(mp.FS, host, mpdir);
    mpScript = scriptMpPath(opts);
    if (mpScript === null) {
      mpScript = "/main/" + path.basename(opts.script);
      mkdirs(mp.FS, "/main");
      mp.FS.writeFile(mpScript, source);
    }
  } catch (e) {
    return fail(`populating the MicroPython filesystem failed: ${e.message}`);
  }

  const scriptDir = path.posix.dirname(mpScript);
  const searchPath = [scriptDir, ...opts.paths];
  const argv = [mpScript, ...opts.args];
  const prelude = [
    "import sys",
    `sys.path[0:0] = [${searchPath.map(pyStr).join(", ")}]`,
    "try:",
    `    sys.argv[:] = [${argv.map(pyStr).join(", ")}]`,
    "except Exception:",
    "    pass",
    `__file__ = ${pyStr(mpScript)}`,
    "del sys",
  ].join("\n");

  try {
    mp.runPython(prelude);
  } catch (e) {
    return fail(`prelude failed: ${e.message}`);
  }

  try {
    if (opts.async) {
      // Top-level `await` is only accepted in code given as a string.
      await mp.runPythonAsync(source);
    } else {
      // execfile compiles from the file itself, so tracebacks (including
      // ones the script prints) name the script, and the source text does
      // not sit on the MicroPython heap while the script runs.
      mp.runPython(`execfile(${pyStr(mpScript)})`);
    }
  } catch (e) {
    if (e && e.name === "PythonError") {
      if (e.type === "SystemExit") return finish(exitCodeForSystemExit(e.message));
      out.flush();
      err.flush();
      const tb = tidyTraceback(e.message, mpScript, !opts.async);
      process.stderr.write(tb.endsWith("\n") ? tb : tb + "\n");
      return finish(1);
    }
    out.flush();
    err.flush();
    process.stderr.write(`run.mjs: MicroPython VM error: ${e && e.stack ? e.stack : e}\n`);
    return finish(1);
  }
  return finish(0);
}

main().catch((e) => fail(`internal error: ${e && e.stack ? e.stack : e}`));
