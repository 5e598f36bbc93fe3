"""A hostile reader's attempts: token confusion, header injection, hostile feeds and files, leaky headers.

Each test is an attack that once worked, or one we made sure does not; the docstring says which.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from subscribers import operations as subscriber_operations
from subscribers import tokens
from subscribers.models import Subscriber
from tests import factories
from tests.test_bad_input import page_text


def test_an_erased_subscribers_old_link_never_opens_the_next_subscribers_page(client, session):
    """SQLite hands out the highest id again once its row is deleted: without AUTOINCREMENT, the
    preferences link from an erased person's old mail opened the page (address, data download, erase)
    of whoever signed up next."""
    erased = factories.subscriber(session, "erased@example.org")
    old_link = tokens.manage_token(erased.id, erased.token_version)
    subscriber_operations.erase(session, erased)
    session.commit()
    newcomer = factories.subscriber(session, "newcomer@example.org")
    session.commit()
    newcomer_id = newcomer.id
    session.remove()

    for path in (f"/preferences/{old_link}", f"/preferences/{old_link}/data"):
        response = client.get(path)
        assert response.status_code == 400, path
        assert "newcomer@example.org" not in response.get_data(as_text=True)
    assert "we hold no subscription for it" in page_text(client.get(f"/preferences/{old_link}"))
    assert session.scalar(select(Subscriber.email).where(Subscriber.id == newcomer_id)) == "newcomer@example.org"
