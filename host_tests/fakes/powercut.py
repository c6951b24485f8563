"""Power cuts on the host's filesystem (CPython), for the journal's and the
update's power-cut sweeps: a module's `open` (and with cut_os its `os`) is
replaced by one that stops writing after a budget of bytes and raises
PowerCut, which is not an OSError, so the firmware does not get to handle
it, as when the supply goes.

Each byte a file is given costs one unit of the budget. With cut_os, each
os.remove, os.mkdir and os.rmdir costs one, and os.rename two: it removes
the target first (as MicroPython's FAT driver does, so a cut can fall in
between), then renames. The files left behind are what the next boot reads.
"""
import builtins
import os


class PowerCut(BaseException):
    pass


class Budget:
    def __init__(self, n):
        self.left = n

    def spend(self):
        if self.left <= 0:
            raise PowerCut()
        self.left -= 1


class CutFile:
    def __init__(self, f, budget):
        self.f = f
        self.budget = budget

    def write(self, data):
        b = self.budget
        if len(data) > b.left:
            self.f.write(data[:b.left])
            self.f.flush()
            b.left = 0
            raise PowerCut()
        b.left -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def opener(budget):
    def open_(path, mode="r", *a):
        f = builtins.open(path, mode, *a)
        return CutFile(f, budget) if ("a" in mode or "w" in mode) else f
    return open_


class CutOs:
    """The os module as a module under test sees it, the writes cut."""

    def __init__(self, budget):
        self.budget = budget

    def remove(self, p):
        self.budget.spend()
        os.remove(p)

    def mkdir(self, p):
        self.budget.spend()
        os.mkdir(p)

    def rmdir(self, p):
        self.budget.spend()
        os.rmdir(p)

    def rename(self, a, b):
        self.budget.spend()
        if os.path.exists(b):
            os.remove(b)
        self.budget.spend()
        os.rename(a, b)

    def __getattr__(self, name):
        return getattr(os, name)


def arm(monkeypatch, module, n, cut_os=False):
    """From now on the supply goes after n more units written by `module`."""
    budget = Budget(n)
    monkeypatch.setattr(module, "open", opener(budget), raising=False)
    if cut_os:
        monkeypatch.setattr(module, "os", CutOs(budget))
    return budget
