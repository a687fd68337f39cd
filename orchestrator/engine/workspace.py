from __future__ import annotations

from pathlib import Path

from django.conf import settings


def session_workspace(session_id) -> Path:
    """The directory a session's tools (shell, read_file, write_file) work in."""
    return Path(settings.HARNESS_WORKSPACE_ROOT) / str(session_id)
