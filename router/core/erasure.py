"""Retention and erasure (AVG art. 5(1)(e) and 17) over every store that keeps residents' data.

- `Privacy.purge` asks each store (`PersonalData`, router/core/ports.py) to remove what is past its
  tenant's retention (`router.core.retention`): closed contacts and dead letters.
- `Privacy.erase` removes one resident's contacts everywhere: each store first names the contacts it
  can find (by reference, e-mail address, phone number), then each removes everything of them.
- `PeriodicPurge` runs the purge in the router process, one router at a time (a `RunLock`).

The pure parts are here too: how an address and a number are normalised for the indexes, which
identifiers a contact carries, and whether a queued message belongs to a subject (`matches`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import phonenumbers

from router import logs
from router.core.clock import Clock
from router.core.contact import contact_id, reference_for
from router.core.ports import PersonalData, Removal, RunLock, Subject
from router.core.retention import RetentionPolicy

log = logs.get("router.erasure")

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalise_email(address: str) -> str:
    """The form the index keeps: trimmed and lower-cased (the whole address: mailboxes are
    case-insensitive in practice, and a resident writes theirs either way)."""
    return address.strip().lower()


def normalise_phone(number: str, region: str = "NL") -> str:
    """E.164 ('06-12 34 56 78' -> '+31612345678'); what cannot be parsed is kept without spaces,
    dashes, dots and brackets, so that the same odd input still finds the same contacts."""
    raw = number.strip()
    if _E164.match(raw):  # what the adapters already send: no parsing on the router's hot path
        return raw
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return re.sub(r"[\s\-().]", "", raw)


def normalise_handle(handle: str) -> str:
    """A social handle as the social adapter writes it, '<platform>:<sender id>' (the platform keeps one
    platform's id from finding another's): trimmed, the platform lower-cased."""
    platform, sep, account = handle.strip().partition(":")
    return f"{platform.lower()}{sep}{account.strip()}" if sep else handle.strip()


def identities(contact: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, normalised value) of the resident's address, number and social handle in a contact's JSON
    form: 'email', 'phone', 'social'. Never a BSN or a name."""
    sender = contact.get("sender")
    if not isinstance(sender, dict):
        return []
    out = []
    email, phone, handle = sender.get("email"), sender.get("phone"), sender.get("handle")
    if isinstance(email, str) and email.strip():
        out.append(("email", normalise_email(email)))
    if isinstance(phone, str) and phone.strip():
        out.append(("phone", normalise_phone(phone)))
    if isinstance(handle, str) and handle.strip():
        out.append(("social", normalise_handle(handle)))
    return out


def identities_of_json(contact_json: str | bytes | None) -> list[tuple[str, str]]:
    if not contact_json:
        return []
    try:
        data = orjson.loads(contact_json)
    except orjson.JSONDecodeError:
        return []
    return identities(data) if isinstance(data, dict) else []


def subject(
    tenant: str,
    *,
    references: Iterable[str] = (),
    emails: Iterable[str] = (),
    phones: Iterable[str] = (),
    contact_ids: Iterable[str] = (),
) -> Subject:
    """A `Subject` with its identifiers normalised as the indexes hold them."""
    return Subject(
        tenant=tenant,
        references=frozenset(r.strip().upper() for r in references if r.strip()),
        emails=frozenset(normalise_email(e) for e in emails if e.strip()),
        phones=frozenset(normalise_phone(p) for p in phones if p.strip()),
        contact_ids=frozenset(c.strip().lower() for c in contact_ids if c.strip()),
    )


# -- does a queued message belong to the subject? ------------------------------------------------


def _contact_matches(who: Subject, contact: Mapping[str, Any]) -> bool:
    tenant = contact.get("tenant")
    if isinstance(tenant, str) and tenant != who.tenant:
        return False
    cid = contact.get("id")
    source = contact.get("source")
    if not isinstance(cid, str) and isinstance(tenant, str) and isinstance(source, dict):
        adapter, native = source.get("adapter"), source.get("native_id")
        if isinstance(adapter, str) and isinstance(native, str):
            cid = contact_id(tenant, adapter, native)  # a dead letter never had its id set
    if isinstance(cid, str):
        if cid in who.contact_ids:
            return True
        if isinstance(tenant, str) and who.references and reference_for(tenant, cid) in who.references:
            return True
    for kind, value in identities(contact):
        if value in {"email": who.emails, "phone": who.phones}.get(kind, frozenset()):
            return True
    return False


def _document_matches(who: Subject, doc: Mapping[str, Any]) -> bool:
    inner = doc.get("contact")
    if isinstance(inner, dict):  # a team work item or a callback item: {"contact": ..., "routing": ...}
        if _contact_matches(who, inner):
            return True
        routing, callback = doc.get("routing"), doc.get("callback_request")
        linked = [
            routing.get("follow_up_of") if isinstance(routing, dict) else None,
            callback.get("contact_id") if isinstance(callback, dict) else None,
        ]
        return any(isinstance(x, str) and x in who.contact_ids for x in linked)
    if "contact_id" in doc:  # an escalation or an event: ids only
        if doc.get("tenant") not in (None, who.tenant):
            return False
        return doc.get("contact_id") in who.contact_ids or doc.get("reference") in who.references
    return _contact_matches(who, doc)  # a contact as published (router.contacts, router.dead)


def _shaped(doc: Mapping[str, Any]) -> bool:
    """A document whose fields `_document_matches` reads: a contact, a work item, an escalation, an event."""
    return any(key in doc for key in ("contact", "contact_id", "source", "channel"))


def _raw_needles(who: Subject) -> list[bytes]:
    needles = [e.encode() for e in who.emails] + [r.lower().encode() for r in who.references]
    for phone in who.phones:
        needles.append(phone.encode())
        needles.append(phone.removeprefix("+").encode())  # WhatsApp's wa_id: E.164 without the plus
        with contextlib.suppress(phonenumbers.NumberParseException):
            national = str(phonenumbers.parse(phone).national_number)
            needles.append(("0" + national).encode())
    return [n for n in needles if len(n) >= 5]


def matches(
    who: Subject, body: bytes, headers: Mapping[str, Any] | None = None, routing_key: str | None = None
) -> bool:
    """Whether a queued message belongs to the subject: its contact (by id, reference, address or
    number), a work item, escalation or event of one of its contacts. A body that is no JSON (a raw
    mail an adapter could not parse) matches when it contains the address, the number (E.164 or
    national, as written without spaces) or a reference, and its routing key names the tenant."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        inner = doc.get("contact")
        tenant = inner.get("tenant") if isinstance(inner, dict) else doc.get("tenant")
        if isinstance(tenant, str) and tenant != who.tenant:
            return False  # another municipality's, whatever ids it names
    header = (headers or {}).get("x-contact-id")
    if isinstance(header, bytes):
        header = header.decode("ascii", "replace")
    if isinstance(header, str) and header in who.contact_ids:
        return True
    if isinstance(doc, dict):
        if _document_matches(who, doc):
            return True
        if _shaped(doc):
            return False  # a contact, item or event of someone else, even if it mentions the address
        # Any other JSON (an adapter's input that failed validation, a webhook of an unexpected shape):
        # searched as text, like a raw mail.
    if routing_key and "." in routing_key and routing_key.split(".", 1)[0] != who.tenant:
        return False  # `<tenant>.<channel>` of another tenant
    lowered = body.lower()
    return any(needle in lowered for needle in _raw_needles(who))


# -- running the stores ---------------------------------------------------------------------------


class ErasureIncomplete(Exception):
    """A store failed during an erasure; what was done before it is in `done`."""

    def __init__(self, who: Subject, done: list[Removal], store: str, error: BaseException):
        super().__init__(f"erasure stopped at store '{store}': {type(error).__name__}: {error}")
        self.subject = who
        self.done = done
        self.store = store


@dataclass
class Privacy:
    """Purge and erasure over the stores, in their order (the state store first: once its timers and
    outbox are gone, nothing publishes about the contacts any more; then the queues)."""

    stores: Sequence[PersonalData]
    policy: RetentionPolicy
    clock: Clock

    async def close(self) -> None:
        """Close what the stores opened for themselves (a store that opens on first use)."""
        for store in self.stores:
            closer = getattr(store, "close", None)
            if closer is not None:
                await closer()

    async def find(self, who: Subject) -> Subject:
        """The subject with the contact ids every store can name."""
        found = set(who.contact_ids)
        for store in self.stores:
            found |= await store.find(replace(who, contact_ids=frozenset(found)))
        return replace(who, contact_ids=frozenset(found))

    async def erase(self, who: Subject) -> tuple[Subject, list[Removal]]:
        if who.is_empty():
            raise ValueError(
                "an erasure needs a reference, an e-mail address, a phone number or a contact id"
            )
        full = await self.find(who)
        done: list[Removal] = []
        for store in self.stores:
            try:
                done.append(await store.erase(full))
            except Exception as exc:
                raise ErasureIncomplete(full, done, store.name, exc) from exc
        # A contact of theirs that a router took from its queue while the erasure ran is in the state
        # store now: once more for what turned up since.
        again = await self.find(who)
        if late := again.contact_ids - full.contact_ids:
            log.info("erasure_second_pass", tenant=full.tenant, contacts=len(late))
            full = again
            for store in self.stores:
                try:
                    done.append(await store.erase(full))
                except Exception as exc:
                    raise ErasureIncomplete(full, done, store.name, exc) from exc
        log.info(
            "erased",
            tenant=full.tenant,
            contacts=len(full.contact_ids),
            **{r.store: sum(r.counts.values()) for r in done},
        )
        return full, done

    async def purge(self, *, dry_run: bool = False) -> list[Removal]:
        now = self.clock.now()
        return [await store.purge(self.policy, now, dry_run=dry_run) for store in self.stores]


class PeriodicPurge:
    """The purge every `interval` seconds in a router process; with several routers, one at a time."""

    def __init__(
        self,
        privacy: Privacy,
        lock: RunLock,
        *,
        interval: float = 3600.0,
        first_after: float = 300.0,
        lock_ttl_ms: int = 30 * 60_000,
    ):
        self.privacy = privacy
        self.lock = lock
        self.interval = interval
        self.first_after = first_after
        self.lock_ttl_ms = lock_ttl_ms
        self.runs = 0
        self._stop = asyncio.Event()

    async def run_once(self) -> list[Removal] | None:
        """One purge, if no other process is purging now (None then)."""
        token = await self.lock.acquire(self.lock_ttl_ms)
        if token is None:
            return None
        try:
            removed = await self.privacy.purge()
        finally:
            await self.lock.release(token)
        self.runs += 1
        for r in removed:
            if r.counts:
                log.info("purged", store=r.store, **r.counts)
        return removed

    def stop(self) -> None:
        self._stop.set()

    async def _sleep(self, seconds: float) -> bool:
        """False once stopped."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return not self._stop.is_set()

    async def run(self) -> None:
        # Not at once: a router that restarts in a loop must not purge in a loop.
        if not await self._sleep(self.first_after):
            return
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # a store away: the next run catches up
                log.warning("purge_failed", error=type(exc).__name__)
            if not await self._sleep(self.interval):
                return
