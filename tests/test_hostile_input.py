"""Property-based tests (Hypothesis): whatever a stranger sends to the signup form, puts in a CSV row or
serves as a feed, the answer is 2xx/3xx/4xx or a one-line reason, never a 500 or a traceback, and the
database stays consistent."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from mailer.errors import MailerError
from mailer.outbox.models import OutboxMessage
from subscribers.models import ConsentEvent, Subscriber, SubscriberState
from tests.test_bad_input import page_text, signup_form

# Function-scoped fixtures (one app and database per test) are shared by the examples on purpose:
# the database fills up as it would in production, and every example checks it is still consistent.
# HYPOTHESIS_EXAMPLES=2000 for a longer search than CI's.
PROPERTY = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "60")), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~."
# Labels a hostile corpus tries: punycode, IDN, mixed scripts and marks, digits, hyphens in odd places.
labels = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"xn--[a-z0-9-]{1,20}", fullmatch=True),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12),
)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
addresses = st.one_of(
    st.emails(),
    # RFC 2047 encoded words are atext too: "=?utf-8?q?a?=@example.org" passes address syntax.
    st.builds(lambda word, domain: f"{word}@{domain}",
              st.from_regex(r"=\?[a-z0-9-]{1,12}\?[qbQB]\?[A-Za-z0-9=_-]{0,16}\?=", fullmatch=True),
              st.sampled_from(["example.org", "bücher.example"])),
    st.builds(lambda local, domain: f"{local}@{domain}", st.text(ATEXT, min_size=1, max_size=64), domains),
    st.text(max_size=300),
)
any_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


def _consistent(session) -> None:
    """No subscriber without the consent that made them; never more than the cap of signup replies."""
    session.remove()
    for subscriber in session.scalars(select(Subscriber)):
        assert subscriber.consent_events, subscriber.email
        assert subscriber.consent_events[0].action.value in ("given", "imported")
        if subscriber.state == SubscriberState.pending:
            replies = session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.subscriber_id == subscriber.id))
            assert replies <= 3
    assert session.scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.subscriber_id.not_in(select(Subscriber.id)))) == 0
    session.remove()


@PROPERTY
@given(email=addresses, name=any_text, topics=st.lists(any_text, max_size=4), form_id=any_text,
       consent=st.sampled_from(["y", "", None, "n"]),
       forwarded=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=100))
def test_any_signup_form_gets_an_answer_and_leaves_the_database_consistent(
        app, client, session, email, name, topics, form_id, consent, forwarded):
    form = signup_form(client, email=email, name=name, topics=topics, form_id=form_id, consent=consent)
    response = client.post("/subscribe", data=form, headers={"X-Forwarded-For": forwarded})
    assert response.status_code < 500, (email, response.status_code)
    _consistent(session)


@pytest.mark.parametrize("address", [
    # An RFC 2047 encoded word is all atext, so email-validator takes it as a local part; Python's
    # header parser decodes it inside the address of the confirmation's To and raised: a 500.
    "=?utf-8?q?a?=@example.org",
    "=?us-ascii?q?victim=40evil.example?=@example.org",
    "=?x?q?a?=@example.org",
    "reader.=?utf-8?b?AA==?=@example.org",
])
def test_an_encoded_word_as_local_part_is_refused_not_a_500(client, session, address):
    response = client.post("/subscribe", data=signup_form(client, email=address))
    assert response.status_code == 400
    assert "mail programs would read it as encoded text" in page_text(response)
    _consistent(session)


@PROPERTY
@given(rows=st.lists(st.tuples(addresses, any_text, any_text), max_size=6), header=st.sampled_from([
    "email,name,topics", "Email;Name", "name,email", "", "email"]))
def test_any_csv_rows_import_or_are_reported_never_a_traceback(app, runner, session, tmp_path, rows, header):
    path = Path(tmp_path) / "list.csv"
    lines = [header] + [",".join('"' + c.replace('"', '""') + '"' for c in row) for row in rows]
    path.write_text("\n".join(lines), encoding="utf-8")
    session.remove()
    result = runner.invoke(["subscribers", "import", str(path)])
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    _consistent(session)


@PROPERTY
@given(document=st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda title, link, body: (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>'
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid><description>{body}</description>"
        f"</item></channel></rss>").encode("utf-8", "surrogatepass"), any_text, any_text, any_text),
))
def test_any_feed_document_is_stored_or_refused_with_a_reason(app, session, document):
    from mailer.feeds import operations as feeds
    from mailer.feeds.models import Feed

    feed = session.scalar(select(Feed)) or feeds.add_feed(session, "https://blog.example.org/feed.xml")
    session.commit()
    fetched = feeds.Fetched(url=feed.url, content=document, content_type="application/rss+xml")
    try:
        feeds.store_entries(session, feed, fetched, feeds.parse(fetched))
        session.commit()
    except MailerError:
        session.rollback()
