"""Least privilege per link: what a forwarded mail, an old mail or a stolen inbox link can and cannot do.

Each test tries it as a forwardee would: with a link from a mail and no cookie of the reader's.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailer import tokens as signed
from subscribers import tokens
from subscribers.models import ConsentAction, ConsentEvent, InboxProof, Subscriber, SubscriberState
from tests.contract import check_message
from tests.test_bad_input import confirmed, pending, topics  # noqa: F401 (fixtures)
from tests.test_bad_input import csrf_token, page_text, signup_form, snapshot

ADDRESS = "reader@example.org"
MASKED = "r\u2022\u2022\u2022@example.org"


def _links(subscriber) -> tuple[str, str]:
    """(preferences path, unsubscribe path) as a mail to `subscriber` carries them."""
    return (f"/preferences/{tokens.preferences_token(subscriber.id, subscriber.token_version)}",
            f"/unsubscribe/{tokens.unsubscribe_token(subscriber.id, subscriber.token_version)}")


def _state(session, subscriber_id):
    session.remove()
    return session.get(Subscriber, subscriber_id)


def test_a_mails_two_links_carry_different_powers(app, client, session, deliver, topics):
    """The footer's and List-Unsubscribe's link is an unsubscribe token; "Manage preferences" is another."""
    client.post("/subscribe", data=signup_form(client))
    [mail] = deliver()
    parts = check_message(mail, postal_address=app.config["MAILER"]["site"]["postal_address"])
    unsubscribe = parts["unsubscribe_url"].rsplit("/", 1)[1]
    preferences = parts["preferences_url"].rsplit("/", 1)[1]
    subscriber = session.scalar(select(Subscriber))
    assert tokens.read_unsubscribe(unsubscribe) == (subscriber.id, None)
    assert tokens.read_preferences(preferences) == (subscriber.id, subscriber.token_version)
    with pytest.raises(Exception, match="can unsubscribe and do nothing else"):
        tokens.read_preferences(unsubscribe)


@pytest.mark.parametrize("path", ["/preferences/{}", "/preferences/{}/data", "/preferences/{}/erase"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_forwarded_unsubscribe_link_opens_no_preferences(client, session, confirmed, path, method):
    """Found by trying: the List-Unsubscribe token once opened /preferences, /data and /erase."""
    token = tokens.unsubscribe_token(confirmed.id, confirmed.token_version)
    before = snapshot(session)
    data = {"csrf_token": csrf_token(client), "action": "save", "is_paused": "y"} if method == "POST" else None
    response = client.open(path.format(token), method=method, data=data)
    assert response.status_code == 400
    assert "it can unsubscribe and do nothing else" in page_text(response)
    assert ADDRESS not in page_text(response) and MASKED not in page_text(response)
    assert snapshot(session) == before
    assert not _state(session, confirmed.id).is_paused


def test_an_old_mails_manage_link_now_only_unsubscribes(client, session, confirmed):
    """Mails sent before per-link tokens carried one "manage" token in both links: it was the key to
    everything. It still unsubscribes (the reader's old mails keep their one-click), nothing more."""
    legacy = signed.make(tokens.LEGACY_MANAGE, {"s": confirmed.id, "v": confirmed.token_version})
    refused = client.get(f"/preferences/{legacy}")
    assert refused.status_code == 400 and "it can unsubscribe and do nothing else" in page_text(refused)
    assert client.get(f"/preferences/{legacy}/data").status_code == 400
    done = client.post(f"/unsubscribe/{legacy}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert _state(session, confirmed.id).state == SubscriberState.unsubscribed


def test_pages_reached_by_a_link_show_the_address_masked(client, session, confirmed):
    preferences, unsubscribe = _links(confirmed)
    for path in (preferences, unsubscribe, f"{preferences}/data", f"{preferences}/erase"):
        text = page_text(client.get(path))
        assert MASKED in text and ADDRESS not in text, path


def test_confirm_page_masks_the_address_and_a_forwarded_confirmation_opens_no_preferences(
        client, session, pending):
    path = f"/confirm/{tokens.confirm_token(pending.id, ADDRESS, pending.token_version)}"
    page = client.get(path)
    assert MASKED in page_text(page) and ADDRESS not in page_text(page)
    first = client.post(path, data={"csrf_token": csrf_token(client, path)})
    assert "/preferences/" in first.get_data(as_text=True)  # the one moment the owner proved the inbox
    # Later, the same link (a forwarded or re-opened confirmation mail) hands out no preferences link.
    for later in (client.get(path), client.post(path, data={"csrf_token": csrf_token(client, "/admin/")})):
        assert later.status_code == 200 and "/preferences/" not in later.get_data(as_text=True)


# ---- the inbox link ------------------------------------------------------------------------------

def _ask(client, preferences: str, purpose: str):
    path = f"{preferences}/{purpose}"
    return client.post(path, data={"csrf_token": csrf_token(client, path)})


def _inbox_link(deliver) -> str:
    text = deliver()[-1].get_body(("plain",)).get_content()
    return re.search(r"https://news.example.org(/inbox/\S+)", text).group(1)


@pytest.mark.parametrize("purpose", ["data", "erase"])
def test_a_preferences_link_alone_cannot_read_or_erase(client, session, deliver, confirmed, purpose):
    """A forwarded digest's "Manage preferences" link once downloaded IPs, subjects and clicks, and erased."""
    preferences, _ = _links(confirmed)
    before = snapshot(session)
    response = _ask(client, preferences, purpose)
    assert response.status_code == 200 and "We sent a link to " + MASKED in page_text(response)
    assert response.mimetype == "text/html" and '"consent_history"' not in response.get_data(as_text=True)
    assert _state(session, confirmed.id) is not None
    [proof_mail] = [m for m in deliver() if "/inbox/" in m.get_body(("plain",)).get_content()]
    assert proof_mail["To"].addresses[0].addr_spec == ADDRESS  # only the inbox gets the key
    parts = check_message(proof_mail, postal_address="Accidentally Alex, 1 Example Street, London")
    assert "works once, within an hour" in parts["text"] and "/inbox/" in parts["html"]
    after = snapshot(session)
    assert after["Subscriber"] == before["Subscriber"] and after["ConsentEvent"] == before["ConsentEvent"]


@pytest.mark.parametrize("purpose", ["data", "erase"])
def test_an_expired_inbox_link_is_refused(frozen_clock, client, session, deliver, confirmed, purpose):
    preferences, _ = _links(confirmed)
    _ask(client, preferences, purpose)
    link = _inbox_link(deliver)
    frozen_clock.advance(timedelta(minutes=61))
    before = snapshot(session)
    for method in ("GET", "POST"):
        response = client.open(link, method=method, data={"csrf_token": csrf_token(client)})
        assert response.status_code == 400 and "expired or was already used" in page_text(response)
        assert ADDRESS not in response.get_data(as_text=True)
    assert snapshot(session) == before and _state(session, confirmed.id) is not None


def test_an_inbox_link_within_its_hour_works(frozen_clock, client, session, deliver, confirmed):
    preferences, _ = _links(confirmed)
    _ask(client, preferences, "data")
    link = _inbox_link(deliver)
    frozen_clock.advance(timedelta(minutes=59))
    response = client.post(link, data={"csrf_token": csrf_token(client, link)})
    assert response.status_code == 200 and response.get_json()["email"] == ADDRESS


def test_an_inbox_link_works_once(client, session, deliver, confirmed):
    preferences, _ = _links(confirmed)
    _ask(client, preferences, "erase")
    link = _inbox_link(deliver)
    # Its hour is not over, but it was used: a copy (a forwarded mail, a browser history) does nothing.
    _ask(client, preferences, "data")
    data_link = _inbox_link(deliver)
    assert client.post(data_link, data={"csrf_token": csrf_token(client, data_link)}).status_code == 200
    again = client.post(data_link, data={"csrf_token": csrf_token(client)})
    assert again.status_code == 400 and "already used" in page_text(again)
    assert client.get(data_link).status_code == 400
    # The erase link is separate and still unspent.
    assert client.get(link).status_code == 200


@pytest.mark.parametrize("nonce", ["forged", "A" * 43, "../../etc/passwd", "%00", "x" * 5000])
def test_a_forged_inbox_link_is_refused(client, session, deliver, confirmed, nonce):
    preferences, _ = _links(confirmed)
    _ask(client, preferences, "erase")
    deliver()
    before = snapshot(session)
    for method in ("GET", "POST"):
        response = client.open(f"/inbox/{nonce}", method=method, data={"csrf_token": csrf_token(client)})
        assert response.status_code in (400, 404) and ADDRESS not in response.get_data(as_text=True)
    assert snapshot(session) == before and _state(session, confirmed.id) is not None


def test_an_inbox_link_is_spent_by_post_with_the_form_token_only(client, session, deliver, confirmed):
    """A GET (a link scanner) or a cross-site POST spends nothing."""
    preferences, _ = _links(confirmed)
    _ask(client, preferences, "erase")
    link = _inbox_link(deliver)
    client.get(link)
    assert client.post(link, data={}).status_code == 400
    assert _state(session, confirmed.id) is not None
    assert session.scalar(select(InboxProof.used_at)) is None


def test_inbox_links_are_capped_per_hour(client, session, deliver, confirmed):
    """A forwarded preferences link must not become a way to flood the reader's inbox."""
    preferences, _ = _links(confirmed)
    assert [_ask(client, preferences, "data").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert session.scalar(select(func.count()).select_from(InboxProof)) == 3


# ---- token versions ------------------------------------------------------------------------------

def test_sign_out_all_links_in_old_mails(client, session, deliver, confirmed):
    preferences, unsubscribe = _links(confirmed)
    _ask(client, preferences, "erase")
    pending_inbox_link = _inbox_link(deliver)
    response = client.post(preferences, data={"csrf_token": csrf_token(client, preferences), "action": "revoke"})
    assert response.status_code == 200 and "We emailed a new link to " + MASKED in page_text(response)
    assert _state(session, confirmed.id).token_version == confirmed.token_version + 1

    # The old preferences link (this page's own too) gets a clear page; so does an unspent inbox link.
    old = client.get(preferences)
    assert old.status_code == 400 and "no longer valid" in page_text(old)
    assert client.get(pending_inbox_link).status_code == 400
    # The new link went to the inbox, and works.
    new_links = deliver()[-1]
    assert new_links["Subject"] == "Your new preferences link for Accidentally Alex"
    text = check_message(new_links, postal_address="Accidentally Alex, 1 Example Street, London")["text"]
    fresh = re.search(r"https://news.example.org(/preferences/\S+)", text).group(1)
    assert fresh != preferences and client.get(fresh).status_code == 200
    # An old unsubscribe link still unsubscribes (RFC 8058), in one POST with no cookie.
    done = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert _state(session, confirmed.id).state == SubscriberState.unsubscribed


def test_an_old_preferences_link_cannot_unsubscribe_either(client, session, confirmed):
    preferences, _ = _links(confirmed)
    subscriber = session.get(Subscriber, confirmed.id)
    subscriber.token_version += 1
    session.commit()
    before = snapshot(session)
    response = client.post("/unsubscribe/" + preferences.rsplit("/", 1)[1], data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400 and "no longer valid" in page_text(response)
    assert snapshot(session) == before


def test_subscribing_again_retires_the_old_subscriptions_links(client, session, deliver, confirmed):
    preferences, unsubscribe = _links(confirmed)
    old_confirm = f"/confirm/{tokens.confirm_token(confirmed.id, ADDRESS, confirmed.token_version)}"
    client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert client.get(preferences).status_code == 200  # unsubscribing alone changes no version
    client.post("/subscribe", data=signup_form(client))
    assert _state(session, confirmed.id).token_version == confirmed.token_version + 1
    for path in (preferences, old_confirm):
        response = client.get(path)
        assert response.status_code == 400 and "no longer valid" in page_text(response), path
    # The new confirmation mail's link works.
    text = deliver()[-1].get_body(("plain",)).get_content()
    confirm = re.search(r"https://news.example.org(/confirm/\S+)", text).group(1)
    client.post(confirm, data={"csrf_token": csrf_token(client, confirm)})
    assert _state(session, confirmed.id).state == SubscriberState.confirmed
    # The old subscription's unsubscribe link still unsubscribes: one click from any mail.
    assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert _state(session, confirmed.id).state == SubscriberState.unsubscribed


def test_one_click_for_an_erased_reader_answers_200(client, session, confirmed):
    """The mail provider's POST needs no error: there is nothing left to unsubscribe."""
    _, unsubscribe = _links(confirmed)
    session.delete(session.get(Subscriber, confirmed.id))
    session.commit()
    assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    page = client.get(unsubscribe)
    assert page.status_code == 400 and "we hold no subscription" in page_text(page)


def test_a_preferences_link_can_unsubscribe_and_it_is_the_readers_own_act(client, session, confirmed):
    preferences, _ = _links(confirmed)
    client.post(preferences, data={"csrf_token": csrf_token(client, preferences), "action": "unsubscribe"})
    assert _state(session, confirmed.id).state == SubscriberState.unsubscribed
    assert session.scalar(select(ConsentEvent.action).order_by(ConsentEvent.id.desc())) == ConsentAction.withdrawn


def test_an_inbox_link_raced_from_many_browsers_works_once(app, client, session, deliver, confirmed):
    """Eight POSTs of one link at the same moment: one download, seven refusals, no error."""
    from concurrent.futures import ThreadPoolExecutor
    preferences, _ = _links(confirmed)
    _ask(client, preferences, "data")
    link = _inbox_link(deliver)
    browsers = [app.test_client() for _ in range(8)]
    forms = [{"csrf_token": csrf_token(browser, link)} for browser in browsers]
    session.remove()
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda pair: pair[0].post(link, data=pair[1]).status_code, zip(browsers, forms)))
    assert statuses == [200] + [400] * 7
