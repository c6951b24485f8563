"""Build a Board adapter on the fake machine for a profile (tests)."""
import json
import os

import fakemachine as fm

from hw import profile as bp
from hw.board import Board

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name):
    with open(os.path.join(ROOT, "boards", name + ".json")) as f:
        return json.load(f)


def make(raw, us_per_read=None, pwm_max=None, adc_uv=None, **world):
    prof = bp.validate(raw)
    w = fm.reset_world(prof.port)
    w.cp_zero_uv, w.cp_uv_per_v = bp.cp_transfer(prof.d["cp"])
    w.cp_adc_pin = prof.d["cp"]["adc_pin"]
    w.us_per_read = us_per_read or (25 if prof.port == "esp32" else 10)
    if pwm_max is not None:
        w.pwm_max = pwm_max
    if adc_uv:
        w.adc_uv.update(adc_uv)
    for k, v in world.items():
        setattr(w, k, v)
    board = Board(fm, prof, fm.Clock())
    return board, w, prof
