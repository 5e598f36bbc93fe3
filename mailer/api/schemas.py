"""The JSON the API reads and writes, as pydantic models: they validate each request and, through
spectree, are the OpenAPI 3.1 document (pydantic writes JSON Schema 2020-12, the dialect 3.1 uses)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailer.articles.models import ActionKind
from mailer.articles.operations import web_url
from mailer.errors import ArticleError

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


class Strict(BaseModel):
    """A request body: a field we do not know is an error that names it, never silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _web_url(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return value
    try:
        return web_url(value, what)
    except ArticleError as exc:
        raise ValueError(str(exc)) from None


# ---- errors ------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, for programs: invalid, invalid_json, consent_required, unauthorized, "
                                  "forbidden, not_found, conflict, method_not_allowed, too_large, rate_limited")
    message: str = Field(description="For people: what is wrong and how to fix it")
    field: str | None = Field(None, description="The body or query field at fault (dotted for nested ones)")


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---- subscribers -------------------------------------------------------------------------------

class SubscriberIn(Strict):
    email: str = Field(max_length=254, description="The reader's address; a confirmation mail is sent to it")
    name: str = Field("", max_length=200)
    topics: list[str] = Field(default_factory=list, max_length=100,
                              description="Topic slugs to follow; none: every topic")
    consent: Literal[True] = Field(
        description="true: the reader ticked a consent box that says what they will get, on your form. "
                    "Without it nobody is signed up.")
    ip_address: str = Field("", max_length=45, description="The reader's address as your form saw it (kept as proof)")
    user_agent: str = Field("", max_length=500, description="The reader's browser as your form saw it")


class SubscriberUpdate(Strict):
    topics: list[str] | None = Field(None, max_length=100, description="Topic slugs; [] means every topic")
    is_paused: bool | None = None


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str
    state: Literal["pending", "confirmed", "unsubscribed"]
    is_paused: bool
    topics: list[str]
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


# ---- topics ------------------------------------------------------------------------------------

class TopicIn(Strict):
    slug: str = Field(max_length=80, pattern=SLUG_PATTERN, description="lower-case words joined by hyphens")
    title: str = Field("", max_length=200, description="Shown to readers; from the slug when empty")
    description: str = Field("", max_length=2000)


class TopicOut(BaseModel):
    id: int
    slug: str
    title: str
    description: str
    is_hidden: bool
    created_at: datetime


class TopicList(BaseModel):
    topics: list[TopicOut]


# ---- articles ----------------------------------------------------------------------------------

class ActionIn(Strict):
    label: str = Field(min_length=1, max_length=300, description="The button's words: \"Sign the petition\"")
    url: str = Field(max_length=2000, description="An http(s) address")
    kind: ActionKind | None = Field(None, description="Guessed from the label and URL when left out")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _web_url(value, "the action link's URL")


class ArticleIn(Strict):
    guid: str | None = Field(None, max_length=500, description="Your post's stable id; the canonical URL when left out")
    canonical_url: str | None = Field(None, max_length=2000)
    title: str = Field(min_length=1, max_length=500)
    summary: str = Field("", max_length=5000, description="Plain text; the body's first paragraph when empty")
    body: str = Field("", max_length=500_000, description="Sanitised with nh3 like every imported article")
    body_format: Literal["html", "markdown"] = "html"
    image_url: str | None = Field(None, max_length=2000)
    author: str = Field("", max_length=200)
    published_at: datetime | None = Field(None, description="Now when left out; a future time waits for it")
    topics: list[str] = Field(default_factory=list, max_length=50,
                              description="Slugs, #Hashtags or category names; missing topics are created hidden")
    actions: list[ActionIn] = Field(default_factory=list, max_length=20, description="Calls to act, in order")

    @field_validator("canonical_url")
    @classmethod
    def _canonical_url(cls, value: str | None) -> str | None:
        return _web_url(value, "the article's URL")

    @field_validator("image_url")
    @classmethod
    def _image_url(cls, value: str | None) -> str | None:
        return _web_url(value, "the image URL")


class ActionOut(BaseModel):
    label: str
    url: str
    kind: ActionKind


class ArticleOut(BaseModel):
    id: int
    slug: str
    guid: str
    title: str
    canonical_url: str | None
    summary: str
    image_url: str
    author: str
    published_at: datetime
    topics: list[str]
    actions: list[ActionOut]


# ---- sends -------------------------------------------------------------------------------------

class SendsQuery(Strict):
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000)


class SendOut(BaseModel):
    id: int
    kind: Literal["digest", "alert"]
    subject: str
    slug: str
    archive_url: str
    created_at: datetime
    queued_at: datetime | None
    cancelled_at: datetime | None
    recipients: int


class SendList(BaseModel):
    sends: list[SendOut]


class Delivery(BaseModel):
    queued: int
    sending: int
    sent: int
    failed: int
    cancelled: int


class LinkFigures(BaseModel):
    label: str
    kind: str
    url: str
    clicks: int
    unique_clickers: int


class SendFigures(SendOut):
    delivery: Delivery
    clicks: int
    unique_clickers: int
    action_clickers: int
    opens: int
    links: list[LinkFigures]


# ---- schedules ---------------------------------------------------------------------------------

class ScheduleIn(Strict):
    cron: str = Field(max_length=100, description="minute hour day month weekday, e.g. \"0 9 * * MON\"")
    timezone: str = Field("UTC", max_length=64, description="An IANA name, e.g. Europe/London")


class ScheduleOut(BaseModel):
    id: int
    cron: str
    timezone: str
    next_run_at: datetime
    last_run_at: datetime | None
    is_paused: bool
    created_at: datetime


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]
