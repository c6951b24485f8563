"""tools/site_controller.py: several chargers on one circuit.

The decision (`Site`) against a model of the chargers that follows the
firmware's rules for a backend limit (firmware/evse/charger.py: `_offer`,
`restore_backend`, the ttl falling to the fallback, `pause` surviving a
reboot, no PWM in the first 3 s after a boot, a vehicle that may keep
drawing a higher current for 5 s after a decrease) and of the broker
(commands and messages delayed, lost, in order per direction): the sum of
what the chargers may draw never exceeds the circuit limit on any phase,
through joins, unplugs, chargers that go offline or reboot, the broker
lost, the controller killed and restarted (hypothesis); fair shares, the
6 A minimum, priorities, phases, hysteresis and the queue's rotation.

Then end to end: three firmware chargers (evse.app.App with evse.link.Link
and micropython-lib's umqtt.simple, on the simulator's virtual board)
against a real mosquitto with tools/site_controller.py as a process: the
shares reach the chargers' offers, the sum of offers is checked at every
control tick, and a controller killed -9 leaves each at its fallback once
the ttl has run out.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mqtt_env import ROOT, Mosquitto, Watcher, wait_until

sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "host"))
sys.path.insert(0, os.path.join(ROOT, "firmware"))
import site_controller as SC  # noqa: E402  (tools/site_controller.py)

TOOL = os.path.join(ROOT, "tools", "site_controller.py")
EV_FOLLOW_MS = 5000  # IEC 61851-1: the vehicle follows a lower duty within 5 s
BOOT_X1_MS = 3000  # no PWM in the first 3 s after a boot


# ------------------------------------------------------------------ the model
class ModelCharger:
    """A charger as the firmware behaves towards its backend (mA, ms)."""

    def __init__(self, name, max_ma=32000, fallback_ma=6000, limit_ma=None, cable_ma=None):
        self.name = name
        self.max_ma = max_ma
        self.cable_ma = cable_ma if cable_ma is not None else max_ma
        self.fallback_ma = fallback_ma
        self.limit_ma = limit_ma  # None: never limited
        self.left_ms = None
        self.paused = False
        self.session = False
        self.online = True
        self.boot_at = -BOOT_X1_MS
        self.history = []  # (t, offer): for what the vehicle may still draw

    def offer(self, t):
        if not self.online or not self.session or self.paused or t - self.boot_at < BOOT_X1_MS:
            return 0
        lim = min(self.max_ma, self.cable_ma)
        if self.limit_ma is not None and self.limit_ma < lim:
            lim = self.limit_ma
        return lim if lim >= 6000 else 0

    def advance(self, dt):
        if self.left_ms is not None:  # the control loop runs with the network down too
            self.left_ms -= dt
            if self.left_ms <= 0:
                self.limit_ma, self.left_ms = self.fallback_ma, None

    def command(self, msg):
        k = msg["cmd"]
        if k == "set_current":
            assert 6 <= msg["amps"] <= 80 and msg["ttl_s"] > 0, msg
            self.limit_ma = int(msg["amps"] * 1000)
            self.left_ms = int(msg["ttl_s"] * 1000)
        elif k == "pause":
            self.paused = True
        elif k == "resume":
            self.paused = False
        return {"id": msg.get("id"), "ok": True}

    def reboot(self, t):
        """state.json: the limit and pause; a limit with a ttl comes back at
        no more than the fallback for its time (Charger.restore_backend)."""
        if self.left_ms is not None and self.limit_ma > self.fallback_ma:
            self.limit_ma = self.fallback_ma
        if self.left_ms is not None:
            self.left_ms = max(self.left_ms, 1)  # persisted when it was set: at least this
        self.boot_at = t

    def status(self, t):
        ttl = None if self.left_ms is None else (self.left_ms + 999) // 1000
        return {"state": ("C2" if self.offer(t) else "C1") if self.session else "A",
                "offer_a": self.offer(t) / 1000, "session": 1 if self.session else None,
                "error": None,
                "limits": {"max_a": self.max_ma / 1000, "cable_a": self.cable_ma / 1000,
                           "backend_a": None if self.limit_ma is None else self.limit_ma / 1000,
                           "backend_ttl_s": ttl, "fallback_a": self.fallback_ma / 1000,
                           "paused": self.paused, "derate": False, "meter_fallback": False}}


class World:
    """Chargers, a broker between them and the controller (each direction
    in order, every message delayed up to `delay_ms` or, with probability
    `loss`, lost), and the controller (a Site; None while it is dead)."""

    def __init__(self, chargers, site_args, delay_ms=300, loss=0.0, seed=0, phases=None):
        self.ch = {c.name: c for c in chargers}
        self.phases = phases or {c.name: (0, 1, 2) for c in chargers}
        self.site_args = site_args
        self.delay_ms = delay_ms
        self.loss = loss
        self.rng = random.Random(seed)
        self.t = 0
        self.broker_up = True
        self.down = []  # to the chargers: (due, name, msg)
        self.up = []  # to the controller: (due, kind, name, payload)
        self.last_up = {}  # name -> due of the last message on its way up
        self.last_down = {}
        self.retained = {}  # name -> (status, online)
        self.site = None
        self.max_sum = [0, 0, 0]
        self.max_budget = [0, 0, 0]
        self.start_site()
        for c in chargers:
            self.publish(c, "online")
            self.publish(c, "status")

    # the broker
    def _due(self, last, key):
        due = max(self.t + self.rng.randint(0, self.delay_ms), last.get(key, 0))
        last[key] = due
        return due

    def publish(self, c, kind, payload=None):
        if not (c.online and self.broker_up):
            return
        if kind == "status":
            payload = c.status(self.t)
            self.retained[c.name] = (payload, self.retained.get(c.name, (None, "online"))[1])
        elif kind == "online":
            payload = "online"
            self.retained[c.name] = (self.retained.get(c.name, (None, None))[0], "online")
        lossy = kind != "online"  # online is QoS 1 (and retained): it arrives
        if self.site is not None and (not lossy or self.rng.random() >= self.loss):
            self.up.append((self._due(self.last_up, c.name), kind, c.name, payload))

    def went_offline(self, c):
        if self.broker_up:
            self.retained[c.name] = (self.retained.get(c.name, (None, None))[0], "offline")
            if self.site is not None:
                self.up.append((self._due(self.last_up, c.name), "online", c.name, "offline"))
        c.online = False
        self.down = [m for m in self.down if m[1] != c.name]

    def start_site(self):
        self.site = SC.Site(**self.site_args)
        self.up = []
        if self.broker_up:
            self.connect()

    def connect(self):
        self.site.link_up(self.t)
        for n, (st_, on) in self.retained.items():
            if on is not None:
                self.site.online(n, on, self.t)
            if st_ is not None:
                self.site.status(n, st_, self.t, retained=True)

    def kill_site(self):
        self.site = None
        self.up = []

    def broker(self, up):
        if up == self.broker_up:
            return
        self.broker_up = up
        self.down, self.up = [], []
        if not up:
            if self.site is not None:
                self.site.link_down(self.t)
        else:
            for c in self.ch.values():
                if c.online:
                    self.publish(c, "online")
                    self.publish(c, "status")
            if self.site is not None:
                self.connect()

    # time
    def run(self, ms, step_ms=100, every=None):
        end = self.t + ms
        while self.t < end:
            self.t += step_ms
            for c in self.ch.values():
                before = (c.limit_ma, c.left_ms is None, c.paused)
                c.advance(step_ms)
                if (c.limit_ma, c.left_ms is None, c.paused) != before:
                    self.publish(c, "status")
            self._deliver()
            if self.site is not None and self.t % 1000 == 0:
                for n, msg in self.site.step(self.t):
                    if self.broker_up and self.rng.random() >= self.loss:
                        self.down.append((self._due(self.last_down, n), n, msg))
                self.check_budgets()
            if self.t % 10000 == 0:
                for c in self.ch.values():
                    self.publish(c, "status")
            self.check_draw()
            if every is not None:
                every(self)

    def _deliver(self):
        for m in sorted([m for m in self.down if m[0] <= self.t], key=lambda m: m[0]):
            self.down.remove(m)
            c = self.ch[m[1]]
            if not c.online:
                continue
            r = c.command(m[2])
            self.publish(c, "reply", r)
            self.publish(c, "status")
        for m in sorted([m for m in self.up if m[0] <= self.t], key=lambda m: m[0]):
            self.up.remove(m)
            due, kind, n, payload = m
            s = self.site
            if s is None:
                continue
            if kind == "status":
                s.status(n, payload, self.t)
            elif kind == "online":
                s.online(n, payload, self.t)
            else:
                s.reply(n, payload, self.t)

    # the invariants
    def drawable(self, c):
        """What the vehicle may draw now: the highest offer of the last 5 s."""
        o = c.offer(self.t)
        c.history.append((self.t, o))
        while len(c.history) > 1 and c.history[1][0] <= self.t - EV_FOLLOW_MS:
            c.history.pop(0)
        return max(x for _, x in c.history)

    def check_draw(self):
        limit = self.site_args["circuit_a"] * 1000
        sums = [0, 0, 0]
        for n, c in self.ch.items():
            d = self.drawable(c)
            for p in self.phases[n]:
                sums[p] += d
        for p in range(3):
            self.max_sum[p] = max(self.max_sum[p], sums[p])
        assert max(sums) <= limit, (self.t, sums, {n: (c.offer(self.t), c.limit_ma, c.paused)
                                                  for n, c in self.ch.items()})

    def check_budgets(self):
        s = self.site
        sums = s.phase_sums(self.t)
        for p in range(3):
            self.max_budget[p] = max(self.max_budget[p], sums[p])
        # every charger's budget covers what it may draw
        for n, c in self.ch.items():
            assert s.bound(n, self.t) >= c.offer(self.t), (self.t, n, s.bound(n, self.t),
                                                           c.offer(self.t))

    def offers(self):
        return {n: c.offer(self.t) for n, c in self.ch.items()}


def tamed(names, fallback_ma=6000, **kw):
    """Chargers that have been under a site controller before: at their
    fallback (a ttl ran out)."""
    return [ModelCharger(n, fallback_ma=fallback_ma, limit_ma=fallback_ma, **kw) for n in names]


def site(circuit_a, specs, **kw):
    d = dict(circuit_a=circuit_a, specs=specs, ttl_s=20, hysteresis_a=2, min_run_s=120,
             delivery_s=5, nonce="t")
    d.update(kw)
    return d


def plug(w, *names):
    for n in names:
        c = w.ch[n]
        c.session = True
        w.publish(c, "status")


def unplug(w, *names):
    for n in names:
        c = w.ch[n]
        c.session = False
        w.publish(c, "status")


# ------------------------------------------------------------------ allocation
def test_fair_share_between_two_and_then_three():
    specs = [SC.Spec("a"), SC.Spec("b"), SC.Spec("c")]
    w = World(tamed("abc"), site(32, specs))
    plug(w, "a", "b")
    w.run(30000)
    # c idle holds its fallback (6 A): 26 A for a and b
    assert w.offers() == {"a": 13000, "b": 13000, "c": 0}
    plug(w, "c")
    w.run(30000)
    o = w.offers()
    assert sorted(o.values()) == [10000, 11000, 11000] and sum(o.values()) <= 32000, o
    unplug(w, "a")
    w.run(30000)
    assert w.offers() == {"a": 0, "b": 13000, "c": 13000}


def test_priority_gets_its_proportion_and_a_cap_is_shared_out():
    specs = [SC.Spec("a", priority=2), SC.Spec("b"), SC.Spec("c")]
    cs = tamed("abc")
    cs[2].max_ma = 8000  # c can take 8 A only: the rest goes to the others
    w = World(cs, site(40, specs))
    plug(w, "a", "b", "c")
    w.run(40000)
    o = w.offers()
    # 32 A left for a and b, 2:1 in whole amperes
    assert o == {"a": 21000, "b": 11000, "c": 8000}, o


def test_six_amps_at_least_or_a_queue_that_rotates():
    specs = [SC.Spec(n) for n in "abcde"]
    w = World(tamed("abcde", fallback_ma=0), site(20, specs, min_run_s=60))
    plug(w, *"abcde")
    w.run(20000)
    o = w.offers()
    charging = sorted(n for n, x in o.items() if x)
    assert len(charging) == 3 and all(o[n] >= 6000 for n in charging), o
    assert all(w.ch[n].paused for n in o if not o[n]), o
    seen = {n: 0 for n in "abcde"}

    def count(w):
        if w.t % 1000 == 0:
            for n, x in w.offers().items():
                seen[n] += x > 0

    w.run(300000, every=count)
    # everyone had turns (not starved), none for less than the minimum run
    assert all(v >= 50 for v in seen.values()), seen
    assert max(w.max_sum) <= 20000


def test_higher_priority_takes_a_place_at_once():
    specs = [SC.Spec("a"), SC.Spec("b"), SC.Spec("vip", priority=5)]
    w = World(tamed(["a", "b", "vip"], fallback_ma=0), site(12, specs, min_run_s=3600))
    plug(w, "a", "b")
    w.run(20000)
    assert w.offers() == {"a": 6000, "b": 6000, "vip": 0}
    plug(w, "vip")
    w.run(30000)
    o = w.offers()
    assert o["vip"] >= 6000 and sum(o.values()) <= 12000 and sorted(o.values())[0] == 0, o


def test_hysteresis_small_changes_do_not_move_shares():
    specs = [SC.Spec("a"), SC.Spec("b")]
    cs = tamed("ab")
    w = World(cs, site(32, specs, hysteresis_a=3))
    plug(w, "a", "b")
    w.run(30000)
    assert w.offers() == {"a": 16000, "b": 16000}
    n = sum(1 for c in w.site.ch.values() for m in c.cmds.values())
    cs[1].cable_ma = 15000  # b can take 1 A less: a may have 1 A more, not worth a change
    w.publish(cs[1], "status")
    w.run(10000)
    assert w.offers() == {"a": 16000, "b": 15000}
    cs[1].cable_ma = 10000  # 6 A more for a: a change
    w.publish(cs[1], "status")
    w.run(30000)
    assert w.offers() == {"a": 22000, "b": 10000}
    assert n > 0


def test_single_phase_chargers_on_different_phases():
    specs = [SC.Spec("l1a", phases=(0,)), SC.Spec("l1b", phases=(0,)), SC.Spec("l2", phases=(1,)),
             SC.Spec("tri")]
    names = ["l1a", "l1b", "l2", "tri"]
    w = World(tamed(names), site(32, specs),
              phases={"l1a": (0,), "l1b": (0,), "l2": (1,), "tri": (0, 1, 2)})
    plug(w, *names)
    w.run(40000)
    o = w.offers()
    # L1 carries l1a + l1b + tri, L2 l2 + tri: tri is held to L1's fair share
    assert o["l1a"] + o["l1b"] + o["tri"] <= 32000 and o["l2"] + o["tri"] <= 32000, o
    assert sorted([o["l1a"], o["l1b"], o["tri"]]) == [10000, 11000, 11000], o
    assert o["l2"] == 32000 - o["tri"], o


def test_a_charger_never_heard_of_counts_at_its_worst_case():
    specs = [SC.Spec("a"), SC.Spec("b"), SC.Spec("ghost", max_a=16)]
    w = World(tamed("ab"), site(32, specs))
    plug(w, "a", "b")
    w.run(30000)
    assert w.offers() == {"a": 8000, "b": 8000}  # 16 A kept for the charger never heard
    assert w.site.bound("ghost", w.t) == 16000


def test_a_new_charger_without_any_limit_is_limited_at_once():
    specs = [SC.Spec("a"), SC.Spec("new")]
    cs = tamed("a") + [ModelCharger("new", max_ma=32000, fallback_ma=0)]  # never limited
    w = World(cs, site(32, specs))
    w.run(5000)
    assert cs[1].limit_ma is not None and cs[1].left_ms is not None  # a short limit, then 0
    plug(w, "a")
    w.run(40000)
    assert w.offers()["a"] == 32000 and cs[1].limit_ma == 0


def test_controller_killed_leaves_every_charger_at_its_fallback():
    specs = [SC.Spec("a"), SC.Spec("b")]
    w = World(tamed("ab", fallback_ma=6000), site(32, specs, ttl_s=10))
    plug(w, "a", "b")
    w.run(30000)
    assert w.offers() == {"a": 16000, "b": 16000}
    w.kill_site()
    w.run(3000)  # renewed at most ttl_s / 3 ago: the last limit for a while yet
    assert w.offers() == {"a": 16000, "b": 16000}
    w.run(8000)
    assert w.offers() == {"a": 6000, "b": 6000}


def test_site_arguments_and_files(tmp_path):
    s = SC.parse_charger("dev2:priority=2,phase=L3,max_a=16")
    assert (s.name, s.priority, s.phases, s.max_a) == ("dev2", 2, (2,), 16.0)
    for bad, msg in [("dev:priority=0", "priority"), ("dev:phase=L4", "phase"),
                     ("dev:max_a=100", "max_a"), ("dev:colour=red", "unknown option"),
                     ("d/v", "device id"), ("dev:priority", "KEY=VALUE")]:
        with pytest.raises(SC.SiteError, match=msg):
            SC.parse_charger(bad)
    f = tmp_path / "site.json"
    f.write_text(json.dumps({"circuit_a": 25, "ttl_s": 30, "chargers": [
        {"id": "a"}, {"id": "b", "priority": 3, "phase": "L2"}]}))
    circuit, specs, opts = SC.load_site(str(f))
    assert circuit == 25 and [x.name for x in specs] == ["a", "b"] and opts == {"ttl_s": 30}
    assert specs[1].phases == (1,) and specs[1].priority == 3
    with pytest.raises(SC.SiteError, match="named twice"):
        SC.Site(32, [SC.Spec("a"), SC.Spec("a")])


# ------------------------------------------------------------------ the invariant
EVENTS = st.lists(st.tuples(
    st.integers(500, 40000),
    st.sampled_from(["plug", "unplug", "offline", "online", "reboot", "broker_down",
                     "broker_up", "kill", "restart", "cable"]),
    st.integers(0, 3)), min_size=1, max_size=14)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# found by CI: bounds from before a broker outage and a controller kill
# outlived the 60 s the check used to wait after the recovery
@example(events=[(1000, "plug", 0), (7300, "broker_down", 0), (500, "plug", 0), (500, "kill", 0),
                 (1152, "plug", 0), (540, "unplug", 1), (19801, "unplug", 1),
                 (4099, "unplug", 1), (500, "plug", 1), (2500, "plug", 0), (5399, "plug", 1)],
         circuit=40, fallbacks=[0, 0, 6000, 6000], prio=[1, 1, 1, 1], one_phase=[1, 0, None, 1],
         seed=689, loss=0.3)
@given(events=EVENTS, circuit=st.sampled_from([16, 20, 32, 40]),
       fallbacks=st.lists(st.sampled_from([0, 0, 6000, 8000]), min_size=4, max_size=4),
       prio=st.lists(st.integers(1, 3), min_size=4, max_size=4),
       one_phase=st.lists(st.sampled_from([None, 0, 1, 2]), min_size=4, max_size=4),
       seed=st.integers(0, 1000), loss=st.sampled_from([0.0, 0.05, 0.3]))
def test_the_sum_never_exceeds_the_circuit(events, circuit, fallbacks, prio, one_phase, seed,
                                           loss):
    names = ["c0", "c1", "c2", "c3"]
    phases = {n: (0, 1, 2) if one_phase[i] is None else (one_phase[i],)
              for i, n in enumerate(names)}
    # the installer's part (docs): the fallbacks fit the circuit on every phase
    for p in range(3):
        while sum(fallbacks[i] for i, n in enumerate(names) if p in phases[n]) > circuit * 1000:
            i = max(range(4), key=lambda i: fallbacks[i] if p in phases[names[i]] else -1)
            fallbacks[i] = 0
    cs = [ModelCharger(n, max_ma=random.Random(seed + i).choice([16000, 32000]),
                       fallback_ma=fallbacks[i], limit_ma=fallbacks[i])
          for i, n in enumerate(names)]
    specs = [SC.Spec(n, priority=prio[i], phases=phases[n]) for i, n in enumerate(names)]
    w = World(cs, site(circuit, specs, ttl_s=15, min_run_s=30, delivery_s=3),
              delay_ms=400, loss=loss, seed=seed, phases=phases)
    for dt, what, i in events:
        w.run(dt // 100 * 100)
        c = cs[i]
        if what == "plug":
            plug(w, c.name)
        elif what == "unplug":
            unplug(w, c.name)
        elif what == "offline" and c.online:
            w.went_offline(c)
        elif what == "online" and not c.online:
            c.online = True
            w.publish(c, "online")
            w.publish(c, "status")
        elif what == "reboot" and c.online:
            w.went_offline(c)
            c.reboot(w.t)
            w.run(1000)
            c.online = True
            w.publish(c, "online")
            w.publish(c, "status")
        elif what == "broker_down":
            w.broker(False)
        elif what == "broker_up":
            w.broker(True)
        elif what == "kill" and w.site is not None:
            w.kill_site()
        elif what == "restart" and w.site is None:
            w.start_site()
        elif what == "cable":
            c.cable_ma = 32000 if c.cable_ma < 32000 else 13000
            w.publish(c, "status")
    w.broker(True)
    if w.site is None:
        w.start_site()
    # a worst-case bound from before the recovery lasts until the command
    # behind it is delivered or given up, its ttl and the vehicle's follow
    # (DELIVERY_S + TTL_S + FOLLOW_S), then the next status (60 s) lets the
    # controller hand it out
    w.run(int((SC.DELIVERY_S + SC.TTL_S + SC.FOLLOW_S) * 1000) + 60000)
    assert max(w.max_sum) <= circuit * 1000
    # and, all being well again, the current is used: a vehicle waits only
    # when the budgets leave no room for 6 A more on its phases
    o = w.offers()
    sums = w.site.phase_sums(w.t)
    for n, c in w.ch.items():
        if c.session and c.online and not o[n]:
            assert any(sums[p] + 6000 > circuit * 1000 for p in phases[n]), (o, n, sums)


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    m = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield m
    m.stop()


class Rig:
    """Firmware chargers on the virtual board in this process: one control
    thread ticks every App every 10 ms (and checks the sum of their offers
    at each tick); each App's Link runs in its own thread against the broker."""

    def __init__(self, folder, port, names, limit_ma, **cfg):
        import umqtt_host
        from evse import config
        from evse.app import App
        from evse.link import Link
        from simcore.board import Board
        import simnet

        msg = umqtt_host.missing()
        if msg:
            pytest.fail(msg)
        mqtt = umqtt_host.load()
        self.limit_ma = limit_ma
        self.t0 = time.monotonic()
        self.apps, self.boards, self.links, self.halts, self.threads = {}, {}, [], [], []
        self.max_sum = 0
        self.ticks = 0
        self.stop = threading.Event()
        for n in names:
            d = os.path.join(str(folder), n)
            os.makedirs(d)
            c = config.validate(dict({"mqtt_host": "127.0.0.1", "mqtt_port": port,
                                      "mqtt_device_id": n, "mqtt_status_s": 5}, **cfg))
            b = Board(c["phases"], 0)
            app = App(b, c, self.now(), None, d, backend=True, clock=lambda: int(time.time()))
            link = Link(app, c, n, mqtt=mqtt, log=lambda text: None, timeout_s=2)
            halt = threading.Event()
            th = threading.Thread(target=link.run, args=(simnet.sleep_ms, halt.is_set),
                                  daemon=True)
            th.start()
            self.apps[n], self.boards[n] = app, b
            self.links.append(link)
            self.halts.append(halt)
            self.threads.append(th)
        self.control = threading.Thread(target=self._loop, daemon=True)
        self.control.start()

    def now(self):
        return int((time.monotonic() - self.t0) * 1000) & ((1 << 30) - 1)

    def _loop(self):
        nxt = time.monotonic()
        while not self.stop.is_set():
            now = self.now()
            total = 0
            for n, app in self.apps.items():
                app.tick(now)
                self.boards[n].update_vehicle(now)
                total += app.out.offer_ma
            self.max_sum = max(self.max_sum, total)
            self.ticks += 1
            nxt += 0.01
            time.sleep(max(0.0, nxt - time.monotonic()))

    def offers(self):
        return {n: a.out.offer_ma for n, a in self.apps.items()}

    def close(self):
        self.stop.set()
        self.control.join(5)
        for h in self.halts:
            h.set()
        for th in self.threads:
            th.join(10)


def test_end_to_end_three_firmware_chargers(broker, tmp_path):
    names = ["site-a", "site-b", "site-c"]
    rig = Rig(tmp_path, broker.port, names, 24000, max_current_a=16, fallback_current_a=6)
    w = Watcher(broker.port, ["evse/+/status"])
    out = open(tmp_path / "controller.out", "w")
    ctl = subprocess.Popen([TOOL, "--broker", "127.0.0.1:%d" % broker.port, "--circuit-a", "24",
                            "--ttl-s", "4", "--delivery-s", "2", "--step-s", "0.5",
                            "--hysteresis-a", "1"]
                           + sum([["--charger", n] for n in names], []),
                           stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    out.close()

    def status(n):
        got = [json.loads(x) for t, x, _ in w.on("/%s/status" % n)]
        return got[-1] if got else None

    def text():
        return open(tmp_path / "controller.out").read()

    try:
        # new chargers, never limited: each gets a limit before any vehicle comes
        wait_until(lambda: all((status(n) or {}).get("limits", {}).get("backend_a")
                               for n in names), 20, "a limit on each new charger")
        for n in names:
            rig.boards[n].vehicle.state = "C"
        wait_until(lambda: rig.offers() == dict.fromkeys(names, 8000), 20,
                   "8 A each (24 A shared by three)")
        rig.boards["site-c"].vehicle.state = "A"
        # site-c idle keeps its fallback (6 A: a vehicle that comes charges
        # at once, also without the controller): 9 A each for the others
        wait_until(lambda: rig.offers() == {"site-a": 9000, "site-b": 9000, "site-c": 0},
                   25, "9 A each for the two left")
        assert ctl.poll() is None, text()
        ctl.send_signal(signal.SIGKILL)
        ctl.wait(5)
        wait_until(lambda: rig.offers() == {"site-a": 6000, "site-b": 6000, "site-c": 0},
                   15, "each at its fallback")
        # the charger says why: its limit ran out and it is on its fallback
        wait_until(lambda: all(status(n)["limits"]["backend_a"] == 6.0
                               and status(n)["limits"]["backend_ttl_s"] is None
                               for n in ("site-a", "site-b")), 10, "the fallback in the status")
        assert rig.max_sum <= 24000, rig.max_sum
        assert rig.ticks > 1000
        assert "site-a: 8 A" in text() and "site-a: 9 A" in text(), text()
    finally:
        if ctl.poll() is None:
            ctl.kill()
            ctl.wait(5)
        rig.close()
        w.close()


def test_command_line_errors(broker):
    r = subprocess.run([TOOL, "--broker", "127.0.0.1:1", "--circuit-a", "32", "--charger", "a"],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.startswith("site_controller.py: cannot reach the broker")
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([TOOL, "--circuit-a", "32"], capture_output=True, text=True, timeout=30,
                       cwd=ROOT)
    assert r.returncode == 2 and "no charger named" in r.stderr, r.stderr
    r = subprocess.run([TOOL, "--circuit-a", "32", "--charger", "a:priority=x"],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 2 and "priority" in r.stderr and "Traceback" not in r.stderr
