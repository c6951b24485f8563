"""The application: the charger core on a board, with a meter and a store.

The same code runs on the board (main.py builds the real adapters) and in the
simulator (tools/sim.py builds virtual ones). `tick(now)` is the control
step: read the board, run the state machine, apply the outputs. It does no
I/O that can block: the meter's `poll()` only advances a non-blocking
exchange, and flash writes happen only on events (session start and stop,
faults, journal acknowledgements), after the outputs are applied, and a
failed write is counted, never raised.

Adapters (duck-typed; the simulator's are in tools/simcore/):
  board.read(inp)    fill charger Inputs from the hardware
  board.apply(out)   drive pilot, contactor and RCD test from Outputs
  board.safe()       contactor open, pilot steady +12 V
  meter.poll(now)    advance the meter exchange; afterwards meter.ok
                     (True/False), meter.a_ma (largest phase current, mA),
                     meter.energy_wh (import energy total, Wh, or None),
                     meter.started (polls started) and meter.good_seq (the
                     number of the poll the values come from)
  clock()            Unix time in s once NTP has synced, else None
  grid               the meter at the grid connection (a Meter on the
                     charger meter's bus, or evse.site.Feed), or None; with
                     `mode` "smart" or "solar" the App runs evse.site on it
                     (docs/site.md). Two meters on one bus take turns: a
                     poll starts only while the other one's is not under way.

With `backend=True` (a broker is configured) the App also keeps the
journal (evse/journal.py) of session records and events for the backend,
and serves the Bus that the network thread (evse/link.py) talks through:
commands in, replies out, acknowledged journal records in. Sessions cut by
a power loss or a reboot get their record at the next boot (state.json
remembers the session under way). A session that stops gets its record
once the meter has answered a poll that started after the contactor was
open (about one poll period later), so the stop reading is billing grade:
no energy flows after it and none before it is missed.
"""
from micropython import const

from evse import payloads as PL
from evse import bus as B
from evse.bus import Bus
from evse.charger import FAULTS, Charger
from evse.commands import command_id
from evse.config import KEYS as SCHEMA, ConfigError, read_json, validate, write_json_atomic
from evse.journal import Journal
from evse import ticks_diff

VERSION = "0.5.0"

_STATE_FILE = const("state.json")
CONFIG_FILE = "config.json"
_JOURNAL_FILE = const("journal.log")
_LOST_WAIT_S = const(10)  # a lost session's record waits this long for the meter
_STOP_WAIT_S = const(10)  # a stopped session's record waits at most this long for its reading
_CMDS_PER_TICK = const(4)
# App._open, the session under way (one list: every attribute of the App
# is a slot in its table on the board's heap)
_O_ID = const(0)
_O_UP = const(1)  # uptime s at the start
_O_EPOCH = const(2)  # epoch s at the start (None: no clock)
_O_WH = const(3)  # the meter's reading at the start
_O_PEAK = const(4)  # largest phase current so far, mA
_O_LATE = const(5)  # the start reading came after the contactor had closed
_O_CLOSED = const(6)  # the contactor has closed
_O_FAULTS = const(7)  # faults seen
_O_REF = const(8)  # the backend's own id of the session (OCPP's transactionId), or None
_O_TAG = const(9)  # the idTag a RemoteStartTransaction started it with (OCPP), or None
# What set_config may change remotely. Everything else -- the safety
# functions (RCD self-test and retries, temperature limits, ventilation),
# the installation's facts (phases, socket, cable rating) and the link's own
# keys -- is the installer's, on the device. max_current_a only downwards;
# mode only between "smart" and "solar" (both keep the main fuse protected:
# turning site energy on or off is the installer's).
REMOTE_KEYS = ("max_current_a", "fallback_current_a", "authorization", "meter_loss",
               "meter", "meter_unit", "meter_baud", "meter_parity", "mode")


def _int(v, default=0):
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else default


_NONCE_STEP = const(0x9E3779B1)  # odd: boot numbers map to distinct nonces (App.__init__)


def boot_nonce():
    """A random 32-bit number (os.urandom: the hardware RNG on the ESP32 and
    RP2040): the seed of the boot nonces, which with a record counter make
    each record's `rid`, unique per device across reboots, flash wipes and
    board swaps."""
    try:
        import os

        b = os.urandom(4)
        return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
    except (ImportError, AttributeError, NotImplementedError):
        import random

        return random.getrandbits(32)


def _journaled(journal, sid):
    """True when the journal still holds the record of session `sid` (its
    stop was written, but the power went before state.json said so)."""
    head = '{"id": %d,' % sid  # a record from before rids
    mid = ', "id": %d,' % sid
    for r in journal.live:
        if r[1] == "s" and (r[2].startswith(head) or mid in r[2]):
            return True
    return False


class App:
    def __init__(self, board, cfg, now, meter=None, flash_dir=None, backend=False,
                 clock=None, boot_reason="power_on", nonce=None, grid=None):
        board.safe()  # first: before any flash I/O
        self.board = board
        self.meter = meter
        self.site = None  # site energy: the Site, which holds the grid source
        if cfg["mode"] != "normal":
            from evse.site import Site

            self.site = Site(cfg)
            if grid is None and cfg["grid_meter"] == "mqtt" and backend:
                from evse.site import Feed  # the backend's grid feed, through the Bus

                grid = self.site.feed = Feed()
            self.site.grid = grid
        self.flash_dir = flash_dir
        self.cfg = cfg
        self.clock = clock
        state = self._load_state()
        self.boot = _int(state.get("boots")) + 1  # boot number, persisted
        self.charger = Charger(cfg, now, _int(state.get("session_seq")))
        self._restore_backend(state.get("backend"))
        self.inp = self.charger.inp
        self.out = self.charger.out
        self.inp.site = self.site  # the charger reads the site's verdict (evse.site)
        self.energy_wh = 0  # energy of the current (or last) session
        self.start_wh = None  # meter reading at session start
        self.reboot_requested = False
        self.now = now
        self.uptime_s = 0
        self._ms = 0  # ms towards the next uptime second
        self.flash_errors = 0  # failed state/config writes
        self.report_errors = 0  # backend records that could not be built
        self._open = None  # the session under way (_O_ID..): a list, or None
        # A session that stopped, waiting for its billing reading:
        # [id, reason, number of the last poll started before the contactor
        # was open (None while it is still closed), uptime s to give up,
        # uptime s and epoch of the stop]
        self._stopping = None
        self._events_n = 0  # events of this boot (their "n")
        if nonce is None:
            # distinct at every boot of this flash (the boot number times an
            # odd number is a bijection mod 2**32), random across flashes
            # (the seed, drawn at the first boot, kept in state.json)
            seed = state.get("seed")
            if not isinstance(seed, int) or isinstance(seed, bool):
                seed = boot_nonce()
            nonce = (seed + self.boot * _NONCE_STEP) & 0xFFFFFFFF
        self._nonce = "%08x" % nonce
        self._rids = 0  # records journaled this boot (their rid's counter)
        self._reboot = None  # reason of a requested reboot, persisted for the next boot
        lost = state.get("open")
        self._lost = lost if isinstance(lost, dict) and _int(lost.get("id")) > 0 else None
        self._lost_reason = "reboot" if state.get("reboot") else "power_loss"
        self.journal = None
        self.bus = None
        if backend and flash_dir is not None:
            self.bus = Bus()
            if self.site is not None:  # the snapshot carries the site's fields too
                from evse.site import N_SITE

                self.bus.snap.v = B.fields(N_SITE)
                if self.site.feed is not None:
                    self.bus.grid = B.Ring(2)  # decode_grid's readings from the link
            self.journal = Journal(self._path(_JOURNAL_FILE), cfg["journal_kb"] * 1024,
                                   report=self._drop_report)
            try:
                self.journal.load()
            except Exception:  # unreadable: start empty rather than not at all
                self.report_errors += 1
        self._save_state()
        self.report_event("boot", (("reason", "reboot" if state.get("reboot") else boot_reason),
                             ("fw", VERSION)))
        j = self.journal
        if j is not None and j.skipped:
            self.report_event("journal_repaired", (("skipped_bytes", j.skipped),))
        if j is not None and j.unread is not None:  # kept on flash, for a person to look at
            self.report_event("journal_unreadable", (("file", j.unread),))
        if self.bus is not None:
            self._snapshot()

    # ---------------------------------------------------------------- state
    def _path(self, name):
        return self.flash_dir + "/" + name

    def _load_state(self):
        if self.flash_dir is None:
            return {}
        try:
            d = read_json(self._path(_STATE_FILE))
        except ValueError:
            d = None
        return d if isinstance(d, dict) else {}

    def _save_state(self):
        if self.flash_dir is None:
            return
        d = {"session_seq": self.charger.session_seq, "boots": self.boot,
             "seed": (int(self._nonce, 16) - self.boot * _NONCE_STEP) & 0xFFFFFFFF}
        o = self._open
        if o is not None:
            d["open"] = {"id": o[_O_ID], "up": o[_O_UP], "epoch": o[_O_EPOCH], "wh": o[_O_WH],
                         "boot": self.boot}
            if o[_O_LATE]:
                d["open"]["late"] = True
            if o[_O_REF] is not None:
                d["open"]["ref"] = o[_O_REF]
            if o[_O_TAG] is not None:
                d["open"]["tag"] = o[_O_TAG]
        elif self._lost is not None:
            d["open"] = self._lost  # until its record is in the journal
        if self._reboot is not None:
            d["reboot"] = self._reboot
        lim, left, paused = self.charger.backend_state()
        if lim is not None or paused:
            d["backend"] = {"limit_ma": lim, "left_ms": left, "paused": paused}
        try:
            write_json_atomic(self._path(_STATE_FILE), d)
        except OSError:
            self.flash_errors += 1

    def _restore_backend(self, b):
        """The backend's limit and pause from before the reboot (see
        Charger.restore_backend); anything malformed is ignored."""
        if not isinstance(b, dict):
            return
        lim = b.get("limit_ma")
        left = b.get("left_ms")
        if lim is not None and (not isinstance(lim, int) or isinstance(lim, bool)
                                or not 0 <= lim <= 80000):
            return
        if left is not None and (not isinstance(left, int) or isinstance(left, bool)
                                 or left < 0):
            left = 0
        self.charger.restore_backend(lim, left, b.get("paused") is True)

    def _epoch(self):
        c = self.clock
        if c is None:
            return None
        try:
            return c()
        except Exception:
            return None

    def _time(self):
        """(seconds, "epoch") once the clock is set, else (uptime s, "uptime")."""
        t = self._epoch()
        if t is None:
            return self.uptime_s, "uptime"
        return t, "epoch"

    # ----------------------------------------------------------------- tick
    def tick(self, now):
        inp = self.inp
        out = self.out
        self.board.read(inp)
        dt = ticks_diff(now, self.now)
        m = self.meter
        s = self.site
        g = None if s is None else s.grid
        if m is not None:
            if g is None or not g.busy:
                m.poll(now)
            inp.meter_ok = m.ok
            inp.ev_ma = m.a_ma if m.ok else None
        if g is not None and (m is None or not m.busy):
            g.poll(now)
        if s is not None:
            f = s.feed
            if f is not None and self.bus is not None:
                r = self.bus.grid.get()
                while r is not None:
                    f.take(r, self._epoch())
                    r = self.bus.grid.get()
            s.step(dt, m, out.contactor, out.phases)
        self.charger.step(now)
        self.board.apply(out)
        # The outputs are on the pins: bookkeeping and reports come after.
        ms = self._ms + dt
        self.now = now
        if ms >= 1000:
            self.uptime_s += ms // 1000
            ms = ms % 1000
        self._ms = ms
        if out.events:
            self._events(self.charger.take_events())
        o = self._open  # set at every session_start: there while out.session is
        if out.session is not None or self._stopping is not None:
            if m is not None and m.energy_wh is not None:
                if self.start_wh is None and out.session is not None and m.ok:
                    self.start_wh = m.energy_wh  # the meter answered late
                    if o is not None:
                        o[_O_LATE] = o[_O_CLOSED]
                        o[_O_WH] = self.start_wh
                        self._save_state()
                if self.start_wh is not None:
                    self.energy_wh = m.energy_wh - self.start_wh
        if out.session is not None and o is not None:
            if out.contactor:
                o[_O_CLOSED] = True
            if inp.ev_ma is not None and inp.ev_ma > o[_O_PEAK]:
                o[_O_PEAK] = inp.ev_ma
            o[_O_FAULTS] |= out.faults
        if self._stopping is not None:
            self._finish_stop(False)
        if self._lost is not None:
            self._finish_lost(False)
        bus = self.bus
        if bus is not None:
            if bus.for_control():
                self._serve(now)
            self._snapshot()
        return out

    def command(self, msg, now):
        if isinstance(msg, dict) and msg.get("cmd") == "set_config":
            reply = self._set_config(msg)
        else:
            reply = self.charger.command(msg, now)
        if self.out.events:
            self._events(self.charger.take_events())
        return reply

    def _events(self, events):
        for ev in events:
            kind = ev[0]
            if kind == "session_start":
                if self._stopping is not None:
                    self._finish_stop(True)
                if self._lost is not None:
                    self._finish_lost(True)
                self.energy_wh = 0
                m = self.meter
                self.start_wh = m.energy_wh if m is not None and m.ok else None
                self._open = [ev[1], self.uptime_s, self._epoch(), self.start_wh, 0, False,
                              False, self.out.faults, None, None]
                self._save_state()
            elif kind == "session_stop":
                self._session_stopped(ev[1], ev[2])
            elif kind == "reboot":
                self.reboot_requested = True
                self.report_event("reboot", (("reason", ev[1]),))
                self._reboot = ev[1]
                self._save_state()
            elif kind == "fault" or kind == "clear":
                self.report_event(kind, (("code", ev[1]),))
            elif kind == "limit":  # the backend's limit or pause changed
                self._save_state()
            elif kind == "phases":  # 1p/3p: the phases in use changed
                self.report_event("phases", (("phases", ev[1]),))

    def _session_stopped(self, sid, reason):
        """The session ended: its record waits for the meter's stop reading."""
        if self._stopping is not None:
            self._finish_stop(True)
        self._stopping = [sid, reason, None, self.uptime_s + _STOP_WAIT_S,
                          self.uptime_s, self._epoch()]
        self._finish_stop(False)

    def _finish_stop(self, now_or_never):
        """Write the stopped session's record once the meter has answered a
        poll that started after the contactor was open (billing grade: no
        energy flows after that, and none before is missed), or at once
        without a meter, with a silent one, or after _STOP_WAIT_S."""
        st = self._stopping
        m = self.meter
        if not now_or_never and m is not None and m.ok and self.uptime_s < st[3]:
            if st[2] is None:
                if self.out.contactor:
                    return  # energy still flows (the C1 wait after `stop`)
                st[2] = m.started  # a poll under way may have read before the opening
                return
            if m.good_seq <= st[2]:
                return
        self._stopping = None
        sid, reason = st[0], st[1]
        stop_wh = m.energy_wh if m is not None and m.ok else None
        if stop_wh is not None and self.start_wh is not None:
            self.energy_wh = stop_wh - self.start_wh
        o = self._open
        energy, status = PL.energy_status(self.start_wh, stop_wh,
                                          o is not None and o[_O_LATE], m is not None)
        estimate = None
        if energy is None and self.start_wh is not None and self.energy_wh >= 0:
            estimate = self.energy_wh  # up to the last reading: the least it was
        self._finished(sid, reason, self.start_wh, stop_wh, energy, status)
        if o is not None and self.journal is not None:
            t = st[5]
            if t is None:
                start, stop, base = o[_O_UP], st[4], "uptime"
            else:
                start = o[_O_EPOCH] if o[_O_EPOCH] is not None else t - (st[4] - o[_O_UP])
                stop, base = t, "epoch"
            self._record(PL.session_record(
                sid, self.boot, start, stop, base, self.start_wh, stop_wh, energy,
                o[_O_PEAK], reason, PL.codes(o[_O_FAULTS], FAULTS), status, estimate,
                self._rid(), o[_O_REF], o[_O_TAG]))
        self.start_wh = None
        self._open = None
        self._save_state()

    def _finished(self, sid, reason, start_wh, stop_wh, energy_wh, status):
        """A session has ended (its record, if there is a journal, is in it).
        The board keeps nothing more: the simulator and the tests subclass
        this to see each session as it ends (tools/simcore/runner.py)."""

    def _finish_lost(self, now_or_never):
        """The record of the session the last boot left open (power loss or
        reboot), once the meter has answered (its register has not moved
        since: no supply, no current) or after _LOST_WAIT_S."""
        m = self.meter
        if (not now_or_never and m is not None and m.energy_wh is None
                and m.ok is not False and self.uptime_s < _LOST_WAIT_S):
            return
        lost = self._lost
        self._lost = None
        stop_wh = m.energy_wh if m is not None and m.ok else None
        start_wh = lost.get("wh")
        if not isinstance(start_wh, int):
            start_wh = None
        sid = lost["id"]
        j = self.journal
        if j is not None and not _journaled(j, sid):
            epoch = lost.get("epoch")
            energy, status = PL.energy_status(start_wh, stop_wh, lost.get("late") is True,
                                              m is not None)
            ref = lost.get("ref")
            tag = lost.get("tag")
            self._record(PL.session_record(
                sid, _int(lost.get("boot")), epoch if isinstance(epoch, int) else _int(lost.get("up")),
                None, "epoch" if isinstance(epoch, int) else "uptime", start_wh, stop_wh,
                energy, None, self._lost_reason, None, status, None, self._rid(),
                ref if isinstance(ref, int) and not isinstance(ref, bool) else None,
                tag if isinstance(tag, str) and len(tag) <= 20 else None))
        self._save_state()

    # -------------------------------------------------------------- backend
    def _rid(self):
        self._rids += 1
        return "%s-%d" % (self._nonce, self._rids)

    def _record(self, payload):
        try:
            self.journal.add("s", payload)
        except Exception:  # a bug here must not stop the charger
            self.report_errors += 1

    def report_event(self, kind, fields):
        """Journal an event for the backend (nothing without a backend); from
        the control step, or from outside it at boot, before the control
        thread runs."""
        if self.journal is None:
            return
        try:
            self._events_n += 1
            t, base = self._time()
            self.journal.add("e", PL.event(kind, fields, self.boot, self._events_n, t, base,
                                           self._rid()))
        except Exception:
            self.report_errors += 1

    def _drop_report(self, dropped_events, dropped_sessions):
        self._events_n += 1
        t, base = self._time()
        return PL.event("journal_full", (("dropped_events", dropped_events),
                                         ("dropped_sessions", dropped_sessions)),
                        self.boot, self._events_n, t, base, self._rid())

    def _snapshot(self):
        """Write the status snapshot the network thread reads (evse.bus):
        small ints into a fixed array, without allocating."""
        snap = self.bus.snap
        v = snap.v
        out = self.out
        none = B.NONE
        snap.begin()
        v[B.S_STATE] = B.STATES.index(out.state)
        e = 0
        if out.error is not None:
            for i in range(len(FAULTS)):
                if FAULTS[i][1] == out.error:
                    e = i + 1
        v[B.S_ERROR] = e
        v[B.S_DUTY] = out.duty
        v[B.S_OFFER] = out.offer_ma
        v[B.S_CONTACTOR] = 1 if out.contactor else 0
        v[B.S_FAULTS] = out.faults
        v[B.S_SESSION] = none if out.session is None else out.session
        self.charger.limits_into(v, B.S_MAX, B.S_LEFT, none)
        v[B.S_ENERGY] = self.energy_wh
        inp = self.inp
        v[B.S_EV] = none if inp.ev_ma is None else inp.ev_ma
        v[B.S_UPTIME] = self.uptime_s
        v[B.S_BOOT] = self.boot
        j = self.journal
        v[B.S_PENDING] = len(j.live)
        v[B.S_DROPPED] = j.dropped_events + j.dropped_sessions
        v[B.S_ERRORS] = j.errors + self.flash_errors + self.report_errors
        v[B.S_TEMP] = none if inp.temp_dc is None else inp.temp_dc
        o = self._open
        if out.session is None or o is None:
            v[B.S_START] = v[B.S_START_WH] = none
        else:
            v[B.S_START] = o[_O_UP]
            v[B.S_START_WH] = none if self.start_wh is None else int(self.start_wh)
        s = self.site
        if s is not None:
            s.snapshot_into(v, out.phases, none)
        m = self.meter
        if m is None:
            for i in range(B.S_V1, B.S_METER_WH + 1):
                v[i] = none
        else:
            pv = getattr(m, "phase_mv", None)
            pa = getattr(m, "phase_ma", None)
            for i in range(3):
                x = None if pv is None else pv[i]
                v[B.S_V1 + i] = none if x is None else int(x)
                x = None if pa is None else pa[i]
                v[B.S_A1 + i] = none if x is None else int(x)
            x = getattr(m, "power_w", None)
            v[B.S_POWER] = none if x is None else int(x)
            x = m.energy_wh if m.ok else None
            v[B.S_METER_WH] = none if x is None else int(x)
        snap.end()

    def _serve(self, now):
        """The control thread's side of the Bus: acknowledged journal records
        are removed, commands are run and answered."""
        bus = self.bus
        acks = []
        s = bus.acks.get()
        while s is not None:
            if isinstance(s, tuple) and isinstance(s[0], str):
                self.report_event(s[0], s[1])  # the network thread's (evse/ota.py news)
            elif isinstance(s, tuple):
                # (session id, the backend's id of it: OCPP's transactionId),
                # kept in state.json while the session is open and then in its
                # record, so that a StopTransaction after a power cut names it.
                # Here, not a method: the App's class dict is RAM on the board.
                # (session id, the idTag a remote start gave it): the same, so
                # that a StartTransaction sent again from the record has it.
                o = self._open
                if o is not None and o[_O_ID] == s[0]:
                    if isinstance(s[1], int):
                        o[_O_REF] = s[1]
                    elif isinstance(s[1], str):
                        o[_O_TAG] = s[1][:20]
                    self._save_state()
            else:
                acks.append(s)
            s = bus.acks.get()
        if acks:
            try:
                self.journal.ack(acks)
            except Exception:
                self.report_errors += 1
        for _ in range(_CMDS_PER_TICK):
            msg = bus.urgent.get()  # stop and pause first
            if msg is None:
                msg = bus.cmds.get()
            if msg is None:
                break
            try:
                r = self.command(msg, now)
            except Exception:  # a bug: answered, counted, the charger goes on
                self.report_errors += 1
                r = {"id": command_id(msg), "ok": False, "error": "internal error"}
            bus.replies.put(r)

    def _set_config(self, msg):
        """{"cmd": "set_config", "key": K, "value": V[, "id": ...]}: change one
        configuration key, validated by evse.config, saved, applied at once
        (keys the charger core does not use, such as `meter`, at the next
        boot). Only with `mqtt_remote_config`, only REMOTE_KEYS, and
        never weaker: max_current_a never above what it is (the installer's
        limit), fallback_current_a not above it, meter_loss only to "stop",
        the meter (it watches the current) never removed."""
        cid = command_id(msg)

        def no(text):
            return {"id": cid, "ok": False, "error": text}

        if not self.cfg["mqtt_remote_config"]:
            return no("set_config: disabled on this charger (mqtt_remote_config is false)")
        if "id" in msg and cid is None:
            return no("id: must be a string or an integer of at most 64 characters")
        for k in msg:
            if k not in ("cmd", "id", "key", "value"):
                return no("%s: unknown field for set_config" % str(k)[:32])
        key = msg.get("key")
        if not isinstance(key, str):
            return no("key: missing or not a string")
        if "value" not in msg:
            return no("value: missing")
        if key not in SCHEMA:
            return no("%s: unknown key" % key[:32])
        if key not in REMOTE_KEYS:
            return no("%s: cannot be changed over MQTT, only on the device (config.json)" % key)
        new = dict(self.cfg)
        new[key] = msg["value"]
        try:
            new = validate(new)
        except ConfigError as e:
            return no(str(e))
        if key == "max_current_a" and new[key] > self.cfg[key]:
            return no("max_current_a: not above %s A over MQTT (the installer's limit: raise "
                      "it on the device)" % self.cfg[key])
        if key == "fallback_current_a" and new[key] > new["max_current_a"]:
            return no("fallback_current_a: not above max_current_a (%s A)" % new["max_current_a"])
        if key == "meter_loss" and new[key] != "stop" and self.cfg[key] == "stop":
            return no("meter_loss: only to \"stop\" over MQTT (the meter watches the current: "
                      "\"fallback\" is set on the device)")
        if key == "meter" and new[key] is None and self.cfg[key] is not None:
            return no("meter: not removed over MQTT (it watches the current: on the device)")
        if key == "mode" and new[key] != self.cfg[key] and "normal" in (new[key], self.cfg[key]):
            return no("mode: only between \"smart\" and \"solar\" over MQTT (site energy on "
                      "or off is the installer's, on the device)")
        if self.flash_dir is not None:
            try:
                write_json_atomic(self._path(CONFIG_FILE), new)
            except OSError:
                self.flash_errors += 1
                return no("config not saved: flash write failed")
        self.cfg = new
        self.charger.configure(new)
        if self.site is not None:  # its fallback while the grid reading is lost
            self.site.fallback_ma = int(new["fallback_current_a"] * 1000)
        if key == "mode" and self.site is not None and self.site.solar != (new[key] == "solar"):
            from evse.site import Site

            old = self.site
            self.site = Site(new)  # afresh: the new mode's timers from now
            self.site.feed = old.feed
            self.site.grid = old.grid
            self.inp.site = self.site
        return {"id": cid, "ok": True}
