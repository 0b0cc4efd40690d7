"""The one settings object. Every module gets its configuration from here, never from os.environ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", frozen=True, extra="ignore")

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
    # "name:key[:tenant|tenant],..." — credentials for the HTTP API. Without tenants a key reaches every
    # tenant (an integrator of a shared contact centre); with tenants only those.
    api_keys: SecretStr = SecretStr("")
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

    def key_secret_bytes(self) -> bytes | None:
        """The configured key secret, None when unset (the development secret applies)."""
        secret = self.key_secret.get_secret_value()
        return secret.encode() if secret else None

    def credentials(self) -> dict[str, Credential]:
        """key -> credential."""
        out: dict[str, Credential] = {}
        for part in self.api_keys.get_secret_value().split(","):
            part = part.strip()
            if not part:
                continue
            bits = part.split(":")
            if len(bits) not in (2, 3) or not bits[0] or not bits[1]:
                raise ValueError(
                    "API_KEYS: expected 'name:key' or 'name:key:tenant|tenant', separated by commas"
                )
            tenants = frozenset(t for t in bits[2].split("|") if t) if len(bits) == 3 else None
            out[bits[1]] = Credential(bits[0], tenants)
        return out


@dataclass(frozen=True)
class Credential:
    name: str
    tenants: frozenset[str] | None  # None: every tenant

    def allows(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants
