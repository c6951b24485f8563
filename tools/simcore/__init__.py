"""The simulator's core: virtual board, vehicle, meter, runner and trace.

Pure Python that runs unchanged under CPython 3.11 and MicroPython 1.27, so
`tools/sim.py --micropython` runs the very same code (and the very same
firmware) inside the MicroPython WebAssembly port and must write a trace
byte-identical to the CPython run. Hence: integers for every physical
quantity, no floats in the trace, our own number formatting and JSON encoder,
our own noise generator, and no dict iteration order anywhere it shows.

Modules:
  scenario  validate a scenario file (shared/scenarios/FORMAT.md) and turn it
            into integer units (CPython side, before either run)
  board     the virtual board: pilot circuit physics, contactor with mirror
            contact, RCD, temperature, PE, PP; the vehicle's current model
  meter     the virtual energy meter: a Modbus RTU device on a virtual UART
  trace     trace lines (JSON), formatted from integers
  runner    virtual (or wall-clock) time, events, boots, power, reboots
  mp_main   entry point inside MicroPython
"""
