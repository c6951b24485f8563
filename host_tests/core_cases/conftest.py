"""pytest settings for the core cases (plain functions, also run by runner.py).

A case may return a digest string so that runner.py can compare CPython with
MicroPython; pytest would warn about the return value, so that warning is
silenced here, for the cases in this directory only.
"""
import os

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_IGNORE_RETURN = pytest.mark.filterwarnings(
    "ignore::pytest.PytestReturnNotNoneWarning")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).startswith(_HERE):
            item.add_marker(_IGNORE_RETURN)
