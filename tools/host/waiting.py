"""wait_until: poll a condition until it holds or a deadline passes.

Shared by the host tools (tools/fleet.py) and the tests
(host_tests/mqtt_env.py), so that a tool never imports the tests."""
import time


class TimedOut(RuntimeError):
    """The condition did not hold within the timeout; the text says what."""


def wait_until(pred, timeout, what="condition", step=0.02):
    """pred()'s first true value, polled every `step` s; TimedOut after
    `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimedOut("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(step)
