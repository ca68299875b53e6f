"""RFC 9457 problem details: the one shape every client error takes.

Domain code raises `Problem`; the HTTP adapter turns it into `application/problem+json`. Nothing here knows
about azure.functions.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """A failure the caller can act on (4xx), or a dependency failure we describe without internals (5xx)."""

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 errors: list[dict[str, Any]] | None = None, type_: str = "about:blank",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.type = type_
        self.headers = headers or {}

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return body


def bad_request(detail: str, field: str | None = None) -> Problem:
    errors = [{"field": field, "message": detail}] if field else None
    return Problem(400, "Invalid request", detail, errors=errors)


def not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"{what} was not found.")


def conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail)


def from_validation_error(exc: ValidationError, prefix: str = "") -> Problem:
    """Name every offending field, in the JSON path form a client can map back to its request."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in err["loc"] if p != "__root__")
        field = f"{prefix}{path}" if prefix else path
        errors.append({"field": field or None, "message": err["msg"]})
    first = errors[0] if errors else {"field": None, "message": "invalid"}
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return Problem(400, "Invalid request", detail, errors=errors)
