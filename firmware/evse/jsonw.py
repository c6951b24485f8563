"""JSON text written in a fixed key order, with decimals from integers.

MicroPython's dicts do not keep insertion order and the two Pythons format
floats differently, so the backend's payloads are not made with json.dumps:
objects are lists of (key, value) pairs, and numbers with a fraction are
integers in 1/scale units (`dec(2666, 100)` is 26.66). The same values give
the same bytes on the board, under MicroPython and under CPython. A float
that comes in anyway (a meter driver's) is written to 3 decimals, and NaN
or infinity as null, rather than failing the whole message.
"""


class Raw:
    """JSON text that goes into the output as it is."""

    def __init__(self, text):
        self.text = text


def dec(n, scale):
    """Integer `n` in units of 1/`scale` (10, 100, 1000) as a JSON number:
    dec(527, 100) is 5.27, dec(16000, 1000) is 16.0; None stays null."""
    if n is None:
        return None
    neg = n < 0
    if neg:
        n = -n
    f = str(n % scale)
    f = ("0" * (len(str(scale)) - 1 - len(f)) + f).rstrip("0") or "0"
    return Raw(("-" if neg else "") + str(n // scale) + "." + f)


_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def string(s):
    """A JSON string. A lone surrogate (U+D800..U+DFFF, which a command's
    "\\ud800" gives json.loads) has no UTF-8 form: CPython cannot encode it
    and MicroPython would send invalid UTF-8, so it is written as U+FFFD,
    the replacement character, and the text always encodes."""
    out = ['"']
    for c in s:
        if c in _ESC:
            out.append(_ESC[c])
        elif c < " ":
            out.append("\\u%04x" % ord(c))
        elif "\ud7ff" < c < "\ue000":
            out.append("\ufffd")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def dumps(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):  # not expected; written to 3 decimals, never NaN
        if v != v or v in (float("inf"), float("-inf")):
            return "null"
        return dec(int(round(v * 1000)), 1000).text
    if isinstance(v, str):
        return string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join([dumps(x) for x in v]) + "]"
    raise TypeError("jsonw: cannot write %s" % type(v).__name__)


def obj(pairs):
    """A JSON object from (key, value) pairs, in that order."""
    return Raw("{" + ", ".join([string(k) + ": " + dumps(v) for k, v in pairs]) + "}")
