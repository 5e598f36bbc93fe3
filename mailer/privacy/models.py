"""Published versions of the privacy notice. A new version is a new row; none is ever changed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailer import clock
from mailer.db import Base


class PrivacyNotice(Base):
    __tablename__ = "privacy_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(50), unique=True)  # stored with every consent given under it
    body_source: Mapped[str] = mapped_column(Text)  # Markdown as the admin wrote it
    body_html: Mapped[str] = mapped_column(Text)    # rendered and sanitised like an article
    published_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("editors.id", ondelete="SET NULL"))
