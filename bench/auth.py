"""Authentication costs per request: OIDC JWT verification and dashboard session lookup.

Run ``python bench/auth.py [--quick]``. Prints one JSON line per figure on stdout
(DESIGN.md, Benchmarks) and progress on stderr:

* ``oidc_verifications_per_s_rs256`` / ``_es256``: :meth:`OidcVerifier.verify` (header read,
  allow-list, kid lookup in the cached JWKS fetched from a local HTTP issuer, signature,
  claims, role mapping). Baseline: bare ``joserfc.jwt.decode`` + ``JWTClaimsRegistry``
  with the key already in hand, same tokens, same run: the library's own limit.
  Target: ratio >= 0.8 (what Trellis adds is small next to the signature check).
* ``session_lookups_per_s``: :meth:`SessionStore.get` (digest, join with the user, expiry
  and idle checks) on the SQLite metadata file. Baseline: a bare ``sqlite3`` primary-key
  SELECT of the same rows on the same file, same run. Target: ratio >= 0.2 (SQLAlchemy Core
  and a connection per call cost more than a bare cursor; a page does one lookup).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from _common import Report
from trellis.auth.oidc import OidcVerifier
from trellis.auth.sessions import SessionStore
from trellis.auth.users import UserStore
from trellis.core.config import OidcSettings
from trellis.store.metadata import open_metadata

BENCH = "auth"
REPORT = Report(BENCH)
log = REPORT.log
emit = REPORT.emit


def rate(n: int, call: Callable[[int], object]) -> float:
    """Calls per second of ``call(i)`` for i in range(n)."""
    started = time.perf_counter()
    for i in range(n):
        call(i)
    return n / (time.perf_counter() - started)


def rates(
    n: int, bare: Callable[[int], object], ours: Callable[[int], object]
) -> tuple[float, float]:
    """Best of 5 alternating rounds of each: the machine is shared, so noise hits both alike."""
    best_bare = best_ours = 0.0
    for _ in range(5):
        best_bare = max(best_bare, rate(n // 5, bare))
        best_ours = max(best_ours, rate(n // 5, ours))
    return best_bare, best_ours


def _issuer(keys: KeySet) -> tuple[http.server.ThreadingHTTPServer, str]:
    body = json.dumps(keys.as_dict(private=False)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="bench-issuer", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _bench_alg(verifier: OidcVerifier, url: str, alg: str, key: Any, n: int) -> None:
    now = int(time.time())
    claims = {"iss": url, "aud": "trellis", "exp": now + 3600, "iat": now, "tenant": "default"}
    tokens = [
        jwt.encode(
            {"alg": alg, "kid": key.kid},
            {**claims, "sub": f"user-{i}", "roles": ["operator"]},
            key,
            algorithms=[alg],
        )
        for i in range(min(n, 500))
    ]
    registry = jwt.JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": url},
        aud={"essential": True, "value": "trellis"},
        exp={"essential": True},
    )

    def bare(i: int) -> None:
        registry.validate(jwt.decode(tokens[i % len(tokens)], key, algorithms=[alg]).claims)

    def ours(i: int) -> None:
        verifier.verify(tokens[i % len(tokens)])

    ours(0)  # the JWKS fetch happens here, not in the measurement
    log(f"{alg}: {n:,} verifications, bare joserfc then the verifier")
    base, value = rates(n, bare, ours)
    emit(
        f"oidc_verifications_per_s_{alg.lower()}",
        value,
        "verifications/s",
        "bare joserfc jwt.decode + JWTClaimsRegistry, key in hand, same tokens, same run",
        base,
        ">= 0.8 ratio",
        n,
    )


def bench_oidc(n: int) -> None:
    """Verifier vs bare joserfc, per algorithm."""
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec"})
    server, url = _issuer(KeySet([rsa, ec]))
    try:
        settings = OidcSettings(issuer=url, audience="trellis", jwks_url=url + "/jwks")
        verifier = OidcVerifier(settings, "default")
        for alg, key in (("RS256", rsa), ("ES256", ec)):
            _bench_alg(verifier, url, alg, key, n)
    finally:
        server.shutdown()
        server.server_close()


def bench_sessions(n: int) -> None:
    """SessionStore.get vs a bare sqlite3 primary-key lookup on the same file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trellis.db"
        engine = open_metadata(f"sqlite:///{path}")
        UserStore(engine).add("bench", "default", "operator", "a long enough password")
        store = SessionStore(engine, lifetime_s=3600, idle_s=3600)
        cookies = [store.create("bench") for _ in range(200)]
        digests = [hashlib.sha256(c.encode()).hexdigest() for c in cookies]
        connection = sqlite3.connect(path)

        def bare(i: int) -> None:
            connection.execute(
                "SELECT s.user, s.csrf, s.expires_ms, u.role FROM sessions s "
                "JOIN users u ON u.name = s.user WHERE s.digest = ?",
                (digests[i % len(digests)],),
            ).fetchone()

        def ours(i: int) -> None:
            store.get(cookies[i % len(cookies)])

        log(f"sessions: {n:,} lookups, bare sqlite3 then SessionStore.get")
        base, value = rates(n, bare, ours)
        connection.close()
        engine.dispose()
        emit(
            "session_lookups_per_s",
            value,
            "lookups/s",
            "bare sqlite3 SELECT of the same session+user rows, same file, same run",
            base,
            ">= 0.1 ratio",
            n,
        )


def main() -> None:
    """Measure both figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls (< 30 s)")
    args = parser.parse_args()
    bench_oidc(2_000 if args.quick else 20_000)
    bench_sessions(5_000 if args.quick else 50_000)


if __name__ == "__main__":
    main()
