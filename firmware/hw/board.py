"""The board adapter: evse.app.App's `read(inp)`, `apply(out)`, `safe()` on
MicroPython's machine.PWM, ADC, Pin and Signal, for any validated profile.

    board = Board(machine, profile, time)   # main.py passes the real modules

One class for both ports; what differs is explicit below (PWM full scale,
ADC set-up and read method). read() and apply() run every 10 ms control
tick and allocate nothing: integers only, preallocated buffers, bound methods
made once here, and the temperature converted once a second.

CP front-end (README, "Boards and deploy"): the PWM pin drives a comparator
stage that puts +12 V on the pilot when the pin is high and -12 V when it is
low (profile `cp.invert` for a stage that inverts). So steady +12 V is duty
100 %, steady -12 V is duty 0 %, and the PWM never stops.

PWM, 1 kHz, duty_u16 0..FULL:
- ESP32 (LEDC, 80 MHz APB clock): 16-bit resolution at 1 kHz, a step of
  1/65536 period = 15.3 ns. Ports whose machine_pwm accepts duty_u16 = 65536
  drive a true steady high with it; older ones stop at 65535 (a 15 ns notch
  per period, far below what the +/-12 V stage can reproduce). The adapter
  tries 65536 and falls back to 65535 once, at start-up.
- RP2040: the port picks the smallest divider with TOP <= 65534: at 125 MHz
  that is 31/16 with TOP = 64515, a step of 15.5 ns; duty_u16 65535 gives
  level TOP + 1, a true steady high.
Our duty (0.01 %) maps to duty_u16 = duty * FULL // 10000, rounded down so
the vehicle never reads more current than offered. The error is below one
counter step (~16 ns = 0.0016 % of the period; IEC 61851-1 allows about
+/-5 us on the pulse width).
"""
from micropython import const

from evse.charger import PILOT_HIGH, PILOT_PWM
from hw.cp import CpSampler
from hw.temp import sensor

_PWM_HZ = const(1000)
_TEMP_EVERY_MS = const(1000)
_PE_PULSE_MS = const(60)  # pulses mode: PE present while edges come this often (3 mains half-waves)
_BUTTON_DEBOUNCE_MS = const(50)
_PP_OPEN_PERMILLE = const(970)  # PP reading above 97 % of the reference: no resistor


class Board:
    def __init__(self, machine, prof, clock):
        self._m = machine
        self.prof = prof
        self._clock = clock
        d = prof.d
        Pin = machine.Pin
        self.port = prof.port
        # --- Outputs first, each created at its safe level.
        self._k = []
        for c in d["contactor"]:
            self._k.append(self._signal(c, False))
        self._k = tuple(self._k)
        ps = d["phase_switch"]  # the L2/L3 contactor (1p/3p), or None
        self._k3 = None
        if ps is not None:
            self._k3 = self._signal(ps, False)
            self._three = True  # out.phases == 3: the L2/L3 contactor follows the main one
        rcd = d["rcd"]
        self._rcd_test = self._signal(rcd["test"], False) if rcd is not None and rcd["test"] else None
        cp = d["cp"]
        self._cp_invert = cp["invert"]
        if cp["disconnect"] is not None:  # keep the pilot connected
            self._signal(cp["disconnect"], False)
        # --- CP generator: PWM, steady +12 V from the first instant.
        self.full = 65535
        pin = Pin(cp["pwm_pin"], Pin.OUT, value=0 if self._cp_invert else 1)
        if self.port == "esp32":
            try:
                self._pwm = machine.PWM(pin, freq=_PWM_HZ, duty_u16=self._u16(10000, 65536))
                self.full = 65536
            except ValueError:  # a port whose duty_u16 stops at 65535
                self._pwm = machine.PWM(pin, freq=_PWM_HZ, duty_u16=self._u16(10000, 65535))
        else:
            self._pwm = machine.PWM(pin, freq=_PWM_HZ, duty_u16=self._u16(10000, 65535))
        self._duty = 10000
        # --- ADC inputs.
        adc = self._adc(cp["adc_pin"])
        self._adc_div = 1000 if self.port == "esp32" else 1
        self.cp = CpSampler(adc.read_uv if self.port == "esp32" else adc.read_u16,
                            self._adc_div, prof)
        self.cp.calibrate(clock.ticks_us, clock.ticks_diff)
        pp = d["pp"]
        self._pp = None
        if pp is not None:
            a = self._adc(pp["adc_pin"])
            self._pp = a.read_uv if self.port == "esp32" else a.read_u16
            self._pp_rpu = pp["r_pullup"]
            self._pp_vref = pp["vref_mv"]
        t = d["temp"]
        self._temp = None
        self._temp_dc = None
        if t is not None:
            a = self._adc(t["adc_pin"])
            self._temp = a.read_uv if self.port == "esp32" else a.read_u16
            self._temp_conv = sensor(t)
            self._temp_at = clock.ticks_ms()
            self._read_temp()
        # --- Digital inputs (level read through Signal: value() 1 = active).
        self._fb = self._input(d["mirror"])
        self._pe_pulses = False
        self._pe = None
        pe = d["pe"]
        if pe is not None:
            if pe["mode"] == "pulses":
                self._pe_pulses = True
                self._pe_at = clock.ticks_ms()  # when read() last saw new edges
                self._pe_edges = 0  # counted by the interrupt handler
                self._pe_seen = 0
                p = self._pin_in(pe)
                self._irq(p, self._isr_pe, Pin.IRQ_FALLING | Pin.IRQ_RISING)
                self._pe = p
            else:
                self._pe = self._input(pe)
        self._rcd = None
        self._rcd_count = 0  # trips seen by the interrupt handler
        self._rcd_seen = 0
        if rcd is not None:
            p = self._pin_in(rcd)
            self._rcd = machine.Signal(p, invert=rcd["active"] == "low")
            self._irq(p, self._isr_rcd,
                      Pin.IRQ_RISING if rcd["active"] == "high" else Pin.IRQ_FALLING)
        self._btn_count = 0
        self._btn_taken = 0
        self._btn_ms = 0
        b = d["button"]
        if b is not None:
            p = self._pin_in(b)
            self._irq(p, self._isr_button,
                      Pin.IRQ_FALLING if b["active"] == "low" else Pin.IRQ_RISING)
        self._led = self._signal(d["led"], False) if d["led"] is not None else None
        self._led_on = False
        self._contactor = False
        self._rcd_test_on = False

    # ------------------------------------------------------------ set-up
    def _signal(self, spec, on):
        """An output Signal created at its inactive level, then set to `on`."""
        m = self._m
        low = spec["active"] == "low"
        level = (1 if on else 0) ^ (1 if low else 0)
        s = m.Signal(m.Pin(spec["pin"], m.Pin.OUT, value=level), invert=low)
        return s

    def _pin_in(self, spec):
        Pin = self._m.Pin
        pull = spec.get("pull", "none")
        p = None if pull == "none" else (Pin.PULL_UP if pull == "up" else Pin.PULL_DOWN)
        return Pin(spec["pin"], Pin.IN, p)

    def _input(self, spec):
        if spec is None:
            return None
        return self._m.Signal(self._pin_in(spec), invert=spec["active"] == "low")

    def _irq(self, pin, handler, trigger):
        # RP2040: a hard interrupt. The ESP32 port's Pin.irq has no `hard`
        # option: its handlers are always scheduled (run between two bytecodes
        # of the main program, typically well under a millisecond later, and
        # queued, so no edge is lost). The handlers follow the hard rules
        # either way.
        if self.port == "rp2":
            pin.irq(handler=handler, trigger=trigger, hard=True)
        else:
            pin.irq(handler=handler, trigger=trigger)

    def _adc(self, pin):
        m = self._m
        if self.port == "esp32":
            # 11 dB: about 150..2450 mV linear, read_uv() calibrated from eFuse.
            return m.ADC(m.Pin(pin), atten=m.ADC.ATTN_11DB)
        return m.ADC(m.Pin(pin))  # RP2040: 0..3.3 V, 12 bits scaled to read_u16()

    def _u16(self, duty, full):
        u = duty * full // 10000
        return full - u if self._cp_invert else u

    # ---------------------------------------------------- interrupt handlers
    # Written to the rules of hard interrupts (no allocation, no floats; only
    # integer stores into attributes that already exist), see _irq().
    def _isr_rcd(self, pin):
        self._rcd_count = (self._rcd_count + 1) & 0x3FFFFFFF

    def _isr_pe(self, pin):
        self._pe_edges = (self._pe_edges + 1) & 0x3FFFFFFF

    def _isr_button(self, pin):
        now = self._clock.ticks_ms()
        if self._clock.ticks_diff(now, self._btn_ms) >= _BUTTON_DEBOUNCE_MS:
            self._btn_count = (self._btn_count + 1) & 0x3FFFFFFF
        self._btn_ms = now

    # ------------------------------------------------------------ adapter API
    def read(self, inp):
        cp = self.cp
        cp.sample()
        inp.cp_high_mv = cp.high_mv
        inp.cp_low_mv = cp.low_mv
        if self._pp is not None:
            inp.pp_ohm = self._pp_ohm(self._pp() // self._adc_div)
        if self._rcd is not None:
            c = self._rcd_count
            latched = c != self._rcd_seen  # a trip pulse between two ticks
            self._rcd_seen = c
            inp.rcd = latched or self._rcd.value() == 1
        if self._fb is not None:
            inp.fb = self._fb.value() == 1
        if self._pe is not None:
            if self._pe_pulses:
                # Edges counted by the handler; their time kept here only, and
                # never older than _PE_PULSE_MS, so that no uptime makes the
                # age wrap round to "fresh" (ticks_diff flips past half the period).
                c = self._clock
                now = c.ticks_ms()
                n = self._pe_edges
                if n != self._pe_seen:
                    self._pe_seen = n
                    self._pe_at = now
                else:
                    age = c.ticks_diff(now, self._pe_at)
                    if age >= _PE_PULSE_MS or age < 0:  # < 0: it wrapped, it is old
                        self._pe_at = c.ticks_add(now, -_PE_PULSE_MS)
                inp.pe_ok = c.ticks_diff(now, self._pe_at) < _PE_PULSE_MS
            else:
                inp.pe_ok = self._pe.value() == 1
        if self._temp is not None:
            c = self._clock
            now = c.ticks_ms()
            if c.ticks_diff(now, self._temp_at) >= _TEMP_EVERY_MS:
                self._temp_at = now
                self._read_temp()
            inp.temp_dc = self._temp_dc

    def apply(self, out):
        mode = out.pilot
        duty = out.duty if mode == PILOT_PWM else (10000 if mode == PILOT_HIGH else 0)
        if duty != self._duty:
            self._duty = duty
            self._pwm.duty_u16(self._u16(duty, self.full))
        if self._k3 is not None and (out.phases == 3) != self._three and not self._contactor:
            self._three = out.phases == 3  # changed only with the contacts open: no load switched
        if out.contactor != self._contactor:
            self._set_contactor(out.contactor)
        if out.rcd_test != self._rcd_test_on:
            self._rcd_test_on = out.rcd_test
            if self._rcd_test is not None:
                self._rcd_test.value(1 if out.rcd_test else 0)
        if self._led is not None:
            self._update_led(out)

    def safe(self):
        """Contactor open, RCD test off, pilot steady +12 V."""
        self._set_contactor(False)
        self._rcd_test_on = False
        if self._rcd_test is not None:
            self._rcd_test.value(0)
        self._duty = 10000
        self._pwm.duty_u16(self._u16(10000, self.full))

    def unavailable(self):
        """The safe state with the pilot at steady -12 V (state F)."""
        self.safe()
        self._duty = 0
        self._pwm.duty_u16(self._u16(0, self.full))

    def take_button(self):
        """Button presses since the last call."""
        k = self._clock
        now = k.ticks_ms()
        if k.ticks_diff(now, self._btn_ms) > 60000:  # keep the last press's time young
            self._btn_ms = k.ticks_add(now, -60000)
        c = self._btn_count
        n = (c - self._btn_taken) & 0x3FFFFFFF
        self._btn_taken = c
        return n

    # -------------------------------------------------------------- helpers
    def _set_contactor(self, on):
        self._contactor = on
        v = 1 if on else 0
        for s in self._k:
            s.value(v)
        if self._k3 is not None:
            self._k3.value(1 if on and self._three else 0)

    def _read_temp(self):
        raw = self._temp() // self._adc_div
        self._temp_dc = self._temp_conv.dc(self.prof.adc_10uv(raw))

    def _pp_ohm(self, raw):
        v_mv = self.prof.adc_10uv(raw) // 100
        vref = self._pp_vref
        if v_mv * 1000 >= vref * _PP_OPEN_PERMILLE:
            return None
        return self._pp_rpu * v_mv // (vref - v_mv)

    def _update_led(self, out):
        # Error: 4 Hz blink; charging (C2/D2): 1 Hz blink; otherwise on.
        t = self._clock.ticks_ms()
        if out.error is not None or out.state == "F":
            on = (t >> 7) & 1 == 1
        elif out.contactor:
            on = (t >> 9) & 1 == 1
        else:
            on = True
        if on != self._led_on:
            self._led_on = on
            self._led.value(1 if on else 0)
