"""Hypothesis over every route that takes a token: any token string answers 2xx, 3xx or 4xx, never a
500, and an invalid token leaves the database as it was."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select

from mailer import tokens as signed
from subscribers import tokens
from subscribers.models import InboxProof, Subscriber
from tests.test_bad_input import confirmed, csrf_token, pending, snapshot, topics  # noqa: F401 (fixtures)

ROUTES = ["/confirm/{}", "/preferences/{}", "/preferences/{}/data", "/preferences/{}/erase", "/unsubscribe/{}",
          "/inbox/{}"]
PURPOSES = [tokens.CONFIRM, tokens.PREFERENCES, tokens.UNSUBSCRIBE, tokens.LEGACY_MANAGE, "link", "open"]
ACTIONS = ["save", "unsubscribe", "revoke", None]
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**31 - 2, max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["s", "v", "a"]) | st.text(max_size=3),
                                                                inner, max_size=4),
    max_leaves=8)
# Shaped like ours (an id, a version, a digest), with any value in each place.
token_like = st.fixed_dictionaries({"s": scalars, "v": scalars}, optional={"a": scalars})


def _state(session) -> tuple:
    counts = snapshot(session)
    row = session.execute(select(Subscriber.state, Subscriber.is_paused, Subscriber.token_version)).one()
    proofs = len(session.scalars(select(InboxProof.id)).all())
    session.remove()
    return counts, tuple(row), proofs


def _request(client, route: str, token_in_path: str, method: str, csrf: str, action: str | None):
    data = {"csrf_token": csrf, "topics": ["ukraine"], "is_paused": "y"}
    if action:
        data["action"] = action
    if route.startswith("/unsubscribe"):
        data["List-Unsubscribe"] = "One-Click"
    return client.open(route.format(token_in_path), method=method, data=data if method == "POST" else None)


@FUZZ
@given(token=st.text(max_size=300) | st.binary(max_size=200).map(lambda b: b.hex()),
       route=st.sampled_from(ROUTES), method=st.sampled_from(["GET", "POST"]), action=st.sampled_from(ACTIONS))
def test_any_string_as_a_token_is_a_4xx_and_changes_nothing(client, session, confirmed, token, route, method,
                                                            action):
    before = _state(session)
    response = _request(client, route, quote(token, safe=""), method, csrf_token(client), action)
    assert response.status_code < 500
    assert _state(session) == before


@FUZZ
@given(raw=st.binary(min_size=1, max_size=100), route=st.sampled_from(ROUTES),
       method=st.sampled_from(["GET", "POST"]))
def test_bytes_that_are_not_utf8_in_a_token_are_a_4xx(client, session, confirmed, raw, route, method):
    before = _state(session)
    path_token = "".join(f"%{byte:02X}" for byte in raw)
    response = _request(client, route, path_token, method, csrf_token(client), "save")
    assert response.status_code < 500
    assert _state(session) == before


@FUZZ
@given(payload=token_like | json_values, purpose=st.sampled_from(PURPOSES), route=st.sampled_from(ROUTES),
       method=st.sampled_from(["GET", "POST"]), action=st.sampled_from(ACTIONS))
def test_any_payload_signed_with_our_key_is_never_a_500(app, client, session, confirmed, payload, purpose, route,
                                                         method, action):
    """Our own signature on a payload we never make (a list, a float id, 10**30, a missing field)."""
    token = signed.make(purpose, payload)
    response = _request(client, route, token, method, csrf_token(client), action)
    assert response.status_code < 500
    assert session.get(Subscriber, confirmed.id) is not None  # nothing but an inbox link erases
    session.remove()


def _still_valid(app, purpose: str, token: str, original: str) -> bool:
    """Whether itsdangerous itself (not our wrapper) reads the mutated token as the original's payload."""
    serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=f"mailer.{purpose}")
    try:
        return serializer.loads(token) == serializer.loads(original)
    except BadData:
        return False


@FUZZ
@given(purpose=st.sampled_from([tokens.PREFERENCES, tokens.UNSUBSCRIBE, tokens.CONFIRM]),
       route=st.sampled_from(ROUTES), method=st.sampled_from(["GET", "POST"]), action=st.sampled_from(ACTIONS),
       position=st.integers(min_value=0), edit=st.sampled_from(["flip", "drop", "insert", "cut"]),
       char=st.sampled_from("A_-.0z"))
def test_a_real_token_changed_anywhere_is_refused(app, client, session, confirmed, purpose, route, method, action,
                                                  position, edit, char):
    made = {tokens.PREFERENCES: lambda: tokens.preferences_token(confirmed.id, confirmed.token_version),
            tokens.UNSUBSCRIBE: lambda: tokens.unsubscribe_token(confirmed.id, confirmed.token_version),
            tokens.CONFIRM: lambda: tokens.confirm_token(confirmed.id, confirmed.email, confirmed.token_version)}
    original = made[purpose]()
    i = position % len(original)
    mutated = {"flip": original[:i] + (char if original[i] != char else "B") + original[i + 1:],
               "drop": original[:i] + original[i + 1:],
               "insert": original[:i] + char + original[i:],
               "cut": original[:i]}[edit]
    before = _state(session)
    response = _request(client, route, quote(mutated, safe=""), method, csrf_token(client), action)
    assert response.status_code < 500
    if not _still_valid(app, purpose, mutated, original):
        assert _state(session) == before


@pytest.mark.parametrize("route", [r for r in ROUTES if r != "/inbox/{}"])
def test_the_fuzzed_routes_answer_a_real_token(client, session, confirmed, route):
    """The routes above are the real ones: a genuine token of the right kind opens each (so a 4xx in the
    fuzz tests is the token's doing, not a wrong address). test_privacy_links opens real inbox links."""
    token = (tokens.confirm_token(confirmed.id, confirmed.email, confirmed.token_version) if "confirm" in route
             else tokens.preferences_token(confirmed.id, confirmed.token_version))
    assert client.get(route.format(token)).status_code == 200
