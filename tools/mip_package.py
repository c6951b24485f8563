#!/usr/bin/env python3
"""Write package.json, the `mpremote mip install` package, from firmware/.

Every firmware module goes in (the same set tools/deploy.py copies), with
umqtt.simple as a dependency, and the firmware's version (VERSION in
evse/app.py). Run after adding or removing a firmware module;
host_tests/test_deploy.py checks that package.json is current.

    .venv/bin/python tools/mip_package.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy import ROOT, firmware_sources  # noqa: E402


def firmware_version():
    """The one version string: VERSION in firmware/evse/app.py (the
    status, the boot event, Home Assistant's sw_version and package.json)."""
    with open(os.path.join(ROOT, "firmware", "evse", "app.py")) as f:
        for line in f:
            if line.startswith("VERSION = "):
                return json.loads(line.split("=", 1)[1].strip())
    raise ValueError("firmware/evse/app.py: no VERSION line")


def package():
    return {
        "urls": [[rel, "firmware/" + rel] for rel, _ in firmware_sources()],
        "deps": [["umqtt.simple", "latest"]],
        "version": firmware_version(),
    }


def main():
    path = os.path.join(ROOT, "package.json")
    pkg = package()
    lines = ['{', '  "urls": [']
    lines.append(",\n".join("    " + json.dumps(u) for u in pkg["urls"]))
    lines += ['  ],', '  "deps": [', ",\n".join("    " + json.dumps(d) for d in pkg["deps"]),
              '  ],', '  "version": %s' % json.dumps(pkg["version"]), '}']
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d modules)" % (path, len(pkg["urls"])))


if __name__ == "__main__":
    main()
