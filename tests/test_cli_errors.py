"""Every mistake a user can make on the command line ends in one line, `mailer: reason`, and a non-zero
exit status: a mistyped option, a database that cannot be reached, a path that cannot be written."""

from __future__ import annotations

import os
import socket
import sqlite3

import pytest
from click.testing import CliRunner

from mailer.cli import cli


def _closed_port() -> int:
    """A loopback port nothing listens on: bound once by us, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mailer(tmp_path, monkeypatch):
    """Run `mailer ARGS` as a user would, in an empty directory, with MAILER_* variables from `env`."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("MAILER_")]:
        monkeypatch.delenv(name)

    def run(*args: str, **env: str):
        return CliRunner().invoke(cli, list(args), env=env, prog_name="mailer")

    return run


def _one_line(result) -> str:
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("mailer: "), lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


@pytest.mark.parametrize(("args", "reason"), [
    (["frobnicate", "editor@example.org"], "No such command 'frobnicate'"),
    (["users", "create", "editor@example.org"], "Missing option '--role'. Choose from: admin, editor"),
    (["worker", "--bogus"], "No such option '--bogus'"),
    (["subscribers", "import", "nowhere.csv"], "File 'nowhere.csv' does not exist"),
    (["stats", "abc"], "'abc' is not a valid integer"),
    (["digests", "send", "abc"], "'abc' is not a valid integer"),
    (["articles", "list", "--limit", "0"], "0 is not in the range x>=1"),
    (["subscribers", "show"], "Missing argument 'EMAIL'"),
])
def test_a_mistyped_command_is_one_line_that_points_at_help(mailer, args, reason):
    result = mailer(*args)
    assert result.exit_code == 2
    line = _one_line(result)
    assert reason in line and "--help`)" in line


def test_a_bare_group_still_answers_with_its_help(mailer):
    result = mailer("subscribers")
    assert result.exit_code == 2
    assert "Commands:" in result.output and "export-data" in result.output


def test_help_is_not_an_error(mailer):
    result = mailer("subscribers", "import", "--help")
    assert result.exit_code == 0 and "--confirmed" in result.output


def test_serve_refuses_a_port_that_does_not_exist(mailer):
    # Checked through --help: a port out of range once made waitress listen on a random one, forever.
    result = mailer("serve", "--help")
    assert "1<=x<=65535" in result.output


def test_postgresql_on_a_closed_port_is_one_line_without_the_password(mailer):
    url = f"postgresql+psycopg://mailer:s3cret@127.0.0.1:{_closed_port()}/mailer"
    for args in (["db", "upgrade"], ["topics", "list"], ["serve"]):
        result = mailer(*args, MAILER_DATABASE_URL=url)
        assert result.exit_code == 2, args
        line = _one_line(result)
        assert line.startswith("mailer: cannot use the database postgresql+psycopg://mailer:***@127.0.0.1:")
        assert "Connection refused" in line and "s3cret" not in line


@pytest.mark.parametrize(("url", "reason"), [
    ("not a url", "database.url is not a database URL"),
    ("nosuchdb://db.example.org/mailer", "no driver for 'nosuchdb' is installed"),
])
def test_a_database_url_we_cannot_drive_is_one_line(mailer, url, reason):
    result = mailer("db", "upgrade", MAILER_DATABASE_URL=url)
    assert result.exit_code == 2
    assert reason in _one_line(result)


def test_db_upgrade_on_a_read_only_database_is_one_line(mailer, tmp_path):
    path = tmp_path / "readonly.db"
    sqlite3.connect(path).close()
    result = mailer("db", "upgrade", MAILER_DATABASE_URL=f"sqlite:///file:{path}?mode=ro&uri=true")
    assert result.exit_code == 2
    assert "readonly database" in _one_line(result)
    assert sqlite3.connect(path).execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_a_sqlite_file_under_a_regular_file_is_one_line(mailer, tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    result = mailer("db", "upgrade", MAILER_DATABASE_URL=f"sqlite:///{tmp_path}/notes.txt/mailer.db")
    assert result.exit_code == 2
    assert "cannot create the folder" in _one_line(result)


def test_a_sqlite_path_that_is_a_folder_is_one_line(mailer, tmp_path):
    (tmp_path / "mailer.db").mkdir()
    result = mailer("db", "upgrade", MAILER_DATABASE_URL=f"sqlite:///{tmp_path}/mailer.db")
    assert result.exit_code == 2
    assert "unable to open database file" in _one_line(result)


def test_export_into_a_missing_folder_is_one_line(runner, tmp_path):
    target = tmp_path / "no-such-folder" / "subscribers.csv"
    result = runner.invoke(["subscribers", "export", str(target)])
    assert result.exit_code == 2
    assert _one_line(result) == f"mailer: cannot write {target}: No such file or directory"
    assert not target.parent.exists()


def test_serve_on_a_busy_port_is_one_line(runner):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(["serve", "--no-scheduler", "--no-worker", "--port", str(port)])
    assert result.exit_code == 2
    assert _one_line(result) == f"mailer: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize(("noun", "hint"), [
    ("topics", "no topics yet: add one with `mailer topics add SLUG`"),
    ("articles", "no articles yet: `mailer articles import FILE…` or `mailer feeds add URL`"),
    ("feeds", "no feeds yet: add one with `mailer feeds add URL`"),
])
def test_an_empty_list_says_how_to_fill_it(runner, noun, hint):
    listed = runner.invoke([noun, "list"])
    assert (listed.exit_code, listed.stdout, listed.stderr) == (0, "", hint + "\n")
    assert runner.invoke([noun, "list", "--json"]).stdout == "[]\n"


@pytest.mark.parametrize("args", [["serve"], ["worker", "--once"], ["topics", "list"]])
def test_a_database_without_tables_says_to_run_db_upgrade(mailer, tmp_path, args):
    # `mailer serve` on it used to answer every page with a 500 while /healthz said ok.
    url = f"sqlite:///{tmp_path}/fresh.db"
    result = mailer(*args, MAILER_DATABASE_URL=url)
    assert result.exit_code == 2
    assert _one_line(result) == f"mailer: the database {url} has no tables yet: run `mailer db upgrade`"


def test_a_database_behind_the_code_says_to_run_db_upgrade(mailer, tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    assert mailer("db", "upgrade", MAILER_DATABASE_URL=url).exit_code == 0
    with sqlite3.connect(tmp_path / "old.db") as old:
        old.execute("UPDATE alembic_version SET version_num = '0000'")
    result = mailer("topics", "list", MAILER_DATABASE_URL=url)
    assert result.exit_code == 2
    assert "is at revision 0000" in _one_line(result) and "run `mailer db upgrade`" in result.output


def test_serve_on_a_host_that_does_not_resolve_is_one_line(runner):
    result = runner.invoke(["serve", "--no-scheduler", "--no-worker", "--host", "no-such-host.invalid"])
    assert result.exit_code == 2
    assert _one_line(result) == "mailer: cannot listen on no-such-host.invalid:5000: no such address"
