"""OIDC bearer JWTs against a real local issuer serving a JWKS generated in the test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey
from pydantic import ValidationError

from tests.serving import serve
from trellis.api.app import create_app
from trellis.auth.oidc import OidcVerifier
from trellis.auth.users import TokenError
from trellis.core.config import OidcSettings, load_settings
from trellis.core.errors import ConfigError

AUDIENCE = "trellis-api"


@dataclass
class Issuer:
    """A local identity provider: its keys, the JWKS it serves, and how often it was asked."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)  # kids in the JWKS
    requests: int = 0

    def publish(self, *kids: str) -> None:
        """Serve the public halves of ``kids`` (what an issuer does when it rotates)."""
        self.served = list(kids)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.keys[k].as_dict(private=False) for k in self.served]}

    def token(self, kid: str = "rsa-1", alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "alice@example.com",
            "iat": now,
            "exp": now + 300,
            "tenant": "default",
            "roles": ["plant-operators"],
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        with warnings.catch_warnings():  # joserfc warns that RFC 9864 renamed EdDSA
            warnings.simplefilter("ignore", SecurityWarning)
            return jwt.encode({"alg": alg, "kid": kid}, body, self.keys[kid], algorithms=[alg])


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    """An HTTP server with an OpenID discovery document and a JWKS."""
    state = Issuer()
    state.keys = {
        "rsa-1": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
        "rsa-2": RSAKey.generate_key(2048, parameters={"kid": "rsa-2"}),
        "ec-1": ECKey.generate_key("P-256", parameters={"kid": "ec-1"}),
        "ed-1": OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"}),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": state.url, "jwks_uri": state.url + "/jwks"}
            elif self.path == "/jwks":
                state.requests += 1
                body = state.jwks()
            else:
                self.send_error(404)
                return
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _verifier(issuer: Issuer, **overrides: Any) -> OidcVerifier:
    issuer.publish("rsa-1", "ec-1", "ed-1")
    options: dict[str, Any] = {
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "role_map": {"plant-operators": "operator", "it-admins": "admin"},
        "jwks_refresh_min_s": 3600.0,
    }
    options.update(overrides)
    return OidcVerifier(OidcSettings(**options), "default")


def _refused(verifier: OidcVerifier, token: str, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        verifier.verify(token)


@pytest.mark.parametrize(("kid", "alg"), [("rsa-1", "RS256"), ("ec-1", "ES256"), ("ed-1", "EdDSA")])
def test_a_valid_token_becomes_a_principal(issuer: Issuer, kid: str, alg: str) -> None:
    """Each allowed algorithm; the roles claim maps to a Trellis role, the tenant claim holds."""
    verifier = _verifier(issuer)  # the JWKS URL comes from the discovery document
    principal = verifier.verify(issuer.token(kid, alg, roles=["plant-operators", "viewer"]))
    assert (principal.name, principal.tenant, principal.role) == (
        "alice@example.com",
        "default",
        "operator",
    )
    assert principal.via == f"oidc:{issuer.url}"


def test_the_most_privileged_mapped_role_wins(issuer: Issuer) -> None:
    """Groups map through role_map; a Trellis role name maps to itself."""
    verifier = _verifier(issuer)
    assert verifier.verify(issuer.token(roles=["viewer", "it-admins"])).role == "admin"
    assert verifier.verify(issuer.token(roles="viewer auditor")).role == "auditor"


def test_forged_signature_is_refused(issuer: Issuer) -> None:
    """A token signed by another key under a published kid does not verify."""
    verifier = _verifier(issuer)
    forged = jwt.encode(
        {"alg": "RS256", "kid": "rsa-1"},
        {"iss": issuer.url, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 60},
        issuer.keys["rsa-2"],
    )
    _refused(verifier, forged, "bad signature")
    header, payload, signature = issuer.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["it-admins"]  # privilege escalation in the payload
    tampered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(verifier, f"{header}.{tampered}.{signature}", "bad signature")


def test_expired_token_is_refused_beyond_the_leeway(issuer: Issuer) -> None:
    """exp within the leeway is accepted (clock skew), beyond it refused."""
    now = int(time.time())
    verifier = _verifier(issuer, leeway_s=30)
    assert verifier.verify(issuer.token(exp=now - 10, iat=now - 100)).name
    _refused(verifier, issuer.token(exp=now - 60, iat=now - 100), "expired")
    _refused(verifier, issuer.token(exp=None), "exp")


def test_not_yet_valid_and_future_iat_are_refused(issuer: Issuer) -> None:
    """nbf and iat in the future beyond the leeway."""
    now = int(time.time())
    verifier = _verifier(issuer, leeway_s=30)
    _refused(verifier, issuer.token(nbf=now + 120), "not yet valid")
    _refused(verifier, issuer.token(iat=now + 120), "future")
    assert verifier.verify(issuer.token(nbf=now + 10)).name


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "someone-else"}, "aud"),
        ({"aud": None}, "aud"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"sub": None}, "sub"),
        ({"tenant": None}, "tenant"),
        ({"roles": ["nobody"]}, "no Trellis role"),
        ({"roles": {"admin": True}}, "not a list"),
    ],
)
def test_wrong_claims_are_refused(issuer: Issuer, claims: dict[str, Any], reason: str) -> None:
    """Wrong audience or issuer, missing subject, tenant or role."""
    _refused(_verifier(issuer), issuer.token(**claims), reason)


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_alg_none_and_hmac_with_the_public_key_are_refused(issuer: Issuer) -> None:
    """The classic confusions: ``none``, and HS256 keyed with the issuer's public key."""
    verifier = _verifier(issuer)
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}
    _refused(verifier, _unsigned(claims, {"alg": "none", "kid": "rsa-1"}), "'none' is not allowed")
    # Signed by hand: joserfc itself refuses to make a public key an HMAC secret.
    unsigned = _unsigned(claims, {"alg": "HS256", "kid": "rsa-1"}).rstrip(".")
    public_pem = issuer.keys["rsa-1"].as_pem(private=False)
    mac = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    confused = unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    _refused(verifier, confused, "'HS256' is not allowed")
    # An allowed alg whose key is of another type (RS256 header, EC key's kid).
    _, payload, signature = issuer.token("ec-1", "ES256").split(".")
    header = _unsigned({}, {"alg": "RS256", "kid": "ec-1"}).split(".")[0]
    _refused(verifier, f"{header}.{payload}.{signature}", "bad signature or encoding")


def test_configuring_none_or_hmac_is_refused() -> None:
    """The allow-list itself cannot name ``none`` or an HMAC algorithm."""
    for algs in (["none"], ["RS256", "HS256"], []):
        with pytest.raises(ValidationError, match="refused"):
            OidcSettings(issuer="https://i", audience="a", algorithms=algs)


def test_unknown_kid_refreshes_at_most_once_per_interval(issuer: Issuer) -> None:
    """A made-up kid costs one JWKS fetch per refresh interval, not one per request."""
    verifier = _verifier(issuer)
    verifier.verify(issuer.token())
    before = verifier.fetches
    bogus = _unsigned({"sub": "x"}, {"alg": "RS256", "kid": "made-up"}) + "c2ln"
    for _ in range(20):
        _refused(verifier, bogus, "unknown key id 'made-up'")
    assert verifier.fetches == before  # the last fetch was within jwks_refresh_min_s


def test_key_rotation_is_picked_up_on_the_first_unknown_kid(issuer: Issuer) -> None:
    """The issuer starts signing with a new key; the first token with its kid refetches."""
    verifier = _verifier(issuer, jwks_refresh_min_s=0.0, jwks_url=issuer.url + "/jwks")
    assert verifier.verify(issuer.token("rsa-1")).name
    issuer.publish("rsa-2")  # rotated: rsa-1 retired
    asked = issuer.requests
    assert verifier.verify(issuer.token("rsa-2")).name
    assert issuer.requests == asked + 1
    # The retired key stays refused once the cache has the new set.
    _refused(verifier, issuer.token("rsa-1"), "unknown key id")


def test_an_unreachable_issuer_is_a_clear_refusal() -> None:
    """No JWKS, no token: the error names the fetch, nothing is accepted."""
    settings_ = OidcSettings(issuer="http://127.0.0.1:9", audience=AUDIENCE)
    verifier = OidcVerifier(settings_, "default", timeout_s=1.0)
    token = _unsigned({"sub": "x"}, {"alg": "RS256", "kid": "k"}) + "c2ln"
    with pytest.raises(TokenError, match="cannot fetch the issuer's JWKS"):
        verifier.verify(token)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9_=-]{0,40}\.[A-Za-z0-9_-]{0,40}\.\w*"))
def test_any_string_is_a_token_error_or_a_principal(text: str) -> None:
    """Garbage never escapes as another exception (and never fetches: no kid, no alg)."""
    verifier = OidcVerifier(OidcSettings(issuer="http://127.0.0.1:9", audience="a"), "t")
    with pytest.raises(TokenError):
        verifier.verify(text)


def test_the_api_accepts_oidc_tokens_through_the_one_gate(
    issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """End to end: the role from the JWT is authorised by the Cedar policies."""
    issuer.publish("rsa-1")
    oidc = {
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "role_map": {"plant-operators": "operator"},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TRELLIS_AUTH__LOOPBACK_ADMIN", raising=False)
        settings_ = load_settings(data_dir=tmp_path_factory.mktemp("oidc"), auth={"oidc": oidc})
        with serve(create_app(settings_)) as url, httpx.Client(base_url=url) as http:
            good = {"Authorization": f"Bearer {issuer.token()}"}
            assert http.get("/api/v1/alerts", headers=good).status_code == 200
            # An operator may not change rules (policy), and the reason says so.
            denied = http.delete("/api/v1/rules/x", headers=good)
            assert denied.status_code == 403
            assert "operator" in denied.json()["detail"]
            # Another tenant's operator acts in its own tenant only (tenancy by construction).
            other = {"Authorization": f"Bearer {issuer.token(tenant='other')}"}
            theirs = http.get("/api/v1/alerts", headers=other)
            assert theirs.status_code == 200
            assert theirs.json() == []
            expired = issuer.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
            refused = http.get("/api/v1/alerts", headers={"Authorization": f"Bearer {expired}"})
            assert refused.status_code == 401
            assert "expired" in refused.json()["detail"]


def test_oidc_settings_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[auth.oidc]`` in trellis.toml, overridden field by field from TRELLIS_AUTH__OIDC__*;
    a misspelt variable is refused with a suggestion."""
    config = tmp_path / "trellis.toml"
    config.write_text(
        '[auth.oidc]\nissuer = "https://idp.example"\naudience = "trellis"\n'
        'role_map = { "plant-operators" = "operator" }\n'
    )
    monkeypatch.setenv("TRELLIS_AUTH__OIDC__AUDIENCE", "trellis-prod")
    oidc = load_settings(config).auth.oidc
    assert oidc is not None
    assert (oidc.issuer, oidc.audience) == ("https://idp.example", "trellis-prod")
    assert oidc.role_map == {"plant-operators": "operator"}
    monkeypatch.setenv("TRELLIS_AUTH__OIDC__AUDEINCE", "x")
    with pytest.raises(ConfigError, match="did you mean TRELLIS_AUTH__OIDC__AUDIENCE"):
        load_settings(config)
