"""JSON text written in a fixed key order, with decimals from integers.

MicroPython's dicts do not keep insertion order and the two Pythons format
floats differently, so the backend's payloads are not made with json.dumps:
objects are lists of (key, value) pairs, and numbers with a fraction are
integers in 1/scale units (`dec(2666, 100)` is 26.66). The same values give
the same bytes on the board, under MicroPython and under CPython. A float
that comes in anyway (a meter driver's) is written to 3 decimals, and NaN
or infinity as null, rather than failing the whole message.

The text is built as one list of pieces joined once (this runs in the
network thread for every status and telemetry message: the fewer
intermediate strings, the less garbage); keys are the firmware's own names
and are written as they are.
"""
from micropython import const


class Raw:
    """JSON text that goes into the output as it is."""

    def __init__(self, text):
        self.text = text


# "%d.%0Nd" for N fraction digits (after dropping trailing zeros), N = 0..3
_FRAC = const(("%d.0", "%d.%01d", "%d.%02d", "%d.%03d"))
_SCALES = const((1, 10, 100, 1000))  # the index of a scale is its number of fraction digits


def dec(n, scale):
    """Integer `n` in units of 1/`scale` (10, 100, 1000) as a JSON number:
    dec(527, 100) is 5.27, dec(16000, 1000) is 16.0; None stays null."""
    if n is None:
        return None
    neg = n < 0
    if neg:
        n = -n
    q, r = divmod(n, scale)
    d = _SCALES.index(scale)
    while r and r % 10 == 0:
        r //= 10
        d -= 1
    text = _FRAC[d] % (q, r) if r else _FRAC[0] % q
    return Raw("-" + text if neg else text)


# the characters written as a two-character escape, and their escapes
_ESC_CHARS = const('"\\\n\r\t')
_ESC = const(('\\"', "\\\\", "\\n", "\\r", "\\t"))


def _string(out, s):
    """A JSON string. A lone surrogate is written as U+FFFD, the
    replacement character, so the text always encodes."""
    out.append('"')
    for c in s:
        if c < " " or c == '"' or c == "\\" or "\ud7ff" < c < "\ue000":
            break
    else:  # no escape and no lone surrogate: `s` goes in whole (no allocation)
        out.append(s)
        out.append('"')
        return
    for c in s:
        i = _ESC_CHARS.find(c)
        if i >= 0:
            out.append(_ESC[i])
        elif c < " ":
            out.append("\\u%04x" % ord(c))
        elif "\ud7ff" < c < "\ue000":
            # A lone surrogate (U+D800..U+DFFF, which a command's
            # "\ud800" gives json.loads) has no UTF-8 form: CPython
            # cannot encode it and MicroPython would send invalid UTF-8.
            out.append("\ufffd")
        else:
            out.append(c)
    out.append('"')


def _put(out, v):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, Raw):
        out.append(v.text)
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):  # not expected; written to 3 decimals, never NaN
        if v != v or v in (float("inf"), float("-inf")):
            out.append("null")
        else:
            out.append(dec(int(round(v * 1000)), 1000).text)
    elif isinstance(v, str):
        _string(out, v)
    elif isinstance(v, (list, tuple)):
        out.append("[")
        sep = False
        for x in v:
            if sep:
                out.append(", ")
            sep = True
            _put(out, x)
        out.append("]")
    else:
        raise TypeError("jsonw: cannot write %s" % type(v).__name__)


def dumps(v):
    out = []
    _put(out, v)
    return "".join(out)


def obj(pairs):
    """A JSON object from (key, value) pairs, in that order."""
    out = ["{"]
    sep = False
    for k, v in pairs:
        if sep:
            out.append(', "')
        else:
            out.append('"')
        sep = True
        out.append(k)
        out.append('": ')
        _put(out, v)
    out.append("}")
    return Raw("".join(out))
