# The board runs this file at boot. It is deployed as source, which the board
# compiles at every boot, so it only calls the boot sequence compiled with the
# rest of the firmware (hw/boot.py: safe state first, then the charger).
from hw.boot import main

if __name__ == "__main__":
    main()
