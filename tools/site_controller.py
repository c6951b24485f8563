#!/bin/sh
''''exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@" #'''
# The two lines above: run by a shell (`tools/site_controller.py ...`), this
# file starts itself again with the project's virtualenv, where paho-mqtt is
# (make setup); to Python the second line is a string.
"""Site controller: several chargers on one circuit (docs/site-controller.md).

    tools/site_controller.py --broker HOST:PORT --circuit-a 32 \\
        --charger dev1 --charger dev2:priority=2 --charger dev3:phase=L2,max_a=16
    tools/site_controller.py --broker HOST:PORT --site site.json

It reads the named chargers' `status`, `online` and `reply` topics and shares
the circuit limit between them with `set_current` commands that carry a
`ttl_s` (renewed well before it runs out), `pause` for a charger that has to
wait and `resume` when its turn comes. A controller that dies, or loses the
broker, leaves each charger at its last limit until the ttl runs out and
then at its `fallback_current_a`.

Two parts: `Site`, the decision (pure: no MQTT, no clock; every call takes
`now` in ms) and `main`, the MQTT glue (paho-mqtt). `Site` keeps, for each
charger, every limit that charger may be running on *without a further
word from the controller* and until when ("facts": what its status showed,
every command sent and not yet proved superseded, its fallback), and the
largest of them is the charger's budget. A command that would raise a
budget is sent only when the budgets still sum to at most the circuit limit
on every phase; decreases free their current only once the charger has
confirmed them and the vehicle has had T_EV_FOLLOW to follow.
"""
import argparse
import json
import os
import random
import signal
import socket
import ssl
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "host"))

import clitext  # noqa: E402  (tools/host/clitext.py)
from clitext import first_line  # noqa: E402

INF = float("inf")
MIN_MA = 6000  # IEC 61851-1: no PWM offer below 6 A
PHASES = ("L1", "L2", "L3")
ACTIVE_STATES = ("B1", "B2", "C1", "C2", "D1", "D2")

# defaults (seconds, amperes); docs/site-controller.md says why
TTL_S = 60.0  # the ttl_s of every set_current
RENEW_S = None  # None: ttl_s / 3 (two renewals may be lost before it runs out)
DELIVERY_S = 30.0  # a command is delivered within this, or never (1.5 x a 20 s keepalive)
FOLLOW_S = 6.0  # a vehicle follows a lower offer within 5 s (IEC 61851-1), +1 s margin
STALE_S = 90.0  # no status for this long: the charger is out of sight (status at least every 60 s)
RESEND_S = 3.0  # a command with no visible effect is sent again after this
HYSTERESIS_A = 2  # a share moves only by at least this much (except to make room)
MIN_RUN_S = 900.0  # a charging vehicle keeps its place this long before a waiting one takes it


class SiteError(ValueError):
    """A site description that cannot be used (the message says why)."""


# ------------------------------------------------------------------ site
class Spec:
    """One charger of the site: its device id, its priority (1 and up:
    higher first, and in proportion of the share), the phases it is wired
    to (indexes into PHASES) and the most it may draw before the controller
    has heard from it (its max_current_a; the circuit limit when not given)."""

    def __init__(self, name, priority=1, phases=(0, 1, 2), max_a=None):
        self.name = name
        self.priority = priority
        self.phases = tuple(phases)
        self.max_a = max_a


def _ident(name):
    ok = 1 <= len(name) <= 32 and all(c.isalnum() or c in "_-" for c in name)
    if not ok or not name.isascii():
        raise SiteError("charger %r: a device id is 1..32 of [A-Za-z0-9_-]" % name[:40])
    return name


def _spec_from(name, opts):
    """A Spec from a device id and a dict of options (as text or JSON values)."""
    name = _ident(str(name))
    priority, phases, max_a = 1, (0, 1, 2), None
    for k, v in opts.items():
        if k == "priority":
            try:
                priority = int(v)
            except (TypeError, ValueError):
                priority = 0
            if isinstance(v, bool) or not 1 <= priority <= 100 or str(v).strip() != str(priority):
                raise SiteError("charger %s: priority must be a whole number 1..100" % name)
        elif k == "phase":
            p = str(v).upper()
            if p in ("3", "ALL", "L1L2L3", "3P"):
                phases = (0, 1, 2)
            elif p in PHASES:
                phases = (PHASES.index(p),)
            else:
                raise SiteError("charger %s: phase must be L1, L2, L3 or 3 (all three)" % name)
        elif k == "max_a":
            try:
                max_a = float(v)
            except (TypeError, ValueError):
                max_a = -1
            if isinstance(v, bool) or not 6 <= max_a <= 80:
                raise SiteError("charger %s: max_a must be a number 6..80" % name)
        else:
            raise SiteError("charger %s: unknown option %r (priority, phase, max_a)"
                            % (name, str(k)[:32]))
    return Spec(name, priority, phases, max_a)


def parse_charger(text):
    """`dev1` or `dev1:priority=2,phase=L1,max_a=16` -> Spec."""
    name, _, rest = text.partition(":")
    opts = {}
    for part in rest.split(",") if rest else ():
        k, eq, v = part.partition("=")
        if not eq:
            raise SiteError("charger %s: option %r is not KEY=VALUE" % (name[:32], part[:32]))
        if k.strip() in opts:
            raise SiteError("charger %s: %s given twice" % (name[:32], k.strip()))
        opts[k.strip()] = v.strip()
    return _spec_from(name, opts)


def load_site(path):
    """A site file: {"circuit_a": 32, "chargers": [{"id": "dev1", "priority": 2,
    "phase": "L1", "max_a": 16}, ...]} plus, optionally, "ttl_s",
    "min_run_s", "hysteresis_a" -> (circuit_a, [Spec], {option: value})."""
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as e:
        raise SiteError("%s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise SiteError("%s: not JSON: %s" % (path, e))
    if not isinstance(d, dict):
        raise SiteError("%s: a JSON object expected" % path)
    known = ("circuit_a", "chargers", "ttl_s", "min_run_s", "hysteresis_a")
    for k in d:
        if k not in known:
            raise SiteError("%s: unknown key %r (%s)" % (path, str(k)[:32], ", ".join(known)))
    chargers = d.get("chargers")
    if not isinstance(chargers, list) or not chargers:
        raise SiteError("%s: \"chargers\" must be a list of at least one charger" % path)
    specs = []
    for c in chargers:
        if not isinstance(c, dict) or not isinstance(c.get("id"), str):
            raise SiteError("%s: each charger is an object with an \"id\"" % path)
        specs.append(_spec_from(c["id"], {k: v for k, v in c.items() if k != "id"}))
    opts = {k: d[k] for k in ("ttl_s", "min_run_s", "hysteresis_a") if k in d}
    return d.get("circuit_a"), specs, opts


def check_site(circuit_a, specs):
    if isinstance(circuit_a, bool) or not isinstance(circuit_a, (int, float)) \
            or not 6 <= circuit_a <= 1000:
        raise SiteError("the circuit limit must be a number 6..1000 (A per phase)")
    seen = set()
    for s in specs:
        if s.name in seen:
            raise SiteError("charger %s named twice" % s.name)
        seen.add(s.name)
    if not specs:
        raise SiteError("no charger named (--charger ID, once per charger of the circuit)")


# ------------------------------------------------------------------ facts
_SLIM = 0  # the limit a status showed
_SFB = 1  # the fallback a status showed
_CMD = 2  # a command sent
_SUN = 3  # a status showed the charger not paused


class Fact:
    """The charger may be running on `ma` until `until` (ms; INF: no end)."""
    __slots__ = ("ma", "until", "kind")

    def __init__(self, ma, until, kind):
        self.ma, self.until, self.kind = ma, until, kind

    def cut(self, t):
        if t < self.until:
            self.until = t


class Cmd:
    __slots__ = ("cid", "kind", "ma", "ttl_ms", "sent", "epoch", "seq", "lim", "unp", "replied")

    def __init__(self, cid, kind, ma, ttl_ms, sent, epoch, seq):
        self.cid, self.kind, self.ma, self.ttl_ms = cid, kind, ma, ttl_ms
        self.sent, self.epoch, self.seq = sent, epoch, seq
        self.lim = self.unp = None
        self.replied = False


class Status:
    """The fields of a status payload the controller uses (mA)."""
    __slots__ = ("state", "session", "offer", "max", "cable", "backend", "ttl_s", "fallback",
                 "paused", "error")

    @classmethod
    def parse(cls, d):
        """A decoded status payload -> Status; ValueError if it is not one."""
        if not isinstance(d, dict) or not isinstance(d.get("limits"), dict):
            raise ValueError("not a status")
        lim = d["limits"]
        s = cls()
        s.state = d.get("state")
        if not isinstance(s.state, str):
            raise ValueError("state")
        s.session = d.get("session")
        s.error = d.get("error")
        s.offer = _ma(d.get("offer_a"), "offer_a")
        s.max = _ma(lim.get("max_a"), "max_a")
        s.cable = _ma(lim.get("cable_a"), "cable_a")
        s.fallback = _ma(lim.get("fallback_a"), "fallback_a")
        b = lim.get("backend_a")
        s.backend = None if b is None else _ma(b, "backend_a")
        t = lim.get("backend_ttl_s")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0):
            raise ValueError("backend_ttl_s")
        s.ttl_s = t
        s.paused = lim.get("paused") is True
        return s


def _ma(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1000:
        raise ValueError(what)
    return int(round(v * 1000))


class _Charger:
    def __init__(self, spec, circuit_ma):
        self.spec = spec
        self.worst = int(spec.max_a * 1000) if spec.max_a is not None else circuit_ma
        # never heard: anything up to its worst case, not paused
        self.lim = [Fact(self.worst, INF, _SLIM)]
        self.unp = [Fact(0, INF, _SUN)]
        self.cmds = {}
        self.st = None
        self.st_at = None
        self.online = None
        self.grant = None  # the share being renewed (mA), None: none
        self.grant_at = None  # when it was last sent
        self.pause_at = None  # when a pause was last sent
        self.resume_at = None
        self.tame_at = None
        self.admitted_at = None  # since when it has a place (None: waiting or idle)
        self.queued_since = None  # since when it waits for a place
        self.role = None  # "share", "queue", "rest", "pause", "unseen": for the log

    def bound(self, t):
        if not any(f.until > t for f in self.unp):
            return 0
        m = 0
        for f in self.lim:
            if f.until > t and f.ma > m:
                m = f.ma
        return m

    def surely_paused(self, t):
        return not any(f.until > t for f in self.unp)


# ------------------------------------------------------------------ Site
class Site:
    """The decision. Feed it what the broker brings (`status`, `online`,
    `reply`, `link_up`, `link_down`), call `step(now)` about once a second,
    publish the commands it returns on each charger's command topic. All
    times are ms of a monotonic clock; currents in the API are mA."""

    def __init__(self, circuit_a, specs, ttl_s=TTL_S, renew_s=RENEW_S, delivery_s=DELIVERY_S,
                 follow_s=FOLLOW_S, stale_s=STALE_S, resend_s=RESEND_S,
                 hysteresis_a=HYSTERESIS_A, min_run_s=MIN_RUN_S, nonce=None):
        check_site(circuit_a, specs)
        self.limit = int(circuit_a * 1000)
        self.ttl_ms = int(ttl_s * 1000)
        self.ttl_s = ttl_s
        self.renew_ms = int((renew_s if renew_s is not None else ttl_s / 3) * 1000)
        self.delivery_ms = int(delivery_s * 1000)
        self.follow_ms = int(follow_s * 1000)
        self.stale_ms = int(stale_s * 1000)
        self.resend_ms = int(resend_s * 1000)
        self.hyst = int(hysteresis_a * 1000)
        self.min_run_ms = int(min_run_s * 1000)
        self.nonce = nonce if nonce is not None else "%06x" % random.getrandbits(24)
        self.ch = {s.name: _Charger(s, self.limit) for s in specs}
        self.order = [s.name for s in specs]
        self.up = False  # connected to the broker
        self.epoch = 0
        self.seq = 0
        self.notes = []  # log lines for the glue
        self._over = 0

    # ------------------------------------------------------------ inputs
    def link_up(self, now):
        self.up = True
        self.epoch += 1

    def link_down(self, now):
        self.up = False
        for c in self.ch.values():
            c.online = None

    def online(self, name, text, now):
        c = self.ch.get(name)
        if c is not None:
            c.online = text == "online"

    def status(self, name, payload, now, retained=False):
        """A status message (decoded JSON). `retained`: delivered from the
        broker's store at subscription: its age is unknown."""
        c = self.ch.get(name)
        if c is None:
            return
        try:
            s = Status.parse(payload)
        except ValueError as e:
            self.notes.append("%s: status ignored (%s)" % (name, e))
            return
        cut = now + self.follow_ms
        # what earlier statuses showed is over once the vehicle has followed
        for f in c.lim:
            if f.kind != _CMD:
                f.cut(cut)
        for f in c.unp:
            if f.kind == _SUN:
                f.cut(cut)
        if not retained:
            # taken at most delivery_ms ago: every command sent more than
            # twice that ago had arrived (or never will) when it was taken,
            # so what it did is in this status
            old = now - 2 * self.delivery_ms
            for cmd in c.cmds.values():
                if cmd.sent <= old:
                    for f in (cmd.lim, cmd.unp):
                        if f is not None:
                            f.cut(cut)
        if s.backend is None:
            c.lim.append(Fact(s.max, INF, _SLIM))  # no limit: its maximum
        elif s.ttl_s is None:
            c.lim.append(Fact(s.backend, INF, _SLIM))
        elif s.ttl_s > 0:  # 0: run out (applied when a vehicle next needs it): the fallback
            c.lim.append(Fact(s.backend, now + int(s.ttl_s * 1000) + self.follow_ms, _SLIM))
        c.lim.append(Fact(s.fallback, INF, _SFB))  # where every ttl ends
        if not s.paused:
            c.unp.append(Fact(0, INF, _SUN))
        c.st = s
        c.st_at = now

    def reply(self, name, payload, now):
        c = self.ch.get(name)
        if c is None or not isinstance(payload, dict):
            return
        cmd = c.cmds.get(payload.get("id"))
        if cmd is None or cmd.replied:
            return
        cmd.replied = True
        cut = now + self.follow_ms
        if payload.get("ok") is not True:  # refused: it changed nothing
            for f in (cmd.lim, cmd.unp):
                if f is not None:
                    f.cut(now)
            self.notes.append("%s: %s refused: %s" % (name, cmd.kind, payload.get("error")))
            return
        if cmd.kind == "set_current":
            cmd.lim.cut(now + cmd.ttl_ms + self.follow_ms)  # it arrived before now
            # what the charger showed before, and every earlier limit of
            # ours (commands arrive in order), is over
            for f in c.lim:
                if f.kind == _SLIM:
                    f.cut(cut)
            for o in c.cmds.values():
                if (o.kind == "set_current" and o.epoch == cmd.epoch and o.seq < cmd.seq
                        and o.lim is not None):
                    o.lim.cut(cut)
        elif cmd.kind == "pause":
            for f in c.unp:
                if f.kind == _SUN:
                    f.cut(cut)
            for o in c.cmds.values():
                if (o.kind == "resume" and o.epoch == cmd.epoch and o.seq < cmd.seq
                        and o.unp is not None):
                    o.unp.cut(cut)

    # ------------------------------------------------------------ budgets
    def bound(self, name, now):
        """The most charger `name` may draw from now on without a further
        command (mA)."""
        return self.ch[name].bound(now)

    def phase_sums(self, now, override=None):
        sums = [0, 0, 0]
        for n, c in self.ch.items():
            b = override[1] if override is not None and override[0] == n else c.bound(now)
            for p in c.spec.phases:
                sums[p] += b
        return sums

    def visible(self, name, now):
        c = self.ch[name]
        return (self.up and c.online is True and c.st_at is not None
                and now - c.st_at <= self.stale_ms)

    # ------------------------------------------------------------ commands
    def _send(self, out, c, now, kind, ma=0):
        self.seq += 1
        cid = "site-%s-%d" % (self.nonce, self.seq)
        cmd = Cmd(cid, kind, ma, self.ttl_ms, now, self.epoch, self.seq)
        msg = {"cmd": kind, "id": cid}
        if kind == "set_current":
            cmd.lim = Fact(ma, now + self.delivery_ms + self.ttl_ms + self.follow_ms, _CMD)
            c.lim.append(cmd.lim)
            msg["amps"] = ma // 1000 if ma % 1000 == 0 else ma / 1000.0
            msg["ttl_s"] = self.ttl_s
        elif kind == "resume":
            # arrived or not, its reply lost or not: not paused until
            # something proves otherwise
            cmd.unp = Fact(0, INF, _CMD)
            c.unp.append(cmd.unp)
        c.cmds[cid] = cmd
        out.append((c.spec.name, msg))

    def _fits(self, c, now, new_bound):
        """True when charger c's budget may become new_bound: the budgets
        still sum to at most the circuit limit on each of its phases. (Not
        merely new_bound <= its budget now: while the circuit is
        over-committed, a budget is an over-estimate, and a raise within it
        could still raise what the charger really draws.)"""
        old = c.bound(now)
        sums = self.phase_sums(now)
        return all(sums[p] - old + new_bound <= self.limit for p in c.spec.phases)

    def _lowers(self, c, g, now):
        """set_current g cannot raise what c may draw: its latest status
        shows a limit of at least g that is still in force when g arrives
        (or no limit at all), and no lower limit of ours is on its way."""
        s = c.st
        if s is None:
            return False
        for m in c.cmds.values():
            if m.kind == "set_current" and not m.replied and m.ma < g:
                return False
        if s.backend is None:
            return g <= min(s.max, s.cable)
        if s.ttl_s is None:
            return g <= s.backend
        return g <= s.backend and s.ttl_s * 1000 > now - c.st_at + self.delivery_ms

    def _room_for(self, c, now):
        """The largest budget charger c may have now (mA)."""
        old = c.bound(now)
        sums = self.phase_sums(now)
        return min(self.limit - (sums[p] - old) for p in c.spec.phases)

    def _with_fact(self, c, now, ma, unpaused=False):
        """c's budget if a limit `ma` were added (and, with `unpaused`, a resume)."""
        if not unpaused and c.surely_paused(now):
            return 0
        m = ma
        for f in c.lim:
            if f.until > now and f.ma > m:
                m = f.ma
        return m

    def _gc(self, now):
        for c in self.ch.values():
            c.lim = [f for f in c.lim if f.until > now]
            c.unp = [f for f in c.unp if f.until > now]
            old = now - 2 * self.delivery_ms
            for cid in [k for k, m in c.cmds.items()
                        if (m.replied or m.sent <= old)
                        and all(f is None or f.until <= now for f in (m.lim, m.unp))]:
                del c.cmds[cid]

    # ------------------------------------------------------------ decision
    def _order_key(self, c, now):
        if c.admitted_at is not None and now - c.admitted_at < self.min_run_ms:
            group, t = 0, c.admitted_at  # has not had its minimum time yet
        elif c.admitted_at is None:
            group, t = 1, c.queued_since if c.queued_since is not None else now  # waiting longest
        else:
            group, t = 2, -c.admitted_at  # ran longest: gives way first
        return (-c.spec.priority, group, t, self.order.index(c.spec.name))

    def plan(self, now):
        """{name: ("share", mA) | ("queue",) | ("rest",) | ("pause",) | ("unseen",)}:
        what each charger should have; also the queue's bookkeeping."""
        room = [self.limit] * 3
        plan = {}
        active, idle = [], []
        for n in self.order:
            c = self.ch[n]
            if not self.visible(n, now):
                plan[n] = ("unseen",)
                c.admitted_at = c.queued_since = None
                for p in c.spec.phases:
                    room[p] -= c.bound(now)
                continue
            s = c.st
            cap = min(s.max, s.cable) // 1000 * 1000
            if (s.state in ACTIVE_STATES and s.session is not None and cap >= MIN_MA):
                active.append(c)
                if c.admitted_at is None and c.queued_since is None:
                    c.queued_since = now
            else:
                idle.append(c)
                c.admitted_at = c.queued_since = None
        active.sort(key=lambda c: self._order_key(c, now))
        floors = {}
        admitted = []
        for c in active:
            s = c.st
            cap = min(s.max, s.cable) // 1000 * 1000
            floor = max(MIN_MA, -(-s.fallback // 1000) * 1000)
            floor = min(floor, cap)
            if all(room[p] >= floor for p in c.spec.phases):
                for p in c.spec.phases:
                    room[p] -= floor
                floors[c.spec.name] = (floor, cap)
                admitted.append(c)
            else:
                plan[c.spec.name] = ("queue",)
        for c in idle:  # an idle charger keeps its fallback if there is room for it
            f = c.st.fallback
            if all(room[p] >= f for p in c.spec.phases):
                for p in c.spec.phases:
                    room[p] -= f
                plan[c.spec.name] = ("rest",)
            else:
                plan[c.spec.name] = ("pause",)
        # the rest, shared in 1 A steps: the one with the least per unit of
        # priority first (weighted max-min fairness), each up to what it can take
        share = {c.spec.name: floors[c.spec.name][0] for c in admitted}
        open_ = list(admitted)
        while open_:
            c = min(open_, key=lambda c: (share[c.spec.name] / c.spec.priority,
                                          self.order.index(c.spec.name)))
            n = c.spec.name
            if share[n] + 1000 <= floors[n][1] and all(room[p] >= 1000 for p in c.spec.phases):
                share[n] += 1000
                for p in c.spec.phases:
                    room[p] -= 1000
            else:
                open_.remove(c)
        # hysteresis: small moves are not made (a small decrease only if the
        # old share still fits)
        for c in admitted:
            n, g = c.spec.name, c.grant
            if g is None or g == share[n]:
                continue
            d = share[n] - g
            if 0 < d < self.hyst:
                for p in c.spec.phases:
                    room[p] += d
                share[n] = g
        for c in admitted:
            n, g = c.spec.name, c.grant
            if g is not None and 0 < g - share[n] < self.hyst and g <= floors[n][1]:
                d = g - share[n]
                if all(room[p] >= d for p in c.spec.phases):
                    for p in c.spec.phases:
                        room[p] -= d
                    share[n] = g
        for c in admitted:
            plan[c.spec.name] = ("share", share[c.spec.name])
        # the queue's bookkeeping
        for c in active:
            if plan[c.spec.name][0] == "share":
                if c.admitted_at is None:
                    c.admitted_at = now
                c.queued_since = None
            else:
                if c.queued_since is None:
                    c.queued_since = now
                c.admitted_at = None
        return plan

    def step(self, now):
        """Decide; returns [(device id, command dict)] to publish now (they
        are already counted as sent)."""
        self._gc(now)
        if not self.up:
            return []
        plan = self.plan(now)
        out = []
        lower, same, raise_ = [], [], []
        for n in self.order:
            c = self.ch[n]
            p = plan[n]
            role = p[0]
            if role != c.role:
                self.notes.append("%s: %s" % (n, {
                    "share": "shares the circuit", "queue": "waits (paused)",
                    "rest": "idle, at its fallback", "pause": "idle, paused (no room)",
                    "unseen": "out of sight: counted at what it may draw"}[role]))
                c.role = role
            if role == "unseen":
                continue
            s = c.st
            if role in ("queue", "pause"):
                c.grant = None
                if not s.paused and (c.pause_at is None or now - c.pause_at >= self.resend_ms):
                    c.pause_at = now
                    self._send(out, c, now, "pause")
                continue
            if role == "rest":
                c.grant = None
                tame = s.backend is None or (s.ttl_s is None and s.backend > s.fallback)
                if tame and (c.tame_at is None or now - c.tame_at >= self.resend_ms):
                    # never limited (or limited for ever): a short limit puts
                    # it on its fallback when it runs out
                    c.tame_at = now
                    lower.append((c, MIN_MA))
                if s.paused:
                    raise_.append((c, None))
                continue
            g = p[1]
            if (c.grant != g or now - c.grant_at >= self.renew_ms
                    or ((s.backend != g or s.ttl_s is None)
                        and now - c.grant_at >= self.resend_ms)):
                if c.grant is not None and g < c.grant:
                    lower.append((c, g))
                elif c.grant == g:
                    same.append((c, g))
                else:
                    raise_.append((c, g))
                    continue
            if s.paused:
                raise_.append((c, None))
        for c, g in lower + same:
            self._grant(out, c, now, g)
        for c, g in sorted(raise_, key=lambda x: -x[0].spec.priority):
            if g is not None:
                self._grant(out, c, now, g)
            s = c.st
            if s.paused and (c.resume_at is None or now - c.resume_at >= self.resend_ms):
                if self._fits(c, now, self._with_fact(c, now, 0, unpaused=True)):
                    c.resume_at = now
                    self._send(out, c, now, "resume")
        sums = self.phase_sums(now)
        over = max(sums) - self.limit
        if over > 0 and over != self._over:
            self.notes.append("circuit over-committed by %.1f A: chargers out of sight or "
                              "acting on their own may draw more than the circuit allows"
                              % (over / 1000))
        self._over = over
        return out

    def _grant(self, out, c, now, g):
        """set_current g to c, or as much of it as fits now (at least 6 A)."""
        if not (self._lowers(c, g, now) or self._fits(c, now, self._with_fact(c, now, g))):
            g = min(g, self._room_for(c, now) // 1000 * 1000)
            if g < MIN_MA or not (self._lowers(c, g, now)
                                  or self._fits(c, now, self._with_fact(c, now, g))):
                return
        if c.role == "rest":  # the taming limit: not renewed
            self._send(out, c, now, "set_current", g)
            return
        if g != c.grant:
            self.notes.append("%s: %g A" % (c.spec.name, g / 1000))
        c.grant = g
        c.grant_at = now
        self._send(out, c, now, "set_current", g)

    def take_notes(self):
        n, self.notes = self.notes, []
        return n


# ------------------------------------------------------------------ MQTT glue
def fail(text, code=1):
    """One clear line on stderr, no traceback."""
    return clitext.fail(__file__, text, code)


def say(text):
    sys.stdout.write(time.strftime("%H:%M:%S ") + text + "\n")
    sys.stdout.flush()


def hostport(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("HOST:PORT expected")
    return host, int(port)


def positive(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number expected")
    if not v > 0 or v == INF:
        raise argparse.ArgumentTypeError("above 0 expected")
    return v


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="site_controller.py",
        description="Share one circuit's current limit between the chargers on it "
        "(docs/site-controller.md).")
    p.add_argument("--broker", type=hostport, default=("127.0.0.1", 1883), metavar="HOST:PORT")
    p.add_argument("--user", help="MQTT user (the shipped ACL needs one of its own: evse-site)")
    p.add_argument("--password", default=os.environ.get("EVSE_MQTT_PASSWORD"),
                   help="(default: $EVSE_MQTT_PASSWORD)")
    p.add_argument("--ca", metavar="FILE", help="TLS: the CA that signed the broker's certificate")
    p.add_argument("--prefix", default="evse")
    p.add_argument("--client-id", default=None, help="MQTT client id (default: evse-site-<pid>)")
    p.add_argument("--site", metavar="FILE", help="a site file (JSON) instead of the two below")
    p.add_argument("--circuit-a", type=positive, metavar="A",
                   help="the circuit's limit, amperes per phase")
    p.add_argument("--charger", action="append", default=[], metavar="ID[:OPTS]",
                   help="a charger of the circuit, once for each: ID or "
                   "ID:priority=N,phase=L1|L2|L3|3,max_a=A")
    p.add_argument("--ttl-s", type=positive, default=None, metavar="S",
                   help="ttl_s of each set_current (%g)" % TTL_S)
    p.add_argument("--min-run-s", type=positive, default=None, metavar="S",
                   help="a charging vehicle keeps its place this long when others wait (%g)"
                   % MIN_RUN_S)
    p.add_argument("--hysteresis-a", type=positive, default=None, metavar="A",
                   help="shares move by at least this much (%g)" % HYSTERESIS_A)
    p.add_argument("--delivery-s", type=positive, default=DELIVERY_S, metavar="S",
                   help="a command is delivered within S seconds or never (%g)" % DELIVERY_S)
    p.add_argument("--step-s", type=positive, default=1.0, metavar="S",
                   help="decide every S seconds (1)")
    return p.parse_args(argv)


def site_from_args(a):
    opts = {}
    if a.site:
        if a.circuit_a is not None or a.charger:
            raise SiteError("--site or --circuit-a with --charger, not both")
        circuit, specs, opts = load_site(a.site)
    else:
        circuit = a.circuit_a
        if circuit is None:
            raise SiteError("--circuit-a A (or --site FILE) is needed")
        specs = [parse_charger(t) for t in a.charger]
    for k in ("ttl_s", "min_run_s", "hysteresis_a"):
        v = getattr(a, k)
        if v is not None:
            opts[k] = v
    for k, v in opts.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise SiteError("%s must be a number above 0" % k)
    if "ttl_s" in opts and not 3 <= opts["ttl_s"] <= 86400:
        raise SiteError("ttl_s must be 3..86400 (the charger takes up to 86400)")
    return Site(circuit, specs, delivery_s=a.delivery_s, **opts)


def main(argv=None):
    a = parse_args(argv)
    try:
        site = site_from_args(a)
    except SiteError as e:
        return fail(str(e), 2)
    import paho.mqtt.client as paho  # here: the decision above needs no MQTT

    lock = threading.Lock()
    clock = time.monotonic

    def now():
        return int(clock() * 1000)

    prefix = a.prefix.rstrip("/")
    names = set(site.ch)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                    client_id=a.client_id or "evse-site-%d" % os.getpid(),
                    clean_session=True, protocol=paho.MQTTv311)
    if a.user:
        c.username_pw_set(a.user, a.password)
    if a.ca:
        sys.path.insert(0, os.path.join(ROOT, "firmware"))
        from evse.tls import context as tls_context
        try:
            with open(a.ca, "rb") as f:
                c.tls_set_context(tls_context(ssl, f.read()))
        except (OSError, ValueError, ssl.SSLError) as e:
            return fail("--ca %s: %s" % (a.ca, first_line(e)))
    refused = []

    def on_connect(client, userdata, flags, rc, props=None):
        if rc.is_failure:
            refused.append(str(rc))
            return
        subs = []
        for n in sorted(names):
            for t in ("status", "online", "reply"):
                subs.append(("%s/%s/%s" % (prefix, n, t), 0))
        client.subscribe(subs)
        with lock:
            site.link_up(now())
        say("connected to %s:%d; %d chargers, circuit %g A per phase"
            % (a.broker[0], a.broker[1], len(names), site.limit / 1000))

    def on_disconnect(client, userdata, flags, rc, props=None):
        with lock:
            site.link_down(now())
        say("broker connection lost (%s): every charger runs on its last limit until its "
            "ttl_s, then its fallback" % rc)

    def on_message(client, userdata, m):
        parts = m.topic.split("/")
        if len(parts) < 2 or parts[-2] not in names:
            return
        dev, kind = parts[-2], parts[-1]
        text = m.payload.decode("utf-8", "replace")
        with lock:
            t = now()
            if kind == "online":
                site.online(dev, text, t)
                return
            try:
                d = json.loads(text)
            except ValueError:
                return
            if kind == "status":
                site.status(dev, d, t, retained=bool(m.retain))
            elif kind == "reply":
                site.reply(dev, d, t)

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.on_message = on_message
    host, port = a.broker
    try:
        c.connect(host, port, keepalive=20)
    except (OSError, ssl.SSLError) as e:
        return fail("cannot reach the broker %s:%d: %s" % (host, port, first_line(e)))
    try:
        c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *x: stop.set())
    c.loop_start()
    try:
        while not stop.is_set():
            if refused:
                return fail("the broker %s:%d refused the connection: %s"
                            % (host, port, refused[0]))
            with lock:
                t = now()
                cmds = site.step(t)
                notes = site.take_notes()
            for n, msg in cmds:
                c.publish("%s/%s/cmd" % (prefix, n), json.dumps(msg), qos=0)
            for line in notes:
                say(line)
            stop.wait(a.step_s)
    except KeyboardInterrupt:
        pass
    finally:
        c.loop_stop()
        c.disconnect()
    say("stopped: every charger runs on its last limit until its ttl_s, then its fallback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
