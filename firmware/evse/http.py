"""HTTP/1.1 GET with a byte range, as far as an update download needs it
(RFC 9110 sections 14 and 15, RFC 9112): the request, and the reading of
the answer's head. Pure; hw/fetch.py drives the socket. Imported only while
an update downloads (docs/ota.md, "Delivery").

    tls, host, port, path = parse_url("https://fw.example.com/evse-0.7.0.evu")
    sock.write(request(host, port, path, start, tls))
    code, length, first, where = answer(head)   # head: bytes before the blank line
"""
from micropython import const

_MAX_URL = const(256)  # the longest URL an update may name


class HttpError(ValueError):
    pass


def parse_url(url):
    """(tls, host, port, path) of an http:// or https:// URL; HttpError else."""
    if not isinstance(url, str) or len(url) > _MAX_URL:
        raise HttpError("url: a string of at most %d characters" % _MAX_URL)
    from evse.url import split

    try:
        tls, host, port, path = split(url, "http://", "https://")
    except ValueError as e:
        raise HttpError("url: " + e.args[0])
    for x in path.encode("utf-8", "surrogatepass"):  # bytes: a str's characters are interned
        if x <= 0x20 or x == 0x7F:
            raise HttpError("url: a space or control character in the path")
    return tls, host, port, path


def request(host, port, path, start, tls=False):
    """The GET as bytes: from byte `start` on (a Range when start > 0), one
    request per connection (Connection: close), no compression."""
    if port != (443 if tls else 80):
        host = "%s:%d" % (host, port)
    r = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: evse-mpy\r\nAccept-Encoding: identity\r\n" \
        "Connection: close\r\n" % (path, host)
    if start:
        r += "Range: bytes=%d-\r\n" % start
    return (r + "\r\n").encode()


def answer(head):
    """(code, length, first, location) of an answer's head (the bytes up to
    its blank line): the status code; the body's length in bytes (-1 when
    the answer does not say); the offset of the body's first byte in the
    file (a 206's Content-Range, else 0); a redirect's Location or None.
    HttpError for what a download cannot use (not HTTP; a file sent
    chunked or compressed; a range that is not "bytes a-b/n")."""
    lines = bytes(head).split(b"\r\n")
    status = lines[0].split(b" ")
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        raise HttpError("not an HTTP answer")
    code = int(status[1])
    length = -1
    first = 0
    where = None
    for line in lines[1:]:
        i = line.find(b":")
        if i <= 0:
            raise HttpError("bad header line")
        name = line[:i].strip().lower()
        value = line[i + 1:].strip()
        if name == b"content-length":
            if not value.isdigit():
                raise HttpError("bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding" or name == b"content-encoding":
            if value.lower() != b"identity" and (code == 200 or code == 206):
                raise HttpError("%s %s not supported" % (line[:i].decode(), value[:16].decode()))
        elif name == b"content-range" and code == 206:
            first = _range_first(value)
        elif name == b"location":
            where = value.decode()
    return code, length, first, where


def _range_first(value):
    # "bytes 1000-4999/5000" (RFC 9110 section 14.4)
    if not value.startswith(b"bytes "):
        raise HttpError("bad Content-Range")
    v = value[6:]
    i = v.find(b"-")
    if i <= 0 or not v[:i].isdigit():
        raise HttpError("bad Content-Range")
    return int(v[:i])


def resolve(base, where):
    """A redirect's Location against the URL that answered it."""
    if where.startswith("http://") or where.startswith("https://"):
        return where
    if where.startswith("/"):
        i = base.find("/", base.find("//") + 2)
        return (base if i < 0 else base[:i]) + where
    raise HttpError("redirect to %s not followed" % where[:32])
