"""Thin handlers of the JSON API: spectree has validated the body; call an operation, commit, answer."""

from __future__ import annotations

from flask import current_app, g
from spectree import Response
from sqlalchemy import select

from mailer import db
from mailer.api import errors
from mailer.api.schemas import (ArticleIn, ArticleOut, Delivery, ErrorBody, LinkFigures, ScheduleIn, ScheduleList,
                                ScheduleOut, SendFigures, SendList, SendOut, SendsQuery, SubscriberIn, SubscriberOut,
                                SubscriberUpdate, TopicIn, TopicList, TopicOut)
from mailer.api.spec import validate
from mailer.articles import operations as article_operations
from mailer.articles.models import Article
from mailer.sends import operations as send_operations
from mailer.sends import queries as send_queries
from mailer.digests import schedules
from mailer.sends.models import Send
from mailer.errors import TopicError
from mailer.links import queries as link_queries
from mailer.topics import operations as topic_operations
from mailer.topics import queries as topic_queries
from mailer.topics.models import Topic
from subscribers import operations as subscriber_operations
from subscribers.models import Subscriber

READ_ERRORS = {"HTTP_401": ErrorBody, "HTTP_429": ErrorBody}
WRITE_ERRORS = {**READ_ERRORS, "HTTP_403": ErrorBody}


# Ids are 32-bit integers in the database: a larger one names nothing (PostgreSQL would refuse to look).
MAX_ID = 2**31 - 1


def _get(model, object_id: int, noun: str):
    row = db.session.get(model, object_id) if object_id <= MAX_ID else None
    if row is None:
        raise errors.ApiError(404, "not_found", f"no {noun} with id {object_id}")
    return row


# ---- subscribers -------------------------------------------------------------------------------

def _subscriber_out(subscriber: Subscriber) -> SubscriberOut:
    return SubscriberOut(id=subscriber.id, email=subscriber.email, name=subscriber.name,
                         state=subscriber.state.value, is_paused=subscriber.is_paused,
                         topics=[t.slug for t in subscriber.topics], created_at=subscriber.created_at,
                         confirmed_at=subscriber.confirmed_at, unsubscribed_at=subscriber.unsubscribed_at)


def _meta(body: SubscriberIn | None = None) -> subscriber_operations.RequestMeta:
    """The consent record's "where from": the API, the token that asked, and the reader as the caller saw them."""
    return subscriber_operations.RequestMeta(source="api", form_id=f"api-token-{g.api_token.id}",
                                             ip_address=body.ip_address if body else "",
                                             user_agent=body.user_agent if body else "")


@validate(json=SubscriberIn, resp=Response(HTTP_201=SubscriberOut, HTTP_200=SubscriberOut, **WRITE_ERRORS),
               tags=["subscribers"])
def create_subscriber(json: SubscriberIn):
    """Sign a reader up, as the signup form does: pending, and a confirmation mail is sent (double opt-in).

    201 for a new address, 200 for a known one (a confirmed reader is not changed; they are told by mail).
    """
    email = subscriber_operations.normalise_email(json.email)
    known = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email)) is not None
    subscriber = db.commit_retrying_once(lambda: subscriber_operations.sign_up(
        db.session, email=email, name=json.name, topic_slugs=json.topics, meta=_meta(json)))
    return _subscriber_out(subscriber), 200 if known else 201


@validate(resp=Response(HTTP_200=SubscriberOut, HTTP_404=ErrorBody, **READ_ERRORS), tags=["subscribers"])
def get_subscriber(subscriber_id: int):
    """A subscriber: state, topics and when they confirmed or left."""
    return _subscriber_out(_get(Subscriber, subscriber_id, "subscriber"))


@validate(json=SubscriberUpdate,
               resp=Response(HTTP_200=SubscriberOut, HTTP_404=ErrorBody, HTTP_409=ErrorBody, **WRITE_ERRORS),
               tags=["subscribers"])
def update_subscriber(subscriber_id: int, json: SubscriberUpdate):
    """Change a subscriber's topics or pause; each change is kept in their consent history. 409 once unsubscribed."""
    subscriber = _get(Subscriber, subscriber_id, "subscriber")
    topics = json.topics if json.topics is not None else [t.slug for t in subscriber.topics]
    is_paused = json.is_paused if json.is_paused is not None else subscriber.is_paused
    subscriber_operations.update_preferences(db.session, subscriber, topic_slugs=topics, is_paused=is_paused,
                                             meta=_meta())
    db.session.commit()
    return _subscriber_out(subscriber)


@validate(resp=Response(HTTP_200=SubscriberOut, HTTP_404=ErrorBody, **WRITE_ERRORS), tags=["subscribers"])
def unsubscribe_subscriber(subscriber_id: int):
    """Unsubscribe at once (the reader asked you): no more bulk mail; repeating it changes nothing."""
    subscriber = _get(Subscriber, subscriber_id, "subscriber")
    subscriber_operations.unsubscribe(db.session, subscriber, _meta())
    db.session.commit()
    return _subscriber_out(subscriber)


# ---- topics ------------------------------------------------------------------------------------

def _topic_out(topic: Topic) -> TopicOut:
    return TopicOut(id=topic.id, slug=topic.slug, title=topic.title, description=topic.description,
                    is_hidden=topic.is_hidden, created_at=topic.created_at)


@validate(resp=Response(HTTP_200=TopicList, **READ_ERRORS), tags=["topics"])
def list_topics():
    """Every topic by slug; hidden ones (not offered on the signup form) say so."""
    return TopicList(topics=[_topic_out(t) for t in topic_queries.all_topics(db.session)])


@validate(json=TopicIn, resp=Response(HTTP_201=TopicOut, HTTP_409=ErrorBody, **WRITE_ERRORS), tags=["topics"])
def create_topic(json: TopicIn):
    """Add a topic readers can follow (shown on the signup form). 409 when the slug is taken."""
    if topic_operations.find_topic(db.session, json.slug) is not None:
        raise errors.ApiError(409, "conflict", f"topic {json.slug} already exists", "slug")
    topic = topic_operations.add_topic(db.session, json.slug, json.title or None, json.description)
    db.session.commit()
    return _topic_out(topic), 201


# ---- articles ----------------------------------------------------------------------------------

def _article_out(article: Article) -> ArticleOut:
    return ArticleOut(id=article.id, slug=article.slug, guid=article.guid, title=article.title,
                      canonical_url=article.canonical_url, summary=article.summary, image_url=article.image_url,
                      author=article.author, published_at=article.published_at,
                      topics=[t.slug for t in article.topics],
                      actions=[{"label": a.label, "url": a.url, "kind": a.kind} for a in article.actions])


def _article_fields(json: ArticleIn) -> dict:
    return dict(canonical_url=json.canonical_url, title=json.title, summary=json.summary, body=json.body,
                body_is_html=json.body_format == "html", image_url=json.image_url or "", author=json.author,
                published_at=json.published_at, topics=json.topics,
                actions=[{"label": a.label, "url": a.url, "kind": a.kind.value if a.kind else ""}
                         for a in json.actions])


def _store(upsert) -> article_operations.Upserted:
    """Store an article and commit; a topic label that makes no slug is the `topics` field's fault."""
    try:
        stored = upsert()
    except TopicError as exc:
        raise errors.ApiError(400, "invalid", f"topics: {exc}", "topics") from None
    db.session.commit()
    return stored


@validate(json=ArticleIn, resp=Response(HTTP_201=ArticleOut, HTTP_200=ArticleOut, **WRITE_ERRORS),
               tags=["articles"])
def push_article(json: ArticleIn):
    """Store a post the moment the blog publishes it, with its calls to act; pushing it again updates it.

    The post is found again by `guid` (or `canonical_url`): 201 when new, 200 when it was stored before.
    The body is sanitised with nh3 as every imported article is; the next digest carries it.
    """
    if not (json.guid or json.canonical_url):
        raise errors.ApiError(400, "invalid", "canonical_url: a post needs a canonical_url or a guid, so that "
                                              "pushing it again updates it instead of adding it twice", "canonical_url")
    stored = _store(lambda: article_operations.upsert_article(db.session, guid=json.guid, **_article_fields(json)))
    return _article_out(stored.article), 201 if stored.is_new else 200


@validate(resp=Response(HTTP_200=ArticleOut, HTTP_404=ErrorBody, **READ_ERRORS), tags=["articles"])
def get_article(article_id: int):
    """A stored article with its topics and action links."""
    return _article_out(_get(Article, article_id, "article"))


@validate(json=ArticleIn, resp=Response(HTTP_200=ArticleOut, HTTP_404=ErrorBody, **WRITE_ERRORS),
               tags=["articles"])
def update_article(article_id: int, json: ArticleIn):
    """Replace a stored article's content and action links (its GUID and slug stay)."""
    article = _get(Article, article_id, "article")
    if json.guid is not None and json.guid != article.guid:
        raise errors.ApiError(400, "invalid", "guid: an article's GUID cannot change; leave it out", "guid")
    stored = _store(lambda: article_operations.edit(db.session, article, **_article_fields(json)))
    return _article_out(stored.article)


# ---- sends -------------------------------------------------------------------------------------

def _send_out(send: Send, model=SendOut, **extra):
    config = current_app.config["MAILER"]
    return model(id=send.id, kind=send.kind.value, subject=send.subject, slug=send.slug,
                 archive_url=send_operations.archive_url(config, send), created_at=send.created_at,
                 queued_at=send.queued_at, cancelled_at=send.cancelled_at, recipients=send.recipients_count,
                 **extra)


@validate(query=SendsQuery, resp=Response(HTTP_200=SendList, **READ_ERRORS), tags=["sends"])
def list_sends(query: SendsQuery):
    """Digests and alerts, newest first, `limit` at a time."""
    return SendList(sends=[_send_out(s) for s in send_queries.sends_page(db.session, query.limit, query.offset)])


@validate(resp=Response(HTTP_200=SendFigures, HTTP_404=ErrorBody, **READ_ERRORS), tags=["sends"])
def send_figures(send_id: int):
    """A send's delivery and engagement figures: messages by state, clicks, action clickers, per link."""
    send = _get(Send, send_id, "send")
    session = db.session
    counts = send_queries.delivery_counts(session, send.id)
    opens, _ = link_queries.opens(session, send.id)
    return _send_out(
        send, SendFigures,
        delivery=Delivery(**{state: counts.get(state, 0) for state in Delivery.model_fields}),
        clicks=link_queries.clicks_for_send(session, send.id),
        unique_clickers=link_queries.unique_clickers(session, send.id),
        action_clickers=link_queries.action_clickers(session, send.id),
        opens=opens,
        links=[LinkFigures(label=link.label, kind=link.kind, url=link.url, clicks=link.clicks,
                           unique_clickers=link.unique_clickers)
               for link in link_queries.clicks_per_link(session, send.id)])


# ---- schedules ---------------------------------------------------------------------------------

def _schedule_out(schedule) -> ScheduleOut:
    return ScheduleOut(id=schedule.id, cron=schedule.cron, timezone=schedule.timezone,
                       next_run_at=schedule.next_run_at, last_run_at=schedule.last_run_at,
                       is_paused=schedule.is_paused, created_at=schedule.created_at)


@validate(resp=Response(HTTP_200=ScheduleList, **READ_ERRORS), tags=["schedules"])
def list_schedules():
    """The recurring digests, each with its next slot (UTC)."""
    return ScheduleList(schedules=[_schedule_out(s) for s in schedules.all_schedules(db.session)])


@validate(json=ScheduleIn, resp=Response(HTTP_201=ScheduleOut, **WRITE_ERRORS), tags=["schedules"])
def create_schedule(json: ScheduleIn):
    """Add a recurring digest: a crontab line read in a time zone (weekday 1 is Monday, as in cron)."""
    schedule = schedules.add(db.session, json.cron, json.timezone)
    db.session.commit()
    return _schedule_out(schedule), 201


@validate(resp=Response("HTTP_204", HTTP_404=ErrorBody, **WRITE_ERRORS), tags=["schedules"])
def remove_schedule(schedule_id: int):
    """Remove a schedule; digests it sent stay in the archive."""
    if schedule_id > MAX_ID:
        raise errors.ApiError(404, "not_found", f"no schedule with id {schedule_id}")
    schedules.remove(db.session, schedule_id)
    db.session.commit()
    return "", 204
