"""Every model, imported in one place so metadata (and Alembic) sees all tables."""

from mailer.articles.models import ActionKind, ActionLink, Article, ArticleTopic  # noqa: F401
from mailer.editors.models import AuditEvent, Editor, EditorRole, LoginAttempt, RecoveryCode, Setting  # noqa: F401
from mailer.digests.models import Click, DigestSchedule, Link, Send, SendArticle, SendKind, SendTopic  # noqa: F401
from mailer.feeds.models import Feed, FeedTopic  # noqa: F401
from mailer.outbox.models import OutboxMessage, OutboxState  # noqa: F401
from mailer.privacy.models import PrivacyNotice  # noqa: F401
from mailer.topics.models import SubscriberTopic, Topic  # noqa: F401
from subscribers.models import (  # noqa: F401
    ConsentAction, ConsentEvent, Subscriber, SubscriberState, Suppression)
