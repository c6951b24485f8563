"""Trace lines (shared/scenarios/FORMAT.md, "Trace"), formatted from integers.

CPython and MicroPython format floats differently and MicroPython's dicts do
not keep insertion order, so nothing here calls json.dumps: numbers are
printed from integer units and objects are written key by key in a fixed
order. The same inputs give the same bytes on both Pythons.
"""


def dec(n, scale):
    """Integer `n` in units of 1/`scale` as a decimal: dec(527, 100) = "5.27",
    dec(5000, 1000) = "5.0", dec(-1500, 1000) = "-1.5". Trailing zeros of the
    fraction are dropped, but one digit always remains (a JSON number that
    reads as a float, like the FORMAT's examples)."""
    neg = n < 0
    if neg:
        n = -n
    whole = n // scale
    frac = n % scale
    width = len(str(scale)) - 1
    f = str(frac)
    f = "0" * (width - len(f)) + f
    f = f.rstrip("0")
    if not f:
        f = "0"
    return ("-" if neg else "") + str(whole) + "." + f


def amps_01(ma):
    """mA rounded to 0.01 A (half away from zero), as a decimal."""
    if ma <= -5:  # what rounds to 0 is written 0.0, without a sign
        return "-" + amps_01(-ma)
    if ma < 0:
        ma = 0
    return dec((ma + 5) // 10, 100)


_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
        "\b": "\\b", "\f": "\\f"}


def jstr(s):
    """A JSON string literal, ASCII only (like json.dumps' default)."""
    out = ['"']
    for ch in s:
        e = _ESC.get(ch)
        if e is not None:
            out.append(e)
            continue
        o = ord(ch)
        if 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x10000:
            out.append("\\u%04x" % o)
        else:  # surrogate pair
            o -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF)))
    out.append('"')
    return "".join(out)


# Keys written first, in this order; any others follow sorted.
_KEY_ORDER = ("id", "ok", "error", "cmd")


def jval(v):
    """JSON text of a value made of None, bools, ints, strings, lists, tuples
    and dicts (keys: the known ones first, the rest sorted). A float is
    written through repr(): only the firmware's own replies could carry one,
    and none does."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return jstr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join([jval(x) for x in v]) + "]"
    if isinstance(v, dict):
        keys = [k for k in _KEY_ORDER if k in v]
        rest = sorted([k for k in v if k not in _KEY_ORDER])
        return "{" + ", ".join([jstr(str(k)) + ": " + jval(v[k]) for k in keys + rest]) + "}"
    return jstr(str(v))


def line(t_ms, state, duty, offer_ma, contactor, error, session, energy_wh,
         ev_ma, extra=None):
    """One trace line (without the newline). `extra` is a list of
    (key, JSON text) pairs appended after the FORMAT's fields."""
    parts = [
        '{"t": ', dec(t_ms, 1000),
        ', "state": ', jstr(state),
        ', "duty": ', dec(duty, 100),
        ', "offer_a": ', dec(offer_ma, 1000),
        ', "contactor": ', "true" if contactor else "false",
        ', "error": ', "null" if error is None else jstr(error),
        ', "session": ', "null" if session is None else str(session),
        ', "energy_wh": ', str(energy_wh),
        ', "ev_a": ', "null" if ev_ma is None else amps_01(ev_ma),
    ]
    if extra:
        for k, text in extra:
            parts.append(", ")
            parts.append(jstr(k))
            parts.append(": ")
            parts.append(text)
    parts.append("}")
    return "".join(parts)
