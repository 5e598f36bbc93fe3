"""The bulk path (emails.BulkMessage) writes the message emails.build writes, at a fraction of the cost.

"The same message" means: parsed as a mail client parses it, every header value and both decoded
bodies are equal, for recipients whose names and addresses take every path (plain, encoded words,
quoting, IDNA); the message passes the contract check and a DKIM signature over it verifies.
"""

from __future__ import annotations

import email
import email.policy
import random
import re

import dkim
import pytest
from itsdangerous import URLSafeTimedSerializer

from mailer import emails, tokens
from mailer.digests.compose import DigestParts, Placeholders, compose_digest, personalise
from mailer.errors import InvalidToken
from mailer.outbox import backends, signing
from tests import factories
from tests.contract import check_message
from tests.test_digest_compose import BASE, fill, make_config, settings, views

POSTAL = "Accidentally Alex, 1 Example Street, London"
RECIPIENTS = [
    ("reader@example.org", ""),
    ("reader@example.org", "Reader Twelve"),
    ("zoe@example.org", "Zoë Łukasiewicz"),
    ("leser@bücher.example", "Jürgen Müller"),
    ("smith@example.org", 'Smith, "J." Jr.'),
    ("back@example.org", 'Back\\slash (the "Third")'),
    ("zz@example.org", 'Zoë "Z", Ł'),
    ("zl@example.org", "Zoë Łukasiewicz-Brzęczyszczykiewicz Of Chrząszczyżewoszyce"),
    ("ctl@example.org", "Bell\x07 Name"),
    ("ob@example.org", "O'Brien-Smith"),
    ("long@example.org", "A Name Long Enough To Push The To Header Well Past Seventy Eight Characters"),
    ("mime@example.org", "=?utf-8?q?looks_encoded?="),
]


def parse(content: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(content, policy=email.policy.default)


def digest(config, marker: str = "m1"):
    placeholders = Placeholders(marker)
    parts = compose_digest(views(placeholders), frozenset(), settings(placeholders, config))
    return parts, placeholders


def both(config, parts, placeholders, to: str, to_name: str):
    """The stdlib message and the bulk one for the same recipient, parsed."""
    unsubscribe_url = fill("unsubscribe_url")
    reference = emails.build(config, to=to, to_name=to_name, rendered=personalise(parts, placeholders, fill),
                             unsubscribe_url=unsubscribe_url, message_id="<1.2.3@news.example.org>")
    bulk = emails.BulkMessage(config, subject=parts.subject, text=parts.text, html=parts.html,
                              slot=placeholders.pattern)
    prepared = bulk.personal(to=to, to_name=to_name, unsubscribe_url=unsubscribe_url, values=fill,
                             message_id="<1.2.3@news.example.org>")
    return reference, prepared


def assert_same_message(reference: email.message.EmailMessage, content: bytes) -> email.message.EmailMessage:
    ours = parse(content)
    theirs = parse(reference.as_bytes())
    # Headers are compared as values; only the boundary may differ (it is random in both).
    names = [k for k in theirs.keys()]
    assert [k for k in ours.keys()] == names
    for name in names:
        if name == "Content-Type":
            assert ours.get_content_type() == theirs.get_content_type() == "multipart/alternative"
            continue
        assert str(ours[name]) == str(theirs[name]), name
    for subtype in ("plain", "html"):
        mine, yours = ours.get_body(preferencelist=(subtype,)), theirs.get_body(preferencelist=(subtype,))
        assert mine.get_content() == yours.get_content()
        assert (mine["Content-Type"].params, mine["Content-Transfer-Encoding"].cte) == (
            yours["Content-Type"].params, yours["Content-Transfer-Encoding"].cte)
    return ours


@pytest.mark.parametrize("to, to_name", RECIPIENTS)
@pytest.mark.parametrize("site_name", ["Accidentally Alex", 'Zoë\'s "Blog", Ltd.'])
def test_bulk_message_is_the_message_build_makes(frozen_clock, to, to_name, site_name):
    config = make_config(site={"base_url": BASE, "postal_address": POSTAL, "name": site_name},
                         mail={"from_address": "updates@news.example.org", "reply_to": "Zoë <zoe@news.example.org>"})
    parts, placeholders = digest(config)
    reference, prepared = both(config, parts, placeholders, to, to_name)
    message = assert_same_message(reference, prepared.content)
    check_message(message, postal_address=POSTAL)
    assert prepared.recipient == reference["To"].addresses[0].addr_spec
    assert (prepared.message_id, prepared.subject) == ("<1.2.3@news.example.org>", str(reference["Subject"]))
    assert prepared.recipient.isascii() and ("xn--bcher-kva.example" in prepared.recipient) == ("ü" in to)
    assert prepared.content.isascii()
    assert all(len(line) <= 78 for line in prepared.content.split(b"\r\n"))
    assert b"\n" not in prepared.content.replace(b"\r\n", b"")  # CRLF line ends only, as SMTP wants


def test_every_recipient_gets_their_own_links(frozen_clock):
    config = make_config()
    parts, placeholders = digest(config)
    bulk = emails.BulkMessage(config, subject=parts.subject, text=parts.text, html=parts.html,
                              slot=placeholders.pattern)
    messages = {}
    for reader in ("7", "8"):
        def values(name: str, reader=reader) -> str:
            path = {"unsubscribe_url": "unsubscribe", "preferences_url": "preferences"}.get(name, "l")
            return f"{BASE}/{path}/{name}-FOR-{reader}"

        content = bulk.personal(to=f"r{reader}@example.org", unsubscribe_url=values("unsubscribe_url"),
                                values=values).content
        messages[reader] = check_message(parse(content), postal_address="")
    assert "-FOR-7" in messages["7"]["html"] and "-FOR-8" not in messages["7"]["html"]
    assert "-FOR-8" in messages["8"]["text"] and "-FOR-7" not in messages["8"]["text"]
    assert placeholders.marker not in messages["7"]["html"] + messages["8"]["text"]
    assert messages["7"]["unsubscribe_url"] == f"{BASE}/unsubscribe/unsubscribe_url-FOR-7"


def test_bodies_survive_what_quoted_printable_must_escape(frozen_clock):
    """Line by line encoding equals whole-body encoding, whatever the lines hold and wherever a slot is."""
    config = make_config()
    placeholders = Placeholders("m2")
    slot = placeholders.url("link-1")
    pieces = ["=", "=_", ".", " ", "\t", "é", "€", "From ", "\x0c", "\u2028", "\x85", "a" * 75, "b" * 200,
              slot, f"x{slot}y", "\r", "\n", "\r\n", "\r\n.\r\n", "--", "<a href=\"", "\"> "]
    generator = random.Random(20261123)
    for _ in range(200):
        text = "".join(generator.choice(pieces) for _ in range(generator.randrange(0, 40)))
        html = "<p>" + "".join(generator.choice(pieces) for _ in range(generator.randrange(0, 40))) + "</p>"
        parts = DigestParts(subject="s", preheader="", text=text, html=html, article_ids=())
        reference = emails.build(config, to="r@example.org", rendered=personalise(parts, placeholders, fill),
                                 unsubscribe_url=fill("unsubscribe_url"), message_id="<1@news.example.org>")
        content = emails.BulkMessage(config, subject="s", text=text, html=html, slot=placeholders.pattern).personal(
            to="r@example.org", unsubscribe_url=fill("unsubscribe_url"), values=fill,
            message_id="<1@news.example.org>").content
        assert_same_message(reference, content)
        boundary = parse(content).get_boundary()
        # In the Content-Type parameter, the two part delimiters and the closing one; nowhere in a body.
        assert content.count(boundary.encode()) == 4 and content.count(b"\r\n--" + boundary.encode()) == 3
        assert all(len(line) <= 78 for line in content.split(b"\r\n")), repr(text)


def test_dkim_signature_over_a_bulk_message_verifies(frozen_clock, dkim_key):
    key, record = dkim_key
    config = make_config(site={"base_url": BASE, "postal_address": POSTAL, "name": "Zoë's Blog"})
    parts, placeholders = digest(config)
    _, prepared = both(config, parts, placeholders, "leser@bücher.example", 'Müller, "Jürgen"')
    memory = backends.MemoryBackend()
    wrapper = signing.SigningBackend(memory, signing.Signer("mail", "news.example.org", key.read_bytes()))
    [result] = wrapper.send([backends.Envelope(1, "bounces@news.example.org", prepared.recipient, prepared.content)])
    assert result.is_sent, result.error
    [envelope] = memory.sent

    def dns(name, timeout=5):
        return record if name == b"mail._domainkey.news.example.org." else None

    assert dkim.verify(envelope.content, dnsfunc=dns)
    tampered = envelope.content.replace(b"/unsubscribe/", b"/unsubscribe/x", 1)
    assert tampered != envelope.content and not dkim.verify(tampered, dnsfunc=dns)


def test_feedback_id_is_written_alike_by_both_paths(frozen_clock):
    config = make_config(site={"base_url": BASE, "postal_address": POSTAL})
    parts, placeholders = digest(config)
    feedback = emails.feedback_id("alert", 12)
    reference = emails.build(config, to="reader@example.org", rendered=personalise(parts, placeholders, fill),
                             unsubscribe_url=fill("unsubscribe_url"), message_id="<1.2.3@news.example.org>",
                             feedback=feedback)
    prepared = emails.BulkMessage(config, subject=parts.subject, text=parts.text, html=parts.html,
                                  slot=placeholders.pattern, feedback=feedback).personal(
        to="reader@example.org", unsubscribe_url=fill("unsubscribe_url"), values=fill,
        message_id="<1.2.3@news.example.org>")
    message = assert_same_message(reference, prepared.content)
    assert message["Feedback-ID"] == "alert-12:mailer"
    # Mail without a send (a confirmation, say) carries none.
    assert "Feedback-ID" not in both(config, parts, placeholders, "reader@example.org", "")[0]


def _signed(dkim_key, feedback: str = "alert-12:mailer") -> tuple[bytes, object]:
    key, record = dkim_key
    config = make_config(site={"base_url": BASE, "postal_address": POSTAL})
    parts, placeholders = digest(config)
    prepared = emails.BulkMessage(config, subject=parts.subject, text=parts.text, html=parts.html,
                                  slot=placeholders.pattern, feedback=feedback).personal(
        to="reader@example.org", unsubscribe_url=fill("unsubscribe_url"), values=fill)
    signed = signing.Signer("mail", "news.example.org", key.read_bytes()).sign(prepared.content)

    def dns(name, timeout=5):
        return record if name == b"mail._domainkey.news.example.org." else None

    return signed, dns


def _add_header(content: bytes, line: bytes, *, on_top: bool) -> bytes:
    """`line` added in transit: above every header (as relays add theirs), or below the last one."""
    if on_top:
        return line + b"\r\n" + content
    head, _, body = content.partition(b"\r\n\r\n")
    return head + b"\r\n" + line + b"\r\n\r\n" + body


def test_dkim_signs_mime_headers_and_feedback_id(frozen_clock, dkim_key):
    signed, dns = _signed(dkim_key)
    assert dkim.verify(signed, dnsfunc=dns)
    listed = parse(signed)["DKIM-Signature"].replace(" ", "").replace("\t", "").lower()
    names = listed.partition("h=")[2].partition(";")[0].split(":")
    for header in ("content-type", "mime-version", "feedback-id"):
        assert header in names, header
    # Over-signed: named once more than the message has them, so one more cannot be added unseen.
    for header in ("from", "subject", "list-unsubscribe", "list-unsubscribe-post"):
        assert names.count(header) == 2, header


@pytest.mark.parametrize("on_top", [True, False], ids=["prepended", "appended"])
@pytest.mark.parametrize("line", [
    b"Subject: You won a prize, click here",
    b"From: Accidentally Alex <updates@evil.example>",
    b"List-Unsubscribe: <https://evil.example/unsubscribe>",
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    b"Content-Type: text/html",
    b"Feedback-ID: other:mailer",
])
def test_a_header_added_after_signing_breaks_the_signature(frozen_clock, dkim_key, line, on_top):
    signed, dns = _signed(dkim_key)
    tampered = _add_header(signed, line, on_top=on_top)
    assert tampered != signed and parse(tampered).get_all(line.split(b":")[0].decode())
    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_feedback_id_cannot_be_added_to_mail_signed_without_one(frozen_clock, dkim_key):
    signed, dns = _signed(dkim_key, feedback="")
    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(_add_header(signed, b"Feedback-ID: alert-1:mailer", on_top=True), dnsfunc=dns)


@pytest.mark.parametrize("make", ["build", "bulk"])
def test_list_unsubscribe_is_written_as_a_url_not_an_encoded_word(frozen_clock, make):
    """The stdlib RFC 2047-encodes a text header longer than 78 characters; no provider decodes that in
    List-Unsubscribe, so one-click unsubscribe would silently disappear."""
    config = make_config()
    parts, placeholders = digest(config)
    url = f"{BASE}/unsubscribe/eyJzIjo0MDMzLCJ2IjoxfQ.aSBqVw.{'s' * 27}"  # as long as a real manage token
    if make == "build":
        content = emails.build(config, to="reader@example.org", unsubscribe_url=url,
                               rendered=personalise(parts, placeholders, fill)).as_bytes()
    else:
        content = emails.BulkMessage(config, subject=parts.subject, text=parts.text, html=parts.html,
                                     slot=placeholders.pattern).personal(
            to="reader@example.org", unsubscribe_url=url, values=fill).content
    assert len(f"List-Unsubscribe: <{url}>") > 78
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in content


def test_short_tokens_skip_zlib_and_old_compressed_tokens_still_read(app, frozen_clock):
    token = tokens.make("link", [1, 2, 3])
    assert not token.startswith(".") and tokens.read("link", token) == [1, 2, 3]
    # A token as stock itsdangerous writes it (compressed: the payload repeats), e.g. in mail sent earlier.
    stock = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="mailer.link").dumps([7] * 40)
    assert stock.startswith(".") and tokens.read("link", stock) == [7] * 40
    forged = re.sub(r"\.[^.]+$", ".AAAA", token)
    with pytest.raises(InvalidToken):
        tokens.read("link", forged)


def test_queue_writes_bulk_messages_to_the_outbox(app, session, frozen_clock, config):
    from sqlalchemy import select

    from mailer.digests import operations
    from mailer.sends import operations as send_operations
    from mailer.outbox.models import OutboxMessage, OutboxState

    factories.fixed_articles(session)
    for address, name in RECIPIENTS[1:5]:
        factories.subscriber(session, address if "ü" not in address else "leser@bücher.example", name=name)
    send = operations.compose_next(session)
    assert send_operations.queue(session, send) == 4
    session.commit()
    # In the readers' order: the fan-out's INSERT … SELECT leaves the rows' own order to the plan.
    rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.subscriber_id)).all()
    # A send's rows hold ids and state only: the worker builds each message when it sends it.
    assert [r.recipient for r in rows] == ["reader@example.org", "zoe@example.org",
                                           "leser@bücher.example", "smith@example.org"]
    for row in rows:
        assert (row.kind, row.send_id, row.state, row.attempts) == ("digest", send.id, OutboxState.queued, 0)
        assert row.content is None and row.message_id is None and row.dedupe_key is None
        assert row.variant_id is not None
    session.rollback()  # end the read: SQLite's transactions here take the write lock
    envelopes = {env.outbox_id: env for env in factories.deliver(config)}
    assert [envelopes[r.id].rcpt_to for r in rows] == ["reader@example.org", "zoe@example.org",
                                                       "leser@xn--bcher-kva.example", "smith@example.org"]
    for row, (_, name) in zip(rows, RECIPIENTS[1:5]):
        message = parse(envelopes[row.id].content)
        parts = check_message(message, postal_address=config["site"]["postal_address"])
        assert message["To"].addresses[0].display_name == name
        assert str(message["Subject"]) == send.subject
        assert message["Feedback-ID"] == emails.feedback_id("digest", send.id)
        assert "/l/" in parts["html"] and factories.PETITION_URL not in parts["html"]
    # The Message-ID comes from the send and the reader: a retry of the same row repeats it.
    from mailer.sends.delivery import message_id
    from mailer.config import secret_key
    from pathlib import Path
    secret = secret_key(config, Path("var"))
    assert str(parse(envelopes[rows[0].id].content)["Message-ID"]) == message_id(config, secret, send.id,
                                                                                 rows[0].subscriber_id)
    session.expire_all()
    assert {r.state for r in session.scalars(select(OutboxMessage))} == {OutboxState.sent}


@pytest.mark.parametrize("site_name, shown", [
    ("Accidentally Alex", '"Accidentally Alex"'),
    ('Zoë\'s "Blög", Ltd.', "Zoë's Blög, Ltd."),
    ("Zoë " * 30, " ".join(["Zoë"] * 30)),
    ("A site name long enough to need folding: " * 3, '"' + " ".join(("A site name long enough to need folding: " * 3).split()) + '"'),
])
def test_list_id_is_a_phrase_and_an_identifier(frozen_clock, site_name, shown):
    """RFC 2919: `phrase <id>`. Encoded words may not stand inside quotes (RFC 2047 §5), which is what
    the stdlib made of a quoted non-ASCII name; and every line stays within 78 characters."""
    config = make_config(site={"base_url": BASE, "postal_address": POSTAL, "name": site_name},
                         mail={"from_address": "updates@news.example.org"})
    parts, placeholders = digest(config)
    reference, prepared = both(config, parts, placeholders, "reader@example.org", "")
    for content in (reference.as_bytes(), prepared.content):
        head = content.partition(b"\r\n\r\n")[0].decode("ascii")
        raw = re.search(r"^List-Id: (.*?)\r\n(?! )", head, re.S | re.M).group(1)
        assert raw.endswith(" <updates.news.example.org>")
        assert not re.search(r'"[^"]*=\?|=\?[^"]*"', raw), raw  # no encoded word inside quotes
        assert all(len(line) <= 78 for line in head.split("\r\n"))
        assert str(parse(content)["List-Id"]) == f"{shown} <updates.news.example.org>"


@pytest.mark.parametrize("length", range(60, 130, 3))
def test_a_subject_is_folded_between_words_and_reads_back_unchanged(length):
    """The stdlib alone folds a 70-77 character subject right after 'Subject:', and its parser then
    reads a leading space into it."""
    words = "Urgent: Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes in Argun and Grozny today"
    subject = words[:length].rstrip()
    raw = emails._fold("Subject", subject)
    lines = raw.decode("ascii").split("\r\n")[:-1]
    assert lines[0].startswith("Subject: ") and lines[0] != "Subject:"
    assert all(len(line) <= 78 for line in lines)
    parsed = email.message_from_bytes(raw + b"\r\n", policy=email.policy.default)
    assert parsed["Subject"] == subject
