"""Adapter settings: one immutable object, from the environment (pydantic-settings).

Mappings are written the way operators write them in an env file ("a:b,c:d") and parsed once here,
so a typo fails at start-up with the variable's name instead of at the first mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
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
        "webform_allowed_origins": "'tenant:https://host[:port]', separated by commas; repeat the tenant"
        " for more origins",
    }.get(name, "'key:value', separated by commas")


def _origin(value: str) -> str:
    """A browser origin as browsers send it in `Origin`: scheme://host[:port], nothing after it."""
    where = "WEBFORM_ALLOWED_ORIGINS"
    if value in ("*", "null"):
        raise ValueError(f"{where}: {value!r} is not allowed; name each website's origin")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{where}: {value!r} is not an origin like https://www.example.nl")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{where}: {value!r} has more than scheme, host and port (no path, no slash)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{where}: {value!r} has an invalid port") from exc
    default = {"https": 443, "http": 80}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


class AdapterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", frozen=True, extra="ignore")

    # Which registered adapters run (their HTTP routes and long-running parts); `adapters list` shows all.
    adapters_enabled: str = BUILTIN_ADAPTERS

    # Inbound SMTP (aiosmtpd). None: no SMTP server. Run it behind the MTA that receives the MX traffic.
    smtp_host: str = "127.0.0.1"
    smtp_port: int | None = Field(default=None, ge=0, le=65535)
    smtp_hostname: str = "contact-router.local"
    # Recipients one message may have (RFC 5321 asks servers to take at least 100), and RCPT commands
    # one connection may give, accepted or refused (a dictionary attack probes addresses): 452 past
    # either, so a real sending server sends the rest later.
    smtp_max_recipients: int = Field(default=100, ge=1)
    smtp_max_recipients_per_session: int = Field(default=500, ge=1)
    # Larger messages are refused at DATA with 552, so the sender's server tells the resident.
    mail_max_bytes: int = Field(default=25_000_000, ge=10_000)
    # An attachment above this is still listed (name, type, size) and counted in mail.attachments_over_limit.
    mail_max_attachment_bytes: int = Field(default=15_000_000, ge=1)
    # "info@ommen.nl:ommen,facturen@ommen.nl:ommen:facturen,@coevorden.nl:coevorden".
    mail_routes: str = ""
    # MIME structure one mail may have: parts (leaves and containers) and nesting depth; past either,
    # and past MAIL_MAX_BYTES decoded, the mail is refused at DATA (554), so no bomb is opened.
    mail_max_mime_parts: int = Field(default=500, ge=2)
    mail_max_mime_depth: int = Field(default=20, ge=1)
    # Subject prefixes of automatic replies that carry no RFC 3834 header (Outlook, Exchange, Apple
    # Mail, Gmail and Thunderbird in Dutch, English, German and French), comma-separated, compared
    # without case before a colon or the end of the subject; such mail is ignored, never a question.
    mail_auto_subjects: str = (
        "afwezig,afwezigheid,afwezigheidsbericht,afwezigheidsmelding,automatisch antwoord,"
        "automatisch bericht,niet aanwezig,niet op kantoor,out of office,out of the office,"
        "automatic reply,auto reply,auto-reply,autoreply,auto response,away from the office,"
        "abwesenheitsnotiz,abwesenheit,automatische antwort,nicht im büro,abwesend,"
        "réponse automatique,reponse automatique,absence du bureau,absent du bureau,message d'absence"
    )

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
    # STARTTLS to the relay: "auto" when the relay offers it, "require" (refuse to send otherwise),
    # "off". The relay's certificate is verified whenever TLS is used (system CAs, or SMTP_RELAY_CA_FILE):
    # a certificate that does not verify fails the send rather than falling back to plain text.
    smtp_relay_starttls: Literal["auto", "require", "off"] = "auto"
    smtp_relay_ca_file: str = ""
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
    # Websites whose pages may post the form from the browser (CORS), per tenant:
    # "ommen:https://www.ommen.nl,ommen:https://ommen.nl,coevorden:https://www.coevorden.nl".
    # Never "*": a tenant's form answers CORS only to the origins named for it.
    webform_allowed_origins: str = ""

    @field_validator("smtp_relay_starttls", mode="before")
    @classmethod
    def _starttls_mode(cls, value: Any) -> Any:
        # The variable used to be a boolean: true meant "always STARTTLS", false "never".
        if isinstance(value, bool):
            return "require" if value else "off"
        if isinstance(value, str):
            lowered = value.strip().lower()
            return {
                "true": "require",
                "1": "require",
                "yes": "require",
                "false": "off",
                "0": "off",
                "no": "off",
            }.get(lowered, lowered)
        return value

    @model_validator(mode="after")
    def _parse_all(self) -> AdapterSettings:
        # Touch every parsed mapping so that a bad value fails here, naming the variable.
        for name in (
            "routes",
            "ack_senders",
            "accounts",
            "phones",
            "form_urls",
            "allowed_origins",
            "enabled",
        ):
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
    def allowed_origins(self) -> dict[str, frozenset[str]]:
        """tenant → the browser origins (scheme://host[:port], lower case) that may post its web form."""
        out: dict[str, set[str]] = {}
        for item in self.webform_allowed_origins.split(","):
            tenant, sep, origin = item.strip().partition(":")
            if not item.strip():
                continue
            # "https://www.ommen.nl" without its tenant reads as tenant "https": say what is missing.
            missing_tenant = tenant.strip().lower() in ("http", "https") and origin.startswith("//")
            if not sep or not tenant.strip() or not origin.strip() or missing_tenant:
                raise ValueError(
                    f"WEBFORM_ALLOWED_ORIGINS: cannot read {item.strip()!r}; "
                    f"expected {_shape('webform_allowed_origins')}"
                )
            out.setdefault(tenant.strip(), set()).add(_origin(origin.strip()))
        return {t: frozenset(o) for t, o in out.items()}

    @cached_property
    def public_space_categories(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.social_public_space_categories.split(",") if c.strip())

    @cached_property
    def auto_subjects(self) -> tuple[str, ...]:
        return tuple(p.strip().casefold() for p in self.mail_auto_subjects.split(",") if p.strip())

    @cached_property
    def own_mail_addresses(self) -> frozenset[str]:
        """The addresses this service receives or sends mail as: the exact MAIL_ROUTES addresses (not
        `@domain` routes, which are the residents' and staff's domain too), IMAP_ADDRESS and ACK_FROM."""
        own = {r.pattern for r in self.routes if not r.pattern.startswith("@")}
        own |= set(self.ack_senders.values())
        if self.imap_address:
            own.add(self.imap_address)
        return frozenset(a.strip().lower() for a in own if a.strip())

    def route_for(self, address: str) -> MailRoute | None:
        for route in self.routes:
            if route.matches(address):
                return route
        return None
