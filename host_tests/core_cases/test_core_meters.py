"""The meter catalogue (evse.meter_maps, one module per profile): its data,
loading one profile without keeping its module, the block plan
(evse.meter.plan_blocks), and the integer decoding of every value type, against register words written out
by hand from the vendors' encodings."""
from evse import meter as M
from evse import meter_maps as MM

REQUIRED = ("sdm630", "sdm120", "sdm72d", "abb_b23", "em340", "orno_we514")

# The reads each profile is planned into (start, count), stated by hand.
BLOCKS = {
    "sdm630": [(0x0000, 74)],
    "sdm120": [(0x0000, 14), (0x0048, 2)],
    "sdm72d": [(0x0034, 22)],
    "sdm72d2": [(0x0000, 54), (0x0048, 2)],
    "abb_b23": [(0x5000, 4), (0x5B00, 22)],
    "em340": [(0x0000, 42), (0x0034, 2)],
    "orno_we514": [(0x0131, 17), (0xA000, 2)],
    "dtsu666": [(0x101E, 2), (0x2006, 14)],
    "pro380": [(0x5002, 18), (0x600C, 2)],
}


def test_catalogue_names():
    for name in REQUIRED:
        assert name in MM.NAMES, name
    assert len(MM.NAMES) >= len(REQUIRED) + 2
    assert len(set(MM.NAMES)) == len(MM.NAMES)
    assert sorted(BLOCKS) == sorted(MM.NAMES)
    return " ".join(MM.NAMES)


def test_every_profile_is_complete_data():
    for p in [MM.load(_n) for _n in MM.NAMES]:
        name = p["id"]
        assert MM.load(name) == p
        assert p["fc"] in (3, 4), name
        assert p["words"] in ("hi", "lo"), name
        assert p["phases"] in (1, 3), name
        assert 2 <= p["max_regs"] <= 125, name
        assert p["model"], name
        roles = [f[0] for f in p["fields"]]
        assert M.WH in roles and M.W in roles, name  # energy and power always
        assert len(set(roles)) == len(roles), name
        for role, addr, kind, num, den in p["fields"]:
            assert 0 <= role < M.ROLES and 0 <= addr <= 0xFFFF, name
            assert kind in (M.U16, M.I16, M.U32, M.I32, M.F32, M.U64), name
            # the integer float decoder's bounds
            assert 1 <= num <= 1000 and 1 <= den <= 1000, name
            if role <= M.V3:
                assert role < p["phases"], name
            elif role <= M.A3:
                assert role - M.A1 < p["phases"], name


def test_load_keeps_only_the_profile():
    import sys

    import evse

    p = MM.load("em340")
    assert p["id"] == "em340" and p["words"] == "lo"
    assert "evse.meter_maps.em340" not in sys.modules
    assert not hasattr(MM, "em340")
    # the catalogue is dropped too: an import loads it again
    assert "evse.meter_maps" not in sys.modules and not hasattr(evse, "meter_maps")
    assert MM.load("em340") == p  # loads again


def test_missing_profile_is_a_key_error():
    try:
        MM.load("sdm999")
    except KeyError:
        return
    raise AssertionError("no KeyError")


def test_block_plan_is_the_stated_one_and_covers_every_value():
    for p in [MM.load(_n) for _n in MM.NAMES]:
        name = p["id"]
        blocks = M.plan_blocks(p["fields"], p["max_regs"])
        assert blocks == BLOCKS[name], (name, blocks)
        for role, addr, kind, num, den in p["fields"]:
            inside = [b for b in blocks
                      if b[0] <= addr and addr + M.WIDTH[kind] <= b[0] + b[1]]
            assert len(inside) == 1, (name, addr)
        for start, count in blocks:
            assert 1 <= count <= p["max_regs"], name
        # fewest: two neighbouring reads never fit into one
        for i in range(len(blocks) - 1):
            assert blocks[i + 1][0] + blocks[i + 1][1] - blocks[i][0] > p["max_regs"], name


def test_block_planner_edge_cases():
    f = [(0, 10, M.F32, 1, 1), (1, 0, M.U16, 1, 1), (2, 12, M.U64, 1, 1), (3, 100, M.F32, 1, 1)]
    assert M.plan_blocks(f, 125) == [(0, 102)]
    assert M.plan_blocks(f, 16) == [(0, 16), (100, 2)]
    assert M.plan_blocks(f, 12) == [(0, 12), (12, 4), (100, 2)]
    assert M.plan_blocks(f, 4) == [(0, 1), (10, 2), (12, 4), (100, 2)]
    assert M.plan_blocks([], 10) == []


def _regs(*words):
    """Bytes of a read answer's header (3 bytes) and the given registers."""
    b = bytearray(3)
    for w in words:
        b.append(w >> 8)
        b.append(w & 0xFF)
    return b


def test_decode_float32():
    d = M.decode
    assert d(_regs(0x4366, 0x0000), 3, M.F32, 1000, 1) == 230000  # 230.0 V -> mV
    assert d(_regs(0x4366, 0x199A), 3, M.F32, 1000, 1) == 230100  # 230.1
    assert d(_regs(0x4366, 0x8000), 3, M.F32, 1, 1) == 231  # 230.5 -> half up
    assert d(_regs(0xC366, 0x8000), 3, M.F32, 1, 1) == -231  # half away from zero
    assert d(_regs(0x417F, 0xAE14), 3, M.F32, 1000, 1) == 15980  # 15.97999954
    assert d(_regs(0x449A, 0x5225), 3, M.F32, 1000, 1) == 1234567  # 1234.5670166 kWh
    assert d(_regs(0x47D7, 0xA000), 3, M.F32, 1, 10) == 11040  # 110400 x 0.1 W
    assert d(_regs(0x4130, 0xA3D7), 3, M.F32, 1000, 1) == 11040  # 11.04 kW
    assert d(_regs(0xC62C, 0x8000), 3, M.F32, 1, 1) == -11040
    assert d(_regs(0x0000, 0x0000), 3, M.F32, 1000, 1) == 0
    assert d(_regs(0x8000, 0x0000), 3, M.F32, 1000, 1) == 0  # -0.0
    assert d(_regs(0x0000, 0x0001), 3, M.F32, 1000, 1) == 0  # subnormal
    assert d(_regs(0x3A83, 0x126F), 3, M.F32, 1000, 1) == 1  # 0.001
    assert d(_regs(0x3A83, 0x126F), 3, M.F32, 1, 1) == 0
    assert d(_regs(0x3F00, 0x0000), 3, M.F32, 1, 1) == 1  # 0.5 -> 1
    assert d(_regs(0x4974, 0x2400), 3, M.F32, 1000, 1) == 1000000000  # 1e6 kWh
    assert d(_regs(0x7FC0, 0x0000), 3, M.F32, 1, 1) is None  # NaN
    assert d(_regs(0x7F80, 0x0000), 3, M.F32, 1, 1) is None  # +inf
    assert d(_regs(0xFF80, 0x0000), 3, M.F32, 1, 1) is None  # -inf
    # low word first
    assert d(_regs(0x199A, 0x4366), 3, M.F32 | M.LO_FIRST, 1000, 1) == 230100


def test_decode_integers():
    d = M.decode
    assert d(_regs(0x59E2), 3, M.U16, 10, 1) == 230100  # 23010 x 0.01 V
    assert d(_regs(0xFFFF), 3, M.U16, 1, 1) is None
    assert d(_regs(0xFFFE), 3, M.I16, 1, 1) == -2
    assert d(_regs(0x7FFF), 3, M.I16, 1, 1) is None
    assert d(_regs(0x0000, 0x08FD), 3, M.U32, 100, 1) == 230100  # 2301 x 0.1 V
    assert d(_regs(0xFFFF, 0xFFFF), 3, M.U32, 100, 1) is None  # ABB: not available
    assert d(_regs(0xFFEF, 0x2780), 3, M.I32, 1, 100) == -11040  # -1104000 x 0.01 W
    assert d(_regs(0x7FFF, 0xFFFF), 3, M.I32, 1, 100) is None
    assert d(_regs(0x0000, 0x0032), 3, M.I32, 1, 100) == 1  # 0.5 W -> 1
    assert d(_regs(0xFFFF, 0xFFCE), 3, M.I32, 1, 100) == -1  # -0.5 W -> -1
    assert d(_regs(0xAF40, 0x0001), 3, M.I32 | M.LO_FIRST, 1, 10) == 11040  # EM340
    assert d(_regs(0, 0, 0x0001, 0xE240), 3, M.U64, 10, 1) == 1234560  # 123456 x 10 Wh
    assert d(_regs(0xE240, 0x0001, 0, 0), 3, M.U64 | M.LO_FIRST, 10, 1) == 1234560
    assert d(_regs(0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF), 3, M.U64, 10, 1) is None
    # at another offset in the answer
    assert d(_regs(0x1234, 0x0000, 0x08FD), 5, M.U32, 100, 1) == 230100


def test_float_decoder_matches_exact_rounding():
    """f32_scaled against exact fractions for values from 1e-3 to 1e10 and
    the scales the catalogue uses; the digest must match on both Pythons."""
    h = 0
    for i in range(1, 4000):
        bits = 0x3A800000 + i * 0x16037  # exponents 117..160, varied significands
        hi = bits >> 16
        lo = bits & 0xFFFF
        e = bits >> 23
        m = (bits & 0x7FFFFF) | 0x800000
        for num, den in ((1000, 1), (100, 1), (10, 1), (1, 1), (1, 10), (1, 100)):
            got = M.f32_scaled(hi, lo, num, den)
            # exact: m * 2**(e - 150) * num / den, rounded half up
            t = 150 - e
            if t > 0:
                n, dd = m * num, den << t
            else:
                n, dd = (m << -t) * num, den
            exact = (2 * n + dd) // (2 * dd)
            assert abs(got - exact) <= 1, (hex(bits), num, den, got, exact)
            if t <= 19:
                assert got == exact, (hex(bits), num, den, got, exact)
            neg = M.f32_scaled(hi | 0x8000, lo, num, den)
            assert neg == -got
            h = (h * 31 + got) & 0xFFFFFFF
    return h
