"""Host (CPython) stand-in for MicroPython's `micropython` module.

Only what the firmware imports from it: `const()` is the identity on CPython;
on the board the compiler folds it into the bytecode.
"""


def const(x):
    return x
