"""`mailer backup`: a consistent copy of a SQLite database taken while the app writes to it, restored
into a new instance folder by the steps deploy/README.md gives."""

from __future__ import annotations

import shutil
import sqlite3
import threading

import pytest
from click.testing import CliRunner

from mailer import db
from mailer.app import create_app
from mailer.cli import cli
from mailer.topics.operations import ensure_topic


@pytest.fixture
def instance(tmp_path, sqlite_template):
    """An instance folder with a config, a secret key and a migrated database at var/mailer.db."""
    home = tmp_path / "live"
    (home / "var").mkdir(parents=True)
    shutil.copy(sqlite_template, home / "var" / "mailer.db")
    (home / "config.toml").write_text('[site]\nname = "Tenants Together"\n')
    (home / "var" / "secret_key").write_text("live-secret\n")
    return home


def test_a_backup_taken_while_the_app_writes_restores_whole(instance, tmp_path):
    from mailer import config as config_module

    app = create_app(config_module.load(environ={}, home=instance))
    stop, written = threading.Event(), []

    def write_pairs():
        """The app at work: topics two at a time, each pair in one transaction."""
        with app.app_context():
            n = 0
            while not stop.is_set():
                ensure_topic(db.session, f"pair-{n}-a")
                ensure_topic(db.session, f"pair-{n}-b")
                db.session.commit()
                written.append(n)
                n += 1
            db.session.remove()

    writer = threading.Thread(target=write_pairs)
    writer.start()
    try:
        while len(written) < 20:  # the writer is well under way
            stop.wait(0.01)
        result = CliRunner().invoke(cli, ["--home", str(instance), "backup", str(tmp_path / "backups")])
        during = len(written)
        while len(written) < during + 20:  # and went on writing after the backup
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
        app.extensions["engine"].dispose()
    assert result.exit_code == 0, result.output
    [folder] = (tmp_path / "backups").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["config.toml", "mailer.db", "secret_key"]
    assert "integrity check ok" in result.output and oct(folder.stat().st_mode & 0o777) == "0o700"

    # Restore (deploy/README.md): the files back into a new instance folder, then `mailer db upgrade`.
    restored = tmp_path / "restored"
    (restored / "var").mkdir(parents=True)
    shutil.copy(folder / "config.toml", restored / "config.toml")
    shutil.copy(folder / "secret_key", restored / "var" / "secret_key")
    shutil.copy(folder / "mailer.db", restored / "var" / "mailer.db")
    assert CliRunner().invoke(cli, ["--home", str(restored), "db", "upgrade"]).exit_code == 0

    with sqlite3.connect(restored / "var" / "mailer.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        slugs = {slug for (slug,) in copy.execute("SELECT slug FROM topics WHERE slug LIKE 'pair-%'")}
    pairs = {slug.rsplit("-", 1)[0] for slug in slugs}
    # A snapshot: every pair whole, none torn; all written before the backup began, none after it ended.
    assert slugs == {f"{pair}-{half}" for pair in pairs for half in "ab"}
    assert 20 <= len(pairs) <= during + 1 < len(written)
    listed = CliRunner().invoke(cli, ["--home", str(restored), "topics", "list"])
    assert listed.exit_code == 0 and "pair-0-a" in listed.output
    assert (restored / "var" / "secret_key").read_text() == "live-secret\n"


def test_a_backup_into_a_folder_that_cannot_be_made_is_one_line(instance, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(cli, ["--home", str(instance), "backup", str(tmp_path / "file" / "b")])
    assert result.exit_code == 2
    assert result.output.startswith("mailer: cannot create ") and len(result.output.splitlines()) == 1


def test_a_postgresql_backup_is_a_pg_dump_that_pg_restore_reads(tmp_path, postgres_url):
    import subprocess

    from mailer import config as config_module
    from mailer.instance import backup

    config = config_module.load(environ={"MAILER_DATABASE_URL": postgres_url}, home=tmp_path)
    folder, done = backup.take(config, tmp_path / "backups")
    assert done[0].startswith("mailer.pgdump: pg_dump of postgresql+psycopg://mailer@127.0.0.1:")
    listing = subprocess.run(["pg_restore", "--list", str(folder / "mailer.pgdump")], capture_output=True,
                             text=True, check=True).stdout
    assert "TABLE public subscribers" in listing and "TABLE public leases" in listing
