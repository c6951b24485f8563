"""The application: the charger core on a board, with a meter and a store.

The same code runs on the board (main.py builds the real adapters) and in the
simulator (tools/sim.py builds virtual ones). `tick(now)` is the control
step: read the board, run the state machine, apply the outputs. It does no
I/O that can block: the meter's `poll()` only advances a non-blocking
exchange, and flash writes happen only on session start and stop.

Adapters (duck-typed; the simulator's are in tools/simcore/):
  board.read(inp)    fill charger Inputs from the hardware
  board.apply(out)   drive pilot, contactor and RCD test from Outputs
  board.safe()       contactor open, pilot steady +12 V
  meter.poll(now)    advance the meter exchange; afterwards meter.ok
                     (True/False), meter.a_ma (largest phase current, mA),
                     meter.energy_wh (import energy total, Wh, or None)
"""
from evse.charger import Charger
from evse.config import read_json, write_json_atomic

STATE_FILE = "state.json"


class App:
    def __init__(self, board, cfg, now, meter=None, flash_dir=None):
        self.board = board
        self.meter = meter
        self.flash_dir = flash_dir
        state = self._load_state()
        self.charger = Charger(cfg, now, state.get("session_seq", 0))
        self.inp = self.charger.inp
        self.out = self.charger.out
        self.energy_wh = 0  # energy of the current (or last) session
        self.start_wh = None  # meter reading at session start
        self.reboot_requested = False
        self.records = []  # finished sessions, newest last (the journal's, later)
        board.safe()

    # ---------------------------------------------------------------- state
    def _path(self, name):
        return self.flash_dir + "/" + name

    def _load_state(self):
        if self.flash_dir is None:
            return {}
        try:
            d = read_json(self._path(STATE_FILE))
        except ValueError:
            d = None
        return d if isinstance(d, dict) else {}

    def _save_state(self):
        if self.flash_dir is not None:
            write_json_atomic(self._path(STATE_FILE),
                              {"session_seq": self.charger.session_seq})

    # ----------------------------------------------------------------- tick
    def tick(self, now):
        inp = self.inp
        self.board.read(inp)
        m = self.meter
        if m is not None:
            m.poll(now)
            inp.meter_ok = m.ok
            inp.ev_ma = m.a_ma if m.ok else None
        self.charger.step(now)
        self.board.apply(self.out)
        if self.out.events:
            self._events(self.charger.take_events())
        if self.out.session is not None and m is not None and m.energy_wh is not None:
            if self.start_wh is None:
                self.start_wh = m.energy_wh
            self.energy_wh = m.energy_wh - self.start_wh
        return self.out

    def command(self, msg, now):
        reply = self.charger.command(msg, now)
        if self.out.events:
            self._events(self.charger.take_events())
        return reply

    def _events(self, events):
        for ev in events:
            kind = ev[0]
            if kind == "session_start":
                self._save_state()
                self.energy_wh = 0
                m = self.meter
                self.start_wh = m.energy_wh if m is not None and m.ok else None
            elif kind == "session_stop":
                self._session_stopped(ev[1], ev[2])
            elif kind == "reboot":
                self.reboot_requested = True

    def _session_stopped(self, sid, reason):
        m = self.meter
        stop_wh = m.energy_wh if m is not None and m.ok else None
        if stop_wh is not None and self.start_wh is not None:
            self.energy_wh = stop_wh - self.start_wh
        self.records.append({
            "id": sid, "reason": reason, "meter_start_wh": self.start_wh,
            "meter_stop_wh": stop_wh, "energy_wh": self.energy_wh,
        })
        if len(self.records) > 8:
            self.records.pop(0)
        self.start_wh = None
