"""One base exception; a subclass per noun. Messages are written for the person who can act on them."""


class MailerError(Exception):
    """Base of every error a user can cause and fix. The CLI prints it in one line; the web turns it into a 4xx."""

    status_code = 400


class ConfigError(MailerError):
    """The configuration file or an environment override is wrong."""


class NotFound(MailerError):
    status_code = 404


class InvalidToken(MailerError):
    """A link token was forged, tampered with, or has expired."""

    status_code = 400


class SubscriberError(MailerError):
    """A subscriber's input or state is wrong; `field` names the form field it belongs to, if any."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class DeliveryError(MailerError):
    """A delivery backend could not hand a message over."""


class OutboxError(MailerError):
    """Queued mail cannot be changed that way (retry a message that did not fail, cancel a finished send)."""


class ArticleError(MailerError):
    pass


class FeedError(MailerError):
    pass


class DigestError(MailerError):
    pass


class AlertError(MailerError):
    pass


class TopicError(MailerError):
    pass


class EditorError(MailerError):
    """An editor account or its sign-in settings are wrong."""


class LoginRefused(MailerError):
    """A sign-in was refused; the message is the same whatever was wrong. `throttled`: too many tries."""

    status_code = 401

    def __init__(self, message: str, throttled: bool = False):
        super().__init__(message)
        self.throttled = throttled
        if throttled:
            self.status_code = 429


class PrivacyError(MailerError):
    """A privacy notice cannot be published that way (a version taken or malformed, an empty body)."""


class ApiTokenError(MailerError):
    """An API token cannot be made or changed that way (an unknown scope, already revoked)."""


class WebhookError(MailerError):
    """A webhook cannot be added or changed that way (not an http(s) URL, an unknown event)."""


class BounceError(MailerError):
    """The bounce mailbox cannot be read (no such Maildir, an IMAP server that refuses), or a relay's
    notification is not one we can read."""
