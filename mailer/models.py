"""Every model, imported in one place so metadata (and Alembic) sees all tables."""

from mailer.api.models import ApiToken  # noqa: F401
from mailer.articles.models import ActionKind, ActionLink, Article, ArticleTopic  # noqa: F401
from mailer.editors.models import (  # noqa: F401
    AuditEvent, Editor, EditorRole, ImportJob, LoginAttempt, RecoveryCode, Setting)
from mailer.bounces.models import BounceEvent  # noqa: F401
from mailer.digests.models import DigestSchedule  # noqa: F401
from mailer.feeds.models import Feed, FeedTopic  # noqa: F401
from mailer.leases import Lease  # noqa: F401
from mailer.links.models import Click, Link  # noqa: F401
from mailer.outbox.models import OutboxMessage, OutboxState  # noqa: F401
from mailer.privacy.models import PrivacyNotice  # noqa: F401
from mailer.sends.models import Send, SendArticle, SendKind, SendTopic, SendVariant  # noqa: F401
from mailer.topics.models import SubscriberTopic, Topic  # noqa: F401
from mailer.webhooks.models import Webhook, WebhookDelivery  # noqa: F401
from subscribers.models import (  # noqa: F401
    ConsentAction, ConsentEvent, InboxProof, RateHit, Subscriber, SubscriberState, Suppression)
