"""The web front end's adapter (functions/web_app.py): content types, cache headers, the security headers, path
traversal refused, the SPA fallback, the public config and the JSON form of a download link."""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func
import pytest

from functions import web_app
from shared.adapters.settings import reset_settings


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>")
    (tmp_path / "assets" / "index-AbC123.js").write_text("console.log(1)")
    (tmp_path / "assets" / "index-AbC123.css").write_text("body{}")
    (tmp_path.parent / "secret.txt").write_text("not for the web")
    monkeypatch.setattr(web_app, "DIST", tmp_path)
    return tmp_path


def get(functions, path: str, url: str | None = None) -> func.HttpResponse:
    req = func.HttpRequest("GET", url or f"http://localhost/api/app/{path}", route_params={"path": path}, body=b"")
    return functions["web_assets"].get_user_function()(req)


def test_index_and_hashed_assets(functions, dist: Path) -> None:
    index = get(functions, "")
    assert index.status_code == 200 and index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert index.headers["Cache-Control"] == "no-cache"
    csp = index.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
                      "object-src 'none'", "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    js = get(functions, "assets/index-AbC123.js")
    assert js.get_body() == b"console.log(1)" and js.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert js.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert get(functions, "assets/index-AbC123.css").headers["Content-Type"] == "text/css; charset=utf-8"


def test_page_routes_fall_back_to_the_index_but_missing_assets_are_404(functions, dist: Path) -> None:
    assert get(functions, "invoices").get_body().startswith(b"<!doctype html>")
    missing = get(functions, "assets/index-gone.js")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


@pytest.mark.parametrize("path", ["../secret.txt", "assets/../../secret.txt", "..\\secret.txt", ".env",
                                  "assets/%00.js".replace("%00", "\x00")])
def test_path_traversal_is_refused(functions, dist: Path, path: str) -> None:
    resp = get(functions, path)
    assert resp.status_code == 400 and b"not for the web" not in resp.get_body()
    assert json.loads(resp.get_body())["title"] == "Invalid request"


def test_without_the_trailing_slash_redirects(functions, dist: Path) -> None:
    resp = get(functions, "", url="http://localhost/api/app")
    assert resp.status_code == 308 and resp.headers["Location"] == "/api/app/"


def test_not_built_is_a_clear_404(functions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_app, "DIST", tmp_path / "nothing")
    resp = get(functions, "")
    assert resp.status_code == 404 and "make web" in json.loads(resp.get_body())["detail"]


def test_public_config_and_authority_in_the_policy(functions, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTH_LOCAL_ISSUER", "AUTH_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEB_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("WEB_AUTHORITY", "https://login.microsoftonline.com/0000aaaa-0000-4000-8000-000000000000")
    monkeypatch.setenv("WEB_API_SCOPE", "api://reconciliation/access_as_user")
    reset_settings()
    try:
        req = func.HttpRequest("GET", "http://localhost/api/web/config", body=b"")
        config = json.loads(functions["web_config"].get_user_function()(req).get_body())
        assert config == {"clientId": "11111111-2222-3333-4444-555555555555",
                          "authority": "https://login.microsoftonline.com/0000aaaa-0000-4000-8000-000000000000",
                          "apiScope": "api://reconciliation/access_as_user", "devSignIn": False}
        csp = web_app.security_headers()["Content-Security-Policy"]
        assert "connect-src 'self' https://login.microsoftonline.com;" in csp
        assert "frame-src https://login.microsoftonline.com;" in csp
        monkeypatch.setenv("AUTH_LOCAL_ISSUER", "http://127.0.0.1:7073")
        reset_settings()
        assert json.loads(functions["web_config"].get_user_function()(req).get_body())["devSignIn"] is True
    finally:
        reset_settings()
