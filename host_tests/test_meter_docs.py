"""docs/meters.md and the README's meter section say what the catalogue
holds: the register tables are regenerated from firmware/evse/meter_maps/
and must appear verbatim (each profile's sources and notes, comments in its
module, follow its table as prose); the catalogue section names every
profile."""
import os

from evse import meter as M
from evse import meter_maps as MM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = {M.U16: "u16", M.I16: "i16", M.U32: "u32", M.I32: "i32", M.F32: "float32",
         M.U64: "u64"}
ROLES = ["V L1", "V L2", "V L3", "A L1", "A L2", "A L3", "P total", "import energy"]
UNITS = ["mV"] * 3 + ["mA"] * 3 + ["W", "Wh"]


def profile_table(p):
    blocks = M.plan_blocks(p["fields"], p["max_regs"])
    lines = [
        "### `%s`: %s" % (p["id"], p["model"]), "",
        "Function 0x%02X, %s word first, %d phase%s, at most %d registers per request; "
        "reads %s." % (p["fc"], "high" if p["words"] == "hi" else "low", p["phases"],
                       "s" if p["phases"] > 1 else "", p["max_regs"],
                       ", ".join("0x%04X x %d" % b for b in blocks)), "",
        "| value | register | type | scale to the firmware unit |", "|---|---|---|---|",
    ]
    for role, addr, kind, num, den in p["fields"]:
        lines.append("| %s | 0x%04X | %s | x %d / %d -> %s |"
                     % (ROLES[role], addr, TYPES[kind], num, den, UNITS[role]))
    return "\n".join(lines)


def _read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def test_names_are_the_profile_modules():
    d = os.path.join(ROOT, "firmware", "evse", "meter_maps")
    mods = sorted(f[:-3] for f in os.listdir(d) if f.endswith(".py") and f != "__init__.py")
    assert mods == sorted(MM.NAMES)
    for name in MM.NAMES:
        assert MM.load(name)["id"] == name


def test_docs_hold_every_profile_as_in_the_catalogue():
    doc = _read("docs/meters.md")
    for p in [MM.load(_n) for _n in MM.NAMES]:
        assert profile_table(p) in doc, "docs/meters.md is out of date for %s:\n%s" % (
            p["id"], profile_table(p))


def test_the_catalogue_section_names_every_profile():
    doc = _read("docs/meters.md")
    section = doc[doc.index("## Energy meters (Modbus RTU)\n"):]
    section = section[:section.index("\n## ", 5)]
    for name in MM.NAMES:
        assert "| `%s` |" % name in section, name