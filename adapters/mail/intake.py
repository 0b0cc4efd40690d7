"""The one path by which a transport hands a mail to the adapter, SMTP and IMAP alike (issue 15, item 7).

`take_in` runs the adapter's decision (`MailAdapter.translate`) and the kit's shared publishing path,
and says what became of the mail in one of four words; the transports only turn that into their own
answer. SMTP: contacts and ignored → 250, refused → the refusal's 5xx. IMAP, which cannot refuse (the
mailbox took the mail): refused → a dead letter with the same reason, then `\\Seen`. An unexpected
parser failure is a dead letter on both (the mail kept for `dlq replay`), never a crash. PublishError
propagates: SMTP answers 451, IMAP leaves the mail unseen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from adapters.kit.base import ChannelAdapter, Inbound, Rejected, submit
from adapters.kit.context import AdapterContext
from router.core.contact import Contact


class MailRefused(Rejected):
    """A mail that cannot become a contact for a reason known before the answer: SMTP refuses it with
    `smtp` (code and enhanced status); the IMAP path, which cannot refuse, dead-letters it with the
    same reason. `message` is fixed text (it is the SMTP reply and the reason)."""

    def __init__(self, smtp: str, message: str):
        # 400, not 422: it is the message as a whole that is refused, not one of its fields.
        super().__init__(message, status=400)
        self.smtp = smtp


class IgnoredMail(Exception):
    """Automatic mail (an auto-reply, a bounce, list mail, our own): never a question, a follow-up or
    acknowledged. `reason` is a fixed text naming the header or rule, never a value."""

    def __init__(self, reason: str, tenant: str | None):
        super().__init__(reason)
        self.reason = reason
        self.tenant = tenant


@runtime_checkable
class CountsIgnored(Protocol):
    def count_ignored(self, tenant: str | None, reason: str) -> None: ...


@dataclass
class Intake:
    kind: Literal["contacts", "ignored", "refused", "dead"]
    reason: str | None = None  # fixed text: the ignored reason class, the refusal, the dead reason
    smtp: str = "250 2.0.0"  # the SMTP code of the answer
    contacts: list[Contact] = field(default_factory=list)

    @property
    def smtp_reply(self) -> str:
        if self.kind == "refused":
            return f"{self.smtp} {self.reason}"
        if self.contacts:
            return f"250 2.0.0 Accepted, reference {' '.join(c.reference for c in self.contacts)}"
        return "250 2.0.0 Accepted"


async def take_in(adapter: ChannelAdapter, inbound: Inbound, ctx: AdapterContext) -> Intake:
    """Decide and publish one mail. Raises PublishError when the broker did not confirm."""
    try:
        outcome = await submit(adapter, inbound, ctx)
    except MailRefused as refused:
        return Intake("refused", refused.message, smtp=refused.smtp)
    except IgnoredMail as ignored:
        if isinstance(adapter, CountsIgnored):
            adapter.count_ignored(ignored.tenant, ignored.reason)
        return Intake("ignored", ignored.reason)
    if outcome.dead_reason is not None:
        return Intake("dead", outcome.dead_reason)
    return Intake("contacts", contacts=outcome.contacts)
