"""The runner: the firmware's App on the virtual board, in virtual time.

Time is an integer count of ms since the start (`T`); the firmware gets
`now = T` as its tick count (wrapped like ticks_ms). The control tick is
10 ms, as on the board. Each tick, in order:

 1. the meter device integrates the vehicle's current over the last interval;
 2. scenario events due (t <= T) are applied, several at one t in file order;
    `cmd` events go to app.command(msg, now) (dropped, with a note, while the
    broker is down or the supply is off);
 3. app.tick(now): the firmware reads the board, polls the meter, steps the
    charger and drives the outputs;
 4. the trace line is taken; a reboot the firmware asked for boots a new App
    from the flash folder right away;
 5. the vehicle follows the pilot and sets its current for the next interval.

Virtual time strides: when nothing is about to change (no scenario event
before the stride ends, the vehicle settled, and the trace fields other than
t/energy_wh/ev_a unchanged and no event applied for QUIET_MS), the runner
ticks once per second on whole seconds instead of every 10 ms, and jumps to
the tick of the next event; a stride also ends at the tick that completes a
meter answer on the wire, and while the firmware's meter is in the middle
of a poll the runner ticks every 10 ms, so meter exchanges keep their wire
timing. So a charger timer that expires during a quiet
period (a backend limit's ttl_s, an RCD retry) fires up to 1 s late; every
timer shorter than QUIET_MS (the 3 s X1, 5 s PWM update, 6 s forced open,
7 s overcurrent, 2 s PE, the debounces and the RCD self-test) runs at the
full 10 ms resolution. Real-time mode never strides.

The App boots from its flash folder: the scenario's config is saved there
with evse.config.save as config.json and loaded back with evse.config.load,
and state.json (the session counter) persists across power cycles and
reboots, as on the board.

`net` (tools/simnet.py, CPython only, with --broker --realtime) puts the
firmware's MQTT link between the runner and a real broker: it boots each
App with its backend and starts the Link's thread, stops it at a power cut
or a reboot, publishes `cmd` events on the command topic, cuts and restores
the link for `broker` events, and hands back the replies the broker brought
(`take()`). Without it (the default, and always under MicroPython) commands
go to app.command in-process and nothing here touches a socket.
"""
from evse import config as _config
from evse.charger import FAULTS
from evse.meter import from_config as _meter_from_config
from evse.meter import grid_from_config as _grid_from_config

from simcore import trace as _trace
from simcore.board import Board
from simcore.meter import GridMeterDevice, MeterDevice, VirtualBus
from simcore.simapp import SimApp

TICK_MS = 10
STRIDE_MS = 1000
QUIET_MS = 10000
TICKS_MASK = (1 << 30) - 1
CONFIG_FILE = "config.json"


def _ceil_tick(t):
    return (t + TICK_MS - 1) // TICK_MS * TICK_MS


class Sim:
    def __init__(self, scen, flash_dir, emit, realtime=False, wait=None, net=None):
        """`scen`: scenario.normalize() output; `flash_dir`: an empty folder;
        `emit(text)`: takes each trace line; `wait(T)`: in real-time mode,
        returns once the wall clock has reached virtual ms T."""
        self.scen = scen
        self.flash_dir = flash_dir
        self.emit = emit
        self.realtime = realtime
        self.wait = wait
        self.events = scen["events"]
        self.end = _ceil_tick(scen["duration_ms"])
        self.cfg_path = flash_dir + "/" + CONFIG_FILE
        cfg = _config.save(self.cfg_path, scen["config"])
        self.board = Board(cfg["phases"], scen["seed"])
        self.device = None
        if cfg["meter"] is not None:
            self.device = MeterDevice(cfg["meter"], cfg["meter_unit"], int(cfg["meter_baud"]),
                                      cfg["meter_parity"], cfg["phases"])
        # The site: what everything but the charger draws, per phase (mA),
        # and the grid connection's meter on the same bus.
        self.house = [0, 0, 0]
        self.grid_dev = None
        if cfg["grid_meter"] not in (None, "mqtt"):  # "mqtt": the feed comes through the broker
            self.grid_dev = GridMeterDevice(cfg["grid_meter"], cfg["grid_meter_unit"],
                                            int(cfg["meter_baud"]), cfg["meter_parity"])
        self.bus = [d for d in (self.device, self.grid_dev) if d is not None]
        self.switching = cfg["phase_switch"]  # the trace shows the phases in use
        self.app = None
        self.net = net
        self.broker_up = True
        self.energy_wh = 0  # the last App's session energy, shown while off
        self.T = 0
        self.boots = 0
        self.lines = 0
        self._key = None
        self._changed = 0
        self._faults = 0
        self._session = None
        self._fw = []  # firmware events seen this tick (trace "events")
        self._notes = []

    # ------------------------------------------------------------ boot
    def boot(self, T):
        """Start the firmware from what it persisted in the flash folder."""
        cfg = _config.load(self.cfg_path)
        line = VirtualBus(self.bus)
        meter = _meter_from_config(cfg, line)
        grid = _grid_from_config(cfg, line, meter)
        if self.net is None:
            self.app = SimApp(self.board, cfg, T & TICKS_MASK, meter, self.flash_dir, grid=grid)
        else:
            self.app = self.net.boot(self.board, cfg, T & TICKS_MASK, meter, self.flash_dir,
                                     grid)
        self.boots += 1
        self._faults = 0
        self._session = None

    def power_off(self):
        if self.net is not None:
            self.net.power_off()
        if self.app is not None:
            self.energy_wh = self.app.energy_wh
            if self.app.out.session is not None:
                self._fw.append('["session_lost", %d, "power"]' % self.app.out.session)
        self.app = None
        self.board.power_off()

    def _grid_a(self):
        """The trace's grid_a: what the grid meter reads now, per phase (A,
        signed), as JSON text; None without a grid meter."""
        g = self.grid_dev
        if g is None:
            return None
        n = g.supply_phases
        return "[" + ", ".join([_trace.amps_01(g.phase[i]) for i in range(n)]) + "]"

    # ---------------------------------------------------------- events
    def _apply(self, e, T, replies):
        k = e["k"]
        v = e["v"]
        b = self.board
        if k == "ev":
            b.vehicle.state = v
        elif k == "ev_diode":
            b.vehicle.diode = v
        elif k == "cp_short":
            b.cp_short = v
        elif k == "pp_ohm":
            b.pp_ohm = v
        elif k == "ev_draw":
            b.vehicle.draw(v)
        elif k == "noise_v":
            b.noise_mv = v
        elif k == "site":
            for j in range(3):
                self.house[j] = v[j]
        elif k == "grid_meter":
            if self.grid_dev is None:
                self._notes.append("no grid meter configured")
            else:
                self.grid_dev.online = v == "online"
        elif k == "broker":
            self.broker_up = v == "up"
            if self.net is not None:
                self.net.broker(self.broker_up)
        elif k == "cmd":
            if self.net is not None:
                self.net.cmd(v, T & TICKS_MASK)  # MQTT: the reply comes back through the broker
            elif self.app is None:
                self._notes.append("cmd dropped: no supply")
            elif not self.broker_up:
                self._notes.append("cmd dropped: broker down")
            else:
                replies.append(self.app.command(v, T & TICKS_MASK))
                self._fw_events()
        else:  # fault
            name = v[0]
            x = v[1]
            if name == "rcd":
                b.rcd_fault = x
            elif name == "temp_c":
                b.temp_dc = x
            elif name == "weld":
                b.weld = x
                b.contacts()
            elif name == "no_close":
                b.no_close = x
                b.contacts()
            elif name == "pe":
                b.pe = x
            elif name == "meter":
                if self.device is None:
                    self._notes.append("no meter configured")
                else:
                    self.device.online = x == "online"
            elif x == "off":
                if self.app is not None:
                    self.power_off()
            elif self.app is None:  # power on
                self.boot(T)
                self._notes.append("boot")

    def _fw_events(self):
        """Firmware events as trace entries, from what the App shows:
        session starts, finished-session records, fault bits."""
        app = self.app
        out = app.out
        if out.faults != self._faults:
            changed = out.faults ^ self._faults
            for bit, name in FAULTS:
                if changed & bit:
                    kind = "fault" if out.faults & bit else "clear"
                    self._fw.append('["%s", "%s"]' % (kind, name))
            self._faults = out.faults
        r = app.finished
        if r is not None:
            app.finished = None
            wh = r[2]  # None when a reading is missing: the status says which
            self._fw.append('["session_stop", %d, %s, %s, %s]'
                            % (r[0], _trace.jstr(r[1]), "null" if wh is None else "%d" % wh,
                               _trace.jstr(r[3])))
        if out.session is not None and out.session != self._session:
            self._fw.append('["session_start", %d]' % out.session)
        self._session = out.session

    # ------------------------------------------------------------- run
    def run(self):
        events = self.events
        n = len(events)
        i = 0
        board = self.board
        veh = board.vehicle
        dev = self.device
        gdev = self.grid_dev
        T = 0
        prev = 0
        self.boot(0)
        self._notes.append("boot")
        while True:
            if self.realtime and self.wait is not None:
                self.wait(T)
            now = T & TICKS_MASK
            if dev is not None:
                dev.integrate(T - prev, veh.draw_ma, board.phases())
            if gdev is not None:
                gdev.integrate(T - prev, 0, 0)
            inputs = None
            replies = None
            while i < n and events[i]["t"] <= T:
                if inputs is None:
                    inputs = []
                    replies = []
                inputs.append(events[i]["raw"])
                self._apply(events[i], T, replies)
                i += 1
            if inputs is not None and gdev is not None:  # a `site` step reads at once
                gdev.set_phases(self.house, veh.draw_ma if board.flowing() else 0,
                                board.phases())
            app = self.app
            if app is not None:
                app.tick(now)
                self._fw_events()
                out = app.out
                key = (out.state, out.duty, out.offer_ma, out.contactor, out.error, out.session,
                       self._grid_a(), out.phases)
                energy = app.energy_wh
                ev_ma = app.inp.ev_ma
                if app.reboot_requested:
                    self._notes.append("reboot")
                    if out.session is not None:
                        self._fw.append('["session_lost", %d, "reboot"]' % out.session)
                    self.energy_wh = app.energy_wh
                    self.boot(T)
            else:
                key = ("E", 0, 0, False, None, None, self._grid_a(),
                       self._key[7] if self._key is not None else 3)
                energy = self.energy_wh
                ev_ma = None
            if self.net is not None:
                got, notes = self.net.take()
                if got:
                    replies = (replies or []) + got
                self._notes.extend(notes)
            board.update_vehicle(T)
            flow_ma = veh.draw_ma if board.flowing() else 0
            if dev is not None:
                dev.set_current(flow_ma)
            if gdev is not None:
                gdev.set_phases(self.house, flow_ma, board.phases())
            changed = key != self._key
            if changed or inputs is not None:
                self._changed = T
            if changed or T % 1000 == 0 or inputs is not None or replies or self._fw or self._notes:
                extra = []
                if inputs is not None:
                    extra.append(("input", "[" + ", ".join(inputs) + "]"))
                if replies:
                    extra.append(("replies", _trace.jval(replies)))
                if self._fw:
                    extra.append(("events", "[" + ", ".join(self._fw) + "]"))
                    self._fw = []
                if self.switching:
                    extra.insert(0, ("phases", str(key[7])))
                if gdev is not None:
                    extra.insert(0, ("grid_a", key[6]))
                if self._notes:
                    extra.append(("notes", _trace.jval(self._notes)))
                    self._notes = []
                self.emit(_trace.line(T, key[0], key[1], key[2], key[3], key[4], key[5],
                                      energy, ev_ma, extra))
                self.lines += 1
            self._key = key
            if T >= self.end:
                break
            prev = T
            if (not self.realtime and T - self._changed >= QUIET_MS and veh.settled()):
                nxt = (T // STRIDE_MS + 1) * STRIDE_MS
                app = self.app
                if dev is not None:  # a meter exchange goes on at its own pace
                    nxt = dev.stride_end(T, nxt, app.meter if app is not None else None)
                if gdev is not None:
                    nxt = gdev.stride_end(T, nxt, app.site.grid if app is not None
                                          and app.site is not None else None)
            else:
                nxt = T + TICK_MS
            if i < n:
                te = _ceil_tick(events[i]["t"])
                if te < nxt:
                    nxt = te
            if nxt > self.end:
                nxt = self.end
            T = nxt
        self.T = T
        return self
