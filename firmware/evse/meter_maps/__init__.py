"""The meter catalogue: one module of data per profile (the register map of
one meter model), of which the firmware imports only the configured one.

`load(name)` imports evse.meter_maps.<name>, takes its PROFILE (a dict: id,
model, fc, words, phases, max_regs, fields) and drops the module again, and
this one, so that only the dict stays in RAM, and only as long as its user
keeps it.
NAMES lists every profile (the configuration's `meter` must be one); a host
test checks it against the modules in this folder. docs/meters.md has every
map and its sources.
"""
import sys

NAMES = ("sdm630", "sdm120", "sdm72d", "sdm72d2", "abb_b23", "em340", "orno_we514",
         "dtsu666", "pro380")


def load(name):
    """The profile called `name`; KeyError for an unknown name."""
    if name not in NAMES:
        raise KeyError(name)
    full = "evse.meter_maps." + name
    __import__(full)
    p = sys.modules[full].PROFILE
    del sys.modules[full]
    try:
        delattr(sys.modules["evse.meter_maps"], name)
    except (AttributeError, KeyError):
        pass
    # the catalogue goes too (the firmware loads one map, at boot; an import
    # after that, as the configuration's check does, loads it again)
    sys.modules.pop("evse.meter_maps", None)
    try:
        delattr(sys.modules["evse"], "meter_maps")
    except (AttributeError, KeyError):
        pass
    return p
