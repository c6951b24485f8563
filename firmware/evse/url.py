"""The parts of a URL the firmware opens: one function, shared by the
WebSocket client (evse/ws.py, ws:// and wss://) and the update download
(evse/http.py, http:// and https://). Pure."""


def split(url, plain, secure):
    """(tls, host, port, path) of a URL starting with `plain` ("ws://") or
    `secure` ("wss://", TLS; default port 443, else 80); ValueError with
    what is wrong. No user info, no IPv6 literal."""
    if url.startswith(plain):
        tls = False
        rest = url[len(plain):]
    elif url.startswith(secure):
        tls = True
        rest = url[len(secure):]
    else:
        raise ValueError("not a %s or %s URL" % (plain, secure))
    i = rest.find("/")
    host = rest if i < 0 else rest[:i]
    path = "/" if i < 0 else rest[i:]
    port = 443 if tls else 80
    i = host.rfind(":")
    if i >= 0:
        p = host[i + 1:]
        host = host[:i]
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise ValueError("bad port")
        port = int(p)
    if not host or "@" in host or "[" in host:
        raise ValueError("bad host")
    return tls, host, port, path
