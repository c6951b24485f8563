"""Configuration: defaults, validation naming the key, atomic persistence."""
import os

from evse import config


def _tmpdir():
    try:
        import tempfile
        return tempfile.mkdtemp()
    except ImportError:  # MicroPython: its in-memory /tmp
        d = "/tmp/cfgtest"
        try:
            os.mkdir(d)
        except OSError:
            pass
        return d


def _raises(fn, *args):
    try:
        fn(*args)
    except config.ConfigError as e:
        return str(e)
    raise AssertionError("no ConfigError for %r" % (args,))


def test_defaults_match_format_table():
    d = config.defaults()
    assert d["max_current_a"] == 32
    assert d["phases"] == 3
    assert d["authorization"] == "free"
    assert d["ventilation"] is False
    assert d["meter"] == "sdm630"
    assert d["socket"] is False
    assert d["cable_a"] is None
    assert d["fallback_current_a"] == 6


def test_validate_fills_defaults():
    cfg = config.validate({"max_current_a": 16})
    assert cfg["max_current_a"] == 16
    assert cfg["phases"] == 3


def test_errors_name_key_and_range():
    msg = _raises(config.validate, {"max_current_a": 90})
    assert "max_current_a" in msg and "6..80" in msg, msg
    msg = _raises(config.validate, {"phases": 2})
    assert "phases" in msg and "1" in msg and "3" in msg, msg
    msg = _raises(config.validate, {"authorization": "maybe"})
    assert "authorization" in msg and "'free'" in msg, msg
    msg = _raises(config.validate, {"ventilation": 1})
    assert "ventilation" in msg, msg
    msg = _raises(config.validate, {"meter": "nope"})
    assert "meter" in msg and "sdm630" in msg, msg
    msg = _raises(config.validate, {"colour": "red"})
    assert "colour" in msg and "unknown" in msg, msg
    msg = _raises(config.validate, {"fallback_current_a": 3})
    assert "fallback_current_a" in msg and "0 or" in msg, msg
    msg = _raises(config.validate, {"max_current_a": True})
    assert "max_current_a" in msg, msg
    msg = _raises(config.validate, {"temp_derate_c": 80, "temp_stop_c": 70})
    assert "temp_stop_c" in msg, msg
    _raises(config.validate, [1, 2])


def test_fallback_zero_allowed_and_meter_none():
    cfg = config.validate({"fallback_current_a": 0, "meter": None, "cable_a": 20})
    assert cfg["fallback_current_a"] == 0 and cfg["meter"] is None
    assert cfg["cable_a"] == 20


def test_save_load_roundtrip_atomic():
    d = _tmpdir()
    path = d + "/config.json"
    config.save(path, {"max_current_a": 20, "authorization": "backend"})
    assert "config.json.tmp" not in os.listdir(d)
    cfg = config.load(path)
    assert cfg["max_current_a"] == 20 and cfg["authorization"] == "backend"
    config.save(path, {"max_current_a": 10})  # replaces the old file
    assert config.load(path)["max_current_a"] == 10
    os.remove(path)


def test_save_refuses_invalid_and_keeps_old_file():
    d = _tmpdir()
    path = d + "/config2.json"
    config.save(path, {"max_current_a": 20})
    _raises(config.save, path, {"max_current_a": 200})
    assert config.load(path)["max_current_a"] == 20
    os.remove(path)


def test_load_missing_is_defaults_and_broken_json_is_an_error():
    d = _tmpdir()
    assert config.load(d + "/none.json") == config.defaults()
    path = d + "/broken.json"
    f = open(path, "w")
    f.write('{"max_current_a": 1')
    f.close()
    assert "not valid JSON" in _raises(config.load, path)
    os.remove(path)


def test_load_recovers_from_tmp_when_target_missing():
    """FAT renames by removing the target first: a power cut in between
    leaves only the complete .tmp file, which load() then uses."""
    d = _tmpdir()
    path = d + "/config3.json"
    config.save(path, {"max_current_a": 25})
    os.rename(path, path + ".tmp")
    assert config.load(path)["max_current_a"] == 25
    os.remove(path + ".tmp")


def test_keys_are_the_schemas_and_the_schema_is_not_kept():
    import sys

    import evse

    assert config.validate({"max_current_a": 10})["max_current_a"] == 10
    _raises(config.validate, {"phases": 2})
    config.defaults()
    assert "evse.config_schema" not in sys.modules
    assert not hasattr(evse, "config_schema")
    from evse import config_schema

    assert sorted(config.KEYS) == sorted(config_schema.SCHEMA)  # MicroPython's dicts: no order
    assert len(set(config.KEYS)) == len(config.KEYS)
    assert sorted(config.KEYS) == sorted(config.defaults())
    config.forget("evse", "config_schema")
    assert "evse.config_schema" not in sys.modules
