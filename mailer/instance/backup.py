"""`mailer backup DIR`: everything an instance cannot be rebuilt without, copied while it runs.

The database (SQLite through its online backup API: one consistent snapshot even while the worker
and the web app write; PostgreSQL through pg_dump), config.toml, the secret key (without it every
link in mail already sent stops working) and the DKIM key. deploy/README.md says how to restore.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from mailer import clock
from mailer.config import Config
from mailer.errors import ConfigError


def take(config: Config, into: Path) -> tuple[Path, list[str]]:
    """Write a new folder `mailer-backup-<UTC time>` under `into`; return it and one line per file."""
    folder = into / f"mailer-backup-{clock.now():%Y%m%dT%H%M%SZ}"
    try:
        folder.mkdir(mode=0o700, parents=True)  # it holds every subscriber's address and the keys
    except FileExistsError:
        raise ConfigError(f"{folder} exists already: wait a second, or choose another folder") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}") from None
    done = [_database(config, folder)]
    files = []
    if config.source != "built-in defaults":
        files.append((Path(config.source), "config.toml"))
    if not config["site"]["secret_key"]:
        files.append((config.home / "var" / "secret_key", "secret_key"))
    if config["dkim"]["private_key_file"]:
        files.append((Path(config["dkim"]["private_key_file"]), "dkim.key"))
    for source, name in files:
        if source.exists():
            shutil.copy2(source, folder / name)
            os.chmod(folder / name, 0o600)
            done.append(f"{name}: from {source}")
    return folder, done


def _database(config: Config, folder: Path) -> str:
    url = make_url(config["database"]["url"])
    if url.get_backend_name() == "sqlite":
        return _sqlite(Path(url.database), folder / "mailer.db")
    if url.get_backend_name() == "postgresql":
        return _pg_dump(url, folder / "mailer.pgdump")
    raise ConfigError(f"cannot back up a {url.get_backend_name()} database")


def _sqlite(source: Path, target: Path) -> str:
    if not source.exists():
        raise ConfigError(f"the database {source} does not exist")
    # The backup API copies every page in one step under a read lock: a snapshot that includes
    # what the WAL holds, taken while the app goes on writing (a plain file copy could be torn).
    with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise ConfigError(f"the copy of {source} failed its integrity check: {verdict}")
    os.chmod(target, 0o600)
    return f"mailer.db: a consistent copy of {source} (integrity check ok)"


def _pg_dump(url, target: Path) -> str:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise ConfigError("pg_dump is not installed (apt-get install postgresql-client)")
    environ = dict(os.environ)
    if url.password:
        environ["PGPASSWORD"] = url.password  # not on the command line, where `ps` shows it
    libpq = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    result = subprocess.run([pg_dump, "--format=custom", "--no-owner", f"--file={target}", libpq],
                            env=environ, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise ConfigError(f"pg_dump failed: {reason}")
    os.chmod(target, 0o600)
    return f"mailer.pgdump: pg_dump of {url.render_as_string(hide_password=True)} (restore with pg_restore)"
