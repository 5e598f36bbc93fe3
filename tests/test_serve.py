"""`mailer serve` as a newcomer runs it: a fresh directory, no config, the embedded defaults."""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    environ["PYTHONPATH"] = str(ROOT)
    return environ


def _wait_until_healthy(url: str, server: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mailer serve exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    pytest.fail(f"{url}/healthz did not answer 200 within {seconds} s")


@pytest.fixture
def served(tmp_path):
    """`python -m mailer init` then `python -m mailer serve` in an empty directory; yields (url, cwd)."""
    env = _environ()
    init = subprocess.run([sys.executable, "-m", "mailer", "init"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mailer", "serve", "--port", str(port)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, server)
        yield url, tmp_path
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_serve_with_no_config_gives_a_working_site(served):
    url, cwd = served
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with browser.open(url + "/subscribe", timeout=5) as response:
        page = response.read().decode()
    assert "Sign Up to receive the latest updates from Accidentally Alex" in page
    assert (cwd / "var" / "mailer.db").is_file()
    assert (cwd / "var" / "secret_key").is_file()

    # The delivery worker inside `mailer serve` puts the confirmation into the embedded Maildir.
    time.sleep(2)  # a person takes this long; a form sent back sooner (signup.min_seconds) is shown again
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrf_token": token, "email": "reader@example.org", "consent": "y"}).encode()
    with browser.open(url + "/subscribe", data=form, timeout=5) as response:
        assert "Thanks for signing up!" in response.read().decode()
    inbox = cwd / "var" / "mail" / "new"
    deadline = time.monotonic() + 15
    while not (inbox.is_dir() and any(inbox.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    [mail] = list(inbox.iterdir())
    assert b"/confirm/" in mail.read_bytes()
