"""The one settings object. Every module gets its configuration from here, never from os.environ."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from router.broker_url import amqp_addresses


class OidcProvider(BaseModel):
    """A tenant's OpenID Connect provider for the workspace sign-in (docs/workspace.md, "Sign-in"), from
    OIDC_<TENANT>_ISSUER, OIDC_<TENANT>_CLIENT_ID, OIDC_<TENANT>_CLIENT_SECRET and, optionally,
    OIDC_<TENANT>_SCOPE. Which groups give which team is in the tenant's rules (`agents:`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    # What the sign-in asks for; some providers put the groups claim in the ID token only for a scope
    # of their own (e.g. "openid profile groups").
    scope: str = "openid profile"

    @field_validator("issuer")
    @classmethod
    def _https_issuer(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme == "https" and url.hostname:
            return value  # as the provider writes it: the ID token's `iss` must equal it exactly
        if url.scheme == "http" and loopback_host(url.hostname):
            return value  # a provider on this machine: tests, a developer's own
        raise ValueError("the issuer must be an https URL (http only on a loopback address)")

    @field_validator("client_secret")
    @classmethod
    def _secret_given(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("the client secret is empty")
        return value

    @field_validator("scope")
    @classmethod
    def _openid_scope(cls, value: str) -> str:
        if "openid" not in value.split():
            raise ValueError("the scope must include 'openid'")
        return value


def loopback_host(host: str | None) -> bool:
    """A name or address of this machine only: where plain http is acceptable."""
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# OIDC_<TENANT>_<PART>: the tenant id upper-cased, a '-' in it written '_'.
_OIDC_VARIABLE = re.compile(r"OIDC_([A-Z0-9_]+?)_(ISSUER|CLIENT_ID|CLIENT_SECRET|SCOPE)")


def oidc_variable(tenant: str, part: str) -> str:
    """The environment variable of a tenant's provider setting: `oidc_variable("ommen", "issuer")`."""
    return f"OIDC_{tenant.upper().replace('-', '_')}_{part.upper()}"


class _OidcEnvironment(PydanticBaseSettingsSource):
    """The `oidc` field from OIDC_<TENANT>_* variables: one variable per value (as a deployment's
    secret store hands them out), not one JSON document."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, str]] = {}
        for name, value in os.environ.items():
            match = _OIDC_VARIABLE.fullmatch(name.upper())
            if match:
                tenant, part = match.group(1).lower(), match.group(2).lower()
                found.setdefault(tenant, {})[part] = value
        return {"oidc": found} if found else {}


# REDIS_URL of a Redis Cluster: its seed nodes (router/redis/client.py makes the client).
CLUSTER_SCHEME = "redis+cluster"


class RedisUrlError(ValueError):
    pass


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == CLUSTER_SCHEME


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The seed nodes (host, port) of a `redis+cluster://` URL, and its user name and password."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if parts.path not in ("", "/"):
        raise RedisUrlError("a Redis Cluster has one database: REDIS_URL names no database after the nodes")
    nodes: list[tuple[str, int]] = []
    for seed in hosts.split(","):
        host, _, port = seed.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisUrlError("each node of a redis+cluster:// REDIS_URL is host:port, comma-separated")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, unquote(user) or None, unquote(password) or None


def seed_address(url: str, default_port: int = 6379) -> tuple[str, int]:
    """Where to look whether the store is there at all (the first seed node of a cluster)."""
    if is_cluster_url(url):
        return cluster_nodes(url)[0][0]
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


class Settings(BaseSettings):
    # hide_input_in_errors: a bad value is named by its variable, never echoed (API_KEYS holds keys).
    model_config = SettingsConfigDict(env_prefix="", frozen=True, extra="ignore", hide_input_in_errors=True)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    rules_dir: Path = Path("rules")
    # Prefix for every exchange, queue and Redis key. Empty in production; tests use a unique one
    # so that several test runs can share one broker and one Redis.
    namespace: str = ""
    # The deployment secret for keyed hashes (HMAC-SHA256) of sender-chosen strings in Redis key names:
    # Message-IDs, client addresses. The same on every process of a deployment; unset, a development
    # secret is used and the process warns.
    key_secret: SecretStr = SecretStr("")
    # "name:key[:tenants[:scopes]],..." — credentials for the HTTP API (README, "Settings"). `key` is the
    # key itself or `sha256=<64 hex digits>`, its SHA-256 digest; `tenants` "t1|t2", or "*" or empty for
    # every tenant (an integrator of a shared contact centre); `scopes` "submit|agent|read", or "admin"
    # for all. Checked at start-up (`parse_api_keys`).
    api_keys: SecretStr = SecretStr("")
    # How the router hands a batch to the broker (docs/architecture.md, "Commit modes"): "transactions"
    # (exactly once per item; for one broker node), "confirms" (publisher confirms, at least once per
    # item: for a RabbitMQ cluster, whose transactions can drop quorum-queue publishes), or "auto":
    # confirms when AMQP_URL names several nodes. A cluster behind one address (a load balancer) needs
    # "confirms".
    router_commit: Literal["auto", "transactions", "confirms"] = "auto"
    # How many contacts the router takes from the broker in one transaction.
    router_batch_size: int = Field(default=100, ge=1, le=1000)
    router_prefetch: int = Field(default=300, ge=1, le=5000)
    # How long a batch waits for more contacts once it has one. Batches fill by themselves under load
    # (the next one is gathered while the previous commits), so waiting mostly adds latency.
    router_linger_ms: float = Field(default=0.0, ge=0, le=1000)
    # A claim on a contact expires after this; a copy that finds a live claim of another delivery waits.
    claim_lease_ms: int = Field(default=15_000, ge=1000)
    # Deliveries after which the broker dead-letters a message that keeps crashing the router. The broker
    # counts every return, also of messages a router held when it was killed or lost its connection:
    # with 5, a message that was in the hands of five routers in a row that died went to router.dead
    # (the fault suite found 11 in 20,000). 20 is RabbitMQ 4's own default. Queues declared with another
    # value keep it (a mismatch fails the declaration): set DELIVERY_LIMIT to that value, or re-create.
    delivery_limit: int = Field(default=20, ge=1)
    # How long a starting process waits for RabbitMQ and Redis before it gives up.
    startup_timeout: float = Field(default=60.0, ge=0)
    log_level: str = "info"
    log_format: str = "json"  # json | console
    # The durable history and audit log (router/history/, `contact-router history` and `report`):
    # postgresql://user:password@host:5432/db, or sqlite:///path (embedded mode, small setups). Empty: no
    # history. A secret: the URL holds the database password.
    history_url: SecretStr = SecretStr("")
    # The metrics listener (`GET /metrics`, on HTTP_HOST) of a process without the HTTP API: `router`,
    # `scheduler`, `history consume`. 0 or empty: none. The API processes serve /metrics on HTTP_PORT.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # OpenTelemetry traces of each contact, adapter → router → team publish (router/tracing.py; the extra
    # `tracing`, exported by OTLP as the OTEL_* environment says). Off by default.
    tracing: bool = False

    # The agent workspace (/werkplek/, docs/workspace.md). SESSION_SECRET signs its session cookies: the
    # same on every API process of a deployment, at least 16 characters; unset, each process makes one
    # of its own (sessions then end when it restarts) and says so in its log.
    session_secret: SecretStr = SecretStr("")
    # The development sign-in (pick a demo agent, no password): unset, on in the embedded mode only. On
    # while a tenant has an OpenID provider configured, the process refuses to start.
    workspace_dev_signin: bool | None = None

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: str) -> str:
        # One broker or the nodes of a cluster; AmqpUrlError (a ValueError) never names the password.
        amqp_addresses(value)
        return value

    @property
    def router_confirms(self) -> bool:
        """Whether the router publishes with confirms (ROUTER_COMMIT, "auto" by AMQP_URL's nodes)."""
        if self.router_commit == "auto":
            return len(amqp_addresses(self.amqp_url)) > 1
        return self.router_commit == "confirms"

    @field_validator("workspace_dev_signin", mode="before")
    @classmethod
    def _dev_signin_empty_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # Each tenant's OpenID Connect provider for the workspace sign-in, by tenant id as written in the
    # variable names (lower case, '_' for '-'): OIDC_<TENANT>_ISSUER, _CLIENT_ID, _CLIENT_SECRET, _SCOPE.
    oidc: dict[str, OidcProvider] = {}
    # Where browsers reach this service (https://werkplek.gemeente.nl), for the sign-in's redirect URI
    # registered at the provider: /werkplek/oidc/<tenant>/callback under it. Empty: each request's own
    # scheme and host (right on a developer's machine; behind a proxy, set it).
    public_url: str = ""
    # The residents' status page (/status/<reference>): requests per client address, refilled evenly
    # over the window.
    status_rate_limit: int = Field(default=30, ge=1)
    status_rate_window_seconds: float = Field(default=60.0, gt=0)

    def status_base_url(self) -> str:
        """Where the links in acknowledgements point: PUBLIC_URL, else this process's own address."""
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{host}:{self.http_port}"

    def key_secret_bytes(self) -> bytes | None:
        """The configured key secret, None when unset (the development secret applies)."""
        secret = self.key_secret.get_secret_value()
        return secret.encode() if secret else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _OidcEnvironment(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator("oidc", mode="before")
    @classmethod
    def _oidc_providers(cls, value: object) -> object:
        """Each provider checked here, so that a mistake is named by its variable, not a field path."""
        if not isinstance(value, dict):
            return value
        providers = {}
        for tenant, parts in value.items():
            if isinstance(parts, OidcProvider):
                providers[tenant] = parts
                continue
            missing = [p for p in ("issuer", "client_id", "client_secret") if not (parts or {}).get(p)]
            if missing:
                names = ", ".join(oidc_variable(str(tenant), p) for p in missing)
                raise ValueError(f"the OpenID Connect provider of tenant '{tenant}' lacks {names}")
            try:
                providers[tenant] = OidcProvider.model_validate(parts)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                part = str(err["loc"][0]) if err["loc"] else "issuer"
                reason = err["msg"].removeprefix("Value error, ")
                raise ValueError(f"{oidc_variable(str(tenant), part)}: {reason}") from None
        return providers

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        url = urlparse(value)
        if value and (url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment):
            raise ValueError("PUBLIC_URL must be an http(s) URL such as https://werkplek.gemeente.nl")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if is_cluster_url(value):
            cluster_nodes(value)  # RedisUrlError (a ValueError) names what is wrong, not the password
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _metrics_port_empty_is_off(cls, value: object) -> object:
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys")
    @classmethod
    def _api_keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())  # a mistake stops the process at start-up
        return value

    def credentials(self) -> dict[str, Credential]:
        """SHA-256 digest (hex) of each key -> its credential; plaintext keys are hashed here."""
        return parse_api_keys(self.api_keys.get_secret_value())


# What a key may do. `admin` implies every other scope.
SCOPES = ("submit", "agent", "read", "admin")
# What a key configured without scopes may do: everything the API offered before keys had scopes
# (so existing deployments keep working), but not `admin`, which no such key was ever given.
UNSCOPED = frozenset({"submit", "agent", "read"})
# A credential's name is recorded as `by` in histories and events: an id, never a person's name.
CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_FORMAT = "expected 'name:key[:tenants[:scopes]]' (tenants 't1|t2' or '*', scopes 'submit|agent|read|admin')"


@dataclass(frozen=True)
class Credential:
    name: str
    tenants: frozenset[str] | None  # None: every tenant
    scopes: frozenset[str] = UNSCOPED
    # False for a key configured without scopes (it has UNSCOPED; the process warns at start-up).
    scoped: bool = True

    def allows(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def permits(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def key_digest(key: str) -> str:
    """How a presented key is looked up: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(text: str) -> dict[str, Credential]:
    """`API_KEYS` as digest -> credential. ValueError names the credential (by position and name, never
    its key) and what is wrong with it."""
    out: dict[str, Credential] = {}
    for n, part in enumerate((p.strip() for p in text.split(",")), start=1):
        if not part:
            continue
        bits = part.split(":")
        where = f"API_KEYS, credential {n}"
        if len(bits) < 2 or len(bits) > 4 or not bits[0] or not bits[1]:
            raise ValueError(f"{where}: {_FORMAT}, separated by commas")
        name, key = bits[0], bits[1]
        if not CREDENTIAL_NAME.fullmatch(name):
            raise ValueError(
                f"{where}: the name must be an id (letters, digits, '.', '_', '-'; at most 64 characters)"
            )
        where = f"API_KEYS, credential {n} ('{name}')"
        if key.startswith("sha256="):
            digest = key.removeprefix("sha256=").lower()
            if not _DIGEST.fullmatch(digest):
                raise ValueError(f"{where}: 'sha256=' must be followed by 64 hex digits (a SHA-256 digest)")
        else:
            digest = key_digest(key)
        tenants_text = bits[2].strip() if len(bits) > 2 else ""
        tenants = None if tenants_text in ("", "*") else frozenset(t for t in tenants_text.split("|") if t)
        if tenants is not None and (not tenants or "*" in tenants):
            raise ValueError(f"{where}: tenants are 't1|t2', or '*' or empty for every tenant")
        scopes_text = bits[3].strip() if len(bits) > 3 else ""
        scopes = frozenset(s.strip() for s in scopes_text.split("|") if s.strip())
        unknown = sorted(scopes - set(SCOPES))
        if unknown:
            # Not quoted: with a ':' in a key, what lands here is a piece of the key.
            raise ValueError(
                f"{where}: {len(unknown)} unknown scope(s) in the fourth field; scopes are "
                f"{', '.join(SCOPES)} (a key cannot hold ':')"
            )
        if digest in out:
            raise ValueError(f"{where}: the same key as credential '{out[digest].name}'")
        out[digest] = Credential(name, tenants, scopes or UNSCOPED, scoped=bool(scopes))
    return out
