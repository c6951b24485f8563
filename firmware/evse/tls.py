"""TLS for the backend link: a client context that verifies the broker
against the configured CA (config `mqtt_ca`, PEM or DER), and the wrapper
the link gives the MQTT client as its `ssl`. The `ssl` module is passed in:
MicroPython's on the board, CPython's on the host. Imported only with TLS.
"""
from binascii import a2b_base64


def pem_to_der(data):
    """The first certificate of a PEM file as DER bytes; DER passes through."""
    begin = data.find(b"-----BEGIN CERTIFICATE-----")
    if begin < 0:
        return data
    end = data.find(b"-----END CERTIFICATE-----", begin)
    if end < 0:
        raise ValueError("CA file: unterminated PEM certificate")
    body = data[begin + 27:end]
    return a2b_base64(b"".join(body.split()))


def context(ssl, ca_data):
    """An SSLContext for a client that requires the broker's certificate to
    be signed by the CA in `ca_data` (and to name the host it connects to)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=pem_to_der(ca_data))
    return ctx


class Wrapper:
    """What the MQTT client gets as `ssl`: wraps as the context would, and
    keeps the socket it wrapped (`raw`). MicroPython's TLS socket passes
    setblocking on to that socket but has no settimeout: the timeout is set
    on the wrapped one, which the TLS socket reads and writes through."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.raw = None

    def wrap_socket(self, sock, server_hostname=None):
        self.raw = sock
        return self.ctx.wrap_socket(sock, server_hostname=server_hostname)
