"""WSGI entry for running the web app alone: `gunicorn -w 4 'mailer.wsgi:app'` (run workers and the
scheduler as their own processes: `mailer worker`, `mailer scheduler`)."""

from mailer.app import create_app

app = create_app()
