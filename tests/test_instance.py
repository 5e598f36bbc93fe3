"""One instance folder: commands find config.toml and var/ in MAILER_HOME / --home / the current folder,
refuse (creating nothing) where there is no instance, and `mailer init` makes one on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer import config as config_module
from mailer.cli import cli
from mailer.config import SCHEMA

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mailer(tmp_path, monkeypatch):
    """Run `mailer ARGS` in-process from the folder `elsewhere` (empty), with MAILER_* variables from `env`."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for name in [n for n in os.environ if n.startswith("MAILER_")]:
        monkeypatch.delenv(name)

    def run(*args: str, **env: str):
        return CliRunner().invoke(cli, list(args), env=env, prog_name="mailer")

    return run


@pytest.mark.parametrize("args", [
    ["db", "upgrade"], ["serve"], ["worker", "--once"], ["subscribers", "show", "reader@example.org"],
    ["topics", "list"],
])
def test_a_command_in_a_folder_without_an_instance_refuses_and_creates_nothing(mailer, tmp_path, args):
    result = mailer(*args)
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith(f"mailer: {tmp_path / 'elsewhere'} is not a mailer instance")
    assert "MAILER_HOME" in line and "--home" in line and "mailer init" in line
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_home_that_does_not_exist_is_named_and_not_created(mailer, tmp_path):
    missing = tmp_path / "no-such-instance"
    result = mailer("--home", str(missing), "topics", "list")
    assert result.exit_code == 2
    assert result.output.startswith(f"mailer: {missing} is not a mailer instance")
    assert not missing.exists()


def test_init_makes_an_instance_that_home_and_mailer_home_both_find(mailer, tmp_path):
    home = tmp_path / "campaign"
    made = mailer("init", str(home))
    assert made.exit_code == 0, made.output
    assert (home / "config.toml").is_file() and (home / "var" / "secret_key").is_file()
    assert (home / "var" / "mailer.db").is_file()
    assert f"instance ready in {home}" in made.output

    assert mailer("--home", str(home), "topics", "add", "housing").exit_code == 0
    listed = mailer("topics", "list", MAILER_HOME=str(home))
    assert listed.exit_code == 0 and "housing" in listed.output
    # Nothing was made in the folder the commands ran from.
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_init_again_keeps_the_config_and_the_key(mailer, tmp_path):
    home = tmp_path / "campaign"
    assert mailer("init", str(home)).exit_code == 0
    (home / "config.toml").write_text('[site]\nname = "Tenants Together"\n')
    key = (home / "var" / "secret_key").read_text()
    again = mailer("--home", str(home), "init")
    assert again.exit_code == 0, again.output
    assert "kept as it was" in again.output
    assert (home / "config.toml").read_text() == '[site]\nname = "Tenants Together"\n'
    assert (home / "var" / "secret_key").read_text() == key


def test_inits_config_documents_every_key_and_changes_no_default(tmp_path):
    from mailer import instance

    instance.create(tmp_path, environ={})
    text = (tmp_path / "config.toml").read_text()
    for section, keys in SCHEMA.items():
        for key in keys:
            assert f"# {key} = " in text, f"{section}.{key} is not in the config init writes"
    assert config_module.load(environ={}, home=tmp_path)["site"] == config_module.load(environ={}, home=ROOT / "nowhere")["site"]
    # Uncommenting a line is all it takes to change a setting.
    (tmp_path / "config.toml").write_text(text.replace('# name = "Accidentally Alex"', 'name = "Tenants"'))
    assert config_module.load(environ={}, home=tmp_path).site_name == "Tenants"
    assert tomllib.loads(text)  # still valid TOML


def test_relative_paths_in_the_config_are_the_instance_folders(tmp_path):
    (tmp_path / "config.toml").write_text('[database]\nurl = "sqlite:///data/list.db"\n'
                                          '[mail]\nmaildir = "outgoing"\n')
    loaded = config_module.load(environ={}, home=tmp_path)
    assert loaded.home == tmp_path
    assert loaded["database"]["url"] == f"sqlite:///{tmp_path}/data/list.db"
    assert loaded["mail"]["maildir"] == str(tmp_path / "outgoing")
    assert config_module.secret_key(loaded, Path("var")) == (tmp_path / "var" / "secret_key").read_text().strip()


def test_absolute_and_server_urls_are_left_alone(tmp_path):
    for url in ("sqlite:////srv/mailer/mailer.db", "postgresql+psycopg://mailer@db.example.org/mailer",
                "sqlite://", "sqlite:///:memory:"):
        assert config_module.load(environ={"MAILER_DATABASE_URL": url}, home=tmp_path)["database"]["url"] == url


def test_the_environment_naming_a_database_is_an_instance(mailer, tmp_path):
    url = f"sqlite:///{tmp_path}/env.db"
    assert mailer("db", "upgrade", MAILER_DATABASE_URL=url).exit_code == 0
    assert (tmp_path / "env.db").is_file()


def test_the_real_command_from_the_wrong_folder_says_where_it_looked(tmp_path):
    """As the issue's newcomer met it: `mailer subscribers show` from another folder."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    environ["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "mailer", "subscribers", "show", "reader@example.org"],
                            cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"mailer: {tmp_path} is not a mailer instance (no config.toml, no var/mailer.db): run this from the "
        f"instance folder, or point MAILER_HOME or `mailer --home DIR` at it; `mailer init` makes a new one here"]
    assert list(tmp_path.iterdir()) == []


def test_gunicorns_entry_refuses_a_folder_that_is_not_an_instance(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    environ["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", "import mailer.wsgi"], cwd=tmp_path, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"ConfigError: {tmp_path} is not a mailer instance" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_config_named_by_mailer_config_keeps_its_var_beside_it(tmp_path, monkeypatch):
    """MAILER_CONFIG=/srv/mailer/config.toml from another folder reads /srv/mailer/var, not ./var."""
    home = tmp_path / "srv"
    home.mkdir()
    (home / "config.toml").write_text('[site]\nname = "Tenants"\n')
    monkeypatch.chdir(tmp_path)
    loaded = config_module.load(environ={"MAILER_CONFIG": str(home / "config.toml")})
    assert loaded.home == home and loaded["database"]["url"] == f"sqlite:///{home}/var/mailer.db"
    # MAILER_HOME still wins when both are given.
    elsewhere = tmp_path / "elsewhere"
    assert config_module.load(environ={"MAILER_CONFIG": str(home / "config.toml"),
                                       "MAILER_HOME": str(elsewhere)}).home == elsewhere
