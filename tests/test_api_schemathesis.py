"""Schemathesis against every route of the JSON API, from its own OpenAPI document: generated requests,
valid (positive) and invalid (negative), must never get a 500, every answer must be one the document
promises (status, content type, body schema), invalid data must be refused, and so must a request
without the token.

Each operation is drawn with `operation.as_strategy()` under Hypothesis: schemathesis's pytest loader
(`from_fixture`) reads a pytest internal that pytest 9.2 no longer has.
"""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests import factories
from tests.api import auth, token

EXAMPLES = 15
# "Schema-valid data is accepted" is left out: some rules are the domain's, not the schema's (an address
# email-validator accepts, a topic that exists, a cron line that fires, a GUID or a canonical URL), and
# their refusals are 400s naming the field, which test_api.py checks one by one.
EXCLUDED = [positive_data_acceptance]


@pytest.fixture
def database_url(tmp_path, sqlite_template):
    # SQLite only: the generated requests are many; test_api.py runs the same routes on PostgreSQL too.
    path = tmp_path / "mailer.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def api_schema(app, session):
    # A topic and a subscriber for generated requests to find, beside the ids that name nothing.
    factories.subscriber(session, "reader@example.org", topics=["ukraine"])
    session.commit()
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


OPERATIONS = ["create_subscriber", "get_subscriber", "update_subscriber", "unsubscribe_subscriber", "list_topics",
              "create_topic", "push_article", "get_article", "update_article", "list_sends", "send_figures",
              "list_schedules", "create_schedule", "remove_schedule"]


def test_the_document_lists_every_route(api_schema):
    found = sorted(result.ok().definition.raw["operationId"] for result in api_schema.get_all_operations())
    assert found == sorted(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_every_route_keeps_its_documented_promises(api_schema, app, operation_id, mode):
    [operation] = [result.ok() for result in api_schema.get_all_operations()
                   if result.ok().definition.raw["operationId"] == operation_id]
    headers = auth(token("write", "schemathesis"))

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.filter_too_much])
    def check(case):
        case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

    check()
