"""Build the charger on the hardware, and run it: the board's runtime.

main.py calls `build(...)` once (profile, configuration, board adapter,
meter, application; nothing starts), `start_network(ctx)` (Wi-Fi and the
MQTT link, or None without a broker), then `run_all(ctx, link)`:

    control thread  `run`: App.tick every _TICK_MS on deadlines (ticks_add);
                    reads the board, steps the charger, drives the outputs,
                    writes the journal; the WDT fed after each completed
                    step, under the policy of hw/watchdog.py; never touches
                    a socket.
    network thread  Link.run (evse/link.py): the MQTT client, every socket
                    call bounded; may block for seconds, which the control
                    thread does not notice.

On the Pico W (RP2040) the main thread runs on core 0 and `_thread` starts
the second on core 1: the network (cyw43 and lwIP belong to core 0) stays
in the main thread and the control loop gets core 1 to itself. On the
ESP32 both threads share the GIL on one core; a thread waiting in a socket
call has released the GIL, so the control thread runs on time. They share
only the App's Bus (evse/bus.py: the status snapshot, lock-free rings) and
the journal's immutable `live` tuple; all flash I/O is in the control
thread (MicroPython's VFS is not thread-safe), except the OTA steps' state
files (evse/ota.py Runner, made only when ota.state exists: docs/ota.md).
"""
from micropython import const

from evse import config
from hw.profile import SetupError
from hw.watchdog import NET_STALL_MS, REASONS, WDT_TIMEOUT_MS, Supervisor

_TICK_MS = const(10)
_CONTROL_STACK = const(8192)  # the control thread's stack, when the network runs beside it
_SECRETS_FILE = const("secrets.json")  # {"wifi_ssid", "wifi_password", "mqtt_password"}
_HEALTHY_AFTER_MS = const(60000)  # then the crash counter is cleared


class Context:
    def __init__(self, machine, clock, prof, cfg, board, app):
        self.machine = machine
        self.clock = clock
        self.profile = prof
        self.cfg = cfg
        self.board = board
        self.app = app
        self.supervisor = None  # and the WDT it feeds, once start_watchdog has run
        self.ticks = 0
        self._shown_state = None  # what the last status line showed
        self._shown_error = None
        self._shown_contactor = None
        self._shown_duty = -1

    def start_watchdog(self, net_stall_ms=NET_STALL_MS):
        """Start machine.WDT (it cannot be stopped again) and its supervisor."""
        wdt = self.machine.WDT(timeout=WDT_TIMEOUT_MS)
        self.supervisor = Supervisor(wdt, self.clock.ticks_diff, self.clock.ticks_ms(),
                                     net_stall_ms)
        return self.supervisor

    def step(self, now):
        """One control step."""
        out = self.app.tick(now)
        self.ticks += 1
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
    # What only the build uses is imported here: its names stay out of this
    # module's dict (the modules themselves stay loaded).
    from evse.app import App
    from hw import profile as boardprofile
    from hw.board import Board

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
    if cfg["phase_switch"] and prof.d["phase_switch"] is None:
        raise SetupError("configuration: phase_switch is true but board %s has no phase_switch "
                         "output (the L2/L3 contactor; docs/boards.md)" % prof.name)
    board = Board(machine, prof, clock)
    meter, grid = build_meter(machine, prof, cfg, True)
    prof.release()  # built: the profile's dicts go (the Profile keeps its scalars)
    backend = cfg["mqtt_host"] is not None or cfg["backend"] == "ocpp"
    # machine.reset_cause() as the boot event's reason (here, not a function
    # of its own: every global of this module is RAM on the board)
    why = "unknown"
    try:
        cause = machine.reset_cause()
    except Exception:
        cause = None
    for name, reason in (("PWRON_RESET", "power_on"), ("HARD_RESET", "reset"),
                         ("WDT_RESET", "watchdog"), ("DEEPSLEEP_RESET", "deepsleep"),
                         ("SOFT_RESET", "soft_reset")):
        if cause is not None and getattr(machine, name, None) == cause:
            why = reason
    app = App(board, cfg, clock.ticks_ms(), meter=meter,
              flash_dir=flash_dir, backend=backend, clock=_epoch if backend else None,
              boot_reason=why, grid=grid)
    return Context(machine, clock, prof, cfg, board, app)


def _epoch():
    from hw import net as mqtt_board

    return mqtt_board.clock()


def start_network(ctx, root="", out=print):
    """Wi-Fi (from secrets.json) and the backend link: MQTT (evse/link.py),
    or OCPP 1.6J with `backend` "ocpp" (hw/ocpp_link.py); None without one.

    Wi-Fi is only started here (WLAN.connect returns at once); the link
    waits until the station is connected. secrets.json (uploaded by
    tools/deploy.py, never in git) holds wifi_ssid, wifi_password and
    optionally mqtt_password or ocpp_password; its values are never printed.
    """
    cfg = ctx.cfg
    ocpp = cfg["backend"] == "ocpp"
    if cfg["mqtt_host"] is None and not ocpp:
        return None
    from hw import net as mqtt_board

    try:
        sec = config.read_json(root + _SECRETS_FILE)
    except ValueError:
        sec = None
        out("evse: %s is not valid JSON: ignored" % _SECRETS_FILE)
    if not isinstance(sec, dict):
        sec = {}
    ssid = sec.get("wifi_ssid")
    if isinstance(ssid, str) and ssid:
        mqtt_board.wifi_start(ssid, sec.get("wifi_password"))
    pw = sec.get("ocpp_password" if ocpp else "mqtt_password")
    if not (isinstance(pw, str) and pw):
        pw = None
    try:
        if ocpp:
            from hw import ocpp_link

            return ocpp_link.make(ctx.app, cfg, cfg["mqtt_device_id"] or mqtt_board.device_id(),
                                  pw, ctx.profile.name, log=out,
                                  defer_tls=not ctx.profile.cp_interlock, root=root)
        # the password beside cfg, not in a copy of it (a second dict of
        # every key, about 500 B of heap)
        return mqtt_board.make_link(ctx.app, cfg, log=out,
                                    defer_tls=not ctx.profile.cp_interlock,
                                    password=pw if cfg["mqtt_password"] is None else None)
    except Exception as e:  # e.g. mqtt_ca missing: a backend setting never stops charging
        why = "mqtt_ca %s unreadable" % cfg["mqtt_ca"] if isinstance(e, OSError) else repr(e)
        out("evse: backend link off: %s; charging goes on without it" % why)
        ctx.app.report_event("link_error", (("reason", "ca_unreadable" if isinstance(
            e, OSError) else "error"), ("detail", why[:64])))
        return None


def run_all(ctx, link, max_ticks=None, healthy=None, out=print, net_stall_ms=NET_STALL_MS,
            stop=None, root=""):
    """Without a link: `run` here. With one: `run` in a second thread and
    the network (`link.run`) in this one. The control thread starts first
    and owns the WDT; the network thread is watched by its supervisor
    (hw/watchdog.py). A network thread that ends on an exception is
    reported and left dead: the supervisor lets the board reset once the
    contactor is open. A control thread that dies leaves the WDT unfed:
    safe state, then the reset within WDT_TIMEOUT_MS; its exception is
    raised here so main.py records it. Returns the number of control steps
    (with max_ticks, or when `stop()` says so: tests)."""
    if link is None:
        return run(ctx, max_ticks=max_ticks, healthy=healthy, out=out,
                   net_stall_ms=net_stall_ms, stop=stop)
    import _thread

    died = []
    done = []
    started = []

    def control():
        try:
            run(ctx, max_ticks=max_ticks, healthy=healthy, out=out, net_stall_ms=net_stall_ms,
                started=started, stop=stop)
        except BaseException as e:  # noqa: recorded by the main thread
            ctx.board.safe()
            died.append(e)
        done.append(True)

    try:
        _thread.stack_size(_CONTROL_STACK)
    except (AttributeError, ValueError):
        pass
    _thread.start_new_thread(control, ())
    sleep = ctx.clock.sleep_ms
    while not started and not done:
        sleep(1)
    hook = None
    if started:
        started[0].watch(link)
        hook = _ota(ctx, link, started[0], root, out)
    app = ctx.app
    try:
        link.run(sleep, lambda: app.reboot_requested or bool(done), hook)
    except Exception as e:  # a bug in the network thread: charging goes on
        if started:
            started[0].net_dead = True
        out("network thread died: %r" % e)
        while not done:
            sleep(100)
    link.close()
    while not done:
        sleep(1)
    if died:
        raise died[0]
    return ctx.ticks


def _ota(ctx, link, sup, root, out):
    """The network thread's OTA steps (evse/ota.py Runner), or None: evse.ota
    is imported only when ota.state exists (an update was staged once) or
    the board has the key updates are signed with (ota_key.bin: the backend
    may deliver one, docs/ota.md)."""
    import os

    if ctx.app.bus is None:
        return None
    for name in ("ota.state", "ota_key.bin"):
        try:
            os.stat(root + name)
            break
        except OSError:
            name = None
    if name is None:
        return None
    c = ctx.clock
    snap = ctx.app.bus.snap
    image = None
    if not __file__.endswith(".mpy"):  # frozen into the image (or source on a host)
        from hw import ota_part

        image = ota_part.for_board(True)  # None without esp32 OTA partitions
        if image is None:
            config.forget("hw", "ota_part")

    def start(url, force):
        import socket
        import sys

        from evse.app import VERSION
        from hw.fetch import Fetch

        st = ota.Stager(root, ota.load_key(root), VERSION, sys.platform,
                        sys.implementation._mpy, force, image=image)
        # https:// with the backend's TLS context (its CA): the bundle's
        # signature is what makes it trusted, TLS keeps it private
        tls = getattr(link, "ssl", None) or getattr(getattr(link, "ws", None), "ssl", None)
        return Fetch(socket, url, st, ssl=tls,
                     hold=lambda: link.defer_tls and snap.v[3])  # evse.bus S_CONTACTOR

    try:
        from evse import ota

        r = ota.Runner(root, snap, link, sup.request, c.ticks_ms, c.ticks_diff, start, image)
    except Exception as e:  # an update's bookkeeping never stops charging
        out("ota: %r" % e)
        return None
    link.ota = r  # the link's status reports it, its update command reaches it
    acks = ctx.app.bus.acks  # network -> control: the App journals ("update", fields)

    def step():
        try:
            r.step()
        except Exception as e:  # a bug: this boot's update steps end, charging goes on
            r.done = True
            r.fail(repr(e))
            out("ota: %r" % e)
        n = r.news
        while n and acks.put(n[0]):
            n.pop(0)

    return step


def build_meter(machine, prof, cfg, grid=False):
    """The Modbus meter on the profile's RS-485 pins, or None (`meter`: null).
    grid=True: (meter, grid meter), the grid connection's meter on the same
    bus when `grid_meter` is a profile (docs/site.md), else None."""
    name = cfg["meter"]
    g = cfg["grid_meter"] if grid and cfg["mode"] != "normal" else None
    if g == "mqtt":
        g = None  # the feed comes through the link
    if name is None and g is None:
        return (None, None) if grid else None
    from evse import meter as evmeter
    from hw.rs485 import open_meter_uart

    rs = prof.d["rs485"]
    if rs is None:
        raise SetupError("configuration: meter %r but board %s has no rs485 pins "
                         "(set meter to null for this board)" % (name or g, prof.name))
    transport = open_meter_uart(rs["uart"], rs["tx"], rs["rx"], rs.get("de"),
                                baud=int(cfg["meter_baud"]), parity=cfg["meter_parity"],
                                machine=machine)
    meter = evmeter.from_config(cfg, transport)
    if not grid:
        return meter
    return meter, evmeter.grid_from_config(cfg, transport, meter)


def run(ctx, max_ticks=None, healthy=None, out=print, net_stall_ms=NET_STALL_MS,
        started=None, stop=None):
    """The control loop: a step every _TICK_MS, the WDT fed after each one
    by its supervisor (hw/watchdog.py). Once the supervisor stops feeding,
    the board stays in its safe state until the WDT resets it.

    `healthy()` is called once after _HEALTHY_AFTER_MS of running;
    `started` (a list) gets the supervisor. Returns only with max_ticks
    or `stop()` (tests), or raises.
    """
    c = ctx.clock
    sup = ctx.start_watchdog(net_stall_ms)
    if started is not None:
        started.append(sup)
    board = ctx.board
    app = ctx.app
    start = c.ticks_ms()
    nxt = start
    n = 0
    while (max_ticks is None or n < max_ticks) and (stop is None or not stop()):
        n += 1
        now = c.ticks_ms()
        if sup.reason:  # feeding has stopped: safe, until the reset
            board.safe()
        else:
            o = ctx.step(now)
            if not sup.check(now, o.contactor):
                board.safe()
                out("watchdog: %s; contactor open: the board resets" % REASONS[sup.reason])
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
            if healthy is not None and c.ticks_diff(now, start) >= _HEALTHY_AFTER_MS:
                healthy()
                healthy = None
        nxt = c.ticks_add(nxt, _TICK_MS)
        wait = c.ticks_diff(nxt, c.ticks_ms())
        if wait > 0:
            c.sleep_ms(wait)
        elif wait < -_TICK_MS:  # overran by more than a tick: do not try to catch up
            nxt = c.ticks_ms()
    return n
