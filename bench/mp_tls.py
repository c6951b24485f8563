"""How long a TLS handshake holds the interpreter: run in MicroPython's unix
port (with its ssl module, mbedTLS) against a TLS listener on this host
(bench/bench.py starts mosquitto with a test CA):

    micropython bench/mp_tls.py PORT CA_FILE N

Each handshake is timed from the ClientHello to the end of the handshake
(wrap_socket, the TCP connect timed apart); on loopback nearly all of it is
the key exchange and the certificate check, computed in C: on the ESP32
that code runs with the GIL held, so nothing else in MicroPython runs for
as long. Prints `TLS <us>` per handshake and `TCP <us>` per connect.
"""
import socket
import ssl
import sys
import time

from evse.tls import context

port = int(sys.argv[1])
f = open(sys.argv[2], "rb")
ca = f.read()
f.close()
n = int(sys.argv[3]) if len(sys.argv) > 3 else 5
ctx = context(ssl, ca)
addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
for _ in range(n):
    s = socket.socket()
    t0 = time.ticks_us()
    s.connect(addr)
    t1 = time.ticks_us()
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    t2 = time.ticks_us()
    t.close()
    print("TCP %d" % time.ticks_diff(t1, t0))
    print("TLS %d" % time.ticks_diff(t2, t1))
