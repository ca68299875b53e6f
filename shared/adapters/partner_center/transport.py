"""HTTP to Microsoft: tokens, retries, throttling and a per-tenant concurrency limit, in one place.

- Tokens come from MSAL (client credentials) for the partner tenant; the secret is read from the app setting the
  tenant record names, never from storage.
- 429 and 5xx are retried, honouring Retry-After, otherwise with capped exponential backoff and full jitter, within
  a total budget per request; the same MS-RequestId is sent on every retry of one logical request (Partner Center
  uses it for idempotency).
- At most `PC_MAX_CONCURRENCY` calls per partner tenant run at once in this process (a semaphore: the cheap first
  gate), and at most `PC_TENANT_CONCURRENCY` across every instance (`budget.py`: lease rows in Table Storage, taken
  only when a call really starts). A 429 with Retry-After cools the tenant down on every instance. A streamed
  response (an export blob) keeps its slot until it is closed.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Callable

import msal
from msal.exceptions import MsalError
import requests
from azure.core.exceptions import AzureError

from shared.adapters.partner_center.budget import Budget, SlotUnavailable, budget_for
from shared.adapters.settings import PUBLIC_AUTHORITY, Settings, ca_bundle
from shared.core.boundaries import is_secret_setting_name

log = logging.getLogger(__name__)

PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
RETRYABLE = {429, 500, 502, 503, 504}
ENTRA_TRANSIENT = {"temporarily_unavailable", "server_error"}  # OAuth error codes that say: try again


class PartnerCenterError(Exception):
    """Microsoft answered with an error we do not retry (or stopped retrying). `transient` says if later may work."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class NotFound(PartnerCenterError):
    pass


class NoDataAvailable(PartnerCenterError):
    """Microsoft has no data for this request yet (export answered "No data available")."""

    def __init__(self, message: str = "Microsoft reports no data available for this invoice yet.") -> None:
        super().__init__(message, transient=True)


_semaphores: dict[str, threading.BoundedSemaphore] = {}
_semaphores_lock = threading.Lock()


def tenant_semaphore(tenant_id: str, limit: int) -> threading.BoundedSemaphore:
    with _semaphores_lock:
        sem = _semaphores.get(tenant_id)
        if sem is None:
            sem = _semaphores[tenant_id] = threading.BoundedSemaphore(limit)
        return sem


@dataclass
class Credentials:
    tenant_id: str
    client_id: str
    client_secret_setting: str

    def secret(self) -> str:
        """The secret from the named app setting, which must be a PC_SECRET_ one (a record stored before that
        rule is refused the same way). A missing setting is answered like a refused secret, so the answer never
        tells which app settings exist; the log (operators only) says which."""
        name = self.client_secret_setting
        value = os.environ.get(name) if is_secret_setting_name(name) else None
        if not value:
            log.warning("tenant %s: its clientSecretSetting %r is not a PC_SECRET_ app setting that is set",
                        self.tenant_id, name)
            raise PartnerCenterError(SECRET_REFUSED)
        return value


# The one answer for a secret that is missing, not a PC_SECRET_ setting, or refused by Entra (invalid_client).
SECRET_REFUSED = ("Could not sign in to the partner tenant with its clientId and the secret in its "
                  "clientSecretSetting (invalid_client): check both, and that the setting holds the app's current "
                  "secret.")


_apps: dict[tuple[str, str, str], msal.ConfidentialClientApplication] = {}
_apps_lock = threading.Lock()


def _msal_app(creds: Credentials, settings: Settings, session: requests.Session) -> msal.ConfidentialClientApplication:
    """One MSAL app (and token cache) per tenant, client and authority, shared by the process."""
    host = settings.entra_authority_host.rstrip("/")
    key = (host, creds.tenant_id, creds.client_id)
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            default_cloud = host == PUBLIC_AUTHORITY
            app = msal.ConfidentialClientApplication(
                creds.client_id,
                client_credential=creds.secret(),
                authority=f"{host}/{creds.tenant_id}",
                http_client=session,
                instance_discovery=None if default_cloud else False,
                validate_authority=default_cloud,
            )
            _apps[key] = app
        return app


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@dataclass
class Transport:
    """Authenticated, retrying HTTP for one partner tenant."""

    creds: Credentials
    settings: Settings
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.verify = ca_bundle()
        self._semaphore = tenant_semaphore(self.creds.tenant_id, self.settings.pc_max_concurrency)
        self.budget: Budget | None = budget_for(self.settings)

    def _gate(self) -> ExitStack:
        """Enter this process's semaphore, then (only then) claim a slot of the tenant's shared budget."""
        gate = ExitStack()
        gate.enter_context(self._semaphore)
        if self.budget is not None:
            budget = self.budget
            try:
                slot = budget.acquire(self.creds.tenant_id)
            except SlotUnavailable as exc:
                gate.close()
                raise PartnerCenterError(str(exc), transient=True) from exc
            except AzureError as exc:
                gate.close()
                raise PartnerCenterError(f"Could not reach the shared call budget in Table Storage "
                                         f"({type(exc).__name__}); retry later.", transient=True) from exc
            gate.callback(_quietly, budget.release, slot)
        return gate

    def token(self, scope: str) -> str:
        """An access token from MSAL's cache or Entra. Entra throttles and fails too: those are retried."""
        for attempt in range(self.settings.pc_max_retries + 1):
            try:
                app = _msal_app(self.creds, self.settings, self.session)
                result = app.acquire_token_for_client(scopes=[scope])
            except (ValueError, requests.RequestException, MsalError) as exc:  # discovery or token call failed
                problem = f"{type(exc).__name__}"
            else:
                if "access_token" in result:
                    return result["access_token"]
                problem = str(result.get("error"))
                if problem == "invalid_client":  # the same words as a missing secret (see Credentials.secret)
                    detail = str(result.get("error_description") or "").splitlines() or [""]
                    log.warning("Entra refused the client credentials of tenant %s: %.300s", self.creds.tenant_id,
                                detail[0])
                    raise PartnerCenterError(SECRET_REFUSED)
                if problem not in ENTRA_TRANSIENT:
                    # Entra's text names the problem (bad secret, unknown app); it holds no secret.
                    raise PartnerCenterError(
                        f"Could not sign in to the partner tenant: {problem}: "
                        f"{str(result.get('error_description', '')).splitlines()[0][:300]}")
            log.warning("sign-in to Entra failed (%s); retrying (attempt %d)", problem, attempt + 1)
            self.sleep(self.backoff(attempt))
        raise PartnerCenterError("Could not reach Entra to sign in (it kept failing); retry later.", transient=True)

    def backoff(self, attempt: int) -> float:
        cap = min(self.settings.pc_backoff_cap_seconds, self.settings.pc_backoff_base_seconds * (2 ** attempt))
        return random.uniform(0, cap)

    def request(self, method: str, url: str, *, scope: str | None, headers: dict[str, str] | None = None,
                stream: bool = False, **kwargs: Any) -> requests.Response:
        """Send one logical request, retrying what Microsoft asks us to retry. Raises PartnerCenterError."""
        request_id = str(uuid.uuid4())
        deadline = time.monotonic() + self.settings.pc_retry_budget_seconds
        attempt = 0
        while True:
            hdrs = {"Accept": "application/json", "MS-RequestId": request_id,
                    "MS-CorrelationId": self.correlation_id, "client-request-id": request_id}
            if scope:
                hdrs["Authorization"] = f"Bearer {self.token(scope)}"
            hdrs.update(headers or {})
            wait: float | None
            gate = self._gate()
            try:
                response = self.session.request(method, url, headers=hdrs, stream=stream,
                                                timeout=self.settings.pc_timeout_seconds, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                gate.close()
                response, wait, reason = None, None, type(exc).__name__
            except BaseException:
                gate.close()
                raise
            else:
                if response.status_code < 400 or response.status_code not in RETRYABLE:
                    if stream:
                        _release_on_close(response, gate)  # the body is still to come: keep the slot
                    else:
                        gate.close()
                    return response  # a 4xx: the caller decides what it means
                gate.close()
                wait, reason = retry_after_seconds(response), f"HTTP {response.status_code}"
                response.close()
                if response.status_code == 429 and wait and self.budget is not None:
                    _quietly(self.budget.cool_down, self.creds.tenant_id, wait)
            if wait is None:
                wait = self.backoff(attempt)
            attempt += 1
            if attempt > self.settings.pc_max_retries or time.monotonic() + wait > deadline:
                raise PartnerCenterError(
                    f"Microsoft kept answering {reason} for {method} {_path(url)}; gave up after {attempt} "
                    "attempts (retry budget spent).", status=getattr(response, "status_code", None), transient=True)
            log.warning("retrying %s %s after %s in %.1fs (attempt %d)", method, _path(url), reason, wait, attempt)
            self.sleep(wait)


def _release_on_close(response: requests.Response, gate: ExitStack) -> None:
    """Leave the gate when the caller closes the streamed response (`with response:` does), not before."""
    close = response.close

    def close_and_release() -> None:
        try:
            close()
        finally:
            gate.close()

    response.close = close_and_release  # type: ignore[method-assign]


def _quietly(action: Callable[..., Any], *args: Any) -> None:
    """Releasing a slot or spreading a cool-down must not fail the call: the lease expires by itself."""
    try:
        action(*args)
    except AzureError:
        log.warning("shared call budget: %s failed; the lease expires by itself", getattr(action, "__name__", ""),
                    exc_info=True)


def _path(url: str) -> str:
    """The URL without its query: a SAS signature must never reach a log line."""
    return url.split("?", 1)[0]


def error_text(response: requests.Response) -> str:
    """Microsoft's own description of an error, from either the Partner Center or the Graph error body."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):
            return f"{body['error'].get('code', '')}: {body['error'].get('message', '')}".strip(": ")
        if "description" in body:
            return f"{body.get('code', '')}: {body['description']}".strip(": ")
        if "message" in body:
            return str(body["message"])
    return f"HTTP {response.status_code}"
