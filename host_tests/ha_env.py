"""A real Home Assistant for the tests (host_tests/test_home_assistant.py).

`HomeAssistant(folder, mqtt_port)` makes a configuration folder from
nothing, starts Home Assistant from its own virtualenv (`make test-ha`
builds it: build/ha-venv, the pins in host_tests/ha_requirements.txt) and
waits until its REST API answers. The folder holds:

- configuration.yaml: the core settings, `http` on 127.0.0.1 and a free
  port, `api` (the REST API), and `logger`;
- .storage/core.config_entries: one config entry of the MQTT integration
  pointed at the test's mosquitto (127.0.0.1), with discovery on and the
  default prefix `homeassistant`: what a user's "Add integration: MQTT"
  leaves behind (Home Assistant 2024.3 sets MQTT up from a config entry
  only, not from YAML);
- .storage/auth: an owner and a long-lived access token's refresh token,
  whose signing key the test knows, so the test can mint the bearer token
  for the REST API (an HS256 JWT, as Home Assistant validates it:
  `iss` = the refresh token's id, `iat`, `exp`).

Home Assistant runs with `--skip-pip` (the MQTT integration's client,
paho-mqtt 1.6.1, is in the virtualenv already), so it fetches nothing.
`stop()` sends SIGTERM and waits; the log is `folder/home-assistant.log`.
"""
import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request

from mqtt_env import ROOT, free_port

# relative to the repository (make test-ha passes build/ha-venv/bin/python)
HA_PYTHON = os.path.join(ROOT, os.environ.get("EVSE_HA_PYTHON") or "build/ha-venv/bin/python")
START_TIMEOUT_S = 180  # first start compiles and caches; later ones take 10..40 s here


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token(refresh_id, key, lifetime_s=7200):
    """An HS256 JWT that Home Assistant accepts for the refresh token
    `refresh_id` signed with its `jwt_key`."""
    now = int(time.time())
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"iss": refresh_id, "iat": now, "exp": now + lifetime_s}).encode())
    sig = hmac.new(key.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + _b64(sig)


def _store(folder, key, data, version=1, minor=1):
    with open(os.path.join(folder, ".storage", key), "w") as f:
        json.dump({"version": version, "minor_version": minor, "key": key, "data": data}, f,
                  indent=1)


def write_config(folder, http_port, mqtt_port):
    """The configuration folder; returns (refresh token id, jwt key)."""
    os.makedirs(os.path.join(folder, ".storage"), exist_ok=True)
    with open(os.path.join(folder, "configuration.yaml"), "w") as f:
        f.write("homeassistant:\n"
                "  name: evse test\n"
                "  latitude: 52.0\n"
                "  longitude: 5.0\n"
                "  elevation: 0\n"
                "  unit_system: metric\n"
                "  time_zone: UTC\n"
                "  currency: EUR\n"
                "  country: NL\n"
                "http:\n"
                "  server_host: 127.0.0.1\n"
                "  server_port: %d\n"
                "api:\n"
                "logger:\n"
                "  default: warning\n"
                "  logs:\n"
                "    homeassistant.components.mqtt: info\n" % http_port)
    _store(folder, "core.config_entries", {"entries": [{
        "entry_id": "0123456789abcdef0123456789abcdef", "version": 1, "minor_version": 1,
        "domain": "mqtt", "title": "127.0.0.1",
        "data": {"broker": "127.0.0.1", "port": mqtt_port, "discovery": True,
                 "discovery_prefix": "homeassistant"},
        "options": {}, "pref_disable_new_entities": False, "pref_disable_polling": False,
        "source": "user", "unique_id": None, "disabled_by": None}]})
    user_id = secrets.token_hex(16)
    refresh_id = secrets.token_hex(16)
    key = secrets.token_hex(64)
    _store(folder, "auth", {
        "users": [{"id": user_id, "group_ids": ["system-admin"], "is_owner": True,
                   "is_active": True, "name": "test", "system_generated": False,
                   "local_only": False}],
        "groups": [{"id": "system-admin", "name": "Administrators"},
                   {"id": "system-users", "name": "Users"},
                   {"id": "system-read-only", "name": "Read Only"}],
        "credentials": [],
        "refresh_tokens": [{
            "id": refresh_id, "user_id": user_id, "client_id": None, "client_name": "evse tests",
            "client_icon": None, "token_type": "long_lived_access_token",
            "created_at": "2024-03-01T00:00:00+00:00", "access_token_expiration": 315360000.0,
            "token": secrets.token_hex(64), "jwt_key": key, "last_used_at": None,
            "last_used_ip": None, "expire_at": None, "credential_id": None,
            "version": "2024.3.3"}]})
    return refresh_id, key


class HomeAssistant:
    def __init__(self, folder, mqtt_port):
        self.dir = str(folder)
        self.port = free_port()
        refresh_id, key = write_config(self.dir, self.port, mqtt_port)
        self.token = access_token(refresh_id, key)
        self.log = os.path.join(self.dir, "home-assistant.log")
        self.out = os.path.join(self.dir, "hass.out")
        self.proc = None
        self.started_s = None
        self.start()

    def start(self):
        assert os.access(HA_PYTHON, os.X_OK), (
            "Home Assistant is not installed (%s): run `make test-ha`" % HA_PYTHON)
        t0 = time.monotonic()
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(  # its log goes to self.log, stdout only repeats it
                [HA_PYTHON, "-m", "homeassistant", "--config", self.dir, "--skip-pip",
                 "--log-file", self.log, "--log-no-color"],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = t0 + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("Home Assistant exited (%s):\n%s" % (
                    self.proc.returncode, self.logtail()))
            try:
                if self.get("/api/").get("message") == "API running.":
                    break
            except (OSError, ValueError):
                pass
            if "Activating recovery mode" in self.logtext():
                self.stop()
                raise AssertionError("Home Assistant started in recovery mode (an integration "
                                     "it always loads failed; is the virtualenv complete? "
                                     "`make test-ha` builds it):\n%s" % self.logtail())
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("Home Assistant's API not up within %d s:\n%s" % (
                    START_TIMEOUT_S, self.logtail()))
            time.sleep(0.5)
        self.started_s = time.monotonic() - t0

    def _req(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read().decode())

    def get(self, path):
        return self._req("GET", path)

    def states(self):
        """{friendly name: state object} of every entity, as /api/states has them."""
        return {s["attributes"].get("friendly_name", s["entity_id"]): s
                for s in self.get("/api/states")}

    def call(self, domain, service, **data):
        return self._req("POST", "/api/services/%s/%s" % (domain, service), data)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def logtail(self, n=60):
        for path in (self.log, self.out):  # the log, else what it printed before logging
            try:
                with open(path) as f:
                    lines = f.readlines()
            except OSError:
                continue
            if lines:
                return "".join(lines[-n:])
        return ""

    def mqtt_complaints(self):
        """The warnings and errors of Home Assistant's MQTT integration in its
        log: a discovery payload its schema refuses, a template that fails."""
        return [line for line in self.logtext().splitlines()
                if (" WARNING " in line or " ERROR " in line)
                and "[homeassistant.components.mqtt" in line]

    def logtext(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""
