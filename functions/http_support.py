"""HTTP plumbing shared by the API Blueprints: registration from the route table (`handles`), the token and access
check every route goes through (`api`), JSON in and out, RFC 9457 problems, no stack traces, and the loads a file
route's access check needs (`readable_file`), done once and handed on to its use case."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from functions.routes import BY_NAME, CSV, ROUTES, Route
from shared.adapters.audit import client_address, forwarded_chain
from shared.adapters.auth import acting_as
from shared.app import file_requests
from shared.app.context import get_context
from shared.app.downloads import Link, Requester
from shared.core.access import PARTNER_ADMIN_APP_ROLE, REACH_ACTIONS, Access, Action, Caller, Scope
from shared.core.boundaries import MAX_JSON_DEPTH, is_whole_number, json_depth
from shared.core.models import GUID_PATTERN, FileRecord
from shared.core.money import Decimal
from shared.core.problems import PROBLEM_CONTENT_TYPE, Problem, bad_request, from_validation_error, not_found

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # JSON bodies; a larger one is a 413 before it is parsed
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[func.HttpRequest], func.HttpResponse]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(data, default=str), status_code=status, headers=headers,
                             mimetype="application/json")


def problem_response(problem: Problem, instance: str | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(problem.to_dict(instance)), status_code=problem.status,
                             headers=problem.headers or None, mimetype=PROBLEM_CONTENT_TYPE)


# Functions that are deliberately outside `api` (no token): liveness, the web front end, the OpenAPI document.
ANONYMOUS_FUNCTIONS = frozenset(r.name for r in ROUTES if r.action is None)
DEV_OBJECT_ID = "00000000-0000-0000-0000-000000000000"  # the caller when AUTH_DISABLED (development only)


@dataclass(frozen=True)
class RoutePolicy:
    """What a route does (its action) and whether its handler narrows the check to a scope it learns from the
    body, a stored record or list items (`scoped`); unscoped routes are checked here with the partner-wide
    `Scope()` before the handler runs."""

    action: Action
    scoped: bool = False


# The policy of every route with an action, by function name, from the route table: a test checks that every HTTP
# function of the indexed app is here or in ANONYMOUS_FUNCTIONS and was registered by `handles`, so a new route
# cannot skip the policy.
ROUTE_POLICY: dict[str, RoutePolicy] = {r.name: RoutePolicy(r.action, r.scoped) for r in ROUTES if r.action}


class Guard:
    """The caller's access for one request, bound to the route's declared action. Scoped handlers call
    `require`, `allows` or `filter`; a scoped handler that answers 2xx without asking is a bug, answered 500."""

    def __init__(self, ctx: Any, caller: Caller, tenant_id: str | None, action: Action, dev: bool) -> None:
        self.ctx, self.caller, self.tenant_id, self.action, self.dev = ctx, caller, tenant_id, action, dev
        self.checked = False
        self.access: Access | None = self.access_in(tenant_id) if tenant_id else None

    def access_in(self, tenant_id: str) -> Access:
        caller = self.caller
        if self.dev:  # AUTH_DISABLED: a partner admin of whatever tenant is asked about
            caller = Caller(object_id=DEV_OBJECT_ID, tenant_id=tenant_id.lower(),
                            app_roles=frozenset({PARTNER_ADMIN_APP_ROLE}))
        return self.ctx.access.for_tenant(caller, tenant_id)

    def _access(self) -> Access:
        if self.access is None:
            raise RuntimeError("this route has no tenant")
        return self.access

    def require(self, scope: Scope | None = None, *, hidden: Problem | None = None) -> None:
        """403 (or `hidden`, a 404 that says the thing does not exist) unless the action is allowed on scope."""
        decision = self._access().decide(self.action, scope)
        self.checked = True
        if not decision.allowed:
            if hidden is not None and decision.status == 403:
                raise hidden
            decision.enforce()

    def require_lines(self, request: M) -> M:
        """`require` on the lines a request (FileRequest, ChargesScope) asks for, after narrowing it: a reseller's
        customer view is of its own lines of that customer, so it is stamped with the reseller's id when it names
        none. Returns the request the handler must use."""
        # charges are never a reseller's in a customer view: nothing to narrow there
        reseller = self._access().reseller_for(Scope.lines(request)) if self.action in REACH_ACTIONS else None
        if reseller is not None:
            request = request.model_copy(update={"reseller_id": reseller})
        self.require(Scope.lines(request))
        return request

    def allows(self, scope: Scope | None = None) -> bool:
        self.checked = True
        return self._access().allows(self.action, scope)

    def owner_for(self, level: Any, target_id: str, requested: str | None = None) -> str | None:
        """Who owns configuration the caller writes (`Access.owner_for`): a reseller's is always its own."""
        return self._access().owner_for(level, target_id, requested)

    @property
    def acts_as_reseller(self) -> bool:
        return self._access().acts_as_reseller

    @property
    def viewer(self) -> Any:
        """The view whose figures the caller may see in file records (`Access.viewer`)."""
        return self._access().viewer

    def sees_unapproved(self) -> bool:
        """Whether the caller sees file versions nobody approved yet (partners), or approved ones only."""
        return self._access().sees_unapproved

    def own_reseller_ids(self) -> list[str]:
        return self._access().own_reseller_ids

    def allows_action(self, action: Action, scope: Scope | None = None) -> bool:
        """Another action than the route's, e.g. whether a file the caller may not regenerate is one it may see."""
        return self._access().allows(action, scope)

    def filter(self, items: Iterable[Any], scope_of: Callable[[Any], Scope]) -> list[Any]:
        self.checked = True
        return self._access().filter(self.action, items, scope_of)

    def own_standing(self, tenant_ids: Iterable[str]) -> list[Access]:
        """For `/me`: the caller's access in each tenant where it has a role. What the caller may do is itself
        the answer (nothing of anyone else's), so asking counts as the check, even over no tenant at all."""
        self.checked = True
        return [access for access in (self.access_in(t) for t in tenant_ids) if access.roles]

    def filter_tenants(self, items: Iterable[Any], tenant_of: Callable[[Any], str]) -> list[Any]:
        """The items of the tenants where the caller may do the route's action. Asking is the check even over
        no item at all: a new deployment's empty tenant list is a 200, not a route that forgot its check."""
        self.checked = True
        return [item for item in items if self.access_in(tenant_of(item)).allows(self.action, None)]


_guard: ContextVar[Guard | None] = ContextVar("reconciliation_guard", default=None)


def access_for(req: func.HttpRequest) -> tuple[str, Guard]:
    """The route's tenant (validated, lower-case) and the caller's guard for it; set up by `api`."""
    guard = _guard.get()
    if guard is None or guard.tenant_id is None:
        raise RuntimeError("access_for outside an api route with a tenantId")
    return guard.tenant_id, guard


def current_guard() -> Guard:
    guard = _guard.get()
    if guard is None:
        raise RuntimeError("current_guard outside an api route")
    return guard


def _authenticate(ctx: Any, req: func.HttpRequest) -> tuple[Caller, bool]:
    if ctx.settings.auth_disabled:
        return Caller(object_id=DEV_OBJECT_ID, tenant_id=DEV_OBJECT_ID,
                      app_roles=frozenset({PARTNER_ADMIN_APP_ROLE})), True
    return ctx.tokens.validate(req.headers.get("Authorization")), False


def handles(bp: func.Blueprint) -> Callable[[Handler], Any]:
    """Registers a handler on `bp` from its entry in the route table (`functions/routes.py`, keyed by the
    handler's name): its route and method, anonymous (function keys are never used: tokens guard the routes), and
    through `api` unless the route is anonymous."""

    def register(handler: Handler) -> Any:
        route = BY_NAME.get(handler.__name__)
        if route is None:
            raise LookupError(f"{handler.__name__} is not in the route table (functions/routes.py)")
        wrapped = api(route)(handler) if route.action is not None else handler
        wrapped.route = route  # type: ignore[attr-defined]  # a test checks every HTTP function came this way
        return bp.route(route=route.path, methods=[route.method], auth_level=func.AuthLevel.ANONYMOUS)(wrapped)

    return register


def api(route: Route) -> Callable[[Handler], Handler]:
    """Every route with an action goes through here: the bearer token (401), the tenant in the path (400 if not a
    GUID, 404 if the caller has no standing in it, before any body is read), the route's action (403 for unscoped
    routes; scoped handlers narrow it through `access_for`), then the handler as the caller (`acting_as`). Client
    errors become problem+json, anything else a bare 500."""
    action, scoped, name = Action(route.action), route.scoped, route.name

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(req: func.HttpRequest) -> func.HttpResponse:
            path = _path(req.url)
            try:
                ctx = get_context()
                caller, dev = _authenticate(ctx, req)
                tenant_id = route_guid(req, "tenantId") if "tenantId" in req.route_params else None
                guard = Guard(ctx, caller, tenant_id, action, dev)
                if guard.access is not None:
                    guard.access.require_standing()
                if not scoped:
                    guard.require(Scope())
                if route.body is not None and route.body != CSV:  # bounded before any record is read for it
                    bounded_body(req)
                token = _guard.set(guard)
                try:
                    with acting_as(caller):
                        response = handler(req)
                finally:
                    _guard.reset(token)
                if response.status_code < 400 and not guard.checked:
                    log.error("route %s answered without checking its scope: refused", name)
                    raise Problem(500, "Internal error", "Something went wrong on our side.")
                return response
            except Problem as problem:
                return problem_response(problem, path)
            except ValidationError as exc:
                return problem_response(from_validation_error(exc), path)
            except Exception:  # never a stack trace to the caller
                log.exception("unhandled error on %s %s", req.method, path)
                return problem_response(Problem(500, "Internal error", "Something went wrong on our side."), path)

        return wrapper

    return decorate


def loaded_file(req: func.HttpRequest) -> tuple[FileRecord, str]:
    """The route's file and the ETag it was read at, if the caller may act on it (the route's action, on the file's
    own scope). A file the caller may not even read is answered exactly like one that does not exist (404); one it
    may read but not act on is 403. The tenant and the record are read once; the handler hands the record on."""
    tenant_id, guard = access_for(req)
    record, etag = file_requests.get_file(get_context(), tenant_id, route_guid(req, "fileId"))
    scope = Scope.lines(record)
    if not guard.allows_action(Action.FILES_READ, scope):
        raise not_found(f"Reconciliation file {record.id}")
    guard.require(scope)
    return record, etag


def readable_file(req: func.HttpRequest) -> FileRecord:
    return loaded_file(req)[0]


def requester(req: func.HttpRequest) -> Requester:
    """Who asks for a download link, as the audit table records it."""
    return Requester(current_guard().caller, client_address(req.headers), forwarded_chain(req.headers))


def link_response(req: func.HttpRequest, link: Link) -> func.HttpResponse:
    """A 302 to a download link, or with `Accept: application/json` the link as JSON: a page cannot read a
    redirect's target and the storage account sends no CORS headers, so the web front end navigates to it."""
    headers = {"Cache-Control": "no-store", "X-Link-Expires": link.expires.isoformat()}
    if req.headers.get("Accept", "").lower().startswith("application/json"):
        return json_response({"url": link.url, "expiresAt": link.expires.isoformat()}, headers=headers)
    return func.HttpResponse(status_code=302, headers={"Location": link.url, **headers})


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def bounded_body(req: func.HttpRequest) -> bytes:
    """The JSON body, refused before it is parsed when too large (413) or nested too deep (400): Python's parser
    recurses once per level, and a body of nested brackets made it fail with a 500."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise Problem(413, "Request too large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
    if json_depth(body) > MAX_JSON_DEPTH:
        raise bad_request(f"The body nests deeper than {MAX_JSON_DEPTH} levels.", "body")
    return body


def parse_body(req: func.HttpRequest, model: type[M]) -> M:
    """A JSON object body as `model`. Size (413) and nesting depth (400) are checked before the body is parsed:
    Python's parser recurses once per level, and a body of nested brackets made it fail with a 500."""
    body = bounded_body(req)
    try:
        data = json.loads(body or b"null", parse_float=Decimal)  # a number in a body never becomes a float
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The body is not valid JSON.")
    if not isinstance(data, dict):
        raise bad_request("The body must be a JSON object.")
    return model.model_validate(data)


def route_guid(req: func.HttpRequest, name: str) -> str:
    value = req.route_params.get(name, "")
    if not re.fullmatch(GUID_PATTERN, value):
        raise bad_request(f"{name} must be a GUID.", name)
    return value.lower()


def query_choice(req: func.HttpRequest, name: str, allowed: set[str]) -> str | None:
    value = req.params.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise bad_request(f"{name} must be one of: {', '.join(sorted(allowed))}.", name)
    return value


def page_size(req: func.HttpRequest, default: int = 500, maximum: int = 2000) -> int:
    """The `pageSize` of a paged route: a whole number from 1 to `maximum` (Partner Center's own page limit)."""
    raw = req.params.get("pageSize") or str(default)
    if not is_whole_number(raw) or not 1 <= int(raw) <= maximum:
        raise bad_request(f"pageSize must be a whole number from 1 to {maximum}.", "pageSize")
    return int(raw)
