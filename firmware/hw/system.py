"""Build the charger on the hardware, and run the control loop.

main.py calls `build(...)` once, then `run(ctx)`. This is the seam for the
runtime of the MQTT issue: `build` makes everything (profile, configuration,
board adapter, application, watchdog supervisor) and starts nothing; `run`
is the simple scheduler used until then: one control step every 10 ms, the
supervisor polled after each step, the WDT started with the loop. A runtime
that runs the network side by side replaces `run` and keeps the contract:
call `ctx.step(now)` every TICK_MS, and poll `ctx.supervisor` from its own
task so that a stalled control step stops the feeding.
"""
from micropython import const

from evse import config
from evse import profile as boardprofile
from evse import meter as evmeter
from evse.app import App
from evse.hw_uart import open_meter_uart
from hw.board import Board
from hw.watchdog import WDT_TIMEOUT_MS, Supervisor

TICK_MS = const(10)
CONTROL_STACK = const(8192)  # the control thread's stack, when the network runs beside it
SECRETS_FILE = "secrets.json"  # {"wifi_ssid", "wifi_password", "mqtt_password"}
HEALTHY_AFTER_MS = const(60000)  # then the crash counter is cleared


class SetupError(Exception):
    """The profile or configuration cannot run: stay unavailable (state F)."""


class Context:
    def __init__(self, machine, clock, prof, cfg, board, app):
        self.machine = machine
        self.clock = clock
        self.profile = prof
        self.cfg = cfg
        self.board = board
        self.app = app
        self.wdt = None
        self.supervisor = None
        self.ticks = 0
        self._shown_state = None  # what the last status line showed
        self._shown_error = None
        self._shown_contactor = None
        self._shown_duty = -1

    def start_watchdog(self):
        """Start machine.WDT (it cannot be stopped again) and its supervisor."""
        self.wdt = self.machine.WDT(timeout=WDT_TIMEOUT_MS)
        self.supervisor = Supervisor(self.wdt, self.clock.ticks_diff)
        return self.supervisor

    def step(self, now):
        """One control step; stamps the supervisor when it completed."""
        out = self.app.tick(now)
        self.ticks += 1
        if self.supervisor is not None:
            self.supervisor.stamp(now)
        return out

    def status_line(self):
        """A status line when state, error, contactor or duty changed, else
        None (without allocating: this runs every tick)."""
        out = self.app.out
        if (out.state == self._shown_state and out.error == self._shown_error
                and out.contactor == self._shown_contactor and out.duty == self._shown_duty):
            return None
        self._shown_state = out.state
        self._shown_error = out.error
        self._shown_contactor = out.contactor
        self._shown_duty = out.duty
        return "status state=%s duty=%d offer_ma=%d contactor=%d error=%s" % (
            out.state, out.duty, out.offer_ma, 1 if out.contactor else 0, out.error)


def build(machine, clock, raw_profile, config_path, flash_dir):
    """Validate the profile and configuration, build the board and the app."""
    try:
        prof = boardprofile.validate(raw_profile)
    except boardprofile.ProfileError as e:
        raise SetupError("board profile: %s" % e)
    try:
        cfg = config.load(config_path)
    except config.ConfigError as e:
        raise SetupError("configuration: %s" % e)
    rcd = prof.d["rcd"]
    if cfg["rcd_selftest"] and (rcd is None or rcd["test"] is None):
        raise SetupError("configuration: rcd_selftest is true but board %s has no RCD test "
                         "output (set rcd_selftest to false for this board)" % prof.name)
    board = Board(machine, prof, clock)
    backend = cfg["mqtt_host"] is not None
    app = App(board, cfg, clock.ticks_ms(), meter=build_meter(machine, prof, cfg),
              flash_dir=flash_dir, backend=backend, clock=_epoch if backend else None,
              boot_reason=_boot_reason(machine))
    return Context(machine, clock, prof, cfg, board, app)


def _epoch():
    from evse import mqtt_board

    return mqtt_board.clock()


def _boot_reason(machine):
    """machine.reset_cause() as the boot event's reason."""
    try:
        cause = machine.reset_cause()
    except Exception:
        return "unknown"
    for name, reason in (("PWRON_RESET", "power_on"), ("HARD_RESET", "reset"),
                         ("WDT_RESET", "watchdog"), ("DEEPSLEEP_RESET", "deepsleep"),
                         ("SOFT_RESET", "soft_reset")):
        if getattr(machine, name, None) == cause:
            return reason
    return "unknown"


def start_network(ctx, root="", out=print):
    """Wi-Fi (from secrets.json) and the MQTT link; None without mqtt_host.

    Wi-Fi is only started here (WLAN.connect returns at once); the link
    waits until the station is connected. secrets.json (uploaded by
    tools/deploy.py, never in git) holds wifi_ssid, wifi_password and
    optionally mqtt_password; its values are never printed.
    """
    cfg = ctx.cfg
    if cfg["mqtt_host"] is None:
        return None
    from evse import mqtt_board

    try:
        sec = config.read_json(root + SECRETS_FILE)
    except ValueError:
        sec = None
        out("evse: %s is not valid JSON: ignored" % SECRETS_FILE)
    if not isinstance(sec, dict):
        sec = {}
    ssid = sec.get("wifi_ssid")
    if isinstance(ssid, str) and ssid:
        mqtt_board.wifi_start(ssid, sec.get("wifi_password"))
    pw = sec.get("mqtt_password")
    if isinstance(pw, str) and pw and cfg["mqtt_password"] is None:
        cfg = dict(cfg)
        cfg["mqtt_password"] = pw
    return mqtt_board.make_link(ctx.app, cfg, log=out)


def run_all(ctx, link, max_ticks=None, healthy=None, out=print):
    """Without a link: `run` here. With one: `run` (the control loop, the
    supervisor, the watchdog) in a second thread and the network in this one
    (evse/runtime.py says why: on the Pico W the Wi-Fi stack belongs to the
    main thread's core). A control thread that dies leaves the watchdog
    unfed: safe state, then the reset comes within WDT_TIMEOUT_MS; its
    exception is raised here so main.py records it."""
    if link is None:
        return run(ctx, max_ticks=max_ticks, healthy=healthy, out=out)
    import _thread

    died = []

    def control():
        try:
            run(ctx, healthy=healthy, out=out)
        except BaseException as e:  # noqa: recorded by the main thread
            ctx.board.safe()
            died.append(e)

    try:
        _thread.stack_size(CONTROL_STACK)
    except (AttributeError, ValueError):
        pass
    _thread.start_new_thread(control, ())
    link.run(ctx.clock.sleep_ms, lambda: ctx.app.reboot_requested or bool(died))
    link.close()
    if died:
        raise died[0]
    return ctx.ticks


def build_meter(machine, prof, cfg):
    """The Modbus meter on the profile's RS-485 pins, or None (`meter`: null)."""
    if cfg["meter"] is None:
        return None
    rs = prof.d["rs485"]
    if rs is None:
        raise SetupError("configuration: meter %r but board %s has no rs485 pins "
                         "(set meter to null for this board)" % (cfg["meter"], prof.name))
    transport = open_meter_uart(rs["uart"], rs["tx"], rs["rx"], rs.get("de"),
                                baud=int(cfg["meter_baud"]), parity=cfg["meter_parity"],
                                machine=machine)
    return evmeter.from_config(cfg, transport)


def run(ctx, max_ticks=None, healthy=None, out=print):
    """The control loop: a step every TICK_MS, the supervisor after each.

    `healthy()` is called once after HEALTHY_AFTER_MS of running. Returns
    only with max_ticks (tests) or raises.
    """
    c = ctx.clock
    sup = ctx.start_watchdog()
    board = ctx.board
    app = ctx.app
    start = c.ticks_ms()
    nxt = start
    n = 0
    while max_ticks is None or n < max_ticks:
        n += 1
        now = c.ticks_ms()
        ctx.step(now)
        sup.poll(now)
        if board.take_button():
            out("button: %s" % app.command({"cmd": "reset_error", "id": "button"}, now))
        if app.reboot_requested:
            out("reboot requested")
            board.safe()
            c.sleep_ms(200)
            ctx.machine.reset()
        line = ctx.status_line()
        if line is not None:
            out(line)
        if healthy is not None and c.ticks_diff(now, start) >= HEALTHY_AFTER_MS:
            healthy()
            healthy = None
        nxt = c.ticks_add(nxt, TICK_MS)
        wait = c.ticks_diff(nxt, c.ticks_ms())
        if wait > 0:
            c.sleep_ms(wait)
        elif wait < -TICK_MS:  # overran by more than a tick: do not try to catch up
            nxt = c.ticks_ms()
    return n
