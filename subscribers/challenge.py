"""An optional proof of work on the signup form (ALTCHA, `altcha` on PyPI): no third party, no cookie.

With `signup.proof_of_work = true` the form carries a challenge signed under the site's secret: a
SHA-256 of a random salt and a secret number up to `signup.proof_of_work_max_number`. Our own script
(static/altcha-solve.js) finds the number in the reader's browser, a fraction of a second on a phone,
and sends it back with the form; a bot pays the same for every signup. A solution works once: the
challenge is counted in `rate_hits` (as a keyed hash) when it is used.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import altcha
from sqlalchemy import Connection

from mailer import ratelimits

UNSOLVED = "Please wait a moment until the page is ready, then send the form again."
VALID = timedelta(days=1)  # a reader may leave the form open for a while
SCOPE = "signup-pow"


def _key(secret: str) -> str:
    return ratelimits.hashed_key(secret, "altcha challenge key")  # not the secret itself


def new(secret: str, max_number: int) -> str:
    """A fresh challenge, as the JSON the script reads."""
    # The library checks expiry against the system clock, so it is stamped by that clock too.
    challenge = altcha.create_challenge_v1(hmac_key=_key(secret), max_number=max_number,
                                           expires=datetime.now(timezone.utc) + VALID)
    return json.dumps(challenge.to_dict())


def take(conn: Connection, secret: str, payload: str) -> bool:
    """Whether `payload` solves a challenge of ours that has not expired and was not used before."""
    try:
        is_solved, _ = altcha.verify_solution_v1(payload or "", _key(secret), check_expires=True)
    except Exception:  # a hostile payload: anything the library chokes on is no solution
        return False
    if not is_solved:
        return False
    challenge = json.loads(base64.b64decode(payload))["challenge"]
    return ratelimits.take(conn, SCOPE, ratelimits.hashed_key(secret, challenge), limit=1, per=VALID)
