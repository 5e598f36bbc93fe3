"""Configuration: the example file documents every key, bad files and variables are named, the CLI says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mailer import config as config_module
from mailer.config import SCHEMA
from mailer.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def _sections(tree: dict, prefix: str = "") -> dict[str, dict]:
    """{"mail.smtp": {"host": ...}} from the nested TOML tables."""
    out: dict[str, dict] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(_sections(value, dotted))
        else:
            out.setdefault(prefix, {})[key] = value
    return out


def test_example_documents_every_key_with_its_default_and_nothing_else():
    example = _sections(tomllib.loads(EXAMPLE.read_text()))
    documented = {(s, k) for s, keys in example.items() for k in keys}
    known = {(s, k) for s, keys in SCHEMA.items() for k in keys}
    assert sorted(known - documented) == [], "keys in SCHEMA missing from config.example.toml"
    assert sorted(documented - known) == [], "keys in config.example.toml that SCHEMA does not know"
    wrong = {f"{s}.{k}": (example[s][k], SCHEMA[s][k]) for s, k in known if example[s][k] != SCHEMA[s][k]}
    assert wrong == {}, "example value differs from the built-in default (example, default)"


def test_example_explains_every_key_in_a_comment():
    uncommented = [line for line in EXAMPLE.read_text().splitlines()
                   if re.match(r"^\w+\s*=", line) and not re.search(r"#\s*\S", line.split("=", 1)[1])]
    assert uncommented == []


def test_example_file_loads_as_a_config():
    loaded = config_module.load(path=EXAMPLE, environ={})
    assert loaded["signup"]["rate_limit"] == "20 per hour"
    assert loaded.source == str(EXAMPLE)


def test_unknown_key_in_a_file_names_it(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[mail.smtp]\nhost = "relay.example.org"\nhots = "typo"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'mail\.smtp\.hots'"):
        config_module.load(path=path, environ={})


def test_unknown_section_in_a_file_names_it(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[smtp]\nhost = "relay.example.org"\n')
    with pytest.raises(ConfigError, match=r"unknown section \[smtp\]"):
        config_module.load(path=path, environ={})


@pytest.mark.parametrize(("toml", "message"), [
    ('[mail.smtp]\nport = "twenty-five"\n', r"mail\.smtp\.port must be a whole number"),
    ('[mail]\nbackend = "sendmail"\n', r"mail\.backend must be one of maildir, smtp"),
    ('[scheduler]\nenabled = "sometimes"\n', r"scheduler\.enabled must be true or false"),
    ('[signup]\nrate_limit = "lots"\n', r"signup\.rate_limit must be a rate like '20 per hour'"),
    ('[site]\nbase_url = "news.example.org"\n', r"site\.base_url must start with https://"),
    ('[scheduler]\ntimezone = "Europe/Londn"\n', r"scheduler\.timezone must be a time zone like 'Europe/London'"),
    ('[mail]\nfrom_address = "updates"\n', r"mail\.from_address must be an email address"),
    ('[mail]\nreply_to = "editors at example.org"\n', r"mail\.reply_to must be an email address"),
    ("[site\nname = 1\n", r"not valid TOML"),
])
def test_bad_values_are_named(tmp_path, toml, message):
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        config_module.load(path=path, environ={})


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[database]\nurl = "sqlite:///from-file.db"\n[mail.smtp]\nport = 587\n')
    loaded = config_module.load(path=path, environ={
        "MAILER_DATABASE_URL": "postgresql+psycopg://mailer@db.example.org/mailer",
        "MAILER_MAIL_SMTP_PORT": "2525",
    })
    assert loaded["database"]["url"] == "postgresql+psycopg://mailer@db.example.org/mailer"
    assert loaded["mail.smtp"]["port"] == 2525


def test_unknown_environment_variable_names_it():
    with pytest.raises(ConfigError, match="MAILER_DATABASE_URI"):
        config_module.load(path=None, environ={"MAILER_DATABASE_URI": "sqlite:///x.db"})


def test_signup_rate_limit_can_be_turned_off():
    loaded = config_module.load(path=None, environ={"MAILER_SIGNUP_RATE_LIMIT": ""})
    assert loaded["signup"]["rate_limit"] == ""


def _mailer(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the real command line (`python -m mailer`), as a user would, from `cwd`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "mailer", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("toml", "env", "reason"), [
    ('[site]\nnmae = "Typo"\n', {}, "mailer: {home}/config.toml: unknown key 'site.nmae'"),
    ("", {"MAILER_DATABASE_URI": "sqlite:///x.db"}, "mailer: environment: unknown setting MAILER_DATABASE_URI"),
])
def test_cli_with_a_bad_config_prints_one_line_and_exits_2(tmp_path, toml, env, reason):
    (tmp_path / "config.toml").write_text(toml)
    result = _mailer(tmp_path, "db", "upgrade", **env)
    # The config file is named with its folder: a command may run from anywhere (MAILER_HOME, --home).
    reason = reason.format(home=tmp_path)
    assert (result.returncode, result.stderr.splitlines(), result.stdout) == (2, [reason], "")
    assert not (tmp_path / "var").exists(), "a refused config must not create the database"


def test_cli_names_a_missing_config_file(tmp_path):
    result = _mailer(tmp_path, "worker", "--once", MAILER_CONFIG="nowhere.toml")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["mailer: config file nowhere.toml does not exist"]
