"""JSON responses for the API: every error is `{"error": code, "detail": ...}` with a 4xx status."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

from harness.client_commands import CommandError

MAX_BODY_BYTES = 64 * 1024


def error_response(status: int, code: str, detail: Any) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def json_body(request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body. An empty body is `{}` when the body is optional."""
    too_large = CommandError(413, "body_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise too_large  # refuse before reading it
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_large from None
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    if not body.strip():
        if required:
            raise CommandError(400, "invalid_json", "a JSON object body is required")
        return {}
    return parse_json_object(body)


def parse_json_object(raw: bytes | str, *, what: str = "body") -> dict[str, Any]:
    """One JSON object from raw bytes or text, else `CommandError(400, "invalid_json")`: shared by the HTTP
    API (request bodies) and the JSON WebSocket API (text frames). The caller enforces the size limit."""
    try:
        data = json.loads(raw)
        # Lone surrogates ("\ud800") are valid JSON but not storable text: refuse them here, once.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise CommandError(400, "invalid_json", f"{what} is nested too deeply") from None
    except UnicodeEncodeError:
        raise CommandError(400, "invalid_json", f"{what} contains invalid Unicode (a lone surrogate)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandError(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(400, "invalid_json", f"{what} must be a JSON object")
    return data
