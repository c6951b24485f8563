"""The firmware's version, reported in the backend status and the boot event."""
VERSION = "0.5.0"
