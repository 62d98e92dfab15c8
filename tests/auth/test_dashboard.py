"""Dashboard security on a real server: login sessions, CSRF, secure headers, rate limits,
the trust pages, and every page authorised through the one ``authorize``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.auth.conftest import PASSWORD, Secured
from tests.helpers import run
from tests.serving import serve
from trellis.api.app import create_app
from trellis.auth.limits import LoginLimiter
from trellis.auth.sessions import SessionStore
from trellis.auth.users import UserStore
from trellis.core.config import load_settings
from trellis.store.metadata import open_metadata, sessions
from trellis.ui.auth import SecurityHeaders


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page carries no CSRF field"
    return found.group(1)


def login(client: httpx.Client, user: str, password: str = PASSWORD) -> httpx.Response:
    """What a browser does: fetch the form (CSRF cookie + field), post it back."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/login",
        data={"username": user, "password": password, "csrf": _csrf(form.text), "next": "/alerts"},
    )


@pytest.fixture
def anonymous(secured: Secured) -> Iterator[httpx.Client]:
    """A browser-like client with no session yet."""
    with httpx.Client(base_url=secured.url, timeout=10) as client:
        yield client


@contextmanager
def _session(secured: Secured, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secured.url, timeout=10) as client:
        assert login(client, user).status_code == 303
        yield client


def test_login_page_to_inbox_with_a_server_side_session(
    secured: Secured, anonymous: httpx.Client
) -> None:
    """A page without a session goes to the login form; a login sets an HttpOnly,
    SameSite=Strict cookie whose value the database never stores; logout ends it."""
    first = anonymous.get("/alerts")
    assert first.status_code == 303
    assert first.headers["location"] == "/login?next=%2Falerts"
    done = login(anonymous, "u-operator")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/alerts"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("trellis_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; Secure over TLS (below)
    inbox = anonymous.get("/alerts")
    assert inbox.status_code == 200
    assert "u-operator" in inbox.text
    assert "Log out" in inbox.text
    value = anonymous.cookies["trellis_session"]
    engine = open_metadata(secured.settings.metadata_url)
    try:
        with engine.connect() as conn:
            stored = [r.digest for r in conn.execute(sa.select(sessions.c.digest))]
    finally:
        engine.dispose()
    assert stored
    assert value not in stored
    out = anonymous.post("/logout", data={"csrf": _csrf(inbox.text)})
    assert out.status_code == 303
    anonymous.cookies.set("trellis_session", value)  # replaying the old cookie
    assert anonymous.get("/alerts").status_code == 303


def test_wrong_password_and_missing_csrf_on_login(anonymous: httpx.Client) -> None:
    """A wrong password is a 401 with the form again; a login post without the CSRF token
    (a login-CSRF attempt) is refused before the password is even checked."""
    assert login(anonymous, "u-viewer", "not the password!").status_code == 401
    refused = anonymous.post("/login", data={"username": "u-viewer", "password": PASSWORD})
    assert refused.status_code == 403
    assert "trellis_session" not in anonymous.cookies


def test_state_changes_need_the_session_csrf_token(secured: Secured) -> None:
    """With a session, a post without the token, or with another session's token, is 403;
    htmx's header or the form field passes."""
    with _session(secured, "u-operator") as mine, _session(secured, "u-admin") as theirs:
        token = _csrf(mine.get("/alerts").text)
        other = _csrf(theirs.get("/alerts").text)
        assert token != other
        assert mine.post("/ui/alerts/424242/acknowledge").status_code == 403
        wrong = mine.post("/ui/alerts/424242/acknowledge", headers={"X-CSRF-Token": other})
        assert wrong.status_code == 403
        ok = mine.post("/ui/alerts/424242/acknowledge", headers={"X-CSRF-Token": token})
        assert ok.status_code == 404  # past the guard: there is no such alert
        form = mine.post("/ui/alerts/424242/acknowledge", data={"csrf": token})
        assert form.status_code == 404
        # The API takes the session cookie too, with the same token for changes.
        assert mine.get("/api/v1/alerts").status_code == 200
        assert mine.post("/api/v1/alerts/424242/acknowledge", json={}).status_code == 403
        api = mine.post(
            "/api/v1/alerts/424242/acknowledge", json={}, headers={"X-CSRF-Token": token}
        )
        assert api.status_code == 404
        cross = mine.post(
            "/ui/alerts/424242/acknowledge",
            headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403


def test_every_page_is_authorised_by_the_policies(secured: Secured) -> None:
    """A viewer reads the inbox but may not acknowledge nor open the trust pages; an
    auditor reads the audit log; the denials are audited with the policy's explanation."""
    with _session(secured, "u-viewer") as viewer:
        token = _csrf(viewer.get("/alerts").text)
        denied = viewer.post("/ui/alerts/424242/acknowledge", headers={"X-CSRF-Token": token})
        assert denied.status_code == 403
        assert "viewer" in denied.json()["detail"]
        for page in ("/admin/users", "/admin/audit", "/admin/policies"):
            shown = viewer.get(page)
            assert shown.status_code == 403, page
            assert "no policy permits it (role &#39;viewer&#39;" in shown.text  # a page, why
            assert f'href="{page}"' not in viewer.get("/alerts").text  # no link that 403s
    with _session(secured, "u-auditor") as auditor:
        audit = auditor.get("/admin/audit", params={"principal": "u-viewer"})
        assert audit.status_code == 200
        assert "dashboard.alert_action" in audit.text
        assert "deny" in audit.text
        assert auditor.get("/admin/policies").status_code == 200
        assert auditor.get("/admin/users").status_code == 403


def test_users_page_adds_disables_and_rotates(secured: Secured) -> None:
    """An admin adds a user, rotates their token (shown once, old ones revoked), disables
    them (password, token and live session stop at once) and enables them again."""
    with _session(secured, "u-admin") as admin, httpx.Client(base_url=secured.url) as api:
        token = _csrf(admin.get("/admin/users").text)
        added = admin.post(
            "/admin/users",
            data={"csrf": token, "name": "dana", "role": "operator", "password": PASSWORD},
        )
        assert added.status_code == 200
        assert 'data-user="dana"' in added.text
        short = admin.post(
            "/admin/users", data={"csrf": token, "name": "eve", "role": "viewer", "password": "x"}
        )
        assert short.status_code == 422
        assert "12 characters" in short.text
        bad_role = admin.post(
            "/admin/users",
            data={"csrf": token, "name": "eve", "role": "root", "password": PASSWORD},
        )
        assert bad_role.status_code == 422
        first = admin.post("/admin/tokens/dana", data={"csrf": token, "scope_read": "on"})
        old = re.search(r'id="new-token">([^<]+)<', first.text)
        assert old
        second = admin.post("/admin/tokens/dana", data={"csrf": token, "scope_read": "on"})
        new = re.search(r'id="new-token">([^<]+)<', second.text)
        assert new
        bearer = {"Authorization": f"Bearer {new.group(1)}"}
        assert api.get("/api/v1/alerts", headers=bearer).status_code == 200
        revoked = {"Authorization": f"Bearer {old.group(1)}"}
        assert api.get("/api/v1/alerts", headers=revoked).status_code == 401

        with _session(secured, "dana") as dana:
            assert dana.get("/alerts").status_code == 200
            off = admin.post("/admin/users/dana/disable", data={"csrf": token})
            assert off.status_code == 200
            assert "dana: disabled" in off.text
            assert dana.get("/alerts").status_code == 303  # the session ended
            assert api.get("/api/v1/alerts", headers=bearer).status_code == 401
            assert login(dana, "dana").status_code == 401
        admin.post("/admin/users/dana/enable", data={"csrf": token})
        assert api.get("/api/v1/alerts", headers=bearer).status_code == 200
        missing = admin.post("/admin/users/nobody/disable", data={"csrf": token})
        assert missing.status_code == 404


def test_policies_page_and_audit_verify(secured: Secured) -> None:
    """The policies in force are shown with their validation; Verify checks the chain."""
    with _session(secured, "u-admin") as admin:
        page = admin.get("/admin/policies")
        assert 'id="policy-status" class="status-valid">valid<' in page.text
        assert "@id(&#34;operator&#34;)" in page.text or '@id("operator")' in page.text
        assert "dashboard.users_page" in page.text
        assert 'id="policy-tests"' in page.text  # the tables' results, or why there are none
        verified = admin.get("/ui/audit/verify", headers={"HX-Request": "true"})
        assert verified.status_code == 200
        assert "Intact:" in verified.text


def test_secure_headers_on_pages_and_api(anonymous: httpx.Client) -> None:
    """Every response: a CSP without inline script, nosniff, a referrer policy, no framing;
    no HSTS over plain HTTP. An API response may load nothing at all."""
    for path in ("/login", "/api/v1/alerts", "/static/trellis.css"):
        response = anonymous.get(path)
        csp = response.headers["content-security-policy"]
        if path.startswith("/api/"):
            assert csp == "default-src 'none'; frame-ancestors 'none'"
        else:
            script_src = re.search(r"script-src ([^;]+)", csp)
            assert script_src, path
            assert "unsafe-inline" not in script_src.group(1), path
        assert "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in response.headers


def test_tls_adds_hsts_and_secure_cookies() -> None:
    """Behind TLS (or with auth.secure_cookies) HSTS is sent and cookies are Secure."""

    async def page(request: Request) -> PlainTextResponse:
        request.scope.setdefault("state", {})["csrf_cookie"] = "t0ken"
        return PlainTextResponse("ok")

    app = SecurityHeaders(Starlette(routes=[Route("/", page)]), secure=None)

    async def fetch(base_url: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            return await client.get("/")

    response = run(fetch("https://trellis.example"))
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert "Secure" in response.headers["set-cookie"]
    assert "HttpOnly" in response.headers["set-cookie"]
    response = run(fetch("http://127.0.0.1"))
    assert "strict-transport-security" not in response.headers
    assert "Secure" not in response.headers["set-cookie"]


def test_session_expiry_and_idle_timeout(metadata_engine: sa.Engine) -> None:
    """A session ends at its absolute expiry and after the idle time, whichever is first."""
    users = UserStore(metadata_engine)
    users.add("sam", "default", "viewer", PASSWORD)
    store = SessionStore(metadata_engine, lifetime_s=3600, idle_s=600)
    live, stale, old = (store.create("sam") for _ in range(3))
    assert store.get(live) is not None
    with metadata_engine.begin() as conn:
        digest = sessions.c.digest
        conn.execute(
            sessions.update()
            .where(digest == _digest(stale))
            .values(last_seen_ms=sessions.c.last_seen_ms - 601_000)
        )
        conn.execute(
            sessions.update().where(digest == _digest(old)).values(expires_ms=sessions.c.created_ms)
        )
    assert store.get(stale) is None
    assert store.get(old) is None
    assert store.get(live) is not None
    assert store.get("") is None
    assert store.get("x" * 500) is None
    assert store.end_all("sam") == 1


def _digest(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()


def test_login_limiter_windows_per_ip_and_per_user() -> None:
    """Failures per address and per user name in a sliding minute; Retry-After is the time
    until the oldest counted failure leaves the window; successes never count."""
    now = [1000.0]
    limiter = LoginLimiter(per_ip=3, per_user=2, clock=lambda: now[0])
    limiter.failed("10.0.0.1", "ann")
    now[0] += 10
    limiter.failed("10.0.0.2", "ann")
    assert limiter.retry_after("10.0.0.3", "ann") == 50  # per user, from anywhere
    assert limiter.retry_after("10.0.0.3", "bob") == 0
    limiter.failed("10.0.0.1", "x")
    limiter.failed("10.0.0.1", "y")
    assert limiter.retry_after("10.0.0.1", "bob") == 50  # per address, any user
    now[0] += 49
    assert limiter.retry_after("10.0.0.3", "ann") == 1
    now[0] += 1  # the first failure (t=1000) leaves the window of both keys
    assert limiter.retry_after("10.0.0.3", "ann") == 0
    assert limiter.retry_after("10.0.0.1", None) == 0


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with low login limits: 3 failures per address, 2 per user, a minute."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TRELLIS_AUTH__LOOPBACK_ADMIN", raising=False)
        data: Path = tmp_path_factory.mktemp("strict") / "data"
        settings = load_settings(
            data_dir=data, auth={"login_per_ip_per_min": 3, "login_per_user_per_min": 2}
        )
        engine = open_metadata(settings.metadata_url)
        for name in ("kim", "lee"):
            UserStore(engine).add(name, "default", "viewer", PASSWORD)
        engine.dispose()
        with serve(create_app(settings)) as url:
            yield url


def test_login_and_token_endpoints_answer_429_with_retry_after(strict: str) -> None:
    """Per user: the right password is refused once the user's failures reach the limit,
    while another user still gets in; per address: the token endpoint stops everyone."""
    with httpx.Client(base_url=strict, timeout=10) as client:
        for _ in range(2):
            assert login(client, "kim", "wrong password!!").status_code == 401
        limited = login(client, "kim")
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 60
        assert "Too many failed logins" in limited.text
        assert login(client, "lee").status_code == 303
        bad = {"username": "nobody", "password": "wrong password!!"}
        assert client.post("/api/v1/auth/token", json=bad).status_code == 401  # 3rd failure
        token = client.post("/api/v1/auth/token", json={"username": "lee", "password": PASSWORD})
        assert token.status_code == 429
        assert int(token.headers["retry-after"]) > 0


def test_secrets_never_reach_the_logs(
    secured: Secured, caplog: pytest.LogCaptureFixture, anonymous: httpx.Client
) -> None:
    """Passwords (right and wrong), session cookies and API tokens appear in no log record."""
    caplog.set_level(logging.DEBUG)
    wrong = "a wrong password 123"
    login(anonymous, "u-admin", wrong)
    login(anonymous, "u-admin")
    issued = anonymous.post(
        "/api/v1/auth/token", json={"username": "u-admin", "password": PASSWORD}
    ).json()["token"]
    bearer = {"Authorization": f"Bearer {issued}"}
    anonymous.get("/api/v1/alerts", headers=bearer)
    anonymous.get("/api/v1/alerts", headers={"Authorization": f"Bearer {issued}x"})
    # Everything the server side logged; httpx/httpcore are this test's own client, which
    # logs the headers it received at DEBUG level.
    text = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r}"
        for r in caplog.records
        if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "failed login for 'u-admin'" in text  # the events are logged, the secrets not
    assert "refused a bearer token" in text
    for secret in (
        PASSWORD,
        wrong,
        issued,
        issued.partition(".")[2],
        anonymous.cookies["trellis_session"],
    ):
        assert secret not in text
    audit = secured.settings.data_dir / "audit" / "audit.jsonl"
    assert PASSWORD not in audit.read_text()
    assert issued not in audit.read_text()


def test_liveness_is_public_and_says_nothing_readiness_needs_a_token(
    secured: Secured, anonymous: httpx.Client
) -> None:
    """``/health/live`` answers anyone with no data; ``/health`` (version, counts) needs a
    principal."""
    live = anonymous.get("/api/v1/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert anonymous.get("/api/v1/health").status_code == 401
    bearer = {"Authorization": f"Bearer {secured.tokens['viewer']}"}
    detail = anonymous.get("/api/v1/health", headers=bearer).json()
    assert set(detail) >= {"status", "version", "devices", "ingest_queued"}


def test_a_one_time_password_must_be_changed_first(secured: Secured) -> None:
    """A user created with a one-time password (the first admin) can only change it; the
    change checks the current password, the repeat and the length, and is audited."""
    engine = open_metadata(secured.settings.metadata_url)
    try:
        UserStore(engine).add("newbie", "default", "admin", PASSWORD, must_change=True)
    finally:
        engine.dispose()
    with _session(secured, "newbie") as newbie:
        page = newbie.get("/alerts")
        assert page.status_code == 303
        assert page.headers["location"] == "/account/password"
        form = newbie.get("/account/password")
        token = _csrf(form.text)
        refused = newbie.post("/admin/users", data={"csrf": token, "name": "x", "role": "viewer"})
        assert refused.status_code == 403
        new = "a brand new passphrase"

        def change(current: str, new_: str, repeat: str) -> httpx.Response:
            data = {"csrf": token, "current": current, "new": new_, "repeat": repeat}
            return newbie.post("/account/password", data=data)

        assert "current password is wrong" in change("nope nope nope", new, new).text
        assert "differ" in change(PASSWORD, new, new + "!").text
        assert "12 characters" in change(PASSWORD, "short", "short").text
        assert change(PASSWORD, PASSWORD, PASSWORD).status_code == 422
        done = change(PASSWORD, new, new)
        assert done.status_code == 200
        assert "Password changed." in done.text
        assert newbie.get("/alerts").status_code == 200
    with httpx.Client(base_url=secured.url) as again:
        assert login(again, "newbie").status_code == 401
        assert login(again, "newbie", new).status_code == 303


def test_every_dashboard_route_is_behind_the_guard(secured: Secured) -> None:
    """Walk every dashboard route: without a session each one sends to the login (or is a
    401/403), and each is a Cedar action the policies decide (no route checks by itself)."""
    from trellis.api.auth import _tagged_routes, operations
    from trellis.ui.routes import dashboard_router

    router = dashboard_router()
    ops = operations(router)
    routes = [(r, tags) for r, tags in _tagged_routes(router.routes, []) if "dashboard" in tags]
    assert len(routes) > 20
    with httpx.Client(base_url=secured.url, timeout=10) as anonymous:
        anonymous.get("/login")
        token = {"X-CSRF-Token": anonymous.cookies["trellis_csrf"]}
        for route, _ in routes:
            public = route.endpoint.__dict__.get("trellis_public", False)
            path = re.sub(r"\{[^}:]+(:int)?\}", "1", route.path)
            for method in route.methods or ():
                if public:
                    assert route.endpoint not in ops
                    continue
                assert ops[route.endpoint].action.startswith("dashboard."), route.path
                answer = anonymous.request(method, path)
                expected = {"GET": 303}.get(method, 403)  # a change without CSRF: refused first
                assert answer.status_code == expected, (method, path, answer.status_code)
                if method == "GET":
                    assert answer.headers["location"].startswith("/login?next=")
                else:  # with the token but no session: log in first
                    assert anonymous.request(method, path, headers=token).status_code == 401


@pytest.mark.parametrize("user", ["stranger", "u-contractor"])
def test_other_tenants_and_site_limited_users_are_refused_the_dashboard(
    secured: Secured, user: str
) -> None:
    """The pages read the configured tenant's data: a user of another tenant, or one
    limited to a site, logs in but is shown a refusal, never the data (the API serves
    them, scoped)."""
    with _session(secured, user) as client:
        for path in ("/alerts", "/", "/rules"):
            page = client.get(path)
            assert page.status_code == 403, path
            assert "uses the API" in page.text
        refused = client.post("/ui/alerts/1/acknowledge", headers={"HX-Request": "true"})
        assert refused.status_code == 403
