"""Option values shared by several commands."""

from __future__ import annotations

from datetime import UTC, datetime

from approvals.errors import UserError


def iso_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 option value as naive UTC (None when not given).

    Raises:
        UserError: naming ``option`` when ``text`` is not an ISO 8601 time.
    """
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option}: '{text}' is not an ISO 8601 time") from None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
