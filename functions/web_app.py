"""HTTP Blueprint for the web front end (web/, built by Vite into web/dist): its static assets and its public
sign-in configuration, served by the function app itself so one deployment carries API and page.

Both are anonymous, like health: the assets are the same for everyone and hold no data, and the configuration
holds public values only (client id, authority, scope). All data comes from the API with the user's token.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from functions.http_support import handles, problem_response
from shared.core.problems import Problem
from shared.adapters.settings import get_settings

bp = func.Blueprint()

DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
BASE = "/api/app/"  # Vite's `base` (web/vite.config.ts)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json",
    ".map": "application/json", ".txt": "text/plain; charset=utf-8", ".woff2": "font/woff2",
}
IMMUTABLE = "public, max-age=31536000, immutable"  # assets/ names carry a content hash
NO_CACHE = "no-cache"
NONE = "'none'"  # index.html: always revalidated, so a deployment is seen at once


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme == "https" and parts.netloc else None


def security_headers() -> dict[str, str]:
    """A strict policy: scripts, styles and data only from this origin; the sign-in authority for MSAL's token
    calls and its hidden renewal frame; nothing inline, no framing of the page."""
    authority = _origin(get_settings().web_authority or "")
    connect = f"'self' {authority}" if authority else "'self'"
    csp = (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
           f"connect-src {connect}; frame-src {authority or NONE}; base-uri 'none'; "
           "form-action 'self'; frame-ancestors 'none'; object-src 'none'")
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin"}


@handles(bp)
def web_config(req: func.HttpRequest) -> func.HttpResponse:
    """The page's public configuration. `devSignIn` (a pasted local token) only when the app trusts the local
    development issuer or runs with AUTH_DISABLED, neither of which is ever set in Azure."""
    settings = get_settings()
    body = {"clientId": settings.web_client_id or None, "authority": settings.web_authority or None,
            "apiScope": settings.web_api_scope or None,
            "devSignIn": bool(settings.auth_local_issuer) or settings.auth_disabled}
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json",
                             headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def resolve_asset(path: str, root: Path | None = None) -> Path | None:
    """The file under `root` that `path` names, or None (then the page's index answers, for its own routes).
    Raises a 400 problem for a path that tries to leave `root`: `..`, backslashes, absolute or hidden parts."""
    root = root or DIST
    parts = [p for p in path.split("/") if p]
    if "\\" in path or "\x00" in path or any(p == ".." or p.startswith(".") for p in parts):
        raise Problem(400, "Invalid request", "The path is not a file of the web front end.")
    if not parts:
        return None
    candidate = root.joinpath(*parts).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise Problem(400, "Invalid request", "The path is not a file of the web front end.")
    return candidate if candidate.is_file() else None


@handles(bp)
def web_assets(req: func.HttpRequest) -> func.HttpResponse:
    """index.html (no-cache) for the page's own paths, hashed assets (immutable) by name; a missing asset
    (a name with an extension) is 404 rather than the index, so a stale page fails visibly."""
    path = req.route_params.get("path") or ""
    if not urlsplit(req.url).path.endswith("/") and not path:
        return func.HttpResponse(status_code=308, headers={"Location": BASE})
    try:
        found = resolve_asset(path)
    except Problem as problem:
        return problem_response(problem, urlsplit(req.url).path)
    index = DIST / "index.html"
    if found is None:
        if "." in path.rsplit("/", 1)[-1]:
            return problem_response(Problem(404, "Not found", f"No file {path} in the web front end."))
        if not index.is_file():
            return problem_response(Problem(404, "Not built", "The web front end is not built: run `make web`."))
        found = index
    immutable = found.parent.name == "assets" and found.parent.parent == DIST.resolve()
    headers = {**security_headers(), "Cache-Control": IMMUTABLE if immutable else NO_CACHE}
    content_type = CONTENT_TYPES.get(found.suffix.lower(), "application/octet-stream")
    return func.HttpResponse(found.read_bytes(), status_code=200, headers={**headers, "Content-Type": content_type})
