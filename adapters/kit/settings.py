"""Adapter settings: one immutable object, from the environment (pydantic-settings).

Mappings are written the way operators write them in an env file ("a:b,c:d") and parsed once here,
so a typo fails at start-up with the variable's name instead of at the first mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUILTIN_ADAPTERS = "mail,webform,social,phone"


@dataclass(frozen=True)
class MailRoute:
    """Recipient address (`info@ommen.nl`) or domain (`@coevorden.nl`) → tenant and optional mailbox."""

    pattern: str
    tenant: str
    mailbox: str | None = None

    def matches(self, address: str) -> bool:
        address = address.strip().lower()
        if self.pattern.startswith("@"):
            return address.endswith(self.pattern)
        return address == self.pattern


def _pairs(name: str, value: str, *, parts: tuple[int, ...] = (2,)) -> list[list[str]]:
    out = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        bits = [b.strip() for b in item.rsplit(":", max(parts) - 1)] if ":" in item else [item]
        if len(bits) not in parts or not all(bits):
            raise ValueError(f"{name.upper()}: cannot read {item!r}; expected {_shape(name)}")
        out.append(bits)
    return out


def _shape(name: str) -> str:
    return {
        "mail_routes": "'address:tenant[:mailbox]' or '@domain:tenant[:mailbox]', separated by commas",
        "ack_from": "'tenant:address', separated by commas",
        "social_accounts": "'account_id:tenant', separated by commas",
        "tenant_phone": "'tenant:phone number', separated by commas",
        "tenant_form_url": "'tenant:url', separated by commas",
    }.get(name, "'key:value', separated by commas")


class AdapterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", frozen=True, extra="ignore")

    # Which registered adapters run (their HTTP routes and long-running parts); `adapters list` shows all.
    adapters_enabled: str = BUILTIN_ADAPTERS

    # Inbound SMTP (aiosmtpd). None: no SMTP server. Run it behind the MTA that receives the MX traffic.
    smtp_host: str = "127.0.0.1"
    smtp_port: int | None = Field(default=None, ge=0, le=65535)
    smtp_hostname: str = "contact-router.local"
    # Larger messages are refused at DATA with 552, so the sender's server tells the resident.
    mail_max_bytes: int = Field(default=25_000_000, ge=10_000)
    # An attachment above this is still listed (name, type, size) and counted in mail.attachments_over_limit.
    mail_max_attachment_bytes: int = Field(default=15_000_000, ge=1)
    # "info@ommen.nl:ommen,facturen@ommen.nl:ommen:facturen,@coevorden.nl:coevorden".
    mail_routes: str = ""

    # IMAP polling (aioimaplib). None: no poller.
    imap_host: str | None = None
    imap_port: int = 993
    imap_ssl: bool = True
    imap_user: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_mailbox: str = "INBOX"
    # The mailbox's own address, used with MAIL_ROUTES to find the tenant (To: may be an alias or a list).
    imap_address: str = ""
    imap_poll_seconds: float = Field(default=60.0, gt=0)

    # Acknowledgements of receipt go out through this relay.
    smtp_relay_host: str = "127.0.0.1"
    smtp_relay_port: int = 25
    smtp_relay_username: str = ""
    smtp_relay_password: SecretStr = SecretStr("")
    smtp_relay_starttls: bool = False
    smtp_relay_timeout: float = 30.0
    # "ommen:noreply@ommen.nl,coevorden:noreply@coevorden.nl"; a tenant without one gets no acknowledgements.
    ack_from: str = ""

    # Meta (WhatsApp Cloud API, Messenger, Instagram) webhooks.
    meta_app_secret: SecretStr = SecretStr("")
    meta_verify_token: SecretStr = SecretStr("")
    # WhatsApp phone-number id, Facebook page id or Instagram account id → tenant.
    social_accounts: str = ""
    # Categories (from the tenant's rules) that count as a public-space report on social media.
    social_public_space_categories: str = "melding_openbare_ruimte,gevaar"

    # Where residents reach the municipality safely; used in reply texts. Belongs in the rules files
    # eventually (tenant facts), lives here until the rules schema has a place for it.
    tenant_phone: str = "ommen:14 0529,coevorden:14 0524"
    tenant_form_url: str = ""

    # Web form: token bucket per client address and tenant: `webform_rate_limit` submissions, refilled
    # evenly over `webform_rate_window_seconds`.
    webform_rate_limit: int = Field(default=10, ge=1)
    webform_rate_window_seconds: float = Field(default=3600.0, gt=0)
    webform_max_bytes: int = Field(default=64_000, ge=1000)
    # Take the client address from X-Forwarded-For (only behind a proxy that sets it).
    webform_trust_forwarded: bool = False

    @model_validator(mode="after")
    def _parse_all(self) -> AdapterSettings:
        # Touch every parsed mapping so that a bad value fails here, naming the variable.
        for name in ("routes", "ack_senders", "accounts", "phones", "form_urls", "enabled"):
            getattr(self, name)
        return self

    @cached_property
    def enabled(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.adapters_enabled.split(",") if a.strip())

    @cached_property
    def routes(self) -> tuple[MailRoute, ...]:
        out = []
        for bits in _pairs("mail_routes", self.mail_routes, parts=(2, 3)):
            pattern = bits[0].lower()
            if "@" not in pattern:
                raise ValueError(f"MAIL_ROUTES: {bits[0]!r} is neither an address nor '@domain'")
            out.append(MailRoute(pattern, bits[1], bits[2] if len(bits) == 3 else None))
        # Exact addresses win over domains, whatever the order in the variable.
        return tuple(sorted(out, key=lambda r: r.pattern.startswith("@")))

    @cached_property
    def ack_senders(self) -> dict[str, str]:
        return {t: a for t, a in _pairs("ack_from", self.ack_from)}

    @cached_property
    def accounts(self) -> dict[str, str]:
        return {a: t for a, t in _pairs("social_accounts", self.social_accounts)}

    @cached_property
    def phones(self) -> dict[str, str]:
        return {t: p for t, p in _pairs("tenant_phone", self.tenant_phone)}

    @cached_property
    def form_urls(self) -> dict[str, str]:
        out = {}
        for item in self.tenant_form_url.split(","):
            tenant, sep, url = item.strip().partition(":")
            if not item.strip():
                continue
            if not sep or not tenant or not url:
                raise ValueError(
                    f"TENANT_FORM_URL: cannot read {item!r}; expected {_shape('tenant_form_url')}"
                )
            out[tenant.strip()] = url.strip()
        return out

    @cached_property
    def public_space_categories(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.social_public_space_categories.split(",") if c.strip())

    def route_for(self, address: str) -> MailRoute | None:
        for route in self.routes:
            if route.matches(address):
                return route
        return None
