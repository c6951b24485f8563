"""The App as the simulator runs it."""
from evse.app import App


class SimApp(App):
    """The firmware's App, which keeps nothing of a finished session (its
    record goes to the journal): here the trace says how each one ended."""
    finished = None  # (id, reason, energy_wh, energy_status) of the last one
    done = 0  # sessions finished

    def _finished(self, sid, reason, start_wh, stop_wh, energy_wh, status):
        self.finished = (sid, reason, energy_wh, status)
        self.done += 1
