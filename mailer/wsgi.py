"""WSGI entry for running the web app alone: `gunicorn -w 4 'mailer.wsgi:app'` (run workers and the
scheduler as their own processes: `mailer worker`, `mailer scheduler`).

The instance folder is MAILER_HOME (else the current folder), as for the command line; a folder that
is not an instance stops the web process instead of starting an empty one.
"""

import os

from mailer import config, instance, logs
from mailer.app import create_app

logs.setup(os.environ.get("MAILER_LOG_FORMAT", "text"))
_config = config.load()
instance.require(_config)
app = create_app(_config)
