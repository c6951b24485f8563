"""Backend commands (docs/scenarios.md, "Commands"): validation only.

`parse(msg)` takes a decoded JSON object and returns a `Command`, or raises
CommandError with a message for the reply. Nothing here changes the charger:
a command that fails validation changes nothing.
"""

from micropython import const

_MAX_AMPS = const(80)
_MIN_AMPS = const(6)
_MAX_TTL_S = const(86400)
_MAX_ID_LEN = const(64)

# command name -> allowed fields besides "cmd" and "id"
FIELDS = {
    "set_current": ("amps", "ttl_s"),
    "pause": (),
    "resume": (),
    "authorize": (),
    "stop": (),
    "reset_error": (),
    "reboot": (),
}


class CommandError(ValueError):
    pass


class Command:
    def __init__(self, name, cid, amps_ma=0, ttl_ms=None):
        self.name = name
        self.id = cid
        self.amps_ma = amps_ma
        self.ttl_ms = ttl_ms


def _is_num(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)


def command_id(msg):
    """The command's id if it is a usable one, else None (for error replies)."""
    if isinstance(msg, dict):
        cid = msg.get("id")
        if (isinstance(cid, str) and len(cid) <= _MAX_ID_LEN) or (
                isinstance(cid, int) and not isinstance(cid, bool)):
            return cid
    return None


def parse(msg):
    if isinstance(msg, Command):  # made by the firmware itself (evse/ocpp.py's profile limits)
        # checked all the same: the charger stores these in the int snapshot
        t = msg.ttl_ms
        if not isinstance(msg.amps_ma, int) or not (t is None or isinstance(t, int)):
            raise CommandError("amps_ma and ttl_ms must be integers")
        return msg
    if not isinstance(msg, dict):
        raise CommandError("command must be a JSON object")
    if "id" in msg:
        cid = msg["id"]
        if isinstance(cid, bool) or not (isinstance(cid, str) or isinstance(cid, int)):
            raise CommandError("id: must be a string or an integer")
        if isinstance(cid, str) and len(cid) > _MAX_ID_LEN:
            raise CommandError("id: longer than %d characters" % _MAX_ID_LEN)
    else:
        cid = None
    if "cmd" not in msg:
        raise CommandError("cmd: missing")
    name = msg["cmd"]
    if not isinstance(name, str):
        raise CommandError("cmd: must be a string")
    if name not in FIELDS:
        raise CommandError("cmd: unknown command %r" % name[:32])
    allowed = FIELDS[name]
    for k in msg:
        if k != "cmd" and k != "id" and k not in allowed:
            raise CommandError("%s: unknown field for %s" % (str(k)[:32], name))
    if name != "set_current":
        return Command(name, cid)
    if "amps" not in msg:
        raise CommandError("amps: missing")
    amps = msg["amps"]
    if not _is_num(amps):
        raise CommandError("amps: must be a number")
    if not _MIN_AMPS <= amps <= _MAX_AMPS:
        raise CommandError("amps: %r out of range %d..%d" % (amps, _MIN_AMPS, _MAX_AMPS))
    ttl_ms = None
    if "ttl_s" in msg:
        ttl = msg["ttl_s"]
        if not _is_num(ttl):
            raise CommandError("ttl_s: must be a number")
        if not 0 < ttl <= _MAX_TTL_S:
            raise CommandError("ttl_s: %r out of range 0..%d (exclusive of 0)" % (ttl, _MAX_TTL_S))
        ttl_ms = int(ttl * 1000)
    # Rounded down: a limit is never exceeded, not even by a fraction of a mA.
    return Command(name, cid, int(amps * 1000), ttl_ms)
