"""A hand-written fake of MicroPython's `machine` module, for host tests.

Runs under CPython and under MicroPython (WebAssembly port). It records the
real API calls the firmware makes (Pin, Signal, PWM, ADC, WDT, reset) in
WORLD.log as tuples, and simulates just enough of a board to be read back:

- the CP line: the PWM's duty decides, from the fake time in microseconds,
  whether the generator is high or low; the line then reads WORLD.cp_hi_mv
  or WORLD.cp_lo_mv (what a vehicle makes of +12 V / -12 V), converted to
  an ADC reading through the front-end's transfer (zero_uv, uv_per_v);
- every ADC read advances the fake time by WORLD.us_per_read;
- input pins read WORLD.inputs[pin] (default 0); interrupt handlers are
  kept in WORLD.irqs[pin] so a test can fire them.

With WORLD.record = False nothing is appended (the allocation test runs so).

Real time (host_tests/fakes/system_driver.py, under the unix port): with
WORLD.realtime = True an ADC read takes us_per_read of real time (a busy
wait, as a conversion does) and the PWM phase it sees is the real time
since the world was made, so the firmware's burst calibration and its
plateaus follow the wall clock; `RealClock` is then the clock to give the
firmware (the `time` module's ticks and sleep, nothing fired from sleeps:
whoever plays the mains fires the PE handler). Keep WORLD.record False while
several threads run: the log is a list only one thread may grow.
"""


class FakeReset(Exception):
    pass


def _real_us():
    try:
        import time

        return time.ticks_us()  # MicroPython
    except AttributeError:
        return time.monotonic_ns() // 1000


def _real_read(t0, us):
    """Busy-wait `us` microseconds (one conversion); the real us since t0."""
    import time

    try:
        start = time.ticks_us()
        while time.ticks_diff(time.ticks_us(), start) < us:
            pass
        return time.ticks_diff(time.ticks_us(), t0)
    except AttributeError:  # CPython
        end = time.monotonic_ns() // 1000 + us
        while time.monotonic_ns() // 1000 < end:
            pass
        return end - t0


class World:
    def __init__(self, port="esp32"):
        self.port = port
        self.log = []
        self.record = True
        self.t_us = 0
        self.us_per_read = 25
        self.levels = {}  # output pin -> level
        self.inputs = {}  # input pin -> level
        self.irqs = {}  # pin -> (handler, trigger, hard)
        self.adc_uv = {}  # other ADC pins -> input voltage (uV)
        self.pwm = None
        self.pwm_max = 65536 if port == "esp32" else 65535
        self.cp_adc_pin = None
        self.cp_zero_uv = 1650000
        self.cp_uv_per_v = 100000
        self.cp_hi_mv = 12000
        self.cp_lo_mv = -12000
        self.noise_uv = 0
        self._rng = 1
        self.feeds = 0
        self.resets = 0
        self.watch = ()  # module names whose presence each Pin() call records
        self.mains = ()  # pins whose interrupt handler fires at every sleep (PE pulses)
        self.realtime = False  # ADC reads take real time, the PWM phase is the real one
        self._t0 = _real_us()

    def rec(self, *entry):
        if self.record:
            self.log.append(entry)

    def generator_high(self):
        p = self.pwm
        if p is None:
            return True
        full = 65536 if self.port == "esp32" else 65535
        # phase within the 1 ms period, in units of 1/full
        phase = (self.t_us % 1000) * full // 1000
        return phase < p.duty

    def cp_uv(self):
        mv = self.cp_hi_mv if self.generator_high() else self.cp_lo_mv
        uv = self.cp_zero_uv + mv * (self.cp_uv_per_v // 10) // 100
        if self.noise_uv:
            self._rng = (self._rng * 75 + 74) % 65537
            uv += (self._rng * (2 * self.noise_uv + 1) >> 16) - self.noise_uv
        return uv


WORLD = World()


def reset_world(port="esp32"):
    global WORLD
    WORLD = World(port)
    _PINS.clear()
    _ADCS.clear()
    return WORLD


_PINS = {}  # id -> Pin, _ADCS: id -> ADC, when static_pins() made them (the heap rig)
_ADCS = {}


def static_pins(ids):
    """From now on Pin(id) and ADC(id) give one object per id, made here:
    the ESP32 and RP2040 ports' Pin and ADC objects are static tables in
    flash, so constructing one takes no heap on a board, and the heap
    figures (heaprig.py) must not count a Python object per call."""
    for i in ids:
        _PINS[i] = Pin(i)
        _ADCS[i] = ADC(i)


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __new__(cls, id, mode=-1, pull=-1, value=None):
        p = _PINS.get(id)
        return p if p is not None else object.__new__(cls)

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        w = WORLD
        if w.record:
            seen = tuple([m for m in w.watch if m in _modules()])
            w.log.append(("Pin", id, mode, pull, value, seen))
        if value is not None:
            w.levels[id] = value

    def value(self, v=None):
        w = WORLD
        if v is None:
            if self.mode == Pin.OUT:
                return w.levels.get(self.id, 0)
            return w.inputs.get(self.id, 0)
        v = 1 if v else 0
        if w.record and w.levels.get(self.id) != v:
            w.log.append(("value", self.id, v))
        w.levels[self.id] = v

    def irq(self, handler=None, trigger=12, **kw):
        # the ESP32 port's Pin.irq takes handler, trigger, wake (no `hard`);
        # the RP2040's also `hard`
        allowed = ("wake",) if WORLD.port == "esp32" else ("wake", "hard")
        for k in kw:
            if k not in allowed:
                raise TypeError("unexpected keyword argument '%s'" % k)
        hard = kw.get("hard", False)
        WORLD.irqs[self.id] = (handler, trigger, hard)
        WORLD.rec("irq", self.id, trigger, hard)


def _modules():
    import sys

    return sys.modules


class Signal:
    def __init__(self, pin, invert=False):
        self.pin = pin
        self.invert = invert
        WORLD.rec("Signal", pin.id, invert)

    def value(self, v=None):
        if v is None:
            return self.pin.value() ^ (1 if self.invert else 0)
        self.pin.value((1 if v else 0) ^ (1 if self.invert else 0))

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class PWM:
    def __init__(self, pin, freq=None, duty_u16=None):
        w = WORLD
        if duty_u16 is not None and not 0 <= duty_u16 <= w.pwm_max:
            raise ValueError("duty_u16 must be from 0 to %d" % w.pwm_max)
        self.pin = pin
        self.f = freq
        self.duty = duty_u16
        w.pwm = self
        w.rec("PWM", pin.id, freq, duty_u16)

    def freq(self, f=None):
        if f is None:
            return self.f
        self.f = f
        WORLD.rec("freq", f)

    def duty_u16(self, d=None):
        if d is None:
            return self.duty
        if not 0 <= d <= WORLD.pwm_max:
            raise ValueError("duty_u16 must be from 0 to %d" % WORLD.pwm_max)
        self.duty = d
        if WORLD.record:
            WORLD.log.append(("duty_u16", d))

    def deinit(self):
        WORLD.rec("PWM.deinit")


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __new__(cls, pin, atten=None):
        a = _ADCS.get(pin.id if isinstance(pin, Pin) else pin)
        return a if a is not None else object.__new__(cls)

    def __init__(self, pin, atten=None):
        self.id = pin.id if isinstance(pin, Pin) else pin
        WORLD.rec("ADC", self.id, atten)

    def _uv(self):
        w = WORLD
        if w.realtime:
            w.t_us = _real_read(w._t0, w.us_per_read)
        else:
            w.t_us += w.us_per_read
        if self.id == w.cp_adc_pin:
            uv = w.cp_uv()
        else:
            uv = w.adc_uv.get(self.id, 0)
        if uv < 0:
            return 0
        if uv > 3300000:
            return 3300000
        return uv

    def read_uv(self):
        if WORLD.port != "esp32":
            raise AttributeError("read_uv")
        return self._uv() // 1000 * 1000  # calibrated, millivolt resolution

    def read_u16(self):
        # RP2040: 12-bit conversion of 0..3.3 V, scaled to 16 bits
        return (self._uv() // 806) * 65535 // 4095


class UART:
    """A UART with nothing on the bus: writes go nowhere, nothing answers."""

    def __init__(self, uart_id, **kw):
        self.id = uart_id
        # pins by number, so the log stays plain data
        WORLD.rec("UART", uart_id, kw.get("baudrate"), getattr(kw.get("tx"), "id", None),
                  getattr(kw.get("rx"), "id", None))

    def write(self, buf):
        return len(buf)

    def any(self):
        return 0

    def readinto(self, buf, n=None):
        return None

    def read(self, n=None):
        return None


class WDT:
    def __init__(self, id=0, timeout=5000):
        WORLD.rec("WDT", timeout)

    def feed(self):
        WORLD.feeds += 1


def reset():
    WORLD.resets += 1
    WORLD.rec("reset")
    raise FakeReset()


_TICKS_MAX = (1 << 30) - 1  # the boards' ticks period, 2**30
_TICKS_HALF = 1 << 29


class Clock:
    """The `time` functions the firmware uses, on WORLD's fake time, with
    the ESP32's and RP2040's ticks period (2**30), so code that keeps a tick
    value too long goes wrong here as on a board."""

    def ticks_ms(self):
        return (WORLD.t_us // 1000) & _TICKS_MAX

    def ticks_us(self):
        return WORLD.t_us & _TICKS_MAX

    def ticks_diff(self, a, b):
        return ((a - b + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF

    def ticks_add(self, a, b):
        return (a + b) & _TICKS_MAX

    def sleep_ms(self, ms):
        WORLD.t_us += ms * 1000
        for p in WORLD.mains:
            h = WORLD.irqs.get(p)
            if h is not None:
                h[0](None)


class RealClock:
    """The firmware's clock on the wall clock: MicroPython's own `time`
    functions (the port's ticks period), or on CPython the boards' 2**30
    period over time.monotonic()."""

    def __init__(self):
        import time

        self._t = time
        self._mp = hasattr(time, "ticks_ms")

    def ticks_ms(self):
        if self._mp:
            return self._t.ticks_ms()
        return int(self._t.monotonic() * 1000) & _TICKS_MAX

    def ticks_us(self):
        if self._mp:
            return self._t.ticks_us()
        return int(self._t.monotonic() * 1000000) & _TICKS_MAX

    def ticks_diff(self, a, b):
        if self._mp:
            return self._t.ticks_diff(a, b)
        return ((a - b + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF

    def ticks_add(self, a, b):
        if self._mp:
            return self._t.ticks_add(a, b)
        return (a + b) & _TICKS_MAX

    def sleep_ms(self, ms):
        if self._mp:
            self._t.sleep_ms(ms)
        else:
            self._t.sleep(ms / 1000)


class _Faults:
    """Make the fake ADC raise after a number of reads (boot tests)."""
    after = None
    exc = None


def fail_adc_after(n, exc):
    _Faults.after = n
    _Faults.exc = exc


_adc_uv = ADC._uv


def _faulty_uv(self):
    if _Faults.after is not None:
        _Faults.after -= 1
        if _Faults.after < 0:
            _Faults.after = None
            raise _Faults.exc
    return _adc_uv(self)


ADC._uv = _faulty_uv
