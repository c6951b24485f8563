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


def _string(out, s):
    """A JSON string. A lone surrogate is written as U+FFFD, the
    replacement character, so the text always encodes.

    The text is looked at as its UTF-8 bytes, never a character at a time:
    in MicroPython, iterating or indexing a str makes each character a
    qstr, interned for good, so text from outside (a command's id, a
    field's name) would grow the heap with every new character it brings
    and never give it back. MicroPython keeps a lone surrogate as its three
    bytes ED A0..BF xx, as CPython's "surrogatepass" writes it."""
    b = s.encode("utf-8", "surrogatepass")
    for x in b:
        if x < 0x20 or x == 0x22 or x == 0x5C or x == 0xED:
            break
    else:  # nothing to escape and no surrogate: `s` goes in whole
        out.append('"')
        out.append(s)
        out.append('"')
        return
    out.append('"')
    n = len(b)
    i = j = 0  # b[i:j]: text not written yet
    while j < n:
        x = b[j]
        if x == 0xED and j + 1 < n and b[j + 1] >= 0xA0:  # U+D800..U+DFFF
            e = "\ufffd"
            k = 3
        elif x == 0x22:
            e = '\\"'
            k = 1
        elif x == 0x5C:
            e = "\\\\"
            k = 1
        elif x < 0x20:
            e = "\\n" if x == 10 else "\\r" if x == 13 else "\\t" if x == 9 else \
                "\\u%04x" % x
            k = 1
        else:
            j += 1
            continue
        if i < j:
            out.append(b[i:j].decode())
        out.append(e)
        j += k
        i = j
    if i < n:
        out.append(b[i:].decode())
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
