"""Errors services raise for the caller to translate (HTTP 4xx, WebSocket error frames)."""

from __future__ import annotations


class ServiceError(Exception):
    code = "error"
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    """Unknown, or not the caller's: the two are indistinguishable on purpose."""

    code = "not_found"
    status = 404


class Conflict(ServiceError):
    status = 409

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class TooManyRequests(ServiceError):
    """A per-user limit (live runs, run starts per minute): retry later."""

    status = 429

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class InvalidInput(ServiceError):
    status = 400

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class Forbidden(ServiceError):
    """A member acting beyond their role (a viewer sending, a collaborator renaming). Only ever raised once the
    caller can see the session: to anyone else it does not exist (`NotFound`)."""

    code = "forbidden"
    status = 403
