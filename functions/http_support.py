"""HTTP plumbing shared by the API Blueprints: JSON in and out, RFC 9457 problems, no stack traces."""

from __future__ import annotations

import functools
import json
import logging
from decimal import Decimal
from typing import Any, Callable, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from shared.models import GUID_PATTERN
from shared.problems import PROBLEM_CONTENT_TYPE, Problem, bad_request, from_validation_error

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
M = TypeVar("M", bound=BaseModel)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(data, default=str), status_code=status, headers=headers,
                             mimetype="application/json")


def problem_response(problem: Problem, instance: str | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(problem.to_dict(instance)), status_code=problem.status,
                             headers=problem.headers or None, mimetype=PROBLEM_CONTENT_TYPE)


def api(handler: Callable[[func.HttpRequest], func.HttpResponse]) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Every route goes through here: client errors become problem+json, anything else a bare 500."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        path = _path(req.url)
        try:
            return handler(req)
        except Problem as problem:
            return problem_response(problem, path)
        except ValidationError as exc:
            return problem_response(from_validation_error(exc), path)
        except Exception:  # never a stack trace to the caller
            log.exception("unhandled error on %s %s", req.method, path)
            return problem_response(Problem(500, "Internal error", "Something went wrong on our side."), path)

    return wrapper


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def parse_body(req: func.HttpRequest, model: type[M]) -> M:
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise Problem(413, "Request too large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        data = json.loads(body or b"null", parse_float=Decimal)  # a number in a body never becomes a float
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The body is not valid JSON.")
    if not isinstance(data, dict):
        raise bad_request("The body must be a JSON object.")
    return model.model_validate(data)


def route_guid(req: func.HttpRequest, name: str) -> str:
    import re

    value = req.route_params.get(name, "")
    if not re.match(GUID_PATTERN, value):
        raise bad_request(f"{name} must be a GUID.", name)
    return value.lower()


def query_choice(req: func.HttpRequest, name: str, allowed: set[str]) -> str | None:
    value = req.params.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise bad_request(f"{name} must be one of: {', '.join(sorted(allowed))}.", name)
    return value
