"""One-line messages of the host tools (tools/backend.py,
tools/site_controller.py): an error as one clear line on stderr, and text
from outside (a broker's or a database's error, a device's field) made safe
for one log line, so that no newline in it can forge another line."""
import os
import re
import sys

_CONTROL = re.compile("[\x00-\x1f\x7f]")


def safe(v, limit=240):
    """Text for one log line: backslashes doubled, control characters and
    non-ASCII as backslash escapes (no newline can get in), cut to `limit`."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    s = (v if isinstance(v, str) else str(v)).replace("\\", "\\\\")
    s = _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()), s)
    s = s.encode("ascii", "backslashreplace").decode("ascii")
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


def first_line(e):
    """An exception's first line, made safe (the type's name when it has no
    text)."""
    s = str(e).strip().splitlines()
    return safe(s[0] if s else type(e).__name__, 300)


def fail(tool, text, code=1):
    """`tool`: text as one line on stderr, no traceback; returns `code` (for
    an exit status). `tool` is the script's path or name."""
    sys.stderr.write("%s: %s\n" % (os.path.basename(tool), text))
    sys.stderr.flush()
    return code
