"""Settings: one ``trellis.toml`` plus ``TRELLIS_*`` environment variables.

Environment variables win over the file; nested settings use a double underscore,
so ``TRELLIS_HTTP__PORT=9000`` overrides ``[http] port``. Only the composition root
(:mod:`trellis.platform`) and the CLI call :func:`load_settings`; everything else is
handed the values it needs.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from trellis.core.errors import ConfigError

__all__ = [
    "AlertSettings",
    "BusSettings",
    "EmailSettings",
    "FabricSettings",
    "HttpSettings",
    "IngestSettings",
    "MlSettings",
    "MqttSettings",
    "OidcSettings",
    "RetentionRule",
    "RuleSettings",
    "Settings",
    "SimSettings",
    "StorageSettings",
    "TrustSettings",
    "WebhookSettings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Section):
    """Where the API and the dashboard listen."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class IngestSettings(_Section):
    """Limits of the ingest pipeline; each one bounds memory or refuses bad input."""

    queue_size: int = Field(default=20_000, ge=1, description="raw messages waiting")
    batch_max: int = Field(default=1_000, ge=1, description="messages per batch")
    batch_wait_ms: int = Field(default=20, ge=0, description="wait to fill a batch")
    max_payload_bytes: int = Field(default=256 * 1024, ge=64)
    max_future_skew_s: float = Field(default=300.0, ge=0, description="device clock ahead")
    max_past_age_s: float = Field(default=30 * 86_400.0, ge=0, description="oldest accepted")


class MqttSettings(_Section):
    """The MQTT 5 gateway: which broker, and the bounds of the session with it.

    ``url`` wins over everything; without it ``trellis demo`` starts a private
    ``mosquitto`` when the binary is on the PATH (``embedded_broker``), and otherwise
    the simulator feeds ingest in process.
    """

    url: str | None = Field(default=None, description="mqtt://host:1883 or mqtts://host:8883")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str = Field(default="trellis-ingest-1", min_length=1, max_length=128)
    share_group: str = Field(
        default="trellis-ingest",
        pattern=r"^[A-Za-z0-9_-]*$",
        description="$share group of the ingest workers; empty for one exclusive subscriber",
    )
    session_expiry_s: int = Field(default=3600, ge=0, description="broker keeps the session")
    receive_maximum: int = Field(default=1000, ge=1, le=65535, description="QoS 1 in flight")
    keepalive_s: int = Field(default=30, ge=5)
    max_device_rate_hz: float | None = Field(
        default=None, gt=0, description="per-device flood limit in messages/s; none by default"
    )
    rate_limit_grace_s: float = Field(
        default=30.0, ge=0, description="after each connect, let the session's backlog drain"
    )
    embedded_broker: bool = True

    @model_validator(mode="after")
    def _tls_files_together(self) -> MqttSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (the client certificate)")
        return self


class BusSettings(_Section):
    """The in-process bus: how many batches each subscriber may have waiting."""

    subscriber_queue: int = Field(default=64, ge=1)


class RetentionRule(_Section):
    """How long one tenant's (or one device model's) data is kept; ``*`` matches any."""

    tenant: str = "*"
    model: str = "*"
    raw_days: float = Field(gt=0, description="raw readings are deleted after this")
    rollup_days: float = Field(gt=0, description="1-minute rollups are deleted after this")


class StorageSettings(_Section):
    """Where data lives, how long it is kept, and when the disk budget alerts.

    ``url`` is ``sqlite:///path/trellis.db`` (the metadata file; time series go in
    ``timeseries.db`` beside it) or ``postgresql://user@host/db`` (metadata and time
    series in one database). Unset means ``sqlite:///<data_dir>/trellis.db``.
    """

    url: str | None = None
    pg_schema: str = Field(default="trellis", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    pool_size: int = Field(default=4, ge=1, le=64)
    partitions_ahead: int = Field(default=3, ge=0, le=60, description="daily partitions")
    raw_days: float = Field(default=30.0, gt=0, description="default raw retention")
    rollup_days: float = Field(default=365.0, gt=0, description="default rollup retention")
    retention: list[RetentionRule] = []
    capacity_bytes: int | None = Field(
        default=None, ge=1, description="storage budget; PostgreSQL's free disk is not visible"
    )
    retention_interval_s: float = Field(default=3600.0, gt=0, description="retention runs")
    alert_days_left: float = Field(
        default=14.0, ge=0, description="alert when the disk is predicted full this soon"
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            return value
        raise ValueError(f"storage.url {value!r} must start with sqlite:/// or postgresql://")


class RuleSettings(_Section):
    """The rule engine: how often its state is checkpointed and time-driven rules run."""

    checkpoint_s: float = Field(default=1.0, gt=0, le=3600)
    tick_s: float = Field(default=1.0, gt=0, le=3600)
    #: How often a model the rules name but the registry lacks is looked up again.
    model_recheck_s: float = Field(default=30.0, gt=0, le=3600)


class SimSettings(_Section):
    """The simulated fleet that ``trellis demo`` and ``trellis sim`` run."""

    pumps: int = Field(default=8, ge=0)
    rooms: int = Field(default=12, ge=0)
    rate_hz: float = Field(default=1.0, gt=0, le=1000)
    seed: int = 7
    fault_device: str | None = Field(
        default="pump-0002", description="device that develops a fault; empty for none"
    )
    fault_after_s: float = Field(default=15.0, ge=0)
    scenario: Path | None = Field(
        default=None,
        description="a scenario file (TOML) to run instead of the demo fleet, from now on",
    )

    @field_validator("scenario")
    @classmethod
    def _scenario_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            from trellis.sim.scenario import load_scenario  # sim imports config

            load_scenario(value)  # a ScenarioError (a ValueError) names the file and line
        return value

    @field_validator("fault_device", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _fault_device_exists(self) -> SimSettings:
        if self.fault_device is None:
            return self
        kind, _, number = self.fault_device.rpartition("-")
        count = {"pump": self.pumps, "room": self.rooms}.get(kind, 0)
        if not (number.isdigit() and 1 <= int(number) <= count):
            raise ValueError(
                f"fault_device {self.fault_device!r} is not in a fleet of {self.pumps} pumps "
                f"and {self.rooms} rooms (pump-0001…, room-0001…); set it to one of them, "
                "or to an empty string for no fault"
            )
        return self


class WebhookSettings(_Section):
    """A URL that receives every new and escalated alert as a JSON POST."""

    url: str = Field(pattern=r"^https?://", description="http(s) URL")
    timeout_s: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. an Authorization")


class EmailSettings(_Section):
    """An SMTP server that mails every new and escalated alert to ``recipients``."""

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(min_length=3, pattern=r"@")
    recipients: list[str] = Field(min_length=1)
    starttls: bool = False
    username: str | None = None
    password: str | None = None


class AlertSettings(_Section):
    """The operator loop: escalation timing and the root causes offered per alert type."""

    escalate_after_s: float = Field(
        default=900.0, gt=0, description="escalate an active alert not acknowledged this long"
    )
    escalation_check_s: float = Field(default=15.0, gt=0, description="how often to look")
    storm_limit: int | None = Field(
        default=50, ge=1, description="new alerts of one rule per window before grouping"
    )
    storm_window_s: float = Field(default=60.0, gt=0)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    email: EmailSettings | None = None
    notify_attempts: int = Field(default=5, ge=1, le=20, description="tries per channel")
    notify_backoff_s: float = Field(default=0.5, gt=0, description="first retry delay")
    root_causes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="alert type -> root causes an operator picks from (default list otherwise)",
    )


class MlSettings(_Section):
    """Model registry, inference, validation gate, drift and carbon."""

    artifact_dir: Path | None = Field(
        default=None, description="local artifact store (default <data_dir>/artifacts)"
    )
    log_max_pending: int = Field(
        default=20_000, ge=1, description="predictions waiting before the caller writes them"
    )
    log_flush_s: float = Field(default=0.25, gt=0, description="write the log this often")
    sessions: int = Field(default=16, ge=1, description="loaded models kept warm")
    drift_window: int = Field(default=500, ge=10, description="recent inputs compared")
    drift_check_s: float = Field(default=60.0, gt=0, description="how often drift is checked")
    psi_threshold: float = Field(default=0.2, gt=0)
    ks_pvalue: float = Field(default=0.01, gt=0, lt=1)
    holdout_s: float = Field(default=3600.0, gt=0, description="newest stored data held out")
    max_alarm_rate: float = Field(default=0.1, ge=0, le=1)
    alarm_tolerance: float = Field(default=0.02, ge=0, le=1)
    latency_budget_ms: float = Field(
        default=20.0, gt=0, description="single-row p99 compute (thread CPU) time"
    )
    require_review: bool = Field(default=False, description="gate needs a governance review")
    cpu_power_w: float = Field(default=15.0, gt=0, description="power of one busy core")
    grid_gco2e_per_kwh: float = Field(default=400.0, ge=0, description="grid carbon intensity")


#: Signature algorithms an OIDC issuer may use: asymmetric only, so a JWKS (public keys)
#: can never be misused as an HMAC secret, and never ``none``.
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "Ed25519")


class OidcSettings(_Section):
    """An enterprise identity provider whose JWTs the API accepts as bearer tokens."""

    issuer: str = Field(min_length=1, description="the exact 'iss' of the tokens")
    audience: str = Field(min_length=1, description="the 'aud' the tokens must carry")
    jwks_url: str | None = Field(
        default=None,
        description="the issuer's JWKS; default: jwks_uri of <issuer>/.well-known/"
        "openid-configuration",
    )
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    leeway_s: int = Field(default=60, ge=0, le=600, description="clock skew allowed")
    tenant_claim: str = Field(
        default="tenant", description="claim naming the tenant; empty: the platform's tenant"
    )
    roles_claim: str = Field(default="roles", description="claim with the caller's roles/groups")
    role_map: dict[str, str] = Field(
        default_factory=dict,
        description="claim value -> Trellis role; a Trellis role name maps to itself",
    )
    jwks_cache_s: float = Field(default=3600.0, gt=0, description="JWKS kept this long")
    jwks_refresh_min_s: float = Field(
        default=30.0, ge=0, description="at most one JWKS fetch per interval on an unknown kid"
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [alg for alg in value if alg not in OIDC_ALGORITHMS]
        if bad or not value:
            raise ValueError(
                f"algorithm(s) {bad} refused: choose from {', '.join(OIDC_ALGORITHMS)} "
                "(never 'none' or HS*: a public JWKS must not verify HMAC tokens)"
            )
        return value


class AuthSettings(_Section):
    """Who may call the API, and under which policies (see docs/security.md)."""

    enabled: bool = Field(default=True, description="require a principal on /api/v1")
    loopback_admin: bool = Field(
        default=False,
        description="a request from 127.0.0.1/::1 without credentials acts as the local admin "
        "(the embedded demo; refused unless http.host is a loopback address)",
    )
    policy_dir: Path | None = Field(default=None, description="*.cedar files; default: built-in")
    token_days: float = Field(default=90.0, gt=0, le=3650, description="API token lifetime")
    decision_cache: int = Field(default=65_536, ge=0, description="cached decisions kept")
    token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="resolved API tokens kept this long; the server's own revocations apply at "
        "once, another process's (the CLI) within this time; 0: look up every request",
    )
    oidc: OidcSettings | None = Field(
        default=None, description="accept bearer JWTs from this OpenID Connect issuer"
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="dashboard login session lifetime"
    )
    session_idle_minutes: float = Field(
        default=60.0, gt=0, description="a dashboard session unused this long ends"
    )
    secure_cookies: bool | None = Field(
        default=None,
        description="mark cookies Secure and send HSTS; default: when the request came over "
        "TLS (set true behind a TLS-terminating proxy)",
    )
    login_per_ip_per_min: int = Field(
        default=10, ge=1, description="failed logins/token requests per client address"
    )
    login_per_user_per_min: int = Field(
        default=5, ge=1, description="failed logins per user name (any address)"
    )


class FabricSettings(_Section):
    """The raw message archive (schema-on-read) and OpenLineage event transports."""

    archive: bool = Field(default=True, description="keep every accepted message, compressed")
    archive_days: float = Field(default=30.0, gt=0, description="archive retention")
    archive_level: int = Field(default=1, ge=1, le=9, description="zlib level of segments")
    lineage_file: Path | None = Field(
        default=None, description="append OpenLineage run events here as JSON lines"
    )
    lineage_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="POST OpenLineage run events here (e.g. Marquez …/api/v1/lineage)",
    )
    lineage_namespace: str = Field(default="trellis", min_length=1, max_length=128)
    lineage_timeout_s: float = Field(default=5.0, gt=0)


class TrustSettings(_Section):
    """The platform's signing key and the audit log's signed checkpoints (docs/security.md).

    The key is read from ``platform_key`` (PEM, or base64 of the 32-byte Ed25519 seed; e.g.
    ``TRELLIS_TRUST__PLATFORM_KEY``), else from ``platform_key_file``, else from
    ``<data_dir>/keys/platform-ed25519.pem``, generated there (mode 0600) on first start.
    """

    platform_key: SecretStr | None = Field(
        default=None, description="Ed25519 private key: PEM or base64 of the 32-byte seed"
    )
    platform_key_file: Path | None = Field(
        default=None, description="PEM file of the key; default <data_dir>/keys/"
    )
    audit_checkpoint_every: int = Field(
        default=100, ge=1, le=1_000_000, description="signed checkpoint after this many entries"
    )


class Settings(BaseSettings):
    """Every setting of a Trellis process, validated before anything starts."""

    model_config = SettingsConfigDict(
        env_prefix="TRELLIS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Path(".trellis")
    tenant: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    http: HttpSettings = HttpSettings()
    ingest: IngestSettings = IngestSettings()
    bus: BusSettings = BusSettings()
    sim: SimSettings = SimSettings()
    mqtt: MqttSettings = MqttSettings()
    alerts: AlertSettings = AlertSettings()
    storage: StorageSettings = StorageSettings()
    ml: MlSettings = MlSettings()
    rules: RuleSettings = RuleSettings()
    auth: AuthSettings = AuthSettings()
    fabric: FabricSettings = FabricSettings()
    trust: TrustSettings = TrustSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)

    @property
    def metadata_url(self) -> str:
        """URL of the metadata database (SQLite file or PostgreSQL)."""
        return self.storage.url or f"sqlite:///{self.data_dir / 'trellis.db'}"

    @property
    def timeseries_url(self) -> str:
        """URL of the time-series store: PostgreSQL, or the SQLite file beside the metadata."""
        if self.storage.url and not self.storage.url.startswith("sqlite:///"):
            return self.storage.url
        return f"sqlite:///{self.timeseries_path}"

    @property
    def timeseries_path(self) -> Path:
        """File of the embedded time-series store (beside the metadata file)."""
        url = self.storage.url
        if url and url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///")).parent / "timeseries.db"
        return self.data_dir / "timeseries.db"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (or ``./trellis.toml`` when present), apply the environment.

    ``overrides`` are for tests and the CLI's flags; they win over the file but not
    over the environment. Raises :class:`ConfigError` naming each bad setting.
    """
    values: dict[str, Any] = {}
    if path is None and Path("trellis.toml").is_file():
        path = Path("trellis.toml")
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    _merge(values, overrides)
    _refuse_unknown_environment(os.environ)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc


#: ``TRELLIS_*`` variables that are not settings: switches of the tests and benchmarks.
_NOT_SETTINGS = frozenset(
    {
        "TRELLIS_REQUIRE_SERVICES",
        "TRELLIS_TEST_POSTGRES",
        "TRELLIS_BENCH_POSTGRES",
        "TRELLIS_TOKEN",
    }
)


def _setting_names(model: type[BaseModel], prefix: str) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        names.add(env)
        # A section may be optional (``OidcSettings | None``): its fields are settings too.
        for annotation in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names |= _setting_names(annotation, env + "__")
    return names


def _refuse_unknown_environment(environ: Mapping[str, str]) -> None:
    """pydantic-settings ignores a misspelt variable; a typo in a port must not be."""
    known = _setting_names(Settings, "TRELLIS_")
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith("TRELLIS_") and name.upper() not in known | _NOT_SETTINGS
    )
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.upper(), known, n=1)
            hints.append(f"  {name}" + (f" (did you mean {close[0]}?)" if close else ""))
        raise ConfigError("unknown TRELLIS_* environment variables:\n" + "\n".join(hints))


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" (from {path} or TRELLIS_* environment)" if path else " (from TRELLIS_* environment)"
    lines = [f"invalid settings{where}:"]
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"])
        env = "TRELLIS_" + "__".join(str(part) for part in error["loc"]).upper()
        given = error.get("input")
        shown = "" if isinstance(given, dict) else f" = {given!r}"
        lines.append(f"  {name}{shown}: {error['msg']} [env {env}]")
    return "\n".join(lines)
