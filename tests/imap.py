"""A throwaway Dovecot IMAP server on loopback for a test: one mailbox, plain login, Maildir storage.

Debian's dovecot-imapd; as root, Dovecot drops to `nobody` for the mail process (it refuses uid 0).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = Path("/usr/sbin/dovecot")
USER, PASSWORD = "bounces", "imap-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    """`start()` runs the server (its own config, state and log in a temp dir); `stop()` ends it."""

    def __init__(self, *, tls: bool = False):
        self.tls = tls
        self.tls_port = _free_port() if tls else 0
        self.dir = Path(tempfile.mkdtemp(prefix="mailer-imap-"))
        self.dir.chmod(0o755)  # the mail process runs as nobody and must reach the home below
        self.host, self.port = "127.0.0.1", _free_port()
        self.home = self.dir / "home" / USER
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        for sub in ("new", "cur", "tmp"):
            (self.home / "Maildir" / sub).mkdir(parents=True)
        if os.geteuid() == 0:
            for path in [self.dir / "home", *(self.dir / "home").rglob("*")]:
                shutil.chown(path, "nobody", "nogroup")
        (self.dir / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        user = "nobody" if os.geteuid() == 0 else str(os.geteuid())
        ssl = "no"
        if self.tls:  # a self-signed certificate: no client that verifies certificates accepts it
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-keyout", str(self.dir / "key.pem"),
                            "-out", str(self.dir / "cert.pem")], check=True, capture_output=True)
            ssl = f"yes\nssl_cert = <{self.dir}/cert.pem\nssl_key = <{self.dir}/key.pem"
        (self.dir / "dovecot.conf").write_text(f"""\
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/log
protocols = imap
listen = 127.0.0.1
ssl = {ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/passwd
}}
userdb {{
  driver = static
  args = uid={user} gid={user if user != "nobody" else "nogroup"} home={self.dir}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
""")
        # In the foreground (-F), as our child: stopping it is ours to do, and nothing outlives the test.
        self.process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(self.dir / "dovecot.conf")],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
        self.stop()
        raise RuntimeError(f"Dovecot did not listen on {self.port}: {log}")

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def client(self):
        """An IMAPClient logged in to the mailbox (to put messages in and look at their flags)."""
        from imapclient import IMAPClient

        client = IMAPClient(self.host, port=self.port, ssl=False)
        client.login(USER, PASSWORD)
        return client
