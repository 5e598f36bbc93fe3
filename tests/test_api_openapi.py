"""The blog's whole conversation with the API, driven from the OpenAPI document alone: every route is found
there by its operationId (never a hard-coded URL), and every answer is checked against the schema the
document gives for its status."""

from __future__ import annotations

import re

import jsonschema_rs
import pytest

from tests.api import auth, token

ARTICLE = {
    "guid": "https://accidentallyalex.example/?p=812",
    "canonical_url": "https://accidentallyalex.example/2026/11/chechen-lgbt-purge-resumes",
    "title": "Two Dead And At Least 40 Detained As Chechen LGBT Purge Resumes",
    "body": "<p>Reports from Grozny say police have again rounded up men suspected of being gay.</p>"
            "<p><a href='https://www.change.org/p/russia-intervene-chechnya'>Sign the petition</a></p>",
    "topics": ["chechen-anti-gay-purge"],
    "actions": [{"label": "Sign the petition for Russia to intervene",
                 "url": "https://www.change.org/p/russia-intervene-chechnya"},
                {"label": "Donate to The Russian LGBT Network", "url": "https://lgbtnet.org/en/donate"}],
}


class Api:
    """A client that knows only the OpenAPI document."""

    def __init__(self, client, secret: str):
        self.client = client
        self.headers = auth(secret)
        self.document = client.get("/api/v1/openapi.json").get_json()
        self.operations = {operation["operationId"]: (method.upper(), path, operation)
                           for path, methods in self.document["paths"].items()
                           for method, operation in methods.items()}

    def __call__(self, operation_id: str, *, expect: int, body=None, query=None, **path_params):
        method, path, operation = self.operations[operation_id]
        url = re.sub(r"\{(\w+)\}", lambda m: str(path_params[m.group(1)]), path)
        response = self.client.open(url, method=method, headers=self.headers, json=body, query_string=query)
        assert response.status_code == expect, (operation_id, response.get_data(as_text=True))
        documented = operation["responses"][str(expect)]
        if "content" not in documented:
            assert response.get_data() == b""
            return None
        schema = documented["content"]["application/json"]["schema"]
        validator = jsonschema_rs.Draft202012Validator({**schema, "components": self.document["components"]})
        payload = response.get_json()
        validator.validate(payload)  # raises, naming the path, when the answer breaks its schema
        return payload


@pytest.fixture
def api(client, app):
    return Api(client, token("write", "blog CMS"))


def test_the_document_is_openapi_3_1_and_every_route_needs_the_bearer_token(api):
    assert api.document["openapi"].startswith("3.1")
    assert api.document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert api.document["security"] == [{"bearer": []}]
    for operation_id, (_, _, operation) in api.operations.items():
        assert "401" in operation["responses"], operation_id
        assert operation.get("summary"), f"{operation_id} has no summary"


def test_the_blog_drives_the_api_end_to_end_from_its_document(api, client, runner, deliver):
    topic = api("create_topic", expect=201, body={"slug": "chechen-anti-gay-purge", "title": "Chechen Anti-Gay Purge"})
    assert [t["slug"] for t in api("list_topics", expect=200)["topics"]] == [topic["slug"]]

    article = api("push_article", expect=201, body=ARTICLE)
    assert [a["kind"] for a in article["actions"]] == ["petition", "donate"]
    assert api("push_article", expect=200, body=ARTICLE)["id"] == article["id"]  # pushed again: the same post
    assert api("get_article", expect=200, article_id=article["id"])["topics"] == ["chechen-anti-gay-purge"]

    reader = api("create_subscriber", expect=201, body={"email": "reader@example.org", "topics": [topic["slug"]],
                                                        "consent": True})
    assert reader["state"] == "pending"
    [confirmation] = deliver()
    confirm_path = re.search(r"https://news.example.org(/confirm/\S+)",
                             confirmation.get_body(("plain",)).get_content()).group(1)
    form = client.get(confirm_path).get_data(as_text=True)
    client.post(confirm_path, data={"csrf_token": re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                                                            form).group(1)})
    assert api("get_subscriber", expect=200, subscriber_id=reader["id"])["state"] == "confirmed"
    assert api("update_subscriber", expect=200, subscriber_id=reader["id"], body={"topics": []})["topics"] == []

    schedule = api("create_schedule", expect=201, body={"cron": "0 9 * * MON", "timezone": "Europe/London"})
    assert [s["id"] for s in api("list_schedules", expect=200)["schedules"]] == [schedule["id"]]

    assert runner.invoke(["digests", "compose", "--send-now"]).exit_code == 0
    [send] = api("list_sends", expect=200, query={"limit": 5})["sends"]
    figures = api("send_figures", expect=200, send_id=send["id"])
    assert figures["recipients"] == 1 and figures["delivery"]["queued"] == 1
    assert {link["label"] for link in figures["links"]} >= {a["label"] for a in ARTICLE["actions"]}

    assert api("remove_schedule", expect=204, schedule_id=schedule["id"]) is None
    assert api("unsubscribe_subscriber", expect=200, subscriber_id=reader["id"])["state"] == "unsubscribed"
    error = api("update_subscriber", expect=409, subscriber_id=reader["id"], body={"topics": []})
    assert error["error"]["code"] == "conflict"
    assert api("get_subscriber", expect=404, subscriber_id=reader["id"] + 1)["error"]["code"] == "not_found"
