"""The OpenAPI layer: one spectree instance whose decorators validate requests and describe routes.

The document is generated from the decorated views; the blueprint serves it at /api/v1/openapi.json
(OpenAPI 3.1), without a token.
"""

from __future__ import annotations

from spectree import SecurityScheme, SecuritySchemeData, SpecTree

from mailer.api import errors
from mailer.api.schemas import ErrorBody

# spectree leaves out of the document every route under its own doc path: ours is the document alone.
PATH = "api/v1/openapi.json"


def _refuse_invalid(_request, _response, validation_error, _instance, _adapter) -> None:
    # spectree's own answer is a list of pydantic errors; ours names the field in the API's one shape.
    if validation_error is not None:
        raise errors.from_validation(validation_error)


spec = SpecTree(
    "flask",
    title="Mailer JSON API",
    version="1",
    description=("Subscribers, topics, articles, sends and digest schedules of this mailer. Every route needs "
                 "`Authorization: Bearer <token>` (`mailer tokens create`); read tokens may only GET. "
                 "Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."),
    path=PATH,
    mode="strict",  # only the API's own routes, not the site's pages
    page_templates={},  # no Swagger/Redoc pages: they load scripts from a CDN our CSP refuses
    security_schemes=[SecurityScheme(name="bearer", data=SecuritySchemeData(type="http", scheme="bearer"))],
    security={"bearer": []},
    before=_refuse_invalid,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    validation_error_status=400,
    validation_error_model=ErrorBody,
)


def validate(**kwargs):
    """spectree's `validate`, with the view's own name as its operationId (create_subscriber, list_sends…)."""
    def decorate(view):
        return spec.validate(operation_id=view.__name__, **kwargs)(view)

    return decorate
