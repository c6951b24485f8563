"""The README is a map that stays true: its figures are the recorded
benchmark's, its contents list matches its headings, its links lead to
files that exist, no paragraph is a copy of one in docs/ (one place each),
the configuration table in docs/ is the schema's, and the examples a user
copies are valid."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import config_table  # noqa: E402  (tools/config_table.py)
import readme_figures  # noqa: E402  (tools/readme_figures.py)
from evse import config, config_schema  # noqa: E402
from mqtt_env import make_ca  # noqa: E402  (host_tests/mqtt_env.py)


def _read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def _block(text, begin, end):
    return text[text.index(begin):text.index(end) + len(end)]


def test_the_figures_are_the_recorded_benchmarks():
    with open(readme_figures.RESULTS) as f:
        results = json.load(f)
    got = _block(_read("README.md"), readme_figures.BEGIN, readme_figures.END)
    assert got == readme_figures.block(results), (
        "README's figures are not bench/results.json's: .venv/bin/python "
        "tools/readme_figures.py --write")
    # and no other number with a unit of measure in the README's prose
    prose = _read("README.md").replace(got, "")
    odd = re.findall(r"\b\d[\d,.]*\s?(?:KB|bytes|us|µs|virtual s)\b", prose)
    assert not odd, odd


def test_the_configuration_table_is_the_schemas():
    assert set(config_table.MEANING) == set(config_schema.SCHEMA), (
        set(config_table.MEANING) ^ set(config_schema.SCHEMA))
    got = _block(_read("docs/configuration.md"), config_table.BEGIN, config_table.END)
    assert got == config_table.BEGIN + "\n" + config_table.table() + "\n" + config_table.END, (
        "docs/configuration.md is not the schema's: .venv/bin/python tools/config_table.py --write")
    for key in config.KEYS:
        assert "| `%s` |" % key in got, key


def _anchor(title):
    a = title.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def test_contents_and_links():
    text = _read("README.md")
    heads = [h for h in re.findall(r"^## (.+)$", text, re.M) if h != "Contents"]
    listed = re.findall(r"^- \[([^\]]+)\]\(#([^)]+)\)$", text, re.M)
    assert [t for t, _ in listed] == heads, (listed, heads)
    for title, anchor in listed:
        assert anchor == _anchor(title), (title, anchor)
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert os.path.exists(os.path.join(ROOT, target)), target
    for name in re.findall(r"\bdocs/[\w-]+\.md\b", text):
        assert os.path.isfile(os.path.join(ROOT, name)), name


def _paragraphs(text):
    out = []
    for p in re.split(r"\n\s*\n", text):
        p = " ".join(p.split())
        if len(p) >= 160 and not p.startswith(("|", "```", "<!--")):
            out.append(p)
    return out


def test_no_paragraph_is_in_the_readme_and_in_docs():
    docs = ""
    for name in sorted(os.listdir(os.path.join(ROOT, "docs"))):
        if name.endswith(".md"):
            docs += " ".join(_read("docs/" + name).split()) + "\n"
    copied = [p[:80] for p in _paragraphs(_read("README.md")) if p in docs]
    assert not copied, copied


def test_the_examples_are_valid(tmp_path):
    with open(os.path.join(ROOT, "examples", "charger.json")) as f:
        cfg = json.load(f)
    full = config.validate(cfg)
    for key in ("max_current_a", "meter", "rcd_selftest", "mqtt_host", "mqtt_tls", "mqtt_ca",
                "mqtt_device_id", "mqtt_user"):
        assert key in cfg, key
    assert "mqtt_password" not in cfg  # secrets go to secrets.json
    assert full["mqtt_user"] == full["mqtt_device_id"]  # the shipped broker's ACL wants it
    with open(os.path.join(ROOT, "examples", "secrets.json.example")) as f:
        sec = json.load(f)
    assert sorted(sec) == ["mqtt_password", "wifi_password", "wifi_ssid"]
    # tools/deploy.py takes them as they are (--dry-run: nothing is copied),
    # with the broker's CA that the example's mqtt_tls needs
    (tmp_path / "secrets.json").write_text(json.dumps(sec))
    make_ca(tmp_path)
    deploy = [sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--board",
              "esp32-devkitc", "--port", "/dev/null", "--config",
              os.path.join(ROOT, "examples", "charger.json"), "--secrets",
              str(tmp_path / "secrets.json"), "--dry-run"]
    p = subprocess.run(deploy + ["--ca", str(tmp_path / "ca.pem")], capture_output=True,
                       text=True, timeout=120, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert ":config.json <-" in p.stdout and ":secrets.json <-" in p.stdout
    assert ":%s <- " % cfg["mqtt_ca"] in p.stdout, p.stdout
