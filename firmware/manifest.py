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
include("$(PORT_DIR)/boards/manifest.py")
require("umqtt.simple")
package("evse")
package("hw")
module("main.py")
