"""Bearer tokens for the JSON API: created by admins, stored hashed, revocable."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mailer import clock
from mailer.db import Base


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")  # what it is for, e.g. "blog CMS"
    scope: Mapped[str] = mapped_column(String(10))  # read | write
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the secret
    prefix: Mapped[str] = mapped_column(String(16), default="")  # the first characters, to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} {self.scope}>"
