# Freeze the charger firmware into a custom MicroPython build:
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/firmware/manifest.py
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=/path/to/firmware/manifest.py
#
# The port's own frozen modules stay (first line). main.py is frozen as
# `main`, which the ports run at boot when no main.py is on the filesystem
# (pyexec_file_if_exists looks at frozen modules first). board.json,
# config.json and secrets.json stay files on the board's filesystem
# (tools/deploy.py uploads them; see docs/boards.md).
#
# `port_manifest` names the port's own manifest to keep (default: the
# boards' one of esp32 and rp2); None keeps none. The unix port has no
# boards/manifest.py: the Makefile's 32-bit build (`make mp32`) includes
# this file with port_manifest=None after the unix variant's manifest.
options.defaults(port_manifest="$(PORT_DIR)/boards/manifest.py")
if options.port_manifest:
    include(options.port_manifest)
require("umqtt.simple")
package("evse")
package("hw")
module("main.py")
