"""Board adapters on MicroPython's `machine` API (see docs/boards.md).

Nothing here touches hardware at import: every class takes the `machine`
module (or a fake of it) and a validated hw.profile.Profile as arguments,
and main.py is the only place that passes the real one.
"""
