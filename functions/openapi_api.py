"""`GET /api/openapi.json`: the API described from its route table (`functions/routes.py`) and its pydantic
models (`model_json_schema`), served without a token (it holds no data). A test checks that the document and the
app's HTTP functions agree, route for route."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import azure.functions as func
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from functions.http_support import handles
from functions.routes import CSV, HTML, OBJECT, PATH_PARAMS, ROUTES, Route

bp = func.Blueprint()


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], str]] = []
    for route in ROUTES:
        for model, mode in ((route.body, "validation"), (route.response, "serialization")):
            if isinstance(model, type) and (model, mode) not in models:
                models.append((model, mode))
    keys, defs = models_json_schema(models, by_alias=True,  # type: ignore[arg-type]
                                    ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = _operation(route, keys)
    schemas = dict(defs.get("$defs", {}))
    schemas["Problem"] = {"type": "object", "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"}, "errors": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "CSP reconciliation files", "version": "1.0.0",
                 "description": "Entra ID bearer tokens (audience: the API app registration) on every route but "
                                "/health and /openapi.json. Roles: partnerAdmin, partnerReader, reseller, customer."},
        "servers": [{"url": "/api"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
                       "schemas": schemas},
        "paths": paths,
    }


PROBLEM = {"description": "RFC 9457 problem", "content": {"application/problem+json": {"schema": {
    "$ref": "#/components/schemas/Problem"}}}}
LINK = {"description": "With Accept: application/json, the link as JSON", "content": {"application/json": {
    "schema": {"type": "object", "properties": {"url": {"type": "string"}, "expiresAt": {"type": "string"}}}}}}
PENDING = {"description": "Not ready yet (an invoice's lines are being ingested): poll Location after Retry-After",
           "content": {"application/json": {"schema": {"type": "object", "properties": {
               "status": {"type": "string"}, "rows": {"type": "integer"}, "retryAfter": {"type": "integer"},
               "lastError": {"type": "string"}}}}}}


def _operation(route: Route, keys: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.name, "summary": route.summary, "parameters": [], "responses": {}}
    for param in route.path_params:
        op["parameters"].append({"name": param, "in": "path", "required": True, "schema": PATH_PARAMS[param]})
    for param, schema in route.query.items():
        op["parameters"].append({"name": param, "in": "query", "required": False, "schema": schema})
    if route.body == CSV:
        op["requestBody"] = {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    elif route.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": keys[(route.body, "validation")]}}}
    ok = str(route.status)
    if route.response is None:
        op["responses"][ok] = {"description": "No content" if route.status == 204 else "Redirect to the link"}
        if route.status == 302:
            op["responses"]["200"] = LINK
    elif route.response == HTML:
        op["responses"][ok] = {"description": "The page or an asset", "content": {"text/html": {
            "schema": {"type": "string"}}}}
    else:
        schema = {"type": "object"} if route.response == OBJECT else keys[(route.response, "serialization")]
        if route.many:
            schema = {"type": "object", "properties": {"items": {"type": "array", "items": schema}}}
        op["responses"][ok] = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    if route.pending:  # the data is being fetched (an invoice's lines ingested): poll Location after Retry-After
        op["responses"]["202"] = PENDING
    if route.action is None:
        op["security"] = []
    else:
        for status in ("400", "401", "403", "404", "409") + (("429",) if route.quota else ()):
            op["responses"][status] = PROBLEM
    return op


@handles(bp)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document()), status_code=200, mimetype="application/json",
                             headers={"Cache-Control": "public, max-age=300"})
