"""`make run` installs what running needs and makes the instance on purpose; `make test` adds the test extras."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _dry_run(target: str, tmp_path: Path) -> list[str]:
    """The commands `make TARGET` would run on a fresh clone (no .venv yet)."""
    # As a newcomer's shell runs it: not as a sub-make of `make test` (CI), which would add
    # "make[1]: Entering directory" lines and pass its own flags down.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    result = subprocess.run(["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                            capture_output=True, text=True, check=True, env=env)
    return result.stdout.splitlines()


def test_make_run_installs_no_test_extras_and_inits_before_serving(tmp_path):
    commands = _dry_run("run", tmp_path)
    installs = [c for c in commands if "pip install" in c]
    assert installs and all("[test]" not in c for c in installs), installs
    mailer = [c.split("/")[-1] for c in commands if "/bin/mailer" in c]
    assert mailer == ["mailer init", "mailer serve"]


def test_make_test_adds_the_test_extras(tmp_path):
    commands = _dry_run("test", tmp_path)
    assert any("pip install" in c and "'.[test]'" in c for c in commands), commands
    assert commands[-1].rstrip().endswith("-m pytest")
