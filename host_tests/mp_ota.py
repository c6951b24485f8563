"""Under MicroPython's unix port: the board's update code on a real bundle.

    micropython mp_ota.py PUB BUNDLE WORKDIR [verify|stage|gap]

verify: evse.p256 on the bundle's manifest signature, then on a changed
        signature and a changed digest: prints RESULT lines with the
        outcome, the time (ms) and the bytes allocated (the collector off).
stage:  evse.ota.Stager fed a bundle with one file byte changed, then the
        bundle, in 512-byte chunks into WORKDIR: RESULT lines with the
        error, the slot staged and the states after each; then the network
        thread's Runner on it, while charging and with no vehicle.
gap:    20 verifications in the main thread while a second thread runs a
        10 ms loop (the control loop's period) and records its longest gap
        between two steps (the GIL is shared: the 32-bit port's).
"""
import gc
import hashlib
import sys
import time

pub_path, bundle_path, work, what = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def result(k, v):
    print("RESULT", k, v)


def read(p):
    f = open(p, "rb")
    try:
        return f.read()
    finally:
        f.close()


pub = read(pub_path)
f = open(bundle_path, "rb")
head = f.read(70)
n = (head[4] << 8) | head[5]
man = f.read(n)
f.close()
sig = head[6:70]
digest = hashlib.sha256(man).digest()


def timed(s, d):
    from evse import p256

    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    t = time.ticks_us()
    ok = p256.verify(pub, s, d)
    t = time.ticks_diff(time.ticks_us(), t)
    used = gc.mem_alloc() - a
    gc.enable()
    return ok, t // 1000, used


if what == "verify":
    ok, ms, used = timed(sig, digest)
    result("good", "%d %d %d" % (ok, ms, used))
    bad = bytearray(sig)
    bad[40] ^= 1
    result("bad_sig", "%d" % timed(bytes(bad), digest)[0])
    result("bad_digest", "%d" % timed(sig, hashlib.sha256(man + b" ").digest())[0])
    gc.collect()
    from evse import p256

    result("verify_gc_on", "%d" % p256.verify(pub, sig, digest))
elif what == "stage":
    from evse import ota

    def stage(data_path, change_at=-1):
        s = ota.Stager(work + "/", pub, "0.0.1", sys.platform, sys.implementation._mpy,
                       free=lambda root: 1 << 30)
        f = open(data_path, "rb")
        at = 0
        try:
            while True:
                b = f.read(512)
                if not b:
                    break
                if at <= change_at < at + len(b):
                    b = bytearray(b)
                    b[change_at - at] ^= 1
                s.feed(b)
                at += len(b)
        finally:
            f.close()
        return s.finish()

    try:
        stage(bundle_path, 70 + n + 100)
        result("changed", "accepted")
    except ota.OtaError as e:
        result("changed", "%d" % e.args[0])
    result("state_changed", "%d %d %d %d" % ota.read_state(work + "/"))
    gc.collect()
    t = time.ticks_ms()
    slot = stage(bundle_path)
    result("staged", "%d %d" % (slot, time.ticks_diff(time.ticks_ms(), t)))
    result("state", "%d %d %d %d" % ota.read_state(work + "/"))
    # the network thread's steps on the staged flash (evse/ota.py Runner)
    from evse import bus as B

    class Link:
        connects = 0

    snap = B.Snapshot()
    snap.v[B.S_STATE] = B.STATES.index("C2")
    snap.v[B.S_CONTACTOR] = 1
    clk = [0]
    asked = []
    r = ota.Runner(work + "/", snap, Link(), lambda: asked.append(clk[0]), lambda: clk[0],
                   lambda a, b: a - b)
    result("runner_staged", r.staged)
    for v in (("C2", 1), ("A", 0)):
        snap.v[B.S_STATE] = B.STATES.index(v[0])
        snap.v[B.S_CONTACTOR] = v[1]
        for _ in range(3):
            clk[0] += 1000
            r.step()
        result("runner_" + v[0], "%d %d %d %d %d" % ((len(asked),) + ota.read_state(work + "/")))
elif what == "gap":
    import _thread

    box = [0, True, 0]  # longest gap (us), running, steps

    def loop():
        last = time.ticks_us()
        while box[1]:
            time.sleep_ms(10)
            now = time.ticks_us()
            g = time.ticks_diff(now, last)
            if g > box[0]:
                box[0] = g
            box[2] += 1
            last = now
        box[1] = None

    _thread.start_new_thread(loop, ())
    time.sleep_ms(50)
    box[0] = 0
    from evse import p256

    t = time.ticks_ms()
    ok = 1
    for i in range(20):  # longer than a few ticks even on a fast host
        ok &= p256.verify(pub, sig, digest)
    t = time.ticks_diff(time.ticks_ms(), t) // 20
    box[1] = False
    while box[1] is not None:
        time.sleep_ms(5)
    result("gap", "%d %d %d %d" % (ok, t, box[0] // 1000, box[2]))
