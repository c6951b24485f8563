"""Host test configuration: make the firmware importable under CPython.

`<root>/firmware` (so tests can `import evse.charger`) and `<root>/tools/host`
(the CPython stand-in for MicroPython's `micropython` module) go first on
sys.path.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

for _p in reversed((os.path.join(ROOT, "firmware"),
                    os.path.join(ROOT, "tools", "host"))):
    if _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)
del _p
