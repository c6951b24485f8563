"""Command validation (shared/scenarios/FORMAT.md, Commands)."""
from evse.commands import CommandError, parse


def _err(msg):
    try:
        parse(msg)
    except CommandError as e:
        return str(e)
    raise AssertionError("accepted: %r" % (msg,))


def test_valid_commands():
    c = parse({"cmd": "set_current", "amps": 10, "id": "c-1"})
    assert c.name == "set_current" and c.amps_ma == 10000 and c.ttl_ms is None and c.id == "c-1"
    c = parse({"cmd": "set_current", "amps": 12.5, "ttl_s": 30})
    assert c.amps_ma == 12500 and c.ttl_ms == 30000 and c.id is None
    for name in ("pause", "resume", "authorize", "stop", "reset_error", "reboot"):
        assert parse({"cmd": name, "id": 7}).name == name


def test_invalid_commands_name_the_problem():
    assert "cmd" in _err({})
    assert "cmd" in _err({"cmd": 5})
    assert "unknown command" in _err({"cmd": "explode"})
    assert "amps" in _err({"cmd": "set_current"})
    assert "amps" in _err({"cmd": "set_current", "amps": "10"})
    assert "amps" in _err({"cmd": "set_current", "amps": True})
    assert "range" in _err({"cmd": "set_current", "amps": 5})
    assert "range" in _err({"cmd": "set_current", "amps": 81})
    assert "ttl_s" in _err({"cmd": "set_current", "amps": 10, "ttl_s": 0})
    assert "ttl_s" in _err({"cmd": "set_current", "amps": 10, "ttl_s": "1"})
    assert "unknown field" in _err({"cmd": "pause", "amps": 10})
    assert "id" in _err({"cmd": "pause", "id": [1]})
    assert "object" in _err([1])
    assert "object" in _err("pause")


def test_fractional_amps_round_down():
    """A backend limit is never exceeded, not even by rounding."""
    assert parse({"cmd": "set_current", "amps": 6.4375}).amps_ma == 6437
    assert parse({"cmd": "set_current", "amps": 6.9999}).amps_ma == 6999
