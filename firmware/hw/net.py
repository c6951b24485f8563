"""The board's side of the backend link: MicroPython-only pieces (machine,
network, ntptime, ssl, umqtt.simple), imported when called, never at import.

    from hw import net
    link = net.make_link(app, cfg)     # None without mqtt_host
    (main.py does this through hw.system.start_network and run_all)

umqtt.simple is frozen into the ESP32 firmware; on the Pico W install it
once with `mpremote mip install umqtt.simple`.
"""

from micropython import const

_UNIX_2000 = const(946684800)  # Unix time of 2000-01-01 (older ports count from 2000)


def device_id():
    """machine.unique_id() in hex: the default device id in the topics."""
    import machine
    from binascii import hexlify

    return hexlify(machine.unique_id()).decode()


def clock():
    """Unix time once NTP has set the RTC, else None (session and event
    times are then given as uptime): whole seconds, as the boards' RTC
    gives them (the unix port's time.time() is a float)."""
    import time

    t = int(time.time())
    if time.gmtime(t)[0] < 2024:
        return None
    if time.gmtime(0)[0] == 2000:
        t += _UNIX_2000
    return t


def sync_time():
    """Set the RTC by NTP (blocking, ntptime's own 1 s timeout; network thread)."""
    import ntptime

    ntptime.settime()


def net_ready():
    import network

    return network.WLAN(network.STA_IF).isconnected()


def wifi_start(ssid, password):
    """Start joining the Wi-Fi network; returns at once (net_ready() tells)."""
    import network

    w = network.WLAN(network.STA_IF)
    w.active(True)
    if not w.isconnected():
        w.connect(ssid, password)


def ssl_context(cfg):
    if not cfg["mqtt_tls"]:
        return None
    import ssl

    from evse.tls import context

    f = open(cfg["mqtt_ca"], "rb")
    try:
        data = f.read()
    finally:
        f.close()
    return context(ssl, data)


def make_link(app, cfg, log=print, defer_tls=True, password=None):
    """The Link (evse/link.py); with TLS, `defer_tls` (the board has no
    hardware CP interlock) puts off connects while the contactor is closed;
    `password` (secrets.json's) instead of cfg's mqtt_password."""
    if cfg["mqtt_host"] is None:
        return None
    from evse.link import Link

    return Link(app, cfg, cfg["mqtt_device_id"] or device_id(), ssl=ssl_context(cfg),
                log=log, sync_time=sync_time, net_ready=net_ready, defer_tls=defer_tls,
                password=password)
