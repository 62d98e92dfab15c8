"""OIDC / JWT bearer tokens: signatures checked against the issuer's JWKS, claims mapped to a
:class:`~trellis.auth.users.Principal`.

The token's header is read before any key is touched, so an algorithm outside the configured
allow-list (``none``, any HS*) is refused without a key ever being tried. Keys are looked up
by ``kid`` in a cached JWKS; an unknown ``kid`` (the issuer rotated its keys) triggers at most
one fetch per ``jwks_refresh_min_s``, so a flood of made-up kids cannot make Trellis hammer
the issuer.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import threading
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from trellis.auth.users import ROLES, SCOPES, Principal, TokenError
from trellis.core.config import OidcSettings

__all__ = ["OidcVerifier", "looks_like_jwt"]

_MAX_TOKEN = 16_384
_MAX_JWKS = 1_048_576
#: Which role wins when a token maps to several: broader rights first (a viewer's rights are
#: a subset of an auditor's; a data scientist's and an operator's are not comparable); a
#: contractor (one site only) last. A token carries no site claim, so a contractor by OIDC
#: is authorised on the tenant, where the contractor policies grant nothing.
_PRECEDENCE = ("admin", "engineer", "data_scientist", "operator", "auditor", "viewer", "contractor")
assert set(_PRECEDENCE) == set(ROLES)


def _quiet(name: str) -> Any:
    model = copy.copy(JWSRegistry.algorithms[name])
    model.security_warning = None
    return model


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has the three dot-separated parts of a compact JWS."""
    return token.count(".") == 2 and not token.startswith("trl_")


def _b64json(part: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise TokenError(f"malformed JWT: {exc}") from None
    if not isinstance(value, dict):
        raise TokenError("malformed JWT: the header is not a JSON object")
    return value


class OidcVerifier:
    """Validates bearer JWTs of one issuer; thread-safe (the gate runs in a thread pool)."""

    def __init__(self, settings: OidcSettings, tenant: str, *, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self._tenant = tenant
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = float("-inf")  # monotonic time of the last fetch attempt
        self._registry = JWSRegistry(algorithms=list(settings.algorithms))
        # RFC 9864 renames EdDSA to Ed25519: same key type, same signature. Issuers still send
        # "EdDSA", so it is accepted as such, without a warning on every request.
        self._registry.algorithms = {**JWSRegistry.algorithms, "EdDSA": _quiet("EdDSA")}
        self.fetches = 0  # observable: how often the JWKS was requested
        self._claims = jwt.JWTClaimsRegistry(  # stateless: "now" is read on each validate
            leeway=settings.leeway_s,
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": settings.audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    # -- keys --------------------------------------------------------------------

    def _jwks_url(self, client: httpx.Client) -> str:
        if self.settings.jwks_url:
            return self.settings.jwks_url
        discovery = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = client.get(discovery).raise_for_status().json()
        url = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(url, str):
            raise TokenError(f"{discovery} names no jwks_uri")
        return url

    def _fetch(self) -> None:
        """Fetch the JWKS; on failure keep the keys already held (called under the lock)."""
        self._fetched = time.monotonic()
        self.fetches += 1
        try:
            with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
                response = client.get(self._jwks_url(client)).raise_for_status()
            if len(response.content) > _MAX_JWKS:
                raise TokenError("the issuer's JWKS is larger than 1 MiB")
            self._keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            if self._keys is None:
                raise TokenError(f"cannot fetch the issuer's JWKS: {exc}") from None

    def _key(self, kid: str) -> Any:
        with self._lock:
            stale = time.monotonic() - self._fetched > self.settings.jwks_cache_s
            if self._keys is None or stale:
                self._fetch()
            key = self._find(kid)
            if key is None and time.monotonic() - self._fetched >= (
                self.settings.jwks_refresh_min_s
            ):
                self._fetch()  # the issuer may have rotated: one refresh, rate limited
                key = self._find(kid)
        if key is None:
            raise TokenError(f"unknown key id {kid!r}")
        return key

    def _find(self, kid: str) -> Any:
        if self._keys is None:
            return None
        try:
            return self._keys.get_by_kid(kid)
        except (JoseError, ValueError):
            return None

    # -- tokens ------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        """The principal a JWT stands for; :class:`TokenError` says why it is refused."""
        if len(token) > _MAX_TOKEN or not looks_like_jwt(token):
            raise TokenError("not a JWT")
        header = _b64json(token.split(".", 1)[0])
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.settings.algorithms:
            raise TokenError(f"algorithm {alg!r} is not allowed")
        if not isinstance(kid, str) or not kid:
            raise TokenError("the token names no key id (kid)")
        key = self._key(kid)
        try:
            decoded = jwt.decode(token, key, algorithms=[alg], registry=self._registry)
        except JoseError as exc:
            raise TokenError(f"bad signature or encoding ({exc.error})") from None
        claims = decoded.claims
        try:
            self._claims.validate(claims)
        except ExpiredTokenError:
            raise TokenError("expired token") from None
        except JoseError as exc:
            raise TokenError(f"claim check failed: {exc.description or exc.error}") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        settings = self.settings
        tenant = self._tenant
        if settings.tenant_claim:
            value = claims.get(settings.tenant_claim)
            if not isinstance(value, str) or not value:
                raise TokenError(f"the token has no {settings.tenant_claim!r} claim")
            tenant = value
        granted = claims.get(settings.roles_claim, [])
        if isinstance(granted, str):
            granted = granted.split()
        if not isinstance(granted, list):
            raise TokenError(f"claim {settings.roles_claim!r} is not a list")
        roles = {settings.role_map.get(g, g) for g in granted if isinstance(g, str)}
        role = next((r for r in _PRECEDENCE if r in roles), None)
        if role is None:
            raise TokenError(f"no Trellis role in claim {settings.roles_claim!r}: {granted!r}")
        return Principal(
            str(claims["sub"]), tenant, role, frozenset(SCOPES), f"oidc:{settings.issuer}"
        )
