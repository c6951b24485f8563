"""Entry point inside MicroPython (tools/sim.py --micropython).

    run.mjs --mount firmware=/fw --mount tools/simcore=/sim/simcore
            --mount SCENDIR=/scen --path /fw --path /sim
            tools/simcore/mp_main.py /scen/scenario.json

The scenario is the normalized one sim.py validated (integers only). Each
trace line is printed with the prefix "@T "; the last line is "@END n".
The flash folder is /flash in the port's in-memory filesystem.
"""
import json
import os
import sys

from simcore.runner import Sim


def main(path):
    f = open(path)
    try:
        scen = json.loads(f.read())
    finally:
        f.close()
    flash = "/flash"
    try:
        os.mkdir(flash)
    except OSError:
        pass
    wr = sys.stdout.write

    def emit(text):
        wr("@T ")
        wr(text)
        wr("\n")

    sim = Sim(scen, flash, emit).run()
    print("@END %d" % sim.lines)


main(sys.argv[1])
