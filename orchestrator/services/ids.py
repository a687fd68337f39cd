from __future__ import annotations

import uuid


def parse_uuid(value) -> uuid.UUID | None:
    """A UUID from user input, or None: a malformed id is as unknown as a missing one."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
